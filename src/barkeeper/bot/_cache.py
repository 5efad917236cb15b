"""The live cache: every message the bot sees goes to the message store, in batches.

New messages and edits are upserts (the store is edit-aware), deletes are applied
after the upserts queued before them. A failed batch is logged and retried once at
the next flush; the backfill's catch-up finds anything lost beyond that.

A message put with ``work`` (the bot answers it) also gets its memory outbox row,
written in the same transaction as the batch that caches it: the message is cached
with its memory work or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from barkeeper.history import MessageStore, StoredMessage
from barkeeper.learning import OutboxEntry, OutboxStore

__all__ = ["LiveCache"]

_log = logging.getLogger(__name__)


class LiveCache:
    """Batches writes to a :class:`MessageStore`.

    Args:
        store: Where messages go.
        interval: Seconds between flushes.
        batch: Flush early once this many changes wait.
        outbox: Where memory work goes (``None``: ``work`` is refused). It is
            queued held: :meth:`OutboxStore.release` once the reply is sent.
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        interval: float = 0.25,
        batch: int = 200,
        outbox: OutboxStore | None = None,
    ) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._outbox = outbox
        self._upserts: dict[int, StoredMessage] = {}
        self._work: dict[int, OutboxEntry] = {}
        self._deletes: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.flushed = 0

    @property
    def pending(self) -> int:
        """Changes not written yet."""
        return len(self._upserts) + len(self._deletes)

    def start(self) -> None:
        """Start flushing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="barkeeper-live-cache")

    def put(self, message: StoredMessage, *, work: OutboxEntry | None = None) -> None:
        """Store (or update) a message soon; with ``work``, queue its memory work with it.

        Raises:
            ValueError: ``work`` without an outbox.
        """
        if work is not None and self._outbox is None:
            raise ValueError("this cache has no memory outbox")
        self._deletes.discard(message.message_id)
        self._upserts[message.message_id] = message
        if work is not None:
            self._work[message.message_id] = work
        if self.pending >= self._batch:
            self._wake.set()

    def delete(self, message_id: int) -> None:
        """Delete a message soon (and its memory work, if not written yet)."""
        self._upserts.pop(message_id, None)
        self._work.pop(message_id, None)
        self._deletes.add(message_id)
        if self.pending >= self._batch:
            self._wake.set()

    async def flush(self) -> None:
        """Write what waits now."""
        async with self._lock:
            upserts, self._upserts = self._upserts, {}
            work, self._work = self._work, {}
            deletes, self._deletes = self._deletes, set()
            outbox = self._outbox
            entries = list(work.values())

            async def queue(conn: asyncpg.Connection) -> None:
                assert outbox is not None
                await outbox.enqueue(entries, connection=conn, held=True)

            try:
                if upserts:
                    await self._store.store_many(upserts.values(), also=queue if entries else None)
                if deletes:
                    await self._store.delete_many(deletes)
                self.flushed += len(upserts) + len(deletes)
            except Exception as exc:  # kept for the next flush, whatever the failure
                _log.warning("message cache write failed (%d changes kept): %s", len(upserts), exc)
                for key, value in upserts.items():
                    self._upserts.setdefault(key, value)
                for key, entry in work.items():
                    self._work.setdefault(key, entry)
                self._deletes |= deletes

    async def aclose(self) -> None:
        """Stop the background task and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self.pending:
                await self.flush()
