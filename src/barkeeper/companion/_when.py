"""Dates and times for follow-ups, deterministically: no model decides when anything is.

- :func:`resolve_when`: a phrase as a person wrote it ("Friday", "tomorrow at 5pm",
  "next week", "March 14", "2026-12-04") resolved against the time the MESSAGE was
  sent, in the person's time zone, into a :class:`Span` of local dates (and a time of
  day when one was said).
- :func:`parse_quiet_hours` / :func:`quiet_until`: ``BARKEEPER_QUIET_HOURS`` windows
  ("22:00-08:00", across midnight or not) and when the one we are in ends.
- :func:`next_occurrence`: weekly, monthly and yearly recurrence in local time, with
  month ends clamped to the anchor's day (Jan 31 monthly → Feb 28/29 → Mar 31) and
  Feb 29 yearly → Feb 28 in non-leap years.
- :func:`local_moment`: a local date and time as a UTC instant, correct across DST
  (a time skipped by a spring-forward gap moves forward by the gap).

Rules for relative phrases (see ``docs/companion.md``): a bare weekday ("Friday",
"this Friday", "on fri") is the next such day AFTER the message's day (people say
"today" for today); "next Friday" is the Friday of next week (weeks start on Monday);
"next week" is next Monday to Sunday; "this weekend" the coming Saturday–Sunday (the
current one when said on a weekend); "next month" its first to last day; "in N
days/weeks/months" (or "a fortnight") that long after the message's day; "in N
hours/minutes" (or "half an hour") that long after the message, to the minute; "the
14th" the next 14th on or after tomorrow; a month and day ("March 14", "14 March") the
next such date on or after the message's day. A part of the day said without a time
stands for one: morning 09:00, afternoon 15:00, evening 18:00, tonight and night 20:00
("tomorrow evening", "Friday morning"; "in the morning" alone is the next 09:00).
Anything else is not understood (``None``), and nothing is scheduled from it.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from barkeeper.errors import InvalidInputError

__all__ = [
    "RECURRENCES",
    "QuietHours",
    "Recurrence",
    "Span",
    "local_moment",
    "next_occurrence",
    "parse_quiet_hours",
    "quiet_until",
    "resolve_when",
]

Recurrence = Literal["none", "weekly", "monthly", "yearly"]
#: How an event repeats.
RECURRENCES: tuple[Recurrence, ...] = ("none", "weekly", "monthly", "yearly")

_WEEKDAYS = {
    "monday": 0,
    "mon": 0,
    "tuesday": 1,
    "tue": 1,
    "tues": 1,
    "wednesday": 2,
    "wed": 2,
    "thursday": 3,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "friday": 4,
    "fri": 4,
    "saturday": 5,
    "sat": 5,
    "sunday": 6,
    "sun": 6,
}
_MONTHS = {
    name.lower(): number
    for number in range(1, 13)
    for name in (calendar.month_name[number], calendar.month_abbr[number])
} | {"sept": 9}
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "couple of": 2,
    "few": 3,
}

_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_TIME = re.compile(
    r"\b(?:at\s+)?(?:(noon|midday|midnight)|(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)|"
    r"(\d{1,2}):(\d{2}))\b",
    re.IGNORECASE,
)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_DAY = re.compile(rf"\b({_MONTH})\.?\s+(?:the\s+)?{_DAY}\b(?:,?\s*(\d{{4}}))?", re.I)
_DAY_MONTH = re.compile(
    rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s*(\d{{4}}))?", re.I
)
_ORDINAL = re.compile(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b", re.I)
_COUNT = r"(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|a few)"
_IN = re.compile(rf"\bin\s+{_COUNT}\s+(day|week|month|fortnight)s?\b", re.I)
# "in 2 hours", "in 20 minutes", "in half an hour": a moment, not a day.
_IN_CLOCK = re.compile(rf"\bin\s+(?:(half an? hour)|{_COUNT}\s+(hour|hr|minute|min)s?)\b", re.I)
# A part of the day said without a time ("tomorrow evening"): the time it stands for.
_PART_OF_DAY = re.compile(r"\b(?<!last )(morning|afternoon|evening|tonight|night)\b", re.I)
_PARTS = {
    "morning": time(9, 0),
    "afternoon": time(15, 0),
    "evening": time(18, 0),
    "tonight": time(20, 0),
    "night": time(20, 0),
}
# Said with no day, a part of the day is the next such time ("in the morning").
_PART_ALONE = re.compile(
    r"\b(in the (morning|afternoon|evening)|tonight|at night|this (morning|afternoon|evening))\b",
    re.I,
)
_WEEKDAY = re.compile(
    r"\b(next|this|coming|on)?\s*(" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Span:
    """When something is, in the person's local calendar.

    Attributes:
        start: Its first day.
        end: Its last day (``start`` for one day).
        at: The time of day said ("at 5pm"), if any.
    """

    start: date
    end: date
    at: time | None = None


def _time_of(text: str) -> time | None:
    m = _TIME.search(text)
    if m is None:
        return None
    word, hour12, minute12, meridiem, hour24, minute24 = m.groups()
    if word:
        return time(0, 0) if word.lower() == "midnight" else time(12, 0)
    if hour12 is not None:
        hour = int(hour12)
        if not 1 <= hour <= 12:
            return None
        pm = meridiem.lower().startswith("p")
        hour = hour % 12 + (12 if pm else 0)
        minute = int(minute12 or 0)
    else:
        hour, minute = int(hour24), int(minute24)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _count(word: str) -> int:
    raw = word.lower()
    raw = raw.removeprefix("a ").strip() if raw.startswith("a ") else raw
    return int(raw) if raw.isdigit() else _NUMBERS.get(raw, 1)


def _in_clock(phrase: str, local: datetime) -> Span | None:
    """ "in 2 hours" and the like: the local moment that far after ``local``."""
    m = _IN_CLOCK.search(phrase)
    if m is None:
        return None
    if m.group(1):
        minutes = 30
    else:
        count = _count(m.group(2))
        minutes = count * 60 if m.group(3).lower().startswith("h") else count
    # To the minute, never earlier than asked.
    moment = (local + timedelta(minutes=minutes, seconds=59)).replace(second=0, microsecond=0)
    return Span(moment.date(), moment.date(), moment.time().replace(tzinfo=None))


def _part_of_day(phrase: str) -> time | None:
    m = _PART_OF_DAY.search(phrase)
    return None if m is None else _PARTS[m.group(1).lower()]


def _date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _month_day(today: date, month: int, day: int, year: str | None) -> date | None:
    if year:
        return _date_or_none(int(year), month, day)
    found = _date_or_none(today.year, month, day)
    if found is None and month == 2 and day == 29:  # the next Feb 29
        for y in range(today.year, today.year + 8):
            found = _date_or_none(y, 2, 29)
            if found is not None and found >= today:
                return found
        return None
    if found is not None and found < today:
        found = _date_or_none(today.year + 1, month, day)
    return found


def _day_span(text: str, today: date) -> tuple[date, date] | None:
    low = text.lower()
    m = _ISO.search(low)
    if m:
        d = _date_or_none(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return (d, d) if d else None
    if re.search(r"\bday after tomorrow\b", low):
        d = today + timedelta(days=2)
        return d, d
    if re.search(r"\b(tomorrow|tmrw|tmr)\b", low):
        d = today + timedelta(days=1)
        return d, d
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", low):
        return today, today
    for pattern, month_group, day_group in ((_MONTH_DAY, 1, 2), (_DAY_MONTH, 2, 1)):
        m = pattern.search(low)
        if m:
            d = _month_day(
                today, _MONTHS[m.group(month_group).lower()], int(m.group(day_group)), m.group(3)
            )
            return (d, d) if d else None
    if re.search(r"\bnext week\b", low):
        monday = today + timedelta(days=7 - today.weekday())
        return monday, monday + timedelta(days=6)
    if re.search(r"\b(this|the) weekend\b|\bon the weekend\b", low):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7)
        if today.weekday() == 6:
            saturday = today - timedelta(days=1)
        return saturday, saturday + timedelta(days=1)
    if re.search(r"\bnext month\b", low):
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    m = _IN.search(low)
    if m:
        count = _count(m.group(1))
        unit = m.group(2).lower()
        if unit == "fortnight":
            d = today + timedelta(weeks=2 * count)
        elif unit == "day":
            d = today + timedelta(days=count)
        elif unit == "week":
            d = today + timedelta(weeks=count)
        else:
            d = add_months(today, count, today.day)
        return d, d
    m = _WEEKDAY.search(low)
    if m:
        wanted = _WEEKDAYS[m.group(2).lower()]
        ahead = (wanted - today.weekday()) % 7 or 7  # the next one AFTER today
        if (m.group(1) or "").lower() == "next":
            next_monday = today + timedelta(days=7 - today.weekday())
            d = next_monday + timedelta(days=wanted)
        else:
            d = today + timedelta(days=ahead)
        return d, d
    m = _ORDINAL.search(low)
    if m:
        day = int(m.group(1))
        probe = today + timedelta(days=1)
        for _ in range(13):
            d = _date_or_none(probe.year, probe.month, day)
            if d is not None and d >= probe:
                return d, d
            probe = add_months(probe.replace(day=1), 1, 1)
        return None
    return None


def stored_zone(name: str | None) -> ZoneInfo | None:
    """A stored IANA time zone name as a zone; ``None`` when unset or no longer known."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# The last day resolve_when gives: later ones leave no room in the calendar (it ends in
# 9999) for a follow-up's delay, a time zone's offset or a yearly recurrence.
_LAST_DAY = date(9998, 12, 31)


def resolve_when(phrase: str, said_at: datetime, zone: ZoneInfo) -> Span | None:
    """Resolve a person's phrase for a day against when they said it.

    Args:
        phrase: What they wrote ("Friday", "tomorrow at 5pm", "next week", "Dec 14").
        said_at: When the message was sent (timezone-aware).
        zone: The person's time zone (their own when known, else the bot's).

    Returns:
        The local day(s) meant, and the time of day if one was said; ``None`` when the
        phrase names no day this module understands, or one after 9998 (a time alone
        means today, or tomorrow when that time has passed).

    Example:
        >>> from datetime import datetime, UTC
        >>> from zoneinfo import ZoneInfo
        >>> resolve_when("on Friday", datetime(2026, 12, 1, 12, tzinfo=UTC), ZoneInfo("UTC"))
        Span(start=datetime.date(2026, 12, 4), end=datetime.date(2026, 12, 4), at=None)
    """
    if said_at.tzinfo is None:
        raise InvalidInputError("said_at must be timezone-aware")
    try:
        span = _resolve(phrase, said_at.astimezone(zone))
    except OverflowError:  # "in 99999999999 hours": beyond the calendar, no day to read
        return None
    return None if span is None or span.end > _LAST_DAY else span


def _resolve(phrase: str, local: datetime) -> Span | None:
    """:func:`resolve_when` at ``local``, the message's local time."""
    today = local.date()
    soon = _in_clock(phrase, local)
    if soon is not None:
        return soon
    at = _time_of(phrase)
    span = _day_span(_TIME.sub(" ", phrase), today)
    if at is None and (span is not None or _PART_ALONE.search(phrase)):
        at = _part_of_day(phrase)
    if span is None:
        if at is None:
            return None
        day = today if at > local.time().replace(tzinfo=None) else today + timedelta(days=1)
        return Span(day, day, at)
    return Span(span[0], span[1], at)


def names_date(phrase: str) -> bool:
    """Whether ``phrase`` names a calendar date (a month and day, or ISO), not a weekday."""
    return bool(_ISO.search(phrase) or _MONTH_DAY.search(phrase) or _DAY_MONTH.search(phrase))


def add_months(day: date, months: int, anchor_day: int) -> date:
    """``day`` moved by ``months``, on ``anchor_day`` clamped to the month's length."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def next_occurrence(
    current: date, recurrence: Recurrence, *, anchor: date | None = None
) -> date | None:
    """The local day after ``current`` on which a recurring event fires next.

    Args:
        current: The day it fired (or was due).
        recurrence: ``weekly`` (+7 days), ``monthly`` (same day of month as the anchor,
            clamped to the month's length), ``yearly`` (the anchor's month and day;
            Feb 29 is Feb 28 in non-leap years), ``none`` (never: ``None``).
        anchor: The first occurrence, whose day the clamping returns to (default
            ``current``): Jan 31 monthly goes Feb 28 → Mar 31, not Mar 28.
    """
    anchor = anchor or current
    if recurrence == "none":
        return None
    if recurrence == "weekly":
        return current + timedelta(days=7)
    if recurrence == "monthly":
        return add_months(current, 1, anchor.day)
    if recurrence == "yearly":
        year = current.year + 1
        return date(year, anchor.month, min(anchor.day, calendar.monthrange(year, anchor.month)[1]))
    raise InvalidInputError(f"unknown recurrence {recurrence!r}; use one of {RECURRENCES}")


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``zone``, as a UTC instant.

    A time that does not exist (skipped by a spring-forward change) is moved forward
    by the gap; an ambiguous one (repeated by a fall-back change) is the first.
    """
    naive = datetime.combine(day, at)
    candidates = [naive.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)]
    real = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == naive]
    # Ambiguous: both are real, the earlier is the first. In a gap: neither is; the
    # later one is the time read with the offset before the change (moved forward).
    return min(real) if real else max(candidates)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in which nothing proactive is sent (local time).

    Attributes:
        start: When it begins.
        end: When it ends (before ``start``: it spans midnight).
    """

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        """Whether a local time of day is inside the window."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def parse_quiet_hours(value: str) -> QuietHours | None:
    """``"22:00-08:00"`` as :class:`QuietHours`; empty or ``"off"``: none.

    Raises:
        InvalidInputError: Not ``HH:MM-HH:MM``.
    """
    text = value.strip().lower()
    if text in ("", "off", "none"):
        return None
    m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", text)
    if m is None:
        raise InvalidInputError(f"quiet hours must look like 22:00-08:00, not {value!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise InvalidInputError(f"quiet hours must look like 22:00-08:00, not {value!r}")
    return QuietHours(time(h1, m1), time(h2, m2))


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime | None:
    """When the quiet window ``now`` falls in ends (UTC), or ``None`` if not in one."""
    if quiet is None:
        return None
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        day += timedelta(days=1)  # in the evening part: it ends tomorrow morning
    return local_moment(day, quiet.end, zone)
