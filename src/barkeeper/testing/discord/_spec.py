""":class:`EmulatorSpec`: every knob of the Discord emulator in one validated model.

The same field names are the CLI flags (``--messages-per-channel`` sets
``messages_per_channel``) and the keys of a ``--spec`` JSON file. Optional
:class:`ExplicitContent` replaces the generated guilds, channels and messages with
exactly the ones given. This module only describes; it never starts anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FAULT_KINDS",
    "ChannelAccess",
    "EmulatorSpec",
    "ExplicitAttachment",
    "ExplicitChannel",
    "ExplicitContent",
    "ExplicitGuild",
    "ExplicitMessage",
    "ExplicitUser",
    "PrivilegedIntent",
    "RestFaultKind",
]

#: How the bot may read a channel. ``"ok"``: fully; ``"empty"``: history answers
#: ``200 []`` (what a missing READ_MESSAGE_HISTORY gives); ``"forbidden"``: every
#: message route answers ``403 Missing Access`` (no VIEW_CHANNEL).
ChannelAccess: TypeAlias = Literal["ok", "empty", "forbidden"]

#: Injected faults. ``server_error``: a 5xx with a body; ``slow``: the normal answer
#: after a delay; ``drop``: the connection is closed without an answer;
#: ``truncate``: ``Content-Length`` promises more than is sent, then the connection
#: closes; ``bad_json``: a complete response whose JSON is cut short.
RestFaultKind: TypeAlias = Literal["server_error", "slow", "drop", "truncate", "bad_json"]

FAULT_KINDS: tuple[RestFaultKind, ...] = ("server_error", "slow", "drop", "truncate", "bad_json")

#: A privileged gateway intent, by the name of its ``discord.Intents`` flag.
PrivilegedIntent: TypeAlias = Literal["members", "presences", "message_content"]
_ALL_PRIVILEGED: tuple[PrivilegedIntent, ...] = ("members", "presences", "message_content")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExplicitUser(_Model):
    """A user of explicit content.

    Attributes:
        id: The user's snowflake.
        username: Unique username.
        global_name: Display name, if any.
        bot: Whether the account is a bot.
    """

    id: int = Field(gt=0)
    username: str
    global_name: str | None = None
    bot: bool = False


class ExplicitAttachment(_Model):
    """An attachment of an explicit message (its id and URLs are generated).

    Attributes:
        filename: File name.
        size: Size in bytes.
        content_type: MIME type, if known.
    """

    filename: str
    size: int = Field(default=1024, ge=0)
    content_type: str | None = None


class ExplicitMessage(_Model):
    """A message of explicit content.

    Attributes:
        id: The snowflake; generated from ``timestamp`` (or the channel's clock) if absent.
        author_id: One of :attr:`ExplicitContent.users`, or the bot's id.
        content: Text (may be empty when there are attachments).
        timestamp: Creation time; must agree with ``id`` when both are given.
        edited_timestamp: Last edit time, if edited.
        attachments: Files.
        embeds: Raw Discord embed objects.
        reply_to: Id of a message of the same channel this one replies to.
        pinned: Whether the message is pinned.
        payload_overrides: Top-level keys replaced in the JSON served for this
            message (``null`` included), to serve a payload a client must survive,
            e.g. ``{"author": null}`` or ``{"edited_timestamp": "yesterday"}``.
            The ground truth (:meth:`World.truth`) is not affected.
    """

    id: int | None = Field(default=None, gt=0)
    author_id: int
    content: str = ""
    timestamp: dt.datetime | None = None
    edited_timestamp: dt.datetime | None = None
    attachments: list[ExplicitAttachment] = Field(default_factory=list)
    embeds: list[dict[str, Any]] = Field(default_factory=list)
    reply_to: int | None = None
    pinned: bool = False
    payload_overrides: dict[str, Any] = Field(default_factory=dict)


class ExplicitChannel(_Model):
    """A text channel of explicit content.

    Attributes:
        id: The snowflake; generated if absent.
        name: Channel name.
        access: How the bot may read it (see :data:`ChannelAccess`).
        messages: Its messages, in any order (they are sorted by id).
    """

    id: int | None = Field(default=None, gt=0)
    name: str
    access: ChannelAccess = "ok"
    messages: list[ExplicitMessage] = Field(default_factory=list)


class ExplicitGuild(_Model):
    """A guild of explicit content.

    Attributes:
        id: The snowflake; generated if absent.
        name: Guild name.
        channels: Its text channels.
    """

    id: int | None = Field(default=None, gt=0)
    name: str
    channels: list[ExplicitChannel] = Field(default_factory=list)


class ExplicitContent(_Model):
    """Exact content to serve instead of generated content.

    Attributes:
        users: Every author other than the bot.
        guilds: Guilds with their channels and messages.
    """

    users: list[ExplicitUser] = Field(default_factory=list)
    guilds: list[ExplicitGuild] = Field(default_factory=list)


class EmulatorSpec(_Model):
    """Every knob of :class:`~barkeeper.testing.discord.DiscordEmulator`.

    Content is a pure function of the content fields and ``seed``: the same spec
    always yields the same guilds, channels, users and messages (ids included).

    Example:
        >>> spec = EmulatorSpec(seed=7, channels=4, messages_per_channel=1000, fault_rate=0.05)
        >>> spec.route_limit
        5

    Attributes:
        seed: Seeds content, unexpected 429s and faults.
        host: Interface to listen on.
        port: TCP port; 0 picks a free one.
        token: The bot token clients must send; generated when ``None``.
        bot_username: The bot user's username.
        guilds: Number of generated guilds.
        channels: Number of generated text channels, spread round-robin over guilds.
        messages_per_channel: Generated messages per channel.
        users: Number of generated authors besides the bot.
        bot_user_fraction: Share of generated authors that are bots.
        start: Time of the earliest generated message (channels start within an hour of it).
        mean_gap_seconds: Mean time between consecutive messages of a channel.
        own_message_rate: Share of messages authored by the bot itself.
        edit_rate: Share of messages that were edited (``edited_timestamp`` set).
        attachment_rate: Share with one to three attachments and some text.
        empty_attachment_rate: Share with attachments and empty ``content``.
        embed_rate: Share with an embed (rich or link).
        long_rate: Share that are exactly 4000 characters long.
        unicode_rate: Share with emoji, RTL, zero-width, combining marks and the like.
        reply_rate: Share that reply to an earlier message of the channel (type 19).
        mention_rate: Share that mention a user.
        pinned_rate: Share that are pinned.
        hostile_text: Put NUL characters and lone surrogates into some messages
            (JSON-escaped as ``\\u0000`` and ``\\ud800``); opt-in, since PostgreSQL
            ``text`` rejects both.
        hostile_rate: Share of messages with hostile text when ``hostile_text`` is on.
        empty_channels: The last N generated channels have access ``"empty"``.
        forbidden_channels: The N channels before those have access ``"forbidden"``.
        explicit: Exact content; when set the generated-content fields are ignored.
        rate_limits: Whether to answer 429 at all (headers are always sent).
        route_limit: Requests per ``route_window`` per route per major parameter
            (channel or guild); 0 disables the per-route limit.
        route_window: Length of a per-route window in seconds.
        global_limit: Requests per ``global_window`` across all routes; 0 disables it.
        global_window: Length of the global window in seconds.
        shared_429_rate: Probability of an unexpected 429 (scope ``shared``) while the
            bucket still has requests remaining.
        shared_retry_after: ``retry_after`` of those unexpected 429s, in seconds.
        fault_rate: Probability that an eligible request gets a fault.
        fault_kinds: Relative weights of the fault kinds (a list means equal weights).
        fault_statuses: Statuses a ``server_error`` fault picks from.
        fault_slow_seconds: Delay of a ``slow`` fault.
        fault_routes: Route keys faults apply to (``"GET /channels/{channel_id}/messages"``);
            ``None`` means every route except the login routes.
        fault_login: Whether faults also apply to the login routes
            (``GET /users/@me``, ``GET /oauth2/applications/@me``, ``/gateway*``).
        fault_max: Stop injecting after this many faults (``None``: never stop).
        fault_seed: Seed of fault and unexpected-429 decisions (default: ``seed``).
        shards: The shard count ``GET /gateway/bot`` recommends.
        heartbeat_interval: Seconds between heartbeats the gateway's HELLO asks for.
        granted_intents: Privileged intents the application is allowed (the
            Developer Portal switches); IDENTIFY asking for another is closed with 4014.
        interaction_ack_timeout: Seconds a bot has to answer an interaction's callback
            (Discord: 3); later callbacks get ``404 Unknown interaction``. 0: no limit.
    """

    seed: int = 0
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    token: str | None = None
    bot_username: str = "barkeeper"

    guilds: int = Field(default=1, ge=1)
    channels: int = Field(default=3, ge=0)
    messages_per_channel: int = Field(default=200, ge=0)
    users: int = Field(default=12, ge=1)
    bot_user_fraction: float = Field(default=0.15, ge=0.0, le=1.0)
    start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    mean_gap_seconds: float = Field(default=120.0, gt=0.0)
    own_message_rate: float = Field(default=0.04, ge=0.0, le=1.0)
    edit_rate: float = Field(default=0.06, ge=0.0, le=1.0)
    attachment_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    empty_attachment_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    embed_rate: float = Field(default=0.04, ge=0.0, le=1.0)
    long_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    unicode_rate: float = Field(default=0.06, ge=0.0, le=1.0)
    reply_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    mention_rate: float = Field(default=0.04, ge=0.0, le=1.0)
    pinned_rate: float = Field(default=0.005, ge=0.0, le=1.0)
    hostile_text: bool = False
    hostile_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    empty_channels: int = Field(default=0, ge=0)
    forbidden_channels: int = Field(default=0, ge=0)
    explicit: ExplicitContent | None = None

    rate_limits: bool = True
    route_limit: int = Field(default=5, ge=0)
    route_window: float = Field(default=1.0, gt=0.0)
    global_limit: int = Field(default=50, ge=0)
    global_window: float = Field(default=1.0, gt=0.0)
    shared_429_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    shared_retry_after: float = Field(default=0.25, ge=0.0)

    fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_kinds: dict[RestFaultKind, float] = Field(
        default_factory=lambda: dict.fromkeys(FAULT_KINDS, 1.0)
    )
    fault_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503])
    fault_slow_seconds: float = Field(default=1.0, ge=0.0)
    fault_routes: list[str] | None = None
    fault_login: bool = False
    fault_max: int | None = Field(default=None, ge=0)
    fault_seed: int | None = None

    shards: int = Field(default=1, ge=1)
    heartbeat_interval: float = Field(default=41.25, gt=0.0)
    interaction_ack_timeout: float = Field(default=3.0, ge=0.0)
    granted_intents: list[PrivilegedIntent] = Field(default_factory=lambda: list(_ALL_PRIVILEGED))

    @field_validator("granted_intents", mode="before")
    @classmethod
    def _intents_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("fault_kinds", mode="before")
    @classmethod
    def _kinds_from_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return dict.fromkeys(value, 1.0)
        return value

    @field_validator("fault_kinds")
    @classmethod
    def _kinds_positive(cls, value: dict[RestFaultKind, float]) -> dict[RestFaultKind, float]:
        if any(weight < 0 for weight in value.values()):
            raise ValueError("fault kind weights must not be negative")
        return value

    @field_validator("fault_statuses")
    @classmethod
    def _statuses_5xx(cls, value: list[int]) -> list[int]:
        if not value or any(not 500 <= status <= 599 for status in value):
            raise ValueError("fault_statuses must be a non-empty list of 5xx statuses")
        return value

    @field_validator("start")
    @classmethod
    def _start_aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        if value.year < 2015:
            raise ValueError("start must not be before Discord's epoch (2015-01-01)")
        return value

    @model_validator(mode="after")
    def _restricted_channels_fit(self) -> EmulatorSpec:
        if self.explicit is None and self.empty_channels + self.forbidden_channels > self.channels:
            raise ValueError("empty_channels + forbidden_channels exceeds channels")
        return self
