"""The :class:`HistorySource` protocol: where the backfill reads a channel's history from.

A source answers three questions: one page of a channel's messages around a cursor,
one channel's description, and every text channel the bot can see. It says "the bot
may not read this" as a value (:attr:`Access.NO_ACCESS`), not as an exception, so
the engine can tell an empty channel from a forbidden one. Transient failures
(network, 5xx, 429 after the client's own retries, timeouts) are raised as
:class:`~barkeeper.errors.DiscordUnavailableError`; the engine retries those.
Nothing here talks to a network or a database.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from barkeeper.history import StoredMessage

__all__ = ["Access", "ChannelInfo", "HistorySource", "MalformedMessage", "MessageLookup", "Page"]

#: Discord channel types whose messages the backfill reads: guild text and announcement.
TEXT_CHANNEL_TYPES = frozenset({0, 5})


class Access(enum.Enum):
    """What a source said about a read.

    ``OK``: the answer is the data. ``NO_ACCESS``: the bot may not read it (Discord's
    403 ``Missing Access`` / ``Missing Permissions``). ``MISSING``: it does not exist
    (404), e.g. a deleted message.
    """

    OK = "ok"
    NO_ACCESS = "no_access"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A message Discord sent that cannot be read into the cache (it is skipped).

    Attributes:
        message_id: its id, when the payload has a usable one.
        reason: what is wrong with it.
    """

    message_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a channel's history.

    Attributes:
        messages: newest first, as Discord returns them (at most the limit asked for).
        access: ``OK``, or ``NO_ACCESS`` when the channel refused the read (then
            ``messages`` is empty). A channel without Read Message History answers
            ``OK`` with no messages, as Discord does; the engine finds that out.
        malformed: messages of the page that could not be read; they count towards
            the page's :attr:`size` and their ids towards its cursors, so paging
            moves past them instead of asking for them again.
    """

    messages: Sequence[StoredMessage]
    access: Access = Access.OK
    malformed: Sequence[MalformedMessage] = ()

    @property
    def size(self) -> int:
        """How many messages Discord sent, readable or not (compare with the limit)."""
        return len(self.messages) + len(self.malformed)

    @property
    def ids(self) -> frozenset[int]:
        """Every message id of the page, malformed messages' known ids included."""
        ids = {m.message_id for m in self.messages}
        ids.update(m.message_id for m in self.malformed if m.message_id is not None)
        return frozenset(ids)

    @property
    def newest_id(self) -> int | None:
        """The newest message's id (malformed ones included), ``None`` for none."""
        newest = self.messages[0].message_id if self.messages else None
        for m in self.malformed:
            if m.message_id is not None and (newest is None or m.message_id > newest):
                newest = m.message_id
        return newest

    @property
    def oldest_id(self) -> int | None:
        """The oldest message's id (malformed ones included), ``None`` for none."""
        oldest = self.messages[-1].message_id if self.messages else None
        for m in self.malformed:
            if m.message_id is not None and (oldest is None or m.message_id < oldest):
                oldest = m.message_id
        return oldest


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel as Discord describes it.

    Attributes:
        channel_id: its snowflake.
        guild_id: its server (``None`` for DMs).
        name: its name (``None`` for DMs).
        type: Discord's channel type (0 text, 5 announcement, …).
        last_message_id: the id Discord says its newest message has (``None``: never
            had one). Discord keeps it after that message is deleted.
    """

    channel_id: int
    guild_id: int | None
    name: str | None
    type: int = 0
    last_message_id: int | None = None

    @property
    def label(self) -> str:
        """``#name`` for logs, or the id when the name is unknown."""
        return f"#{self.name}" if self.name else str(self.channel_id)


@dataclass(frozen=True, slots=True)
class MessageLookup:
    """The answer to :meth:`HistorySource.fetch_message`.

    Attributes:
        access: ``OK`` (``message`` or ``malformed`` is set), ``NO_ACCESS`` or ``MISSING``.
        message: the message when ``access`` is ``OK`` and it could be read.
        malformed: what is wrong with it when it exists but cannot be read.
    """

    access: Access
    message: StoredMessage | None = None
    malformed: MalformedMessage | None = None


@runtime_checkable
class HistorySource(Protocol):
    """Where channel history comes from (Discord through discord.py, or a test double).

    Every method may raise :class:`~barkeeper.errors.DiscordUnavailableError` for a
    failure worth retrying, :class:`~barkeeper.errors.DiscordAuthenticationError`
    when the token stopped working, and
    :class:`~barkeeper.errors.NotFoundError` for an unknown channel.
    """

    async def fetch_page(
        self,
        channel_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> Page:
        """One page of history, newest first, with Discord's cursor semantics.

        Args:
            channel_id: the channel.
            before: only messages older than this id: the newest ``limit`` of them.
            after: only messages newer than this id: the *oldest* ``limit`` of them.
                At most one of ``before`` and ``after``; neither means the newest.
            limit: 1 to 100.

        Returns:
            The page; ``access`` is ``NO_ACCESS`` when the channel refused the read.
            A message that cannot be read is in :attr:`Page.malformed`, not raised.
        """
        ...

    async def fetch_message(self, channel_id: int, message_id: int) -> MessageLookup:
        """One message by id (the engine uses it to tell "no permission" from "empty")."""
        ...

    async def fetch_channel(self, channel_id: int) -> ChannelInfo:
        """A channel's description (name, server, last message id)."""
        ...

    def fetch_text_channels(self) -> AsyncIterator[ChannelInfo]:
        """Every text and announcement channel of every server the bot is in."""
        ...
