"""The live cache: every message the bot sees goes to the message store, in batches.

New messages and edits are upserts (the store is edit-aware), deletes are applied
after the upserts queued before them. A failed batch is logged and retried once at
the next flush; the backfill's catch-up finds anything lost beyond that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from barkeeper.history import MessageStore, StoredMessage

__all__ = ["LiveCache"]

_log = logging.getLogger(__name__)


class LiveCache:
    """Batches writes to a :class:`MessageStore`.

    Args:
        store: Where messages go.
        interval: Seconds between flushes.
        batch: Flush early once this many changes wait.
    """

    def __init__(self, store: MessageStore, *, interval: float = 0.25, batch: int = 200) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._upserts: dict[int, StoredMessage] = {}
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

    def put(self, message: StoredMessage) -> None:
        """Store (or update) a message soon."""
        self._deletes.discard(message.message_id)
        self._upserts[message.message_id] = message
        if self.pending >= self._batch:
            self._wake.set()

    def delete(self, message_id: int) -> None:
        """Delete a message soon."""
        self._upserts.pop(message_id, None)
        self._deletes.add(message_id)
        if self.pending >= self._batch:
            self._wake.set()

    async def flush(self) -> None:
        """Write what waits now."""
        async with self._lock:
            upserts, self._upserts = self._upserts, {}
            deletes, self._deletes = self._deletes, set()
            try:
                if upserts:
                    await self._store.store_many(upserts.values())
                if deletes:
                    await self._store.delete_many(deletes)
                self.flushed += len(upserts) + len(deletes)
            except Exception as exc:  # kept for the next flush, whatever the failure
                _log.warning("message cache write failed (%d changes kept): %s", len(upserts), exc)
                for key, value in upserts.items():
                    self._upserts.setdefault(key, value)
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
