"""Discord snowflakes and timestamps: build ids from milliseconds and read them back.

A snowflake is ``(ms since 2015-01-01T00:00:00Z) << 22 | worker << 17 | process << 12 |
increment``. The emulator derives every timestamp it reports from the id, so ids and
timestamps can never disagree. Pure functions only; nothing here keeps state.
"""

from __future__ import annotations

import datetime as dt

# One definition of Discord's epoch and of a snowflake's time, shared with the cache.
from barkeeper.history import DISCORD_EPOCH_MS, snowflake_time

__all__ = [
    "DISCORD_EPOCH_MS",
    "iso_timestamp",
    "make_snowflake",
    "snowflake_ms",
    "snowflake_time",
]

_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def make_snowflake(ms: int, *, worker: int = 0, process: int = 0, increment: int = 0) -> int:
    """Build a snowflake.

    Args:
        ms: Unix time in milliseconds; must not be before Discord's epoch.
        worker: Internal worker id (5 bits, taken modulo 32).
        process: Internal process id (5 bits, taken modulo 32).
        increment: Per-process counter (12 bits, taken modulo 4096).

    Returns:
        The snowflake as an ``int``.

    Raises:
        ValueError: ``ms`` is before Discord's epoch.
    """
    if ms < DISCORD_EPOCH_MS:
        raise ValueError(f"{ms} ms is before Discord's epoch ({DISCORD_EPOCH_MS} ms)")
    return (
        ((ms - DISCORD_EPOCH_MS) << 22)
        | ((worker & 0x1F) << 17)
        | ((process & 0x1F) << 12)
        | (increment & 0xFFF)
    )


def snowflake_ms(snowflake: int) -> int:
    """Unix time in milliseconds encoded in ``snowflake``."""
    return (snowflake >> 22) + DISCORD_EPOCH_MS


def iso_timestamp(ms: int) -> str:
    """Discord's ISO 8601 rendering of a Unix time in ms: ``2024-01-01T00:00:00.123000+00:00``."""
    return (_UNIX_EPOCH + dt.timedelta(milliseconds=ms)).isoformat(timespec="microseconds")
