""":class:`ChannelIndexer`: keeps the cached channels' turns indexed for the history search.

The reply's ``search_channel_history`` tool searches :class:`~barkeeper.turns.MessageIndex`
under a channel's scope; this fills it from the message cache, in one background task:

- :meth:`ChannelIndexer.mark` (no I/O) notes, per channel, the lowest message that was
  cached, edited or deleted; every ``interval`` seconds each marked channel is synced
  from the message just before it (:meth:`MessageIndex.sync_discord_channel`), which
  also refreshes the context of the message before (it quotes the one after it) and
  re-indexes the neighbours whose row a delete took with it.
- :meth:`ChannelIndexer.sync_all` and :meth:`ChannelIndexer.sync_cached` queue whole
  channels (after a backfill; at start-up, every channel the cache holds), synced one
  at a time between the passes. A turn already indexed and unchanged is only read.

One task does every sync, so a channel is never synced by two at once. A failure
(the database, an unexpected error) is logged without message text; the channel stays
queued for the next pass and the task goes on. When the embedder reports an error
the sync stores the turns without vectors (found by their words only): after each
channel's sync its turns without a vector are given one
(:meth:`MessageIndex.reembed` with ``only_missing``: one index probe when there are
none), and a channel whose re-embedding fails is tried again at every pass until the
embedder works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from barkeeper.errors import DatabaseError
from barkeeper.history import MessageStore
from barkeeper.turns import MessageIndex, discord_channel_scope

__all__ = ["ChannelIndexer"]

_log = logging.getLogger(__name__)


def _reason(exc: BaseException) -> str:
    """What to log of a failure: a database's message, else only the type (an
    embedder's or a validation error's message may quote the text)."""
    if isinstance(exc, asyncpg.PostgresError | DatabaseError | OSError | TimeoutError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class ChannelIndexer:
    """Indexes the message cache's channels in the background (see the module).

    Args:
        index: The turn index the agent searches (its embedder is the one used).
        messages: The message cache (for :meth:`sync_cached`'s list of channels).
        interval: Seconds between two passes over the marked channels.
        flush: Writes the live cache's waiting changes; called before a pass, so a
            marked message is in the database when its channel is synced (``False``:
            the database is down, the marks wait for the next pass). ``None``: none.
        include: Whether a channel of this server (``None``: a DM) is this process's
            to index, for :meth:`sync_cached` (``None``: every one).
    """

    def __init__(
        self,
        index: MessageIndex,
        messages: MessageStore,
        *,
        interval: float = 5.0,
        flush: Callable[[], Awaitable[bool]] | None = None,
        include: Callable[[int | None], bool] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the indexer's interval must be positive")
        self._index = index
        self._messages = messages
        self._interval = interval
        self._flush = flush
        self._include = include
        self._marks: dict[int, int] = {}  # channel → lowest message id to sync from
        self._full: dict[int, None] = {}  # channels to sync whole, in order
        self._unembedded: dict[int, None] = {}  # synced channels: turns without vectors?
        self._list_cached = False
        self._failing = False
        self._embed_failing = False
        self._task: asyncio.Task[None] | None = None
        #: Turns (re)indexed since start.
        self.indexed = 0
        #: Syncs that failed since start.
        self.failures = 0
        #: Turns stored without a vector (the embedder failed) given one since start.
        self.reembedded = 0

    @property
    def marked(self) -> int:
        """Channels waiting for their next pass."""
        return len(self._marks)

    @property
    def queued(self) -> int:
        """Channels waiting for a whole sync."""
        return len(self._full)

    def mark(self, channel_id: int, message_id: int) -> None:
        """Note that a message of the channel was cached, edited or deleted (no I/O).

        The next pass syncs the channel from the message just before the lowest marked.
        """
        current = self._marks.get(channel_id)
        if current is None or message_id < current:
            self._marks[channel_id] = message_id

    def sync_all(self, channel_ids: Iterable[int]) -> None:
        """Queue whole syncs of these channels (no I/O; each one runs in this task)."""
        for channel_id in channel_ids:
            self._full[channel_id] = None

    def sync_cached(self) -> None:
        """Queue a whole sync of every channel the cache holds (listed in this task)."""
        self._list_cached = True

    def start(self) -> None:
        """Start the background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="barkeeper-channel-indexer")

    async def aclose(self) -> None:
        """Cancel the background task and wait for it (a sync in progress is dropped;
        what it wrote stays, the rest is synced at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # never expected: each step catches its own
                _log.exception("history indexer: the pass failed")

    async def run_pass(self) -> None:
        """One pass: the marked channels; the synced channels' turns without vectors; the
        channel list if asked; then the queued channels one by one, each followed by its
        turns without vectors unless re-embedding is failing (the marked ones again
        between two, once per interval)."""
        last = time.monotonic()
        if not await self._sync_marked():
            return
        await self._reembed()
        if self._list_cached and not await self._queue_cached():
            return
        while self._full:
            channel_id = next(iter(self._full))
            del self._full[channel_id]
            if not await self._sync_whole(channel_id):
                self._full[channel_id] = None  # again at the next pass
                return
            if not self._embed_failing:  # (failing: once a pass, above)
                await self._reembed()
            if time.monotonic() - last >= self._interval:
                last = time.monotonic()
                if not await self._sync_marked():
                    return

    async def _sync_marked(self) -> bool:
        """Sync each marked channel from just before its lowest mark; ``False`` on a failure."""
        if not self._marks:
            return True
        marks, self._marks = self._marks, {}
        if self._flush is not None:
            try:
                written = await self._flush()
            except Exception as exc:
                written = False
                _log.debug("history indexer: flushing the cache failed: %s", _reason(exc))
            if not written:  # the database is down (the cache says so): next pass
                self._restore(marks)
                return False
        for channel_id, message_id in list(marks.items()):
            try:
                count = await self._index.sync_discord_channel(
                    channel_id, after_message_id=max(message_id - 1, 0)
                )
            except asyncio.CancelledError:
                self._restore(marks)
                raise
            except Exception as exc:
                self._failed(f"channel {channel_id}", exc)
                del marks[channel_id]  # after the others, at the next pass
                self._restore({**marks, channel_id: message_id})
                return False
            del marks[channel_id]
            self._unembedded[channel_id] = None
            self._succeeded(count)
            _log.debug("history indexer: channel %d, %d turn(s) indexed", channel_id, count)
        return True

    async def _sync_whole(self, channel_id: int) -> bool:
        started = time.monotonic()
        try:
            count = await self._index.sync_discord_channel(channel_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(f"channel {channel_id}", exc)
            return False
        self._unembedded[channel_id] = None
        self._succeeded(count)
        _log.info(
            "history indexer: channel %d synced, %d turn(s) indexed in %.1f s",
            channel_id,
            count,
            time.monotonic() - started,
        )
        return True

    async def _reembed(self) -> None:
        """Give a vector to the synced channels' turns stored without one (the embedder
        failed when they were written). On a failure the others wait for the next pass
        (one attempt a pass while the embedder is down), the failed one after them."""
        while self._unembedded:
            channel_id = next(iter(self._unembedded))
            try:
                count = await self._index.reembed(
                    discord_channel_scope(channel_id), only_missing=True
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not a failed sync: the turns are indexed (found by their words).
                del self._unembedded[channel_id]
                self._unembedded[channel_id] = None
                if not self._embed_failing:
                    self._embed_failing = True
                    _log.warning(
                        "history indexer: turns without vectors in channel %d not re-embedded "
                        "(%s); retrying every %.1f s",
                        channel_id,
                        _reason(exc),
                        self._interval,
                    )
                else:
                    _log.debug("history indexer: re-embedding failed again (%s)", _reason(exc))
                return
            del self._unembedded[channel_id]
            if count:
                self.reembedded += count
                _log.info(
                    "history indexer: channel %d, %d turn(s) stored without a vector re-embedded",
                    channel_id,
                    count,
                )
        if self._embed_failing:
            self._embed_failing = False
            _log.warning("history indexer: every synced channel's turns have vectors again")

    async def _queue_cached(self) -> bool:
        try:
            channels = await self._messages.list_channels()
        except Exception as exc:
            self._failed("listing the cached channels", exc)
            return False
        self._list_cached = False
        mine = [
            c.channel_id
            for c in channels
            if c.newest_message_id is not None
            and (self._include is None or self._include(c.guild_id))
        ]
        _log.info("history indexer: syncing the %d cached channel(s)", len(mine))
        self.sync_all(mine)
        return True

    def _restore(self, marks: dict[int, int]) -> None:
        for channel_id, message_id in marks.items():
            self.mark(channel_id, message_id)

    def _failed(self, what: str, exc: Exception) -> None:
        self.failures += 1
        if not self._failing:  # once per outage; the next success says it is over
            self._failing = True
            _log.warning(
                "history indexer: %s failed (%s); retrying every %.1f s",
                what,
                _reason(exc),
                self._interval,
            )
        else:
            _log.debug("history indexer: %s failed again (%s)", what, _reason(exc))

    def _succeeded(self, count: int) -> None:
        self.indexed += count
        if self._failing:
            self._failing = False
            _log.warning("history indexer: working again")
