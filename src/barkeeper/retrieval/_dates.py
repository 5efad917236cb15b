"""The months and years a query names, for matching items by when they happened.

"When did Ana go camping in June?" names June; "what did we do in 2022?" names
2022; "what did I say last month?" names the month before ``now``. A search gives
items whose time falls in a named period a bonus (:attr:`Weights.date`); nothing
here uses a language model.

Only full month names count ("June", not "Jun"), and "May" and "March" only when
capitalised and not the first word, where they are far more often a verb.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["NamedDates", "named_dates"]

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_AMBIGUOUS = {"may", "march"}
_MONTH = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\w.,])(19\d\d|20\d\d)(?!\w|[.,]\d)")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_NUMBERS |= {"seven": 7, "eight": 8, "nine": 9, "ten": 10, "a few": 3, "a couple of": 2}
_RELATIVE = re.compile(
    r"\b(yesterday|last night|today|tonight|this (?:week|month|year)|last (?:week|weekend"
    r"|month|year)|(\d{1,2}|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")"
    r" (day|week|month|year)s? ago)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class NamedDates:
    """What a query names: months (1-12), years, and exact (year, month) pairs.

    An item's time matches if it is in one of ``periods``, or if the query names
    months or years and the time is in one of the months (if any) and one of the
    years (if any).
    """

    months: frozenset[int] = frozenset()
    years: frozenset[int] = frozenset()
    periods: frozenset[tuple[int, int]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.months or self.years or self.periods)

    def matches(self, when: datetime | None) -> bool:
        """Whether ``when`` falls in a period the query names (``False`` for ``None``)."""
        if when is None or not self:
            return False
        if (when.year, when.month) in self.periods:
            return True
        if not (self.months or self.years):
            return False
        return (not self.months or when.month in self.months) and (
            not self.years or when.year in self.years
        )


def _months_back(when: datetime, count: int) -> tuple[int, int]:
    index = when.year * 12 + when.month - 1 - count
    return index // 12, index % 12 + 1


def _relative(phrase: str, amount: str | None, unit: str | None, now: datetime) -> tuple[int, int]:
    phrase = phrase.lower()
    if amount is not None and unit is not None:
        n = int(amount) if amount.isdigit() else _NUMBERS[amount.lower()]
        unit = unit.lower()
        if unit == "day":
            day = now - timedelta(days=n)
        elif unit == "week":
            day = now - timedelta(weeks=n)
        elif unit == "month":
            return _months_back(now, n)
        else:
            return now.year - n, now.month
        return day.year, day.month
    if phrase in ("yesterday", "last night"):
        day = now - timedelta(days=1)
    elif phrase in ("last week", "last weekend"):
        day = now - timedelta(weeks=1)
    elif phrase == "last month":
        return _months_back(now, 1)
    elif phrase == "last year":
        return now.year - 1, now.month
    else:  # today, tonight, this week/month/year
        day = now
    return day.year, day.month


def named_dates(query: str, now: datetime) -> NamedDates:
    """The months, years and relative periods ("last month") ``query`` names.

    Args:
        query: A search query.
        now: What relative expressions count from (the query's time).

    Returns:
        The named dates; false when the query names none. "Last year" and "N years
        ago" name the whole year; the other relative expressions one month.
    """
    months: set[int] = set()
    for match in _MONTH.finditer(query):
        word = match.group(1)
        if word.lower() in _AMBIGUOUS and (
            not word[0].isupper() or not query[: match.start()].strip()
        ):
            continue
        months.add(_MONTHS[word.lower()])
    years = {int(y) for y in _YEAR.findall(query)}
    periods: set[tuple[int, int]] = set()
    for match in _RELATIVE.finditer(query):
        phrase = match.group(1).lower()
        year, month = _relative(phrase, match.group(2), match.group(3), now)
        if phrase == "last year" or (match.group(3) or "").lower() == "year":
            years.add(year)  # a whole year, alongside any month named
        elif phrase == "this year":
            years.add(now.year)
        else:
            periods.add((year, month))
    return NamedDates(frozenset(months), frozenset(years), frozenset(periods))
