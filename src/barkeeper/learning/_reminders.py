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

from barkeeper.companion import reminder_request
from barkeeper.learning._extraction import CandidateEvent

__all__ = ["birthday_event", "parse_reminder"]

_MAX = 200
_BIRTHDAY = re.compile(r"\bbirthday\b|\bborn on\b|\bborn\s+\d", re.IGNORECASE)


def parse_reminder(text: str) -> CandidateEvent | None:
    """The reminder asked for in ``text``, or ``None``.

    The rules are :func:`barkeeper.companion.reminder_request`'s (the companion also
    reads them before the reply, to say when a reminder cannot be set).

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
    request = reminder_request(text)
    if request is None:
        return None
    return CandidateEvent("reminder", request.what, request.when, None, request.recurrence)


def birthday_event(memory_text: str) -> CandidateEvent | None:
    """A yearly ``birthday`` event from a memory that states the person's birthday.

    The memory must name a birthday and contain a date (resolved later: a memory
    saying only "Birthday is on a Friday" gives nothing).
    """
    if _BIRTHDAY.search(memory_text) is None:
        return None
    return CandidateEvent("birthday", "your birthday", memory_text[:_MAX], None, "yearly")
