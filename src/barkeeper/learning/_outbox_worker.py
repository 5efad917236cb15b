""":class:`OutboxWorker`: memory extraction from the durable outbox, in background tasks.

Each of ``concurrency`` tasks claims one ready item (:meth:`OutboxStore.claim`), reads
the few channel lines before the message (for the model to resolve references), and
processes it in **one transaction that both writes its memories and deletes the
item** (:meth:`MemoryStore.transaction` binds the memory store's writes to that
transaction's connection):

1. lock the item's row, if the claim still holds (else another worker took it over:
   nothing is done);
2. :meth:`MemoryManager.process` (model calls, then the memory writes);
3. delete the item (done), or on a retryable failure mark it ``retrying``/``dead``;
4. commit.

**Exactly-once effect.** The memory writes of an item and its deletion commit
together or not at all. A process killed before the commit leaves no memory of the
attempt; its claim expires with the lease and the item is processed again, by any
process, as attempt *n + 1*. The row lock held during processing stops any other
worker from taking over a live worker's item, however long the model takes, and the
token check stops a worker whose lease was taken over from finishing it. So every
item's memories are written exactly once, even across ``kill -9``; what may happen
more than once is the *model call* of an attempt that was cut off (the work is not
lost, only repeated). The cost: each task holds one pooled connection, in a
transaction, while it waits for the model.

A failure (an exception, or a model rate limit or outage after the client's own
retries) is retried with exponential backoff; after ``max_attempts`` the item is
``dead`` with its reason. Meanwhile only that user's later items wait: other users'
items go on. An outcome that is final (a malformed answer of the model, a refused
request) ends the item like a success, as the in-memory worker did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from barkeeper.errors import InvalidInputError
from barkeeper.history import MessageStore
from barkeeper.learning._background import BackgroundTasks, LearnedHook
from barkeeper.learning._extraction import UserMessage
from barkeeper.learning._manager import MemoryManager
from barkeeper.learning._outbox import OutboxItem, OutboxStore

__all__ = ["OutboxStats", "OutboxWorker"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class OutboxStats:
    """Counters of this worker since it started.

    Attributes:
        claimed: Items claimed.
        done: Items finished (their memories, if any, committed).
        retried: Failed attempts that will be tried again.
        dead: Items dead-lettered by this worker.
        lost: Items whose claim was taken over before this worker locked them.
        errors: Unexpected exceptions caught (logged with their traceback).
    """

    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    errors: int = 0


class OutboxWorker(BackgroundTasks):
    """Processes the memory outbox with a :class:`MemoryManager`, in background tasks.

    Args:
        manager: What processes each message (its store's transactions carry the
            done-marking).
        outbox: The outbox (attempts, lease and backoff are its settings).
        history: Where the lines before a message are read for context (``None``:
            no context).
        concurrency: Tasks; each holds at most one item (so one connection) at a time.
        poll_interval: Seconds an idle task waits before looking again (work queued
            by another process is found this way; :meth:`wake` for this one's).
        context_lines: Lines before the message shown to the model.
        name: This worker in ``claimed_by`` (host, process id and a number by default).
        on_learned: Told how many new facts each item added, after they commit (see
            :data:`LearnedHook`); also settable later as :attr:`on_learned`. Its
            failures are logged, never raised.

    Raises:
        InvalidInputError: A limit is out of range.

    Example::

        async with OutboxWorker(manager, OutboxStore(db), history=MessageStore(db)) as worker:
            ...  # the bot queues messages; the worker learns from them
    """

    _task_name = "memory-outbox"

    def __init__(
        self,
        manager: MemoryManager,
        outbox: OutboxStore,
        *,
        history: MessageStore | None = None,
        concurrency: int = 2,
        poll_interval: float = 1.0,
        context_lines: int = 5,
        name: str | None = None,
        on_learned: LearnedHook | None = None,
    ) -> None:
        if not 1 <= concurrency <= 64:
            raise InvalidInputError(f"concurrency must be within 1..64, not {concurrency}")
        if poll_interval <= 0:
            raise InvalidInputError("poll_interval must be positive")
        super().__init__(concurrency, on_learned)
        self._manager = manager
        self.outbox = outbox
        self._history = history
        self._poll = poll_interval
        self._context_lines = max(0, context_lines)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:x}"
        self._wake = asyncio.Event()
        self._in_flight = 0
        self.stats = OutboxStats()

    def __repr__(self) -> str:
        return f"<OutboxWorker {self.name} tasks={len(self._tasks)} closed={self._closed}>"

    @property
    def in_flight(self) -> int:
        """Items this worker is processing now."""
        return self._in_flight

    def wake(self) -> None:
        """Something was queued (or released) in this process: look now, not at the next poll."""
        self._wake.set()

    async def run_once(self, limit: int = 1) -> int:
        """Claim up to ``limit`` ready items and process them; how many were claimed."""
        self._in_flight += 1  # claiming: what it gets is in flight before the claim returns
        try:
            items = await self.outbox.claim(limit, worker=self.name)
            self._in_flight += len(items)
        finally:
            self._in_flight -= 1
        if items:
            await asyncio.gather(*(self._handle(item) for item in items))
        return len(items)

    async def drain(self) -> None:
        """Process until nothing is ready now (items backing off later are left)."""
        while True:
            handled = await self.run_once(self._concurrency)
            if not handled:
                if self._in_flight == 0 and not await self.outbox.has_ready():
                    return
                await asyncio.sleep(0.05)  # another task's item, or a user's next one

    async def aclose(self, *, grace_period: float = 30.0) -> None:
        """Stop claiming; let items in progress finish (within ``grace_period`` s).

        An item still running after it is cancelled: its transaction rolls back and
        its claim is given back (ready at once, the attempt uncounted). Nothing queued
        is lost: the outbox keeps it for the next start.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_period)
            for task in late:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while not self._closed:
            try:
                handled = await self.run_once(1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the database is away: try again later
                self.stats.errors += 1
                _log.warning("memory outbox: could not claim work: %s", exc)
                handled = 0
            if handled or self._closed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _context(self, item: OutboxItem) -> tuple[str, ...]:
        if (
            self._history is None
            or not self._context_lines
            or item.channel_id is None
            or item.message_id is None
        ):
            return ()
        try:
            lines = await self._history.get_context(
                item.channel_id, before=item.message_id, limit=self._context_lines
            )
        except Exception as exc:  # context is a help, not a need
            _log.info("memory outbox: no context for item %d: %s", item.id, exc)
            return ()
        return tuple(f"{m.author_name}: {m.content}" for m in lines if m.content)

    async def _handle(self, item: OutboxItem) -> None:
        self.stats.claimed += 1
        try:
            await self._attempt(item)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.outbox.give_back(item))
            raise
        except InvalidInputError as exc:  # the same input fails the same way: no retry
            self.stats.errors += 1
            _log.warning("memory outbox: item %d cannot be processed: %s", item.id, exc)
            await self._record_failure(item, exc, final=True)
        except Exception as exc:
            self.stats.errors += 1
            _log.exception("memory outbox: item %d (message %s) failed", item.id, item.message_id)
            await self._record_failure(item, exc)
        finally:
            self._in_flight -= 1

    async def _record_failure(
        self, item: OutboxItem, reason: BaseException | str, *, final: bool = False
    ) -> None:
        try:
            state = await self.outbox.fail(item, reason, final=final)
        except Exception as exc:  # the lease will bring it back
            _log.warning("memory outbox: could not record item %d's failure: %s", item.id, exc)
            return
        self._count(state)

    def _count(self, state: str) -> None:
        if state == "dead":
            self.stats.dead += 1
        elif state == "retrying":
            self.stats.retried += 1
        else:
            self.stats.lost += 1

    async def _attempt(self, item: OutboxItem) -> None:
        if item.attempts > self.outbox.max_attempts:
            # Its last allowed attempt ended with no outcome: its process stopped mid-attempt.
            reason = (
                f"no outcome after {item.attempts - 1} attempts (the last one's process "
                f"stopped mid-attempt){'; before: ' + item.last_error if item.last_error else ''}"
            )
            await self._record_failure(item, reason, final=True)
            return
        try:
            message = UserMessage(
                user_id=item.user_id,
                text=item.content,
                message_id=item.message_id,
                guild_id=item.guild_id,
                author_name=item.author_name,
                context=await self._context(item),
                channel_id=item.channel_id,
                created_at=_said_at(item),
            )
        except InvalidInputError as exc:  # cannot ever be processed
            await self._record_failure(item, exc, final=True)
            return
        async with self._manager.store.transaction() as conn:
            if not await self.outbox.lock(conn, item):
                self.stats.lost += 1
                _log.info("memory outbox: item %d was taken over; left to its new owner", item.id)
                return
            outcome = await self._manager.process(message)
            if outcome.status == "failed" and outcome.retryable:
                state = await self.outbox.fail(item, outcome.error or "failed", connection=conn)
                self._count(state)
                return
            await self.outbox.finish(conn, item)
        self.stats.done += 1
        await self._tell_learned(item.guild_id, outcome, f"outbox item {item.id}")


_DISCORD_EPOCH_MS = 1_420_070_400_000


def _said_at(item: OutboxItem) -> datetime | None:
    """When the message was sent, which "Friday" in it is resolved against: its Discord
    snowflake's time when that agrees with when it was queued (within a day), else the
    time it was queued."""
    queued = item.queued_at
    if item.message_id is not None and item.message_id > 0:
        sent = datetime.fromtimestamp(((item.message_id >> 22) + _DISCORD_EPOCH_MS) / 1000, UTC)
        if queued is None or timedelta(0) <= queued - sent <= timedelta(days=1):
            return sent
    return queued
