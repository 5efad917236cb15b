""":class:`ChannelLocks`: one PostgreSQL advisory lock per channel, across processes.

Every barkeeper process that backfills opens one dedicated connection (outside the
pool, so the locks never starve the writers of connections) and takes a
session-level ``pg_try_advisory_lock`` per channel it works on. PostgreSQL drops a
session's locks when its connection ends, so a process killed at any instant
leaves no lock behind. Keys are 64-bit hashes of the schema and the channel id:
bots sharing one database in different schemas never block each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from barkeeper.db import Database, translate_error
from barkeeper.errors import DatabaseError

__all__ = ["ChannelLocks", "LockLostError"]

_log = logging.getLogger(__name__)

_KEY = "hashtextextended('barkeeper.backfill:' || $1::text || ':' || $2::bigint::text, 0)"
_TRY = f"SELECT pg_try_advisory_lock({_KEY})"
_UNLOCK = f"SELECT pg_advisory_unlock({_KEY})"
_HELD = f"""
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
  AND objid = ({_KEY} & 4294967295)::oid
  AND classid = (({_KEY} >> 32) & 4294967295)::oid
"""  # noqa: S608


class LockLostError(DatabaseError):
    """The connection holding the channel locks was lost: stop working on those channels."""


class ChannelLocks:
    """Cross-process channel locks held on one dedicated connection.

    Open it with :meth:`open` (an ``async with`` context); it is also exclusive within
    the process (a second :meth:`try_acquire` of a held channel returns ``False``).

    Args:
        conn: the dedicated connection.
        schema: the barkeeper schema, part of every key.
    """

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self._conn = conn
        self._schema = schema
        self._use = asyncio.Lock()
        self._held: set[int] = set()
        self._lost = False
        conn.add_termination_listener(self._on_terminated)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, db: Database) -> AsyncIterator[ChannelLocks]:
        """A dedicated connection to ``db``'s server; every lock is released on exit.

        Raises:
            DatabaseError: the server could not be reached.
        """
        try:
            conn = await asyncpg.connect(
                db.url.dsn(),
                timeout=30,
                server_settings={"application_name": "barkeeper-backfill-locks"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise translate_error(exc, db.url) from None
        locks = cls(conn, db.schema)
        try:
            yield locks
        finally:
            try:
                await asyncio.wait_for(asyncio.shield(conn.close()), timeout=5)
            except BaseException:
                conn.terminate()
                raise

    def _on_terminated(self, conn: asyncpg.Connection) -> None:
        self._lost = True

    @property
    def lost(self) -> bool:
        """Whether the connection ended (its locks are gone)."""
        return self._lost or self._conn.is_closed()

    def check(self) -> None:
        """Raise :class:`LockLostError` if the locks can no longer be trusted."""
        if self.lost and self._held:
            raise LockLostError(
                "lost the database connection holding the backfill's channel locks; "
                "stopping so that another process may take over"
            )

    async def _fetchval(self, sql: str, channel_id: int) -> object:
        async with self._use:
            try:
                return await self._conn.fetchval(sql, self._schema, channel_id)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._lost = True
                raise LockLostError(f"channel lock query failed: {exc}") from exc

    async def try_acquire(self, channel_id: int) -> bool:
        """Take the channel's lock if nobody (no process, no task here) holds it.

        Returns:
            Whether this process now holds it.

        Raises:
            LockLostError: the lock connection is gone.
        """
        if channel_id in self._held:
            return False
        if self.lost:
            raise LockLostError("the backfill's lock connection is closed")
        got = bool(await self._fetchval(_TRY, channel_id))
        if got:
            self._held.add(channel_id)
        return got

    async def release(self, channel_id: int) -> None:
        """Release the channel's lock (nothing happens if it is not held)."""
        if channel_id not in self._held:
            return
        self._held.discard(channel_id)
        if self.lost:
            return
        try:
            await self._fetchval(_UNLOCK, channel_id)
        except LockLostError:
            _log.warning("could not release the lock of channel %s: connection lost", channel_id)

    async def holds(self, channel_id: int) -> bool:
        """Whether the server says this session holds the channel's lock (for checks)."""
        if self.lost:
            return False
        return bool(await self._fetchval(_HELD, channel_id))

    @property
    def held(self) -> frozenset[int]:
        """Channels whose locks this process holds."""
        return frozenset(self._held)
