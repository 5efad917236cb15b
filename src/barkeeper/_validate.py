"""Argument checks whose rule is the same in every store of the package.

The per-package modules (:mod:`barkeeper.conversations._validate`,
:mod:`barkeeper.memory._validate`) re-export these next to the checks whose wording
or policy is their own (text cleaning differs on purpose between stores).
Nothing here touches the database.
"""

from __future__ import annotations

from datetime import datetime

from barkeeper.errors import InvalidInputError

__all__ = ["BIGINT_MAX", "check_aware"]

BIGINT_MAX = 2**63 - 1
"""The largest PostgreSQL ``bigint``."""


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
