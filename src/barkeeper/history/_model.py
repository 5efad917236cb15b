"""The message cache's values: a stored message, a context row, a channel's status.

Everything here is a plain value: nothing talks to the database. :class:`StoredMessage`
makes every instance storable: text PostgreSQL cannot hold (NUL, unpaired UTF-16
surrogates) is replaced by U+FFFD when the message is built, and the number of
replaced characters travels with it (``sanitized_chars``) and is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import asyncpg

from barkeeper.errors import InvalidInputError
from barkeeper.validation import sanitize_text

__all__ = [
    "DISCORD_EPOCH_MS",
    "MAX_SNOWFLAKE",
    "Attachment",
    "ChannelStatus",
    "ChannelStatusUpdate",
    "ContextMessage",
    "StoreResult",
    "StoredMessage",
    "sanitize_text",
    "snowflake_time",
]

#: Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
DISCORD_EPOCH_MS = 1_420_070_400_000

#: The largest id PostgreSQL's ``bigint`` holds; snowflakes fit until 2084.
MAX_SNOWFLAKE = 2**63 - 1

_UTC = dt.UTC
_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


def snowflake_time(snowflake: int) -> dt.datetime:
    """The creation time (UTC, millisecond precision) encoded in a Discord snowflake."""
    return _UNIX_EPOCH + dt.timedelta(milliseconds=(snowflake >> 22) + DISCORD_EPOCH_MS)


def _check_id(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not 0 < value <= MAX_SNOWFLAKE:
        raise InvalidInputError(
            f"{name} must be a Discord snowflake (an int from 1 to 2**63-1), got {value!r}"
        )


def _check_time(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message (kept structured; its URL is also summarised in content).

    Attributes:
        url: where Discord serves the file.
        filename: the file's name.
        content_type: its MIME type when Discord knows it.
        size: its size in bytes.
    """

    url: str
    filename: str
    content_type: str | None = None
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        """The attachment as the JSON object stored in ``discord_messages.attachments``."""
        return {
            "url": self.url,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        """Read back what :meth:`to_json` stored."""
        return cls(
            url=str(data.get("url", "")),
            filename=str(data.get("filename", "")),
            content_type=data.get("content_type"),
            size=int(data.get("size") or 0),
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One Discord message as the cache keeps it.

    Build one with :func:`~barkeeper.history.message_from_discord` or
    :func:`~barkeeper.history.message_from_payload` (which summarise attachments, embeds
    and stickers into ``content``), or directly. Building one checks the ids and times
    (:class:`~barkeeper.errors.InvalidInputError`) and replaces unstorable characters
    in every text field (see :func:`sanitize_text`), adding their number to
    ``sanitized_chars``. Content is never truncated: Discord allows 2,000 characters
    (4,000 with Nitro) and the summary lines may add more; all of it is kept.

    Attributes:
        message_id: the message's snowflake.
        channel_id: the channel (or thread) it was posted in.
        author_id: the author's Discord user id.
        author_name: the name shown for the author (server nickname, else global
            display name, else username).
        content: the text, with ``[Attachment: url]``, ``[Embed: N embed(s)]`` … lines.
        guild_id: the server, ``None`` in DMs or when the source did not say.
        author_is_bot: whether the author is a bot (the bot's own messages included).
        reply_to_id: the message this one replies to.
        attachments: the attached files.
        embeds_count: how many embeds the message has.
        edited_at: when it was last edited (``None``: never). A stored copy is only
            replaced by one whose ``edited_at`` is not older.
        sanitized_chars: characters replaced by U+FFFD because PostgreSQL cannot store
            them (NUL, unpaired surrogates), here or when first stored.
    """

    message_id: int
    channel_id: int
    author_id: int
    author_name: str
    content: str
    guild_id: int | None = None
    author_is_bot: bool = False
    reply_to_id: int | None = None
    attachments: tuple[Attachment, ...] = ()
    embeds_count: int = 0
    edited_at: dt.datetime | None = None
    sanitized_chars: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        _check_id("message_id", self.message_id)
        _check_id("channel_id", self.channel_id)
        _check_id("author_id", self.author_id)
        _check_id("guild_id", self.guild_id, optional=True)
        _check_id("reply_to_id", self.reply_to_id, optional=True)
        _check_time("edited_at", self.edited_at)
        if not isinstance(self.content, str) or not isinstance(self.author_name, str):
            raise InvalidInputError(
                f"message {self.message_id}: content and author_name must be str"
            )
        if type(self.embeds_count) is not int or self.embeds_count < 0:
            raise InvalidInputError(
                f"message {self.message_id}: embeds_count must be an int >= 0, "
                f"got {self.embeds_count!r}"
            )
        if not isinstance(self.attachments, tuple):
            object.__setattr__(self, "attachments", tuple(self.attachments))
        replaced = 0
        content, n = sanitize_text(self.content)
        if n:
            object.__setattr__(self, "content", content)
            replaced += n
        name, n = sanitize_text(self.author_name)
        if n:
            object.__setattr__(self, "author_name", name)
            replaced += n
        if self.attachments:
            clean: list[Attachment] = []
            for a in self.attachments:
                if not isinstance(a, Attachment):
                    raise InvalidInputError(
                        f"message {self.message_id}: attachments must be Attachment objects"
                    )
                url, n1 = sanitize_text(a.url)
                filename, n2 = sanitize_text(a.filename)
                ctype, n3 = sanitize_text(a.content_type) if a.content_type else (None, 0)
                if n1 + n2 + n3:
                    a = Attachment(url, filename, ctype if a.content_type else None, a.size)
                    replaced += n1 + n2 + n3
                clean.append(a)
            object.__setattr__(self, "attachments", tuple(clean))
        if replaced:
            object.__setattr__(self, "sanitized_chars", self.sanitized_chars + replaced)

    @property
    def created_at(self) -> dt.datetime:
        """When the message was sent: the time its snowflake encodes (UTC)."""
        return snowflake_time(self.message_id)

    @property
    def timestamp_str(self) -> str:
        """``created_at`` as Junkie showed it: ``2024-01-15 10:30:00`` (UTC)."""
        return self.created_at.strftime("%Y-%m-%d %H:%M:%S")


class ContextMessage(asyncpg.Record):  # type: ignore[misc]
    """One message of a context window (:meth:`MessageStore.get_context`).

    A read-only row: fields are properties (``msg.content``) and also keys
    (``msg["content"]``). Built by the database driver itself, so a window of
    thousands of messages costs no Python object per field.
    """

    __slots__ = ()

    @property
    def message_id(self) -> int:
        """The message's snowflake."""
        value: int = self["message_id"]
        return value

    @property
    def author_id(self) -> int:
        """The author's Discord user id."""
        value: int = self["author_id"]
        return value

    @property
    def author_name(self) -> str:
        """The name shown for the author when the message was stored."""
        value: str = self["author_name"]
        return value

    @property
    def author_is_bot(self) -> bool:
        """Whether the author is a bot."""
        value: bool = self["author_is_bot"]
        return value

    @property
    def content(self) -> str:
        """The text, with attachment / embed summary lines."""
        value: str = self["content"]
        return value

    @property
    def reply_to_id(self) -> int | None:
        """The message this one replies to."""
        value: int | None = self["reply_to_id"]
        return value

    @property
    def created_at(self) -> dt.datetime:
        """When the message was sent (UTC, from its snowflake)."""
        return snowflake_time(self.message_id)

    @property
    def timestamp_str(self) -> str:
        """``created_at`` as Junkie showed it: ``2024-01-15 10:30:00`` (UTC)."""
        return self.created_at.strftime("%Y-%m-%d %H:%M:%S")

    def __repr__(self) -> str:
        return (
            f"<ContextMessage {self.message_id} {self.timestamp_str} "
            f"{self.author_name!r}: {len(self.content)} chars>"
        )


class ChannelStatusUpdate(TypedDict, total=False):
    """Fields :meth:`MessageStore.update_channel_status` may set; a key left out is kept."""

    guild_id: int | None
    name: str | None
    is_fully_backfilled: bool
    completion_reason: str | None
    no_access: bool
    backfill_before_id: int | None
    backfill_after_id: int | None
    last_synced_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """What the cache knows about one channel.

    Attributes:
        channel_id: the channel.
        guild_id: its server, when known.
        name: its name, when known.
        message_count: messages cached: :class:`MessageStore` counts its own inserts,
            triggers count every delete (whoever makes it); rows inserted by other SQL
            count after :meth:`MessageStore.recount`.
        oldest_message_id: the oldest cached message (read from the index, so always
            true even after deletes), ``None`` when none is cached.
        newest_message_id: the newest cached message, likewise.
        is_fully_backfilled: the backfill is done (start of channel or target reached).
        completion_reason: why it is done (the backfill's words).
        no_access: the bot may not read the channel's history.
        backfill_before_id: the deepening cursor: everything from here up to the
            newest cached message has been fetched.
        backfill_after_id: the catch-up cursor: everything up to and including this id
            has been fetched.
        last_synced_at: the last edit/delete reconciliation.
        last_updated: the last status change.
    """

    channel_id: int
    guild_id: int | None
    name: str | None
    message_count: int
    oldest_message_id: int | None
    newest_message_id: int | None
    is_fully_backfilled: bool
    completion_reason: str | None
    no_access: bool
    backfill_before_id: int | None
    backfill_after_id: int | None
    last_synced_at: dt.datetime | None
    last_updated: dt.datetime


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a write did.

    Attributes:
        inserted: messages that were not cached before.
        updated: cached messages replaced by a newer or richer copy.
        skipped: messages already cached exactly so, or older than the cached edit.
        deleted: messages removed (``delete_ids`` of
            :meth:`MessageStore.store_batch_and_advance`).
        sanitized_chars: characters replaced by U+FFFD in the messages written.
        sanitized_message_ids: the messages those characters were in.
    """

    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    sanitized_chars: int = 0
    sanitized_message_ids: Sequence[int] = ()

    @property
    def written(self) -> int:
        """``inserted + updated``."""
        return self.inserted + self.updated
