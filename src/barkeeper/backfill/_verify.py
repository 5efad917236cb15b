"""Verification of the cached history against Discord: edits and deletes older than the sync.

The sync (``MESSAGE_SYNC_LIMIT``) only re-reads a channel's newest messages, so an
edit or a delete further back would stay wrong in the cache forever. Verification
re-reads older pages and reconciles them like the sync does (each page stored with
the deletes of the id range it covers, in one transaction):

- ``barkeeper backfill --verify``: the whole cached range of the chosen channels;
- the rolling verification: ``BACKFILL_VERIFY_PAGES`` pages per channel per backfill
  run, from where the previous run stopped (:class:`VerifyCursors`), back to the top
  once the oldest cached message is reached.

This module holds the cursors' SQL; the walk itself is in :mod:`._engine`.
"""

from __future__ import annotations

from barkeeper.db import Database

__all__ = ["VerifyCursors"]

_KEY = "backfill.verify_before:{channel_id}"
_GET = "SELECT value FROM barkeeper_meta WHERE key = $1"
_SET = """
INSERT INTO barkeeper_meta (key, value, updated_at) VALUES ($1, $2, now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
"""
_DELETE = "DELETE FROM barkeeper_meta WHERE key = $1"


class VerifyCursors:
    """Where each channel's rolling verification goes on (``barkeeper_meta``, by its key).

    Args:
        db: The database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, channel_id: int) -> int | None:
        """The id the next verification page ends before (``None``: start at the top)."""
        async with self._db.acquire() as conn:
            value = await conn.fetchval(_GET, _KEY.format(channel_id=channel_id))
        return value if isinstance(value, int) and value > 0 else None

    async def set(self, channel_id: int, before: int | None) -> None:
        """Remember where to go on (``None``: the next run starts at the top again)."""
        key = _KEY.format(channel_id=channel_id)
        async with self._db.acquire() as conn:
            if before is None:
                await conn.execute(_DELETE, key)
            else:
                await conn.execute(_SET, key, before)
