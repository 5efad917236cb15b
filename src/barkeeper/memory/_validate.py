"""Checks and clean-ups for arguments of the memory layer.

Every public method runs its arguments through these before any SQL, so bad input
fails with one clear :class:`InvalidInputError` and changes nothing. Text is made
storable, not rejected, where that loses nothing a reader would miss: NUL bytes
(which PostgreSQL ``text`` cannot hold) become U+FFFD and lone surrogates (which
UTF-8 cannot encode) become ``?``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

from barkeeper._validate import BIGINT_MAX
from barkeeper._validate import check_aware as check_timestamp
from barkeeper.errors import InvalidInputError

__all__ = [
    "BIGINT_MAX",
    "check_choice",
    "check_id",
    "check_ids",
    "check_int_range",
    "check_timestamp",
    "check_unit",
    "clean_text",
]

C = TypeVar("C", bound=str)


def clean_text(value: object, what: str, *, max_chars: int, allow_empty: bool = False) -> str:
    """``value`` made storable: NULs replaced, lone surrogates replaced, ends stripped.

    Raises:
        InvalidInputError: It is not a string, is empty (unless allowed) or longer
            than ``max_chars`` characters.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    text = value.replace("\x00", "\ufffd")
    text = text.encode("utf-8", "replace").decode("utf-8").strip()
    if not text and not allow_empty:
        raise InvalidInputError(f"{what} must not be empty")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"{what} is {len(text)} characters long; the limit is {max_chars}. "
            "Shorten it (a memory is one fact, not a document)."
        )
    return text


def check_id(value: object, what: str) -> int:
    """A positive bigint id.

    Raises:
        InvalidInputError: Not an ``int`` (``bool`` excluded) in 1..2**63-1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer id, not {type(value).__name__}")
    if not 0 < value <= BIGINT_MAX:
        raise InvalidInputError(f"{what} must be between 1 and {BIGINT_MAX}, not {value}")
    return value


def check_ids(values: Iterable[object], what: str, *, limit: int = 1000) -> tuple[int, ...]:
    """Distinct positive bigint ids, in first-seen order.

    Raises:
        InvalidInputError: One is not a valid id, or there are more than ``limit``.
    """
    if isinstance(values, str | bytes):
        raise InvalidInputError(f"{what} must be a sequence of integer ids")
    ids = tuple(dict.fromkeys(check_id(v, what) for v in values))
    if len(ids) > limit:
        raise InvalidInputError(f"{what}: at most {limit} ids, not {len(ids)}")
    return ids


def check_unit(value: object, what: str) -> float:
    """A finite number in 0..1.

    Raises:
        InvalidInputError: Not a number, NaN, or outside 0..1.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number between 0 and 1")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise InvalidInputError(f"{what} must be between 0 and 1, not {value}")
    return number


def check_choice(value: object, what: str, choices: Sequence[C]) -> C:
    """One of ``choices``.

    Raises:
        InvalidInputError: It is not; the message lists them.
    """
    for choice in choices:
        if value == choice:
            return choice
    raise InvalidInputError(f"{what} must be one of {', '.join(choices)}; not {value!r}")


def check_int_range(value: object, what: str, low: int, high: int) -> int:
    """An ``int`` in ``low..high``.

    Raises:
        InvalidInputError: It is not.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{what} must be an integer between {low} and {high}")
    return value
