"""The live cache: every message the bot sees goes to the message store, in batches.

Changes wait in a buffer, in the order they arrived, one entry per message (an edit
replaces the waiting copy, a delete replaces a waiting insert). Every ``interval`` the
oldest ``batch`` entries are written, in arrival order: runs of upserts with
:meth:`MessageStore.store_many`, runs of deletes with :meth:`MessageStore.delete_many`.
An entry leaves the buffer only once written.

When the database is unreachable the buffer absorbs the outage: writes are retried
with a backoff (up to ``max_retry_delay``), the bot goes on answering, and on recovery
the buffer is flushed oldest first. The buffer is bounded (``limit`` entries,
``BARKEEPER_CACHE_BUFFER``): once full, *new* messages are dropped (edits of waiting
messages still apply, they take no room; deletes are always kept), each drop counted in
:attr:`LiveCache.dropped` and logged, never silently. The newest are dropped, not the
oldest, so what is cached stays gap-free up to a point and the backfill's catch-up
(which reads forward from the newest cached message) fetches the rest.

With a ``journal`` path, the counters are also written there (JSON, replaced
atomically) when an outage begins or ends, when drops begin, and at close, so
``barkeeper doctor`` (another process) can tell what the last bot run went through.

A message put with ``work`` (the bot answers it) also gets its memory outbox row,
written in the same transaction as the batch that caches it: the message is cached
with its memory work or not at all. A message dropped because the buffer is full
drops its work with it (counted with the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import asyncpg

from barkeeper.history import MessageStore, StoredMessage
from barkeeper.learning import OutboxEntry, OutboxStore

__all__ = ["CACHE_JOURNAL", "LiveCache", "read_cache_journal"]

_log = logging.getLogger(__name__)

#: The journal's file name in ``BARKEEPER_DATA_DIR`` (written by ``barkeeper run``).
CACHE_JOURNAL = "message-cache.json"

#: A waiting change: the message to upsert, or ``None`` to delete it.
_Change = StoredMessage | None


class LiveCache:
    """Batches writes to a :class:`MessageStore` and rides out database outages.

    Args:
        store: Where messages go.
        interval: Seconds between flushes.
        batch: Flush early once this many changes wait; also the most written per statement.
        limit: The most changes kept waiting (``BARKEEPER_CACHE_BUFFER``); beyond it new
            messages are dropped and counted.
        max_retry_delay: The longest wait between two attempts while the database is down.
        journal: A JSON file to keep the counters in for other processes (``None``: none).
        outbox: Where memory work goes (``None``: ``work`` is refused). It is queued
            held: :meth:`OutboxStore.release` once the reply is sent.
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        interval: float = 0.25,
        batch: int = 200,
        limit: int = 10_000,
        max_retry_delay: float = 5.0,
        journal: Path | None = None,
        outbox: OutboxStore | None = None,
    ) -> None:
        if limit < 1 or batch < 1:
            raise ValueError("the cache's limit and batch must be positive")
        self._store = store
        self._interval = interval
        self._batch = batch
        self._limit = limit
        self._max_retry_delay = max(interval, max_retry_delay)
        self._waiting: OrderedDict[int, _Change] = OrderedDict()
        self._outbox = outbox
        self._work: dict[int, OutboxEntry] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._retry_delay = interval
        self._down_since: float | None = None
        self._dropped_in_outage = 0
        self._journal = journal
        self._journal_task: asyncio.Task[None] | None = None
        self._journal_again = False
        self._last_outage: float | None = None
        #: Changes written since start.
        self.flushed = 0
        #: New messages dropped because the buffer was full (never reset).
        self.dropped = 0
        #: Database outages the cache rode out (or is riding out).
        self.outages = 0

    @property
    def pending(self) -> int:
        """Changes not written yet."""
        return len(self._waiting)

    @property
    def limit(self) -> int:
        """The most changes kept waiting."""
        return self._limit

    @property
    def database_down(self) -> bool:
        """Whether the last write failed (the buffer is absorbing an outage)."""
        return self._down_since is not None

    @property
    def down_for(self) -> float | None:
        """Seconds since the first failed write of the current outage, or ``None``."""
        if self._down_since is None:
            return None
        return time.monotonic() - self._down_since

    def start(self) -> None:
        """Start flushing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="barkeeper-live-cache")

    def put(self, message: StoredMessage, *, work: OutboxEntry | None = None) -> None:
        """Store (or update) a message soon; with ``work``, queue its memory work with it.

        A message already waiting is replaced in place (unless it waits to be deleted).
        A new one is dropped, counted and logged when the buffer is full.

        Raises:
            ValueError: ``work`` without an outbox.
        """
        if work is not None and self._outbox is None:
            raise ValueError("this cache has no memory outbox")
        key = message.message_id
        if key in self._waiting:
            if self._waiting[key] is not None:
                self._waiting[key] = message
                if work is not None:
                    self._work[key] = work
            return
        if not self._room(key):
            return
        self._waiting[key] = message
        if work is not None:
            self._work[key] = work
        self._nudge()

    def delete(self, message_id: int) -> None:
        """Delete a message soon (in its place in the order, if it waits).

        Deletes are never dropped, even beyond the limit: deleted content must not stay
        cached.
        """
        self._waiting[message_id] = None
        self._work.pop(message_id, None)
        self._nudge()

    def _room(self, message_id: int) -> bool:
        if len(self._waiting) < self._limit:
            return True
        self.count_dropped(message_id, "buffer full, BARKEEPER_CACHE_BUFFER")
        return False

    def count_dropped(self, message_id: int, reason: str) -> None:
        """Count (and log) a message that will not be cached.

        Args:
            message_id: The message's id (logged; never its content).
            reason: Why, for the log.
        """
        self.dropped += 1
        self._dropped_in_outage += 1
        if self._dropped_in_outage == 1 or self._dropped_in_outage % 1000 == 0:
            self._note()
            _log.error(
                "message cache: dropped message %d (%s; %d changes waiting); %d dropped "
                "since start (the backfill's catch-up can fetch them once the database "
                "is back)",
                message_id,
                reason,
                len(self._waiting),
                self.dropped,
            )

    def _nudge(self) -> None:
        if len(self._waiting) >= self._batch and self._down_since is None:
            self._wake.set()

    async def flush(self) -> bool:
        """Write everything that waits now, oldest first.

        Returns:
            ``True`` when nothing is left waiting; ``False`` when a write failed (the
            changes stay in the buffer, in order, for the next attempt).
        """
        async with self._lock:
            while self._waiting:
                if not await self._write_head():
                    return False
            return True

    async def _write_head(self) -> bool:
        """Write the oldest run of upserts or deletes (at most ``batch``); ``False`` on failure."""
        head = list(itertools.islice(self._waiting.items(), self._batch))
        queued: dict[int, OutboxEntry] = {}
        deleting = head[0][1] is None
        run = list(itertools.takewhile(lambda kv: (kv[1] is None) == deleting, head))
        try:
            if deleting:
                await self._store.delete_many(k for k, _ in run)
            else:
                queued = {k: self._work[k] for k, _ in run if k in self._work}
                entries = list(queued.values())
                outbox = self._outbox

                async def queue(conn: asyncpg.Connection) -> None:
                    assert outbox is not None
                    await outbox.enqueue(entries, connection=conn, held=True)

                await self._store.store_many(
                    (v for _, v in run if v is not None), also=queue if entries else None
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept, in order, for the next attempt, whatever the failure
            if self._down_since is None:
                self._down_since = time.monotonic()
                self.outages += 1
                self._note()
                _log.warning(
                    "message cache: the database is unreachable (%s); buffering changes "
                    "(%d waiting, up to %d) and retrying",
                    exc,
                    len(self._waiting),
                    self._limit,
                )
            return False
        for key, value in run:
            if self._waiting.get(key, value) is value:  # not changed while being written
                self._waiting.pop(key, None)
            if key in queued and self._work.get(key) is queued[key]:
                del self._work[key]  # queued with this write (work put since waits)
        self.flushed += len(run)
        if self._down_since is not None and not self._waiting:
            _log.warning(
                "message cache: the database is back after %.1f s; buffered changes "
                "written in order (%d dropped during the outage)",
                time.monotonic() - self._down_since,
                self._dropped_in_outage,
            )
            self._last_outage = time.monotonic() - self._down_since
            self._down_since = None
            self._dropped_in_outage = 0
            self._note()
            self._retry_delay = self._interval
        return True

    async def aclose(self) -> None:
        """Stop the background task and write what is left (lost changes are logged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not await self.flush():
            _log.error(
                "message cache closed with %d change(s) unwritten (the database is "
                "unreachable); the backfill's catch-up fetches them at the next start",
                len(self._waiting),
            )
        if self._journal is not None:
            if self._journal_task is not None:
                await asyncio.gather(self._journal_task, return_exceptions=True)
            try:
                await asyncio.to_thread(self._write_journal, self._snapshot(closed=True))
            except OSError as exc:
                _log.warning("could not write the message cache journal: %s", exc)

    # --- the journal, for other processes ---------------------------------------------

    def _snapshot(self, *, closed: bool = False) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "closed": closed,
            "pending": len(self._waiting),
            "dropped": self.dropped,
            "outages": self.outages,
            "database_down_for": None if self.down_for is None else round(self.down_for, 1),
            "last_outage_seconds": (
                None if self._last_outage is None else round(self._last_outage, 1)
            ),
        }

    def _note(self) -> None:
        """Write the journal soon (one write at a time, the newest counters win)."""
        if self._journal is None:
            return
        if self._journal_task is not None and not self._journal_task.done():
            self._journal_again = True
            return
        self._journal_task = asyncio.get_running_loop().create_task(self._keep_journal())

    async def _keep_journal(self) -> None:
        while True:
            self._journal_again = False
            try:
                await asyncio.to_thread(self._write_journal, self._snapshot())
            except OSError as exc:
                _log.warning("could not write the message cache journal: %s", exc)
                return
            if not self._journal_again:
                return

    def _write_journal(self, snapshot: dict[str, Any]) -> None:
        path = self._journal
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(path)

    async def _run(self) -> None:
        while True:
            wait = self._retry_delay if self._down_since is not None else self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            if not self._waiting:
                continue
            if await self.flush():
                self._retry_delay = self._interval
            else:
                self._retry_delay = min(self._retry_delay * 2, self._max_retry_delay)


def read_cache_journal(path: Path) -> dict[str, Any] | None:
    """What a bot's live cache wrote in its journal (see :class:`LiveCache`).

    Args:
        path: The journal (``BARKEEPER_DATA_DIR/message-cache.json`` for ``barkeeper run``).

    Returns:
        Its counters (``dropped``, ``outages``, ``pending``, ``updated_at``, ``closed``…),
        or ``None`` when there is no readable journal.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
