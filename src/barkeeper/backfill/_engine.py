""":class:`Backfill`: bring the message cache of every channel up to date, safely and resumably.

Per channel, under a cross-process advisory lock (:class:`ChannelLocks`):

1. **catch-up**: pages ``after=`` the catch-up cursor (``backfill_after_id``) until a
   short page: every message newer than what an earlier backfill fetched. The cursor
   is the backfill's own, not the newest cached message: messages the live bot stored
   meanwhile would otherwise hide the gap before them (Junkie's catch-up did that).
2. **initial fetch**, instead of 1 when the channel was never backfilled: the newest
   page.
3. **deepen**: pages ``before=`` the deepening cursor (``backfill_before_id``) until
   the channel holds the target (``CONTEXT_AGENT_MAX_MESSAGES``), the start of the
   channel is reached (a page shorter than asked for) or ``BACKFILL_MAX_ITERATIONS``.
4. **sync**: the newest ``MESSAGE_SYNC_LIMIT`` messages are fetched again to pick up
   edits and deletes made while the bot was offline (skipped when this run already
   fetched them fresh). Channels sync concurrently, each right after its backfill.
5. **rolling verification**: ``BACKFILL_VERIFY_PAGES`` pages older than the sync are
   fetched again and reconciled the same way, from where the previous run stopped
   (:mod:`._verify`); :meth:`Backfill.verify` re-reads a channel's whole cached range.

Every page is stored together with its cursor in one transaction
(:meth:`MessageStore.store_batch_and_advance`), so a process killed at any instant
resumes with no gap and no duplicate. Every page also reconciles the id range it
covers: a cached message in that range that Discord did not return was deleted.

"No permission" is told apart from "empty": a 403 is no access. Without Read Message
History Discord answers ``200 []``, so an empty page is never taken at its word: the
engine fetches one message the channel has or had (Discord's ``last_message_id``,
else a cursor). 403 means the history is hidden (``no_access``, nothing deleted);
404 means the bot may read and the message is gone. An empty newest page (initial,
catch-up, sync) whose message still exists is hidden history too. Only then does an
empty page mean the start of the channel (deepen) or that every message was deleted
(sync): nothing is ever deleted on the strength of ``last_message_id`` alone.

A message Discord sends that cannot be read (no author, a malformed field) is not a
failure worth retrying (the same payload would come back): it is skipped, logged with
its id and counted (:attr:`ChannelResult.malformed`), and paging moves past it.

Rate limits: discord.py waits out each channel's bucket before it is exhausted and
retries 429s; the source paces requests under the global limit; concurrency is
``BACKFILL_CONCURRENCY`` channels. There is no fixed sleep anywhere. Failures worth
retrying (network, cut bodies, 5xx, timeouts) are retried per page with capped,
jittered exponential backoff; a page is only ever stored once it arrived whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from barkeeper.backfill._locks import ChannelLocks
from barkeeper.backfill._source import (
    Access,
    ChannelInfo,
    HistorySource,
    MalformedMessage,
    Page,
)
from barkeeper.backfill._verify import VerifyCursors
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import (
    BarkeeperError,
    DiscordError,
    DiscordUnavailableError,
    InvalidInputError,
)
from barkeeper.history import MAX_SNOWFLAKE, ChannelStatus, MessageStore, StoreResult

__all__ = [
    "Backfill",
    "BackfillResult",
    "ChannelResult",
    "Completion",
    "ProgressEvent",
]

_log = logging.getLogger("barkeeper.backfill")
# Per-page lines (deepen iterations, progress) on a child logger, so a display with
# progress bars can hide them without hiding the per-channel lines.
_page_log = logging.getLogger("barkeeper.backfill.pages")

_MAX_PAGE = 100
# Ids of skipped malformed messages kept per channel in a result (all are counted).
_MALFORMED_IDS_KEPT = 100

_T = TypeVar("_T")


class Completion(enum.StrEnum):
    """Why a channel's backfill stopped (stored in ``discord_channels.completion_reason``)."""

    #: The first message of the channel was reached: nothing older exists.
    START_OF_CHANNEL = "start_of_channel"
    #: The channel has no message at all.
    EMPTY = "empty_channel"
    #: The channel holds the target number of messages; a higher target deepens again.
    TARGET_REACHED = "target_reached"
    #: The bot may not read the channel's history (403, or empty pages with messages).
    NO_ACCESS = "no_access"
    #: ``BACKFILL_MAX_ITERATIONS`` pages were fetched this run; the next run goes on.
    MAX_ITERATIONS = "max_iterations"


@dataclass(slots=True)
class ChannelResult:
    """What the backfill did to one channel.

    Attributes:
        channel_id: the channel.
        name: its name, when known.
        fetched: messages received from Discord (catch-up, initial, deepen, sync).
        stored: messages written (inserted or changed).
        deleted: cached messages removed because Discord no longer has them.
        pages: history requests answered.
        retries: requests repeated after a transient failure.
        malformed: messages Discord sent that could not be read, skipped (each
            counted once per run).
        malformed_ids: the ids of the first 100 of them (a payload without a usable
            id is only counted).
        count: messages cached for the channel at the end.
        completion: why it stopped (``None``: it did not finish this run).
        no_access: the bot may not read its history.
        synced: the newest messages were reconciled (fetched again or fresh).
        verify_pages: history requests the verification made (part of ``pages``).
        verified: cached messages compared with Discord by the verification.
        verify_updated: cached messages the verification corrected (edits).
        verify_deleted: cached messages the verification removed (deletes).
        verify_done: the verification reached the oldest cached message.
        skipped: why nothing was done (``"fresh"``: another process did it since
            this run started), else ``None``.
        error: what went wrong, when the channel failed.
        seconds: time spent on it (lock waits excluded).
    """

    channel_id: int
    name: str | None = None
    fetched: int = 0
    stored: int = 0
    deleted: int = 0
    pages: int = 0
    retries: int = 0
    malformed: int = 0
    malformed_ids: list[int] = field(default_factory=list)
    count: int = 0
    completion: Completion | None = None
    no_access: bool = False
    synced: bool = False
    verify_pages: int = 0
    verified: int = 0
    verify_updated: int = 0
    verify_deleted: int = 0
    verify_done: bool = False
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the channel was handled without error."""
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        data = dataclasses.asdict(self)
        data["completion"] = None if self.completion is None else self.completion.value
        return data


@dataclass(slots=True)
class BackfillResult:
    """What :meth:`Backfill.run` did.

    Attributes:
        channels: one result per channel, in the order the channels were found.
        seconds: wall time of the run.
    """

    channels: list[ChannelResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def successes(self) -> int:
        """Channels handled without error."""
        return sum(1 for c in self.channels if c.ok)

    @property
    def failures(self) -> int:
        """Channels that failed."""
        return len(self.channels) - self.successes

    @property
    def ok(self) -> bool:
        """Whether every channel succeeded."""
        return self.failures == 0

    def totals(self) -> dict[str, int]:
        """``fetched``, ``stored``, ``deleted``, ``pages``, ``retries``, ``malformed`` and the
        verification's ``verify_pages``, ``verified``, ``verify_updated``, ``verify_deleted``
        summed."""
        keys = (
            "fetched",
            "stored",
            "deleted",
            "pages",
            "retries",
            "malformed",
            "verify_pages",
            "verified",
            "verify_updated",
            "verify_deleted",
        )
        return {k: sum(getattr(c, k) for c in self.channels) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "seconds": self.seconds,
            "successes": self.successes,
            "failures": self.failures,
            **self.totals(),
            "channels": [c.as_dict() for c in self.channels],
        }


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """A progress report for displays (the CLI's progress bars).

    Attributes:
        kind: ``"found"`` (``total`` channels selected), ``"start"`` (a channel's
            work begins), ``"page"`` (a page was stored), ``"done"`` (a channel
            finished; ``result`` is set).
        channel: the channel (``None`` for ``"found"``).
        count: messages cached for the channel now.
        target: the per-channel target.
        total: channels selected (``"found"`` only).
        result: the channel's result (``"done"`` only).
        malformed: messages of the channel skipped so far this run because they
            could not be read.
    """

    kind: str
    channel: ChannelInfo | None = None
    count: int = 0
    target: int = 0
    total: int = 0
    result: ChannelResult | None = None
    malformed: int = 0


@dataclass(slots=True)
class _Work:
    """One channel's state during a run."""

    info: ChannelInfo
    result: ChannelResult
    status: ChannelStatus | None
    before: int | None = None
    after: int | None = None
    count: int = 0
    complete: bool = False
    # Messages fetched this run forming one block up to the channel's newest message;
    # when it holds MESSAGE_SYNC_LIMIT messages (or the whole channel) no sync is needed.
    fresh_top: int = 0
    fresh_from_top: bool = False
    fresh_whole: bool = False
    # The oldest message the sync fetched this run: the rolling verification starts there.
    sync_bottom: int | None = None
    pending_status: dict[str, Any] = field(default_factory=dict)
    # Ids of malformed messages already counted this run (sync may see them again).
    malformed_seen: set[int] = field(default_factory=set)


_Job = Callable[[ChannelInfo, ChannelResult, ChannelLocks, dt.datetime], Awaitable[None]]


class Backfill:
    """The backfill engine.

    Example::

        async with DiscordHistorySource.connect(token) as source:
            result = await Backfill(db, source, target=10_000).run()
        print(result.successes, "channels done")

    Args:
        db: an open, migrated database.
        source: where history comes from.
        target: messages to hold per channel (``CONTEXT_AGENT_MAX_MESSAGES``).
        concurrency: channels worked on at once (``BACKFILL_CONCURRENCY``).
        max_iterations: deepen pages per channel per run (``BACKFILL_MAX_ITERATIONS``);
            catch-up has the same bound.
        page_size: messages per request, 1 to 100 (``BACKFILL_MAX_FETCH_LIMIT``).
        sync: reconcile edits and deletes of the newest messages after the backfill.
        sync_limit: how many of the newest messages to reconcile (``MESSAGE_SYNC_LIMIT``).
        verify_pages: older pages per channel per run to fetch again and reconcile
            (``BACKFILL_VERIFY_PAGES``; 0: none), from where the last run stopped.
        max_attempts: tries per request before the channel fails.
        backoff: first retry delay in seconds (doubles, jittered, up to ``backoff_max``).
        backoff_max: longest retry delay.
        lock_poll: longest wait between two tries of a channel another process holds.
        progress: called with a :class:`ProgressEvent` at each step (must not block).
        store: the message store (default: a :class:`MessageStore` on ``db``).
    """

    def __init__(
        self,
        db: Database,
        source: HistorySource,
        *,
        target: int = 50_000,
        concurrency: int = 4,
        max_iterations: int = 1000,
        page_size: int = 100,
        sync: bool = True,
        sync_limit: int = 200,
        verify_pages: int = 0,
        max_attempts: int = 8,
        backoff: float = 0.5,
        backoff_max: float = 15.0,
        lock_poll: float = 2.0,
        progress: Callable[[ProgressEvent], None] | None = None,
        store: MessageStore | None = None,
    ) -> None:
        for name, value, low in (
            ("target", target, 1),
            ("concurrency", concurrency, 1),
            ("max_iterations", max_iterations, 1),
            ("page_size", page_size, 1),
            ("sync_limit", sync_limit, 0),
            ("verify_pages", verify_pages, 0),
            ("max_attempts", max_attempts, 1),
        ):
            if type(value) is not int or value < low:
                raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
        if page_size > _MAX_PAGE:
            raise InvalidInputError(f"page_size must be at most {_MAX_PAGE}, got {page_size}")
        self._db = db
        self._source = source
        self._store = store if store is not None else MessageStore(db)
        self.target = target
        self.concurrency = concurrency
        self.max_iterations = max_iterations
        self.page_size = page_size
        self.sync = sync
        self.sync_limit = sync_limit
        self.verify_pages = verify_pages
        self._cursors = VerifyCursors(db)
        self.max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._lock_poll = lock_poll
        self._progress = progress
        self._rng = random.Random()

    @classmethod
    def from_settings(
        cls, db: Database, source: HistorySource, settings: Settings, **overrides: Any
    ) -> Backfill:
        """An engine configured from ``CONTEXT_AGENT_MAX_MESSAGES``, ``BACKFILL_*`` and
        ``MESSAGE_SYNC_LIMIT``; keyword arguments win over the settings.

        ``BACKFILL_PARALLEL_BATCHES`` is read but changes nothing: fetching one channel's
        snowflake-time slices in parallel cannot beat Discord's per-channel bucket
        (``bench/backfill.py``, 3,000 messages: 4 walkers 1.00× as fast as 1 under 5
        requests per 5 s and under 5 per 1 s; 2.7× only with no per-channel limit and
        100 ms latency, which is not Discord). Channels are what the engine
        parallelises (``BACKFILL_CONCURRENCY``).
        """
        if settings.backfill_parallel_batches > 1:
            _log.info(
                "BACKFILL_PARALLEL_BATCHES=%d has no effect: Discord's per-channel rate "
                "limit binds; BACKFILL_CONCURRENCY parallelises across channels",
                settings.backfill_parallel_batches,
            )
        options: dict[str, Any] = {
            "target": settings.context_agent_max_messages,
            "concurrency": settings.backfill_concurrency,
            "max_iterations": settings.backfill_max_iterations,
            "page_size": min(settings.backfill_max_fetch_limit, _MAX_PAGE),
            "sync_limit": settings.message_sync_limit,
            "verify_pages": settings.backfill_verify_pages,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(db, source, **options)

    @property
    def store(self) -> MessageStore:
        """The message store written to."""
        return self._store

    # --- the run ---------------------------------------------------------------------

    async def run(
        self,
        channel_ids: Sequence[int] | None = None,
        *,
        include: Callable[[ChannelInfo], bool] | None = None,
    ) -> BackfillResult:
        """Backfill (and sync) channels.

        Args:
            channel_ids: the channels; ``None`` means every text channel of every
                server the bot is in.
            include: when listing every channel (``channel_ids`` is ``None``), keep
                only those it accepts (a sharded bot: the servers of its shards).

        Returns:
            One :class:`ChannelResult` per channel. A channel that fails does not
            stop the others.

        Raises:
            DiscordAuthenticationError: listing channels was refused.
            DiscordUnavailableError: listing channels kept failing.
            DatabaseError: the lock connection could not be opened.
        """
        return await self._run(channel_ids, include, self._channel)

    async def verify(
        self,
        channel_ids: Sequence[int] | None = None,
        *,
        include: Callable[[ChannelInfo], bool] | None = None,
    ) -> BackfillResult:
        """Re-read the whole cached range of channels from Discord and reconcile it.

        Every cached message is compared with Discord's copy, newest to oldest, a page
        at a time: edits are stored, messages Discord no longer has are deleted (each
        page with its deletes in one transaction, under the channel's lock). Nothing
        older than the oldest cached message is fetched and no cursor moves.
        :attr:`ChannelResult.verify_pages` is the number of requests it cost.

        Args:
            channel_ids: the channels; ``None`` means every text channel of every
                server the bot is in.
            include: as for :meth:`run`.

        Raises:
            DiscordAuthenticationError: listing channels was refused.
            DiscordUnavailableError: listing channels kept failing.
            DatabaseError: the lock connection could not be opened.
        """
        return await self._run(channel_ids, include, self._verify_channel)

    async def _run(
        self,
        channel_ids: Sequence[int] | None,
        include: Callable[[ChannelInfo], bool] | None,
        job: _Job,
    ) -> BackfillResult:
        started = time.monotonic()
        async with ChannelLocks.open(self._db) as locks:
            run_started = await self._db_now()
            channels = await self._select(channel_ids)
            if channel_ids is None and include is not None:
                channels = [c for c in channels if include(c)]
            _log.info("Found %d channels to backfill", len(channels))
            self._emit(ProgressEvent("found", total=len(channels), target=self.target))
            semaphore = asyncio.Semaphore(self.concurrency)
            results = await asyncio.gather(
                *(self._channel_task(c, semaphore, locks, run_started, job) for c in channels)
            )
        outcome = BackfillResult(list(results), time.monotonic() - started)
        _log.info(
            "Summary: %d/%d channels successful, %d failed",
            outcome.successes,
            len(outcome.channels),
            outcome.failures,
        )
        return outcome

    async def _db_now(self) -> dt.datetime:
        async with self._db.acquire() as conn:
            now: dt.datetime = await conn.fetchval("SELECT clock_timestamp()")
        return now

    async def _select(self, channel_ids: Sequence[int] | None) -> list[ChannelInfo]:
        if channel_ids is not None:
            unique = list(dict.fromkeys(channel_ids))
            for cid in unique:
                if type(cid) is not int or cid <= 0:
                    raise InvalidInputError(f"a channel id is a positive int, got {cid!r}")
            return [ChannelInfo(cid, None, None) for cid in unique]

        async def listing() -> list[ChannelInfo]:
            return [c async for c in self._source.fetch_text_channels()]

        return await self._retrying("listing channels", listing, None)

    async def _channel_task(
        self,
        info: ChannelInfo,
        semaphore: asyncio.Semaphore,
        locks: ChannelLocks,
        run_started: dt.datetime,
        job: _Job,
    ) -> ChannelResult:
        result = ChannelResult(info.channel_id, info.name)
        delay = 0.1
        waited = False
        while True:
            async with semaphore:
                try:
                    got = await locks.try_acquire(info.channel_id)
                except BarkeeperError as exc:
                    result.error = str(exc)
                    return result
                if got:
                    began = time.monotonic()
                    try:
                        await job(info, result, locks, run_started)
                    except asyncio.CancelledError:
                        raise
                    except BarkeeperError as exc:
                        result.error = str(exc)
                        _log.error("Backfill of %s failed: %s", _label(info, result), exc)
                    except Exception as exc:
                        # A bug must not abandon the other channels mid-run.
                        result.error = f"unexpected {type(exc).__name__}: {exc}"
                        _log.exception("Backfill of %s failed unexpectedly", _label(info, result))
                    finally:
                        result.seconds = time.monotonic() - began
                        await locks.release(info.channel_id)
                    self._emit(
                        ProgressEvent(
                            "done",
                            info,
                            result.count,
                            self.target,
                            result=result,
                            malformed=result.malformed,
                        )
                    )
                    return result
            if not waited:
                waited = True
                _log.info(
                    "%s is being backfilled by another process; waiting for it",
                    _label(info, result),
                )
            # Not a rate-limit sleep: waiting for another process to release a lock.
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self._lock_poll)

    # --- one channel -----------------------------------------------------------------

    async def _channel(
        self,
        info: ChannelInfo,
        result: ChannelResult,
        locks: ChannelLocks,
        run_started: dt.datetime,
    ) -> None:
        status = await self._store.get_channel_status(info.channel_id)
        if status is not None and status.last_synced_at is not None:
            if status.last_synced_at >= run_started:
                # Another process did catch-up, deepen and sync since this run began.
                result.skipped = "fresh"
                result.count = status.message_count
                result.completion = _completion(status.completion_reason)
                result.no_access = status.no_access
                result.synced = True
                _log.info(
                    "✓ %s was backfilled by another process meanwhile: %d/%d",
                    _label(info, result),
                    status.message_count,
                    self.target,
                )
                return
        if info.name is None and info.last_message_id is None:
            info = await self._retrying(
                f"channel {info.channel_id}",
                lambda: self._source.fetch_channel(info.channel_id),
                result,
                locks,
            )
        result.name = info.name
        work = _Work(info, result, status)
        if status is not None:
            work.before = status.backfill_before_id
            work.after = status.backfill_after_id
            work.count = status.message_count
            work.complete = status.is_fully_backfilled and status.completion_reason in (
                Completion.START_OF_CHANNEL,
                Completion.EMPTY,
            )
        if status is None or status.name != info.name or status.guild_id != info.guild_id:
            if info.name is not None:
                work.pending_status["name"] = info.name
            if info.guild_id is not None:
                work.pending_status["guild_id"] = info.guild_id
        self._emit(ProgressEvent("start", info, work.count, self.target))

        if work.after is None:
            await self._initial(work, locks)
        else:
            await self._catch_up(work, locks)
        if not result.no_access:
            await self._deepen(work, locks)
        if self.sync and self.sync_limit and not result.no_access:
            await self._sync(work, locks)
        if self.verify_pages and not result.no_access:
            await self._rolling_verify(work, locks)
        if result.completion is None and work.complete:
            result.completion = _completion(status.completion_reason if status else None)
        result.count = work.count = await self._store.count(info.channel_id)
        pct = int(work.count * 100 / self.target)
        _log.info(
            "✓ Completed %s: %d/%d (%d%%) - Fetched %d messages",
            _label(info, result),
            work.count,
            self.target,
            pct,
            result.fetched,
        )

    async def _initial(self, work: _Work, locks: ChannelLocks) -> None:
        info, result = work.info, work.result
        _log.info("⚡ No existing data for %s. Performing initial fetch...", _label(info, result))
        page = await self._page(work, locks, limit=self.page_size)
        if page.access is Access.NO_ACCESS:
            await self._mark_no_access(work, "403 Missing Access")
            return
        if not page.size:
            if await self._history_hidden(work, locks):
                await self._mark_no_access(work, "history is empty but the channel has messages")
            else:
                await self._write(
                    work,
                    page,
                    (),
                    is_fully_backfilled=True,
                    completion_reason=Completion.EMPTY.value,
                    no_access=False,
                )
                work.complete = True
                work.fresh_whole = True
                result.completion = Completion.EMPTY
            return
        short = page.size < self.page_size
        assert page.oldest_id is not None and page.newest_id is not None
        fields: dict[str, Any] = {"no_access": False}
        if short:
            fields.update(
                is_fully_backfilled=True, completion_reason=Completion.START_OF_CHANNEL.value
            )
        else:
            # A channel found empty (or forbidden) before has messages now.
            fields.update(is_fully_backfilled=False, completion_reason=None)
            work.complete = False
        low = 1 if short else page.oldest_id
        await self._write(
            work,
            page,
            (low, page.newest_id),
            before_id=page.oldest_id,
            after_id=page.newest_id,
            **fields,
        )
        work.before, work.after = page.oldest_id, page.newest_id
        work.fresh_top = page.size
        work.fresh_from_top = True
        if short:
            work.complete = True
            work.fresh_whole = True
            result.completion = Completion.START_OF_CHANNEL

    async def _catch_up(self, work: _Work, locks: ChannelLocks) -> None:
        info, result = work.info, work.result
        assert work.after is not None
        _log.info("↑ Catching up %s (after ID %d)", _label(info, result), work.after)
        pages = 0
        while pages < self.max_iterations:
            pages += 1
            page = await self._page(work, locks, after=work.after, limit=self.page_size)
            if page.access is Access.NO_ACCESS:
                await self._mark_no_access(work, "403 Missing Access")
                return
            if not page.size:
                last = info.last_message_id
                if last is not None and last > work.after and pages == 1:
                    # Discord says there is a newer message than our cursor, yet shows
                    # none: it was deleted, or the bot lost Read Message History.
                    if await self._history_hidden(work, locks):
                        await self._mark_no_access(
                            work, "history is empty but the channel has messages"
                        )
                        return
                if work.status is not None and work.status.no_access:
                    await self._write(work, page, (), no_access=False)
                break
            assert page.newest_id is not None
            await self._write(
                work,
                page,
                (work.after + 1, page.newest_id),
                after_id=page.newest_id,
                no_access=False,
            )
            work.after = page.newest_id
            work.fresh_top += page.size
            if page.size < self.page_size:
                break
        else:
            result.completion = None
            _log.warning(
                "%s: catch-up stopped after %d pages (BACKFILL_MAX_ITERATIONS); "
                "the next run goes on",
                _label(info, result),
                pages,
            )

    async def _deepen(self, work: _Work, locks: ChannelLocks) -> None:
        info, result = work.info, work.result
        if work.complete:
            return
        if work.count >= self.target:
            await self._reach_target(work)
            return
        before = work.before
        if before is None:
            # Only a catch-up cursor: everything up to it is still to fetch.
            assert work.after is not None
            before = work.after + 1
        iteration = 0
        while work.count < self.target:
            if iteration >= self.max_iterations:
                result.completion = Completion.MAX_ITERATIONS
                _log.warning(
                    "%s: stopped after %d iterations (BACKFILL_MAX_ITERATIONS) at %d/%d; "
                    "the next run goes on",
                    _label(info, result),
                    iteration,
                    work.count,
                    self.target,
                )
                return
            iteration += 1
            needed = self.target - work.count
            _page_log.info(
                "↓ %s iteration %d: %d/%d (need %d more)",
                _label(info, result),
                iteration,
                work.count,
                self.target,
                needed,
            )
            limit = min(self.page_size, needed)
            page = await self._page(work, locks, before=before, limit=limit)
            if page.access is Access.NO_ACCESS:
                await self._mark_no_access(work, "403 Missing Access")
                return
            if not page.size and await self._probe(work, locks) is Access.NO_ACCESS:
                # Not the start of the channel: Read Message History was taken away.
                await self._mark_no_access(work, "history is empty and its messages are refused")
                return
            short = page.size < limit
            fields: dict[str, Any] = {}
            if short:
                fields.update(
                    is_fully_backfilled=True, completion_reason=Completion.START_OF_CHANNEL.value
                )
            low = 1 if short else page.oldest_id
            assert low is not None
            await self._write(
                work,
                page,
                (low, before - 1),
                before_id=page.oldest_id,
                **fields,
            )
            if page.oldest_id is not None:
                before = work.before = page.oldest_id
            if work.fresh_from_top:
                work.fresh_top += page.size
            pct = int(work.count * 100 / self.target)
            _page_log.info(
                "✓ Progress: %d/%d (%d%%) in %s", work.count, self.target, pct, _label(info, result)
            )
            if short:
                work.complete = True
                if work.fresh_from_top:
                    work.fresh_whole = True
                result.completion = Completion.START_OF_CHANNEL
                return
        await self._reach_target(work)

    async def _reach_target(self, work: _Work) -> None:
        work.result.completion = Completion.TARGET_REACHED
        if work.status is None or work.status.completion_reason != Completion.TARGET_REACHED:
            await self._write(work, Page(()), (), completion_reason=Completion.TARGET_REACHED.value)

    async def _sync(self, work: _Work, locks: ChannelLocks) -> None:
        info, result = work.info, work.result
        stamp = await self._db_now()
        # Never reconcile more than the channel is meant to hold.
        window = min(self.sync_limit, self.target)
        if work.fresh_whole or work.fresh_top >= window:
            # This run fetched the newest messages already: nothing to reconcile.
            await self._write(work, Page(()), (), last_synced_at=stamp)
            result.synced = True
            return
        _log.info("⟳ Syncing the newest %d messages of %s", window, _label(info, result))
        remaining = window
        before: int | None = None
        # Whether the pages so far join the range the cursors cover, so that the
        # cursors may move over what they add.
        joined = False
        while remaining > 0:
            limit = min(self.page_size, remaining)
            page = await self._page(work, locks, before=before, limit=limit)
            if page.access is Access.NO_ACCESS:
                await self._mark_no_access(work, "403 Missing Access")
                return
            short = page.size < limit
            last = short or remaining - page.size <= 0
            fields: dict[str, Any] = {"last_synced_at": stamp} if last else {}
            if not page.size:
                span: tuple[int, int] | tuple[()] = ()
                if before is not None:
                    span = (1, before - 1)  # the page before this one reached the start
                else:
                    access = await self._probe(work, locks)
                    if access in (Access.NO_ACCESS, Access.OK):
                        await self._mark_no_access(
                            work, "history is empty but its messages are refused or exist"
                        )
                        return
                    if access is Access.MISSING:
                        # Discord let us ask and the message is gone: the channel is empty.
                        span = (1, MAX_SNOWFLAKE)
                await self._write(work, page, span, **fields)
                break
            assert page.oldest_id is not None and page.newest_id is not None
            low = 1 if short else page.oldest_id
            high = page.newest_id if before is None else before - 1
            advance: dict[str, int] = {}
            if before is None and work.after is not None and page.oldest_id <= work.after:
                joined = True
                if page.newest_id > work.after:
                    advance["after_id"] = work.after = page.newest_id
            if joined and work.before is not None and page.oldest_id < work.before:
                advance["before_id"] = work.before = page.oldest_id
                if short:
                    fields.update(
                        is_fully_backfilled=True,
                        completion_reason=Completion.START_OF_CHANNEL.value,
                    )
                    work.complete = True
            await self._write(work, page, (low, high), **advance, **fields)
            remaining -= page.size
            before = work.sync_bottom = page.oldest_id
            if short:
                break
        result.synced = True

    # --- verification ----------------------------------------------------------------

    async def _verify_channel(
        self,
        info: ChannelInfo,
        result: ChannelResult,
        locks: ChannelLocks,
        run_started: dt.datetime,
    ) -> None:
        """The whole cached range of one channel (:meth:`verify`)."""
        status = await self._store.get_channel_status(info.channel_id)
        result.name = info.name or (status.name if status is not None else None)
        work = _Work(info, result, status)
        if status is not None:
            work.count = status.message_count
        self._emit(ProgressEvent("start", info, work.count, self.target))
        _log.info("⟳ Verifying the cached history of %s", _label(info, result))
        await self._verify_walk(work, locks, before=None, max_pages=None)
        result.count = await self._store.count(info.channel_id)
        _log.info(
            "✓ Verified %s: %d messages compared, %d corrected, %d deleted, %d requests",
            _label(info, result),
            result.verified,
            result.verify_updated,
            result.verify_deleted,
            result.verify_pages,
        )

    async def _rolling_verify(self, work: _Work, locks: ChannelLocks) -> None:
        """``verify_pages`` pages from where the last run stopped (below the sync window)."""
        cid = work.info.channel_id
        before = await self._cursors.get(cid)
        if before is None:
            # Below what this run fetched anyway: the sync's pages, or everything
            # from the top down when this run fetched the channel's newest pages fresh.
            before = work.sync_bottom
            if before is None and work.fresh_from_top:
                before = work.before
        result = work.result
        after = await self._verify_walk(work, locks, before=before, max_pages=self.verify_pages)
        await self._cursors.set(cid, after)
        if result.verify_pages:
            _page_log.info(
                "⟳ Verified %d older messages of %s: %d corrected, %d deleted, %d requests%s",
                result.verified,
                _label(work.info, result),
                result.verify_updated,
                result.verify_deleted,
                result.verify_pages,
                " (reached the oldest; next run starts over)" if after is None else "",
            )

    async def _verify_walk(
        self, work: _Work, locks: ChannelLocks, *, before: int | None, max_pages: int | None
    ) -> int | None:
        """Fetch pages ``before=`` down to the oldest cached message and reconcile each.

        Returns:
            Where to go on next time; ``None`` once the oldest cached message (or the
            start of the channel) was reached, or nothing is cached.
        """
        result = work.result
        cid = work.info.channel_id
        oldest = await self._store.oldest_id(cid)
        if oldest is None or (before is not None and before <= oldest):
            result.verify_done = True
            return None
        fetched = 0
        while max_pages is None or fetched < max_pages:
            page = await self._page(work, locks, before=before, limit=self.page_size)
            fetched += 1
            result.verify_pages += 1
            if page.access is Access.NO_ACCESS:
                _log.warning(
                    "%s: verification refused (403); kept as is", _label(work.info, result)
                )
                result.no_access = True
                return before
            short = page.size < self.page_size
            if not page.size:
                if before is None:
                    # An empty newest page may be hidden history: never delete on it.
                    _log.warning(
                        "%s: Discord shows no message; nothing verified", _label(work.info, result)
                    )
                    return None
                if not await self._gone_below(work, locks, before):
                    return None
                stored = await self._write(work, page, (1, before - 1))
                result.verify_deleted += stored.deleted
                result.verify_done = True
                return None
            assert page.oldest_id is not None and page.newest_id is not None
            low = 1 if short else page.oldest_id
            high = page.newest_id if before is None else before - 1
            stored = await self._write(work, page, (low, high))
            result.verified += page.size
            result.verify_updated += stored.updated
            result.verify_deleted += stored.deleted
            before = page.oldest_id
            if short or before <= oldest:
                result.verify_done = True
                return None
        return before

    async def _gone_below(self, work: _Work, locks: ChannelLocks, before: int) -> bool:
        """Whether an empty page ``before=`` means the cached messages below were deleted.

        Discord answers ``200 []`` when the bot lost Read Message History too, so the
        newest cached message below ``before`` is fetched: only a 404 (the bot may
        read, and it is gone) lets the verification delete the range.
        """
        cid = work.info.channel_id
        below = await self._store.get_ids_between(cid, 1, before - 1)
        if not below:
            return True
        probe = max(below)
        lookup = await self._retrying(
            f"{_label(work.info, work.result)} message {probe}",
            lambda: self._source.fetch_message(cid, probe),
            work.result,
            locks,
        )
        work.result.verify_pages += 1
        if lookup.access is Access.MISSING:
            return True
        _log.warning(
            "%s: Discord shows no message before %d but message %d is not gone (%s); "
            "nothing deleted",
            _label(work.info, work.result),
            before,
            probe,
            lookup.access.value,
        )
        if lookup.access is Access.NO_ACCESS:
            work.result.no_access = True
        return False

    # --- helpers ---------------------------------------------------------------------

    async def _history_hidden(self, work: _Work, locks: ChannelLocks) -> bool:
        """Whether an empty newest page hides messages (no Read Message History).

        The message Discord calls the newest is fetched: refused (403) or there (so the
        page should have shown it) means hidden; gone (404) means the page told the truth.
        """
        access = await self._probe(work, locks)
        return access is not None and access is not Access.MISSING

    async def _probe(self, work: _Work, locks: ChannelLocks) -> Access | None:
        """Fetch one message the channel has or had; ``None`` when none is known.

        Discord checks Read Message History before it looks the message up, so
        ``NO_ACCESS`` means the history is hidden whether or not the message exists,
        and ``MISSING`` means the bot may read it and the message was deleted.
        """
        info = work.info
        message_id = next(
            (i for i in (info.last_message_id, work.after, work.before) if i is not None), None
        )
        if message_id is None:
            return None
        lookup = await self._retrying(
            f"{_label(info, work.result)} message {message_id}",
            lambda: self._source.fetch_message(info.channel_id, message_id),
            work.result,
            locks,
        )
        return lookup.access

    async def _mark_no_access(self, work: _Work, why: str) -> None:
        info, result = work.info, work.result
        _log.warning("%s: no access to its history (%s)", _label(info, result), why)
        result.no_access = True
        result.completion = Completion.NO_ACCESS
        await self._write(
            work,
            Page(()),
            (),
            no_access=True,
            is_fully_backfilled=False,
            completion_reason=Completion.NO_ACCESS.value,
        )

    async def _page(
        self,
        work: _Work,
        locks: ChannelLocks,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
    ) -> Page:
        cid = work.info.channel_id
        page = await self._retrying(
            f"{_label(work.info, work.result)} page",
            lambda: self._source.fetch_page(cid, before=before, after=after, limit=limit),
            work.result,
            locks,
        )
        result = work.result
        result.pages += 1
        result.fetched += len(page.messages)
        if page.size and page.newest_id is None:
            raise DiscordError(
                f"{_label(work.info, result)}: Discord sent {page.size} message(s) none of "
                "which can be read or has a usable id; the backfill cannot page past them"
            )
        for bad in page.malformed:
            self._skip_malformed(work, bad)
        return page

    def _skip_malformed(self, work: _Work, bad: MalformedMessage) -> None:
        result = work.result
        if bad.message_id is not None:
            if bad.message_id in work.malformed_seen:
                return
            work.malformed_seen.add(bad.message_id)
            if len(result.malformed_ids) < _MALFORMED_IDS_KEPT:
                result.malformed_ids.append(bad.message_id)
        result.malformed += 1
        _log.warning(
            "%s: message %s cannot be read, skipped: %s",
            _label(work.info, result),
            bad.message_id if bad.message_id is not None else "without a usable id",
            bad.reason,
        )

    async def _write(
        self,
        work: _Work,
        page: Page,
        span: tuple[int, int] | tuple[()],
        *,
        before_id: int | None = None,
        after_id: int | None = None,
        **status: Any,
    ) -> StoreResult:
        """Store a page, delete what it shows deleted within ``span``, move cursors."""
        cid = work.info.channel_id
        delete_ids: list[int] = []
        if span and span[0] <= span[1]:
            cached = await self._store.get_ids_between(cid, span[0], span[1])
            if cached:
                # A message that exists but could not be read this time is not deleted.
                seen = page.ids
                delete_ids = [i for i in cached if i not in seen]
        fields = {**work.pending_status, **status}
        work.pending_status = {}
        stored = await self._store.store_batch_and_advance(
            cid,
            page.messages,
            before_id=before_id,
            after_id=after_id,
            delete_ids=delete_ids,
            **fields,
        )
        work.result.stored += stored.written
        work.result.deleted += stored.deleted
        # Kept here rather than re-read per page; messages the live bot stores meanwhile
        # are only counted at the next run (they can but cost one extra page).
        work.count = max(0, work.count + stored.inserted - stored.deleted)
        self._emit(
            ProgressEvent(
                "page", work.info, work.count, self.target, malformed=work.result.malformed
            )
        )
        return stored

    async def _retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[_T]],
        result: ChannelResult | None,
        locks: ChannelLocks | None = None,
    ) -> _T:
        attempt = 0
        while True:
            if locks is not None:
                locks.check()
            attempt += 1
            try:
                return await call()
            except DiscordUnavailableError as exc:
                if attempt >= self.max_attempts:
                    raise DiscordUnavailableError(
                        f"{what}: gave up after {attempt} attempts: {exc}"
                    ) from exc
                if result is not None:
                    result.retries += 1
                delay = min(self._backoff * 2 ** (attempt - 1), self._backoff_max)
                delay *= 0.5 + self._rng.random() / 2
                _log.warning(
                    "%s failed (%s); retry %d/%d in %.1f s",
                    what,
                    exc,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)

    def _emit(self, event: ProgressEvent) -> None:
        if self._progress is not None:
            self._progress(event)


def _label(info: ChannelInfo, result: ChannelResult) -> str:
    name = info.name or result.name
    return f"#{name}" if name else f"channel {info.channel_id}"


def _completion(reason: str | None) -> Completion | None:
    if reason is None:
        return None
    try:
        return Completion(reason)
    except ValueError:
        return None
