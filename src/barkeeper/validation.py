"""Argument checks for every store of barkeeper, and the one rule for storable text.

Shared by every package that stores something (``history``, ``conversations``,
``companion``, ``memory``, ``turns``, ``retrieval``): a check whose rule is the same
everywhere lives here once, public, so that no package reaches into another's private
module. Code that writes its own stores may use the same checks. Nothing here touches
the database.

Every public method of a store runs its arguments through these before any SQL, so
bad input fails with one clear :class:`~barkeeper.errors.InvalidInputError` and
changes nothing.

Storable text, one rule for every store (message cache, conversations, sessions,
memories, the turn index): PostgreSQL ``text`` cannot hold NUL (``\\x00``) and UTF-8
cannot encode a lone UTF-16 surrogate, so :func:`sanitize_text` makes *free text*
storable rather than rejecting it:

- NUL becomes U+FFFD;
- a surrogate pair split into two code points (as some JSON decoders leave it) is
  joined back into its character (nothing is lost, nothing is counted);
- a lone surrogate becomes U+FFFD;
- every other character is kept exactly.

It returns how many characters it replaced; a store that reports it says so (the
message cache's ``sanitized_chars``). Identifiers, keys, names and structured JSON are
*rejected* instead (:func:`check_name`, :func:`check_json`): nothing is written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from barkeeper.errors import InvalidInputError

__all__ = [
    "BIGINT_MAX",
    "MAX_JSON_BYTES",
    "REPLACEMENT",
    "check_aware",
    "check_bigint",
    "check_choice",
    "check_count",
    "check_id",
    "check_ids",
    "check_int_range",
    "check_json",
    "check_name",
    "check_unit",
    "clean_text",
    "sanitize_text",
]

BIGINT_MAX = 2**63 - 1
"""The largest PostgreSQL ``bigint``."""

MAX_JSON_BYTES = 16 * 1024 * 1024
_MAX_JSON_DEPTH = 64
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
"""What an unstorable character becomes (U+FFFD REPLACEMENT CHARACTER)."""

C = TypeVar("C", bound=str)


def sanitize_text(text: str) -> tuple[str, int]:
    """Make ``text`` storable in PostgreSQL and return it with the number of replacements.

    NUL becomes U+FFFD; a UTF-16 surrogate pair split into two code points (as some JSON
    decoders leave it) is joined back into its character (not counted: nothing is lost);
    an unpaired surrogate becomes U+FFFD. Every other character is kept exactly.

    Args:
        text: any string.

    Returns:
        ``(clean_text, replaced)``; ``clean_text is text`` when nothing had to change.
    """
    if _BAD_CHARS.search(text) is None:
        return text, 0
    replaced = text.count("\x00")
    if replaced:
        text = text.replace("\x00", REPLACEMENT)
    if _SURROGATE.search(text) is not None:
        before = text.count(REPLACEMENT)
        # A UTF-16 round trip joins valid pairs; "replace" turns each lone one into U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        replaced += text.count(REPLACEMENT) - before
    return text, replaced


def clean_text(
    value: object,
    what: str,
    *,
    max_chars: int,
    allow_empty: bool = False,
    strip: bool = True,
) -> str:
    """Free text made storable by :func:`sanitize_text`, then checked.

    Args:
        value: The argument.
        what: Its name in the error message.
        max_chars: The most characters it may have (after cleaning).
        allow_empty: Accept an empty (after stripping) string.
        strip: Strip whitespace at both ends (labels, facts, queries); message
            content keeps it.

    Raises:
        InvalidInputError: It is not a string, is empty (unless allowed) or longer
            than ``max_chars`` characters.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    text = sanitize_text(value)[0]
    if strip:
        text = text.strip()
    if not text and not allow_empty:
        raise InvalidInputError(f"{what} must not be empty")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"{what} is {len(text)} characters long; at most {max_chars} are allowed"
        )
    return text


def check_aware(value: object, field: str) -> datetime:
    """A timezone-aware datetime (a naive one would be read in the server's zone).

    Args:
        value: The argument.
        field: Its name in the error message.

    Raises:
        InvalidInputError: Not a datetime, or naive (its zone would be a guess).
    """
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{field} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{field} must be timezone-aware (e.g. datetime.now(UTC))")
    return value


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


def check_bigint(value: object, field: str, *, minimum: int = 1) -> int:
    """An integer id that fits PostgreSQL's ``bigint`` (booleans are not ids)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= BIGINT_MAX:
        raise InvalidInputError(f"{field} must be between {minimum} and {BIGINT_MAX}, not {value}")
    return value


def check_count(value: object, field: str, *, minimum: int = 0, maximum: int = 10_000) -> int:
    """A small non-negative integer: a limit, an offset, a page size."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidInputError(f"{field} must be between {minimum} and {maximum}, not {value}")
    return value


def check_name(
    value: object, field: str, *, max_length: int = 255, allow_blank: bool = False
) -> str:
    """A name, key or identifier: a string without NUL or lone surrogates, not too long."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, not {type(value).__name__}")
    if not allow_blank and not value.strip():
        raise InvalidInputError(f"{field} must not be empty")
    if len(value) > max_length:
        raise InvalidInputError(
            f"{field} is {len(value)} characters long; at most {max_length} are allowed"
        )
    if _BAD_CHARS.search(value):
        raise InvalidInputError(
            f"{field} contains a NUL character or a lone surrogate, which PostgreSQL cannot store"
        )
    return value


def check_json(
    value: object,
    field: str,
    *,
    nul: Literal["reject", "replace"] = "reject",
    max_bytes: int = MAX_JSON_BYTES,
) -> Any:
    """A JSON-ready copy of ``value`` that PostgreSQL's ``jsonb`` accepts.

    Mappings need string keys; tuples become lists; NaN and infinities, bytes, sets and
    other objects are rejected; strings with NUL or lone surrogates are rejected
    (``nul="reject"``) or cleaned (``nul="replace"``, keys included).
    """
    cleaned = _walk(value, field, nul, 0)
    size = len(json.dumps(cleaned).encode())
    if size > max_bytes:
        raise InvalidInputError(f"{field} is {size} bytes as JSON; at most {max_bytes} allowed")
    return cleaned


def _walk(value: object, field: str, nul: str, depth: int) -> Any:
    if depth > _MAX_JSON_DEPTH:
        raise InvalidInputError(f"{field} is nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{field} contains {value}, which JSON cannot hold")
        return value
    if isinstance(value, str):
        return _json_str(value, field, nul)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{field} has a key of type {type(key).__name__}; JSON keys are strings"
                )
            out[_json_str(key, field, nul)] = _walk(item, field, nul, depth + 1)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_walk(item, field, nul, depth + 1) for item in value]
    raise InvalidInputError(f"{field} contains a {type(value).__name__}, which is not JSON")


def _json_str(value: str, field: str, nul: str) -> str:
    if _BAD_CHARS.search(value):
        if nul == "replace":
            return sanitize_text(value)[0]
        raise InvalidInputError(
            f"{field} contains a NUL character or a lone surrogate, which PostgreSQL cannot store"
        )
    return value
