"""Sending a reply: streamed by editing at most once per interval, split at 2000 characters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import discord

from barkeeper.bot._split import split_message

__all__ = ["NO_MENTIONS", "REPLY_MENTIONS", "ReplyWriter"]

_log = logging.getLogger(__name__)

#: What the bot's messages may ping: nobody.
NO_MENTIONS = discord.AllowedMentions.none()
#: A reply pings only the author it answers.
REPLY_MENTIONS = discord.AllowedMentions(
    everyone=False, users=False, roles=False, replied_user=True
)


class ReplyWriter:
    """Shows a reply as it is written: the first message replies to the author, later
    parts follow in the channel; edits at most once per ``interval`` seconds.

    Args:
        source: The message being answered.
        interval: Least seconds between two updates (Discord allows 5 edits per 5 s
            per channel).
        stream: Update while the text is written; ``False``: send once at the end.
        clock: Monotonic seconds (for tests).
    """

    def __init__(
        self,
        source: discord.Message,
        *,
        interval: float = 1.2,
        stream: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._interval = interval
        self._stream = stream
        self._clock = clock
        self._text = ""
        self._sent: list[discord.Message] = []
        self._shown: list[str] = []
        self._last = float("-inf")
        self._pending: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._done = False

    @property
    def messages(self) -> list[discord.Message]:
        """The messages sent so far, in order."""
        return list(self._sent)

    def feed(self, piece: str) -> None:
        """Add a piece of the reply (called as the model writes)."""
        self._text += piece
        if self._stream and not self._done and self._pending is None:
            self._pending = asyncio.create_task(self._update_later())

    async def _update_later(self) -> None:
        try:
            wait = self._interval - (self._clock() - self._last)
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._done:
                # Shielded: a finish() meanwhile cancels the wait, never a message
                # half sent (it would be sent again); finish() waits for it instead.
                await asyncio.shield(self._show(self._text))
        except discord.HTTPException as exc:  # a failed interim edit: the final one retries
            _log.warning("could not update a streamed reply: %s", exc)
        finally:
            self._pending = None

    async def finish(self, text: str) -> list[discord.Message]:
        """Show the whole reply (``text``, which may differ from what was streamed)."""
        self._done = True
        if self._pending is not None:
            pending = self._pending
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        if self._sent:  # keep to the edit pace for the last edit too
            wait = self._interval - (self._clock() - self._last)
            if wait > 0:
                await asyncio.sleep(wait)
        await self._show(text, final=True)
        return list(self._sent)

    async def _show(self, text: str, *, final: bool = False) -> None:
        async with self._lock:
            if self._done and not final:
                return  # an interim update that lost the race to the final one
            chunks = split_message(text)
            if not chunks and final:
                chunks = ["…"]
            for index, chunk in enumerate(chunks):
                if index < len(self._sent):
                    if self._shown[index] != chunk:
                        await self._sent[index].edit(content=chunk, allowed_mentions=NO_MENTIONS)
                        self._shown[index] = chunk
                    continue
                if index == 0:
                    message = await self._source.reply(
                        chunk, mention_author=True, allowed_mentions=REPLY_MENTIONS
                    )
                else:
                    message = await self._source.channel.send(chunk, allowed_mentions=NO_MENTIONS)
                self._sent.append(message)
                self._shown.append(chunk)
            if final:
                for extra in self._sent[len(chunks) :]:
                    with contextlib.suppress(discord.HTTPException):
                        await extra.delete()
                del self._sent[len(chunks) :]
                del self._shown[len(chunks) :]
            self._last = self._clock()
