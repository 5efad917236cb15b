""":class:`MemoryWorker`: memory extraction in the background, so it never delays a reply.

:meth:`MemoryWorker.submit` only puts the message in its author's mailbox and
returns at once (``False`` when ``max_pending`` messages are already waiting or the
worker is closed: the message is dropped and counted, never waited for).
``concurrency`` tasks take users whose mailbox has work off one queue and run
:meth:`MemoryManager.process` on that user's oldest message.

A user is in at most one place at a time (queued, being processed, or waiting for a
retry), so their messages are processed one at a time and in order: two messages of
the same person never race to add the same fact. A message that failed on a rate
limit or an outage is tried again after ``retry_delay`` seconds, up to
``max_attempts`` times in all, then dropped and logged. While it waits, its author's
later messages wait behind it, and **every other user's messages go on**: the delay
is a timer, not a sleep in a task. Nothing a message does (a model failure, a
database error, a bug) stops a task. :meth:`drain` waits for everything submitted
(retries included); :meth:`aclose` stops accepting, drains (within a timeout) and
stops the tasks.

The mailboxes live in memory: messages still waiting when the process dies are not
examined (the next messages are; extraction is best effort by design). The bot and
``barkeeper chat`` use the durable :class:`~barkeeper.learning.OutboxWorker` instead;
this one is for library use (e.g. an :class:`~barkeeper.agent.Agent`'s ``memory_sink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from barkeeper.errors import InvalidInputError
from barkeeper.learning._background import BackgroundTasks, LearnedHook
from barkeeper.learning._extraction import UserMessage
from barkeeper.learning._manager import MemoryManager, MemoryOutcome

__all__ = ["MemoryWorker", "WorkerStats"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Mailbox:
    """One user's messages waiting, oldest first, and the oldest one's attempts so far."""

    messages: deque[UserMessage] = field(default_factory=deque)
    attempts: int = 0


@dataclass(slots=True)
class WorkerStats:
    """Counters since the worker started.

    Attributes:
        submitted: Messages accepted by :meth:`MemoryWorker.submit`.
        rejected: Messages refused (queue full or worker closed).
        processed: Messages processed to an outcome other than ``failed``.
        failed: Messages that failed for good (after their retries).
        retried: Extra attempts made after rate limits or outages.
        errors: Unexpected exceptions caught (logged with their traceback).
    """

    submitted: int = 0
    rejected: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    errors: int = 0


class MemoryWorker(BackgroundTasks):
    """Runs a :class:`MemoryManager` over submitted messages in background tasks.

    Args:
        manager: What processes each message.
        concurrency: Tasks; different users' messages run in parallel.
        max_pending: Most messages waiting in all mailboxes together.
        retry_delay: Seconds before trying again a message that hit a rate limit
            or an outage (after the model client's own retries). Only its author's
            later messages wait meanwhile.
        max_attempts: Attempts per message in all (1: no retry).
        on_learned: Told how many new facts each message added (see
            :data:`LearnedHook`); also settable later as :attr:`on_learned`. Its
            failures are logged, never raised.

    Raises:
        InvalidInputError: A limit is out of range.

    Example::

        async with MemoryWorker(manager) as worker:
            worker.submit(UserMessage(user_id=7, text="I adopted a cat", message_id=1))
            ...  # reply to the user meanwhile
        # leaving the block drained the queue
    """

    _task_name = "memory-worker"

    def __init__(
        self,
        manager: MemoryManager,
        *,
        concurrency: int = 2,
        max_pending: int = 1000,
        retry_delay: float = 10.0,
        max_attempts: int = 2,
        on_learned: LearnedHook | None = None,
    ) -> None:
        if not 1 <= concurrency <= 64:
            raise InvalidInputError(f"concurrency must be within 1..64, not {concurrency}")
        if max_pending < concurrency:
            raise InvalidInputError("max_pending must be at least concurrency")
        if retry_delay < 0:
            raise InvalidInputError("retry_delay must not be negative")
        if not 1 <= max_attempts <= 10:
            raise InvalidInputError(f"max_attempts must be within 1..10, not {max_attempts}")
        super().__init__(concurrency, on_learned)
        self._manager = manager
        self._max_pending = max_pending
        self._retry_delay = retry_delay
        self._max_attempts = max_attempts
        # Users with work, ready to run; a user is never in it twice.
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._mailboxes: dict[int, _Mailbox] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}  # users waiting for a retry
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self.stats = WorkerStats()

    def __repr__(self) -> str:
        return (
            f"<MemoryWorker tasks={len(self._tasks)} pending={self.pending} closed={self._closed}>"
        )

    @property
    def pending(self) -> int:
        """Messages waiting (for their turn or a retry) or being processed."""
        return self._in_flight

    def submit(self, message: UserMessage) -> bool:
        """Queue ``message`` for memory extraction; never waits.

        Returns:
            ``True`` if queued; ``False`` if dropped because the worker is not
            running or ``max_pending`` messages are waiting (logged, counted in
            :attr:`stats`).
        """
        if not self.running:
            self.stats.rejected += 1
            _log.warning("memory worker not running; message %s not examined", message.message_id)
            return False
        if self._in_flight >= self._max_pending:
            self.stats.rejected += 1
            _log.warning(
                "memory queue full (%d waiting); message %s not examined",
                self.pending,
                message.message_id,
            )
            return False
        mailbox = self._mailboxes.get(message.user_id)
        if mailbox is None:
            # No mailbox: the user is neither queued, nor running, nor waiting.
            mailbox = self._mailboxes[message.user_id] = _Mailbox()
            self._ready.put_nowait(message.user_id)
        mailbox.messages.append(message)
        self._in_flight += 1
        self._idle.clear()
        self.stats.submitted += 1
        return True

    async def drain(self) -> None:
        """Wait until every message submitted so far has been processed (or dropped)."""
        await self._idle.wait()

    async def aclose(self, *, grace_period: float | None = 30.0) -> None:
        """Stop accepting messages, finish the queued ones, stop the tasks.

        Args:
            grace_period: Most seconds to wait for the queue to drain; what is
                left after it is dropped (and logged). ``None`` waits as long as it
                takes.
        """
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            try:
                await asyncio.wait_for(self.drain(), grace_period)
            except TimeoutError:
                _log.warning("memory worker closed with %d messages unprocessed", self.pending)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            user_id = await self._ready.get()
            mailbox = self._mailboxes[user_id]
            message = mailbox.messages[0]
            mailbox.attempts += 1
            retry = False
            try:
                retry = await self._handle(message, mailbox.attempts)
            finally:
                if retry:
                    self.stats.retried += 1
                    self._timers[user_id] = asyncio.get_running_loop().call_later(
                        self._retry_delay, self._wake, user_id
                    )
                else:
                    self._done(user_id, mailbox)

    def _wake(self, user_id: int) -> None:
        """The retry delay of ``user_id``'s oldest message is over: back in the queue."""
        del self._timers[user_id]
        self._ready.put_nowait(user_id)

    def _done(self, user_id: int, mailbox: _Mailbox) -> None:
        """The oldest message of ``user_id`` is finished: their next one gets in line."""
        mailbox.messages.popleft()
        mailbox.attempts = 0
        if mailbox.messages:
            self._ready.put_nowait(user_id)  # at the back: one message per turn
        else:
            del self._mailboxes[user_id]
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _handle(self, message: UserMessage, attempt: int) -> bool:
        """Process one attempt at ``message``; whether to try it again later."""
        try:
            outcome = await self._manager.process(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            _log.exception("memory extraction of message %s failed", message.message_id)
            return False
        if self._should_retry(outcome, attempt):
            _log.info(
                "memory extraction of message %s failed (%s); trying again in %gs",
                message.message_id,
                outcome.error,
                self._retry_delay,
            )
            return True
        self._count(outcome)
        await self._tell_learned(message.guild_id, outcome, f"message {message.message_id}")
        return False

    def _should_retry(self, outcome: MemoryOutcome, attempt: int) -> bool:
        return outcome.status == "failed" and outcome.retryable and attempt < self._max_attempts

    def _count(self, outcome: MemoryOutcome) -> None:
        if outcome.status == "failed":
            self.stats.failed += 1
        else:
            self.stats.processed += 1
