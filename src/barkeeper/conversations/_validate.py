"""Argument checks shared by the conversation, session and companion stores.

PostgreSQL ``text`` cannot hold NUL (``\\x00``) and UTF-8 cannot encode a lone
surrogate, so such input never reaches a statement. Two policies, one per kind of
value:

- free text (message content, titles, run input/output, the text inside run
  transcripts) is *cleaned*: NUL and lone surrogates become U+FFFD, so a message is
  never lost over a stray byte;
- identifiers, keys, names and structured JSON (metadata, state, settings, metrics) are
  *rejected* with :class:`~barkeeper.errors.InvalidInputError`, nothing is written.

Nothing here touches the database.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from barkeeper._validate import BIGINT_MAX, check_aware
from barkeeper.errors import InvalidInputError

__all__ = [
    "BIGINT_MAX",
    "MAX_JSON_BYTES",
    "check_aware",
    "check_bigint",
    "check_count",
    "check_json",
    "check_name",
    "clean_text",
]

MAX_JSON_BYTES = 16 * 1024 * 1024
_MAX_JSON_DEPTH = 64
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


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


def clean_text(value: object, field: str, *, max_length: int) -> str:
    """Free text: NUL and lone surrogates become U+FFFD; too long is an error."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidInputError(
            f"{field} is {len(value)} characters long; at most {max_length} are allowed"
        )
    return _BAD_CHARS.sub(REPLACEMENT, value)


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
            return _BAD_CHARS.sub(REPLACEMENT, value)
        raise InvalidInputError(
            f"{field} contains a NUL character or a lone surrogate, which PostgreSQL cannot store"
        )
    return value
