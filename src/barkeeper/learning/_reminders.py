"""Reminders people ask for, and birthdays in memories: found by rules, not by the model.

A reminder request ("remind me Monday to call mum", "can you remind me to water the
plants tomorrow at 6pm", "remind me every Friday to pay rent") is explicit: it must
work every time, not at the extraction rate, so :func:`parse_reminder` finds it in the
text with a rule (English), like "remember that …" (:func:`parse_memory_command`).
The day stays the person's words; :class:`barkeeper.companion.Followups` resolves it.

:func:`birthday_event` turns a memory that states a birthday ("Birthday is on March
14", "Was born on 14 March 1990") into a yearly event, whichever way the memory came
(extraction, consolidation, "remember that …").
"""

from __future__ import annotations

import re
from typing import Literal

from barkeeper.learning._extraction import CandidateEvent

__all__ = ["birthday_event", "parse_reminder"]

_REMIND = re.compile(r"\bremind\s+me\b\s*(?P<rest>.+)", re.IGNORECASE | re.DOTALL)
_SPLIT = re.compile(r"\b(?:to|that|about|of)\b", re.IGNORECASE)
_EVERY = re.compile(
    r"\bevery\s+(?P<unit>day|week|month|year|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)\b|\b(?P<adverb>weekly|monthly|yearly|annually)\b",
    re.IGNORECASE,
)
# A day phrase at the end of the subject ("call mum on Monday"): cut from what is said.
_TRAILING_WHEN = re.compile(
    r"\s+(?:(?:on|at|by|this|next|coming|in|every)\s+.*|tomorrow.*|today.*|tonight.*|"
    r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b.*|weekly|monthly|"
    r"yearly|annually)$",
    re.IGNORECASE,
)
_MAX = 200
_BIRTHDAY = re.compile(r"\bbirthday\b|\bborn on\b|\bborn\s+\d", re.IGNORECASE)


def _recurrence(text: str) -> tuple[Literal["none", "weekly", "monthly", "yearly"], str | None]:
    m = _EVERY.search(text)
    if m is None:
        return "none", None
    word = (m.group("unit") or m.group("adverb") or "").lower()
    if word in ("month", "monthly"):
        return "monthly", None
    if word in ("year", "yearly", "annually"):
        return "yearly", None
    if word in ("week", "weekly", "day"):
        return "weekly", None
    return "weekly", word  # every <weekday>: that weekday


def parse_reminder(text: str) -> CandidateEvent | None:
    """The reminder asked for in ``text``, or ``None``.

    Args:
        text: A person's message.

    Returns:
        A ``reminder`` event whose ``when`` is the person's words around the request
        (resolved later) and whose ``what`` is the thing to be reminded of.

    Example:
        >>> parse_reminder("remind me Monday to call mum")
        CandidateEvent(kind='reminder', what='call mum', when='Monday', question=None, \
recurrence='none')
    """
    m = _REMIND.search(text)
    if m is None:
        return None
    rest = " ".join(m.group("rest").split()).rstrip(" .!?")
    split = _SPLIT.search(rest)
    if split is None:
        return None
    before = rest[: split.start()].strip(" ,")
    after = rest[split.end() :].strip(" ,")
    recurrence, weekday = _recurrence(rest)
    what = _TRAILING_WHEN.sub("", after).strip(" ,") or after
    when = before if before else after[len(what) :].strip(" ,") or after
    if weekday is not None:
        when = weekday
    if not what or not when:
        return None
    return CandidateEvent("reminder", what[:_MAX], when[:_MAX], None, recurrence)


def birthday_event(memory_text: str) -> CandidateEvent | None:
    """A yearly ``birthday`` event from a memory that states the person's birthday.

    The memory must name a birthday and contain a date (resolved later: a memory
    saying only "Birthday is on a Friday" gives nothing).
    """
    if _BIRTHDAY.search(memory_text) is None:
        return None
    return CandidateEvent("birthday", "your birthday", memory_text[:_MAX], None, "yearly")
