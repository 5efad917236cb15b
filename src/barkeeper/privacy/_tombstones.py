"""Tombstones: who was forgotten, and when, as keyed hashes (schema v2).

The key is created at the first forget (32 random bytes, stored as its HMAC pads in
``privacy_key``); two processes creating it at once end with one key, because the
table holds one row and the insert is ``ON CONFLICT DO NOTHING``. The hash and the
check are computed by PostgreSQL (``barkeeper_identity_hash``,
``barkeeper_forgotten_at``), so every writer uses the same rule.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime

import asyncpg

__all__ = ["ensure_key", "identities", "write_tombstones"]

_BLOCK = 64  # SHA-256's block size: an HMAC key is padded to it


def _pads(key: bytes) -> tuple[bytes, bytes]:
    padded = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


async def ensure_key(conn: asyncpg.Connection) -> None:
    """Create the tombstone key unless it exists (race-safe; keeps the first one)."""
    inner, outer = _pads(secrets.token_bytes(32))
    await conn.execute(
        "INSERT INTO privacy_key (singleton, inner_pad, outer_pad) VALUES (true, $1, $2) "
        "ON CONFLICT (singleton) DO NOTHING",
        inner,
        outer,
    )


def identities(discord_id: int | None, external_id: str | None) -> list[str]:
    """The identity strings a tombstone hashes: ``discord:<id>``, ``external:<id>``."""
    out = []
    if discord_id is not None:
        out.append(f"discord:{discord_id}")
    if external_id is not None:
        out.append(f"external:{external_id}")
    return out


async def write_tombstones(
    conn: asyncpg.Connection, who: Iterable[str], at: datetime | None = None
) -> datetime | None:
    """Record that these identities were forgotten, in ``conn``'s transaction.

    The instant is ``at``, or the clock now (after the deletions that precede this
    call in the transaction). Forgetting someone again moves their instant forward.

    Returns:
        The instant recorded, or ``None`` when ``who`` is empty.
    """
    names = list(who)
    if not names:
        return None
    await ensure_key(conn)
    when: datetime = await conn.fetchval("SELECT coalesce($1::timestamptz, clock_timestamp())", at)
    await conn.execute(
        "INSERT INTO forgotten (identity_hash, forgotten_at) "
        "SELECT barkeeper_identity_hash(i), $2 "
        "FROM unnest($1::text[]) AS i "
        "ON CONFLICT (identity_hash) DO UPDATE "
        "SET forgotten_at = greatest(forgotten.forgotten_at, EXCLUDED.forgotten_at)",
        names,
        when,
    )
    return when
