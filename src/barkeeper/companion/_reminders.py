"""Reminder requests in what people write, found by rules (English), and what became of them.

- :func:`reminder_request`: "remind me Monday to call mum", "can you remind me to water
  the plants tomorrow at 6pm", "remind me every Friday to pay rent" as a
  :class:`ReminderRequest` (the thing, the day in the person's words, the recurrence).
  ``barkeeper.learning.parse_reminder`` hands it to :class:`~barkeeper.companion.Followups`.
- :func:`asks_for_reminder`: whether a message asks for one at all ("remind me …",
  even with nothing readable after it).
- :func:`reminder_trouble`: when such a request will NOT be scheduled (no day can be
  read from it, the day has passed, the person or this place has reminders off), and
  :func:`reminder_notice`, the line the reply's context gets for it, so that the bot
  says so and asks instead of promising a reminder nobody will send. The line is fixed
  text: nothing the person wrote goes into it. The agent adds the same line itself
  when the companion is off or the message is incognito (nothing is scheduled then).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from barkeeper.companion._when import Recurrence, resolve_when

__all__ = [
    "ReminderRequest",
    "ReminderTrouble",
    "asks_for_reminder",
    "reminder_notice",
    "reminder_request",
    "reminder_trouble",
]

_REMIND = re.compile(r"\bremind\s+me\b\s*(?P<rest>.+)?", re.IGNORECASE | re.DOTALL)
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

ReminderTrouble = Literal["undated", "past", "off_for_them", "off_here", "incognito"]
"""Why a reminder asked for is not scheduled (see :func:`reminder_trouble`; ``incognito``
is the agent's: nothing from an incognito message is kept, so nothing is scheduled)."""

_ASK = (
    "If they meant something they want to be reminded of now (a name, what was said), "
    "just answer that."
)
_TROUBLE_TEXT: dict[ReminderTrouble, str] = {
    "undated": (
        "Their message seems to ask you to remind them of something later, but no day or "
        "time could be read from it, so NO reminder is set. Do not say you will remind "
        "them: ask when, and to ask again with the day in it (only a message saying "
        "'remind me' sets one), e.g. 'remind me tomorrow at 5pm to …', or to use "
        "`/followups remind`; days such as 'on Friday', 'in 2 hours', 'on the 14th' work. "
    ),
    "past": (
        "Their message seems to ask you to remind them of something, but the day they gave "
        "has passed, so NO reminder is set. Do not say you will remind them: ask them "
        "to ask again with a day still to come. "
    ),
    "off_for_them": (
        "Their message seems to ask you to remind them of something, but they turned "
        "reminders and follow-ups off, so NO reminder is set. Do not say you will remind "
        "them: tell them `/followups on` turns them back on. "
    ),
    "off_here": (
        "Their message seems to ask you to remind them of something, but reminders are "
        "switched off here, so NO reminder is set. Do not say you will remind them; say "
        "you cannot set reminders here. "
    ),
    "incognito": (
        "Their message seems to ask you to remind them of something, but they are "
        "incognito (nothing they say is kept), so NO reminder is set. Do not say you will "
        "remind them: tell them `/followups remind` sets one, or to ask again once "
        "incognito is off. "
    ),
}


@dataclass(frozen=True, slots=True)
class ReminderRequest:
    """A reminder a person asked for, as they said it.

    Attributes:
        what: What to remind them of ("call mum").
        when: The day in their words ("Monday", "tomorrow at 6pm"): resolved later,
            against the message's time (:func:`~barkeeper.companion.resolve_when`).
        recurrence: ``none``, ``weekly``, ``monthly`` or ``yearly``.
    """

    what: str
    when: str
    recurrence: Recurrence = "none"


def _recurrence(text: str) -> tuple[Recurrence, str | None]:
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


def reminder_request(text: str) -> ReminderRequest | None:
    """The reminder asked for in ``text``, or ``None``.

    Example:
        >>> reminder_request("remind me Monday to call mum")
        ReminderRequest(what='call mum', when='Monday', recurrence='none')
    """
    m = _REMIND.search(text)
    if m is None or not m.group("rest"):
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
    return ReminderRequest(what[:_MAX], when[:_MAX], recurrence)


def asks_for_reminder(text: str) -> bool:
    """Whether ``text`` asks to be reminded of something ("remind me …"), readable or not.

    Example:
        >>> asks_for_reminder("remind me later"), asks_for_reminder("I forgot")
        (True, False)
    """
    return _REMIND.search(text) is not None


def reminder_trouble(
    text: str,
    said_at: datetime,
    zone: ZoneInfo | None,
    *,
    on_here: bool = True,
    on_for_them: bool = True,
) -> ReminderTrouble | None:
    """Why a reminder ``text`` asks for will not be scheduled; ``None``: it will (or none asked).

    The same rules as :meth:`~barkeeper.companion.Followups.schedule`: "remind me"
    with nothing :func:`reminder_request` can read, or a day :func:`resolve_when`
    cannot read, is ``undated``; a day before the message's day is ``past``.

    Args:
        text: The person's message.
        said_at: When they sent it (timezone-aware).
        zone: Their time zone; ``None`` (not set: the bot's applies, which this does not
            know) reads the day in UTC and calls it past only when it is two days gone.
        on_here: Follow-ups are on for the bot and in this server.
        on_for_them: The person has not turned them off (``/followups off``).
    """
    if not asks_for_reminder(text):
        return None
    if not on_here:
        return "off_here"
    if not on_for_them:
        return "off_for_them"
    request = reminder_request(text)
    if request is None:
        return "undated"
    span = resolve_when(request.when, said_at, zone or ZoneInfo("UTC"))
    if span is None:
        return "undated"
    today = said_at.astimezone(zone or ZoneInfo("UTC")).date()
    if span.start < today - timedelta(days=0 if zone is not None else 1):
        return "past"
    return None


def reminder_notice(trouble: ReminderTrouble) -> str:
    """The line the reply's context gets for ``trouble`` (fixed text, no user content).

    Example:
        >>> "NO reminder is set" in reminder_notice("off_here")
        True
    """
    return _TROUBLE_TEXT[trouble] + _ASK
