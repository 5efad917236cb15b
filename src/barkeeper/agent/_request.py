"""What the reply pipeline is asked, and what it answers: plain values, no I/O.

A transport (the Discord bot, the terminal chat) builds a :class:`ReplyRequest` from
its own event; nothing here knows about discord.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from barkeeper.conversations import AgentRun
from barkeeper.errors import InvalidInputError
from barkeeper.history import sanitize_text

__all__ = [
    "AgentReply",
    "Author",
    "IncomingMessage",
    "Place",
    "PlaceKind",
    "QuotedMessage",
    "ReplyRequest",
    "RunRecord",
]

PlaceKind = Literal["guild", "dm", "terminal"]
_KINDS = ("guild", "dm", "terminal")
_MAX_ID = 2**63 - 1


def _check_id(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_ID:
        raise InvalidInputError(f"{name} must be a positive 64-bit integer, not {value!r}")


def _clean(owner: object, name: str) -> None:
    """Replace what no database or JSON body can carry (NUL, lone surrogates) by U+FFFD."""
    value = getattr(owner, name)
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, not {type(value).__name__}")
    cleaned, replaced = sanitize_text(value)
    if replaced:
        object.__setattr__(owner, name, cleaned)


def _check_time(value: object, name: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, not {value!r}")


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote the message being answered.

    Attributes:
        user_id: barkeeper's internal ``users.id``: whose memories and session are used.
        display_name: The name to show and address them by.
        discord_id: Their Discord id (``None`` in the terminal).
    """

    user_id: int
    display_name: str
    discord_id: int | None = None

    def __post_init__(self) -> None:
        _check_id(self.user_id, "author.user_id")
        _check_id(self.discord_id, "author.discord_id", optional=True)
        _clean(self, "display_name")


@dataclass(frozen=True, slots=True)
class Place:
    """Where the message was written: what the reply's history and tools may read.

    Attributes:
        kind: ``"guild"`` (a server channel or thread), ``"dm"`` or ``"terminal"``.
        channel_id: The channel, thread or DM channel whose cached history is shown
            (the terminal may use its own id for its lines, or ``None`` for none).
        guild_id: The Discord server (``None`` for DMs and the terminal).
        channel_name: Shown to the model, when known.
        guild_name: Shown to the model, when known.
    """

    kind: PlaceKind
    channel_id: int | None = None
    guild_id: int | None = None
    channel_name: str | None = None
    guild_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("channel_name", "guild_name"):
            if getattr(self, name) is not None:
                _clean(self, name)
        if self.kind not in _KINDS:
            raise InvalidInputError(f"place.kind must be one of {_KINDS}, not {self.kind!r}")
        _check_id(self.channel_id, "place.channel_id", optional=True)
        _check_id(self.guild_id, "place.guild_id", optional=True)
        if self.kind != "terminal" and self.channel_id is None:
            raise InvalidInputError(f"a {self.kind} place needs its channel_id")
        if self.kind == "guild" and self.guild_id is None:
            raise InvalidInputError("a guild place needs its guild_id")
        if self.kind != "guild" and self.guild_id is not None:
            raise InvalidInputError(f"a {self.kind} place has no guild_id")

    @classmethod
    def guild(
        cls,
        guild_id: int,
        channel_id: int,
        *,
        channel_name: str | None = None,
        guild_name: str | None = None,
    ) -> Place:
        """A channel or thread of a Discord server."""
        return cls("guild", channel_id, guild_id, channel_name, guild_name)

    @classmethod
    def dm(cls, channel_id: int) -> Place:
        """A direct-message channel."""
        return cls("dm", channel_id)

    @classmethod
    def terminal(cls, channel_id: int | None = None) -> Place:
        """The terminal chat (``channel_id``: where its lines are cached, if they are)."""
        return cls("terminal", channel_id)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """The message to answer.

    Attributes:
        text: What the author wrote (with attachment summary lines, as cached); NUL
            and lone surrogates become U+FFFD, as in the cache.
        created_at: When it was sent (timezone-aware).
        id: Its Discord snowflake (or any increasing id the transport caches it
            under): the history shown is strictly before it.
        reply_to_id: The message it replies to, if any; the chain is then read from
            the cache unless :attr:`ReplyRequest.reply_chain` is given.
    """

    text: str
    created_at: datetime
    id: int | None = None
    reply_to_id: int | None = None

    def __post_init__(self) -> None:
        _clean(self, "text")
        _check_time(self.created_at, "message.created_at")
        _check_id(self.id, "message.id", optional=True)
        _check_id(self.reply_to_id, "message.reply_to_id", optional=True)


@dataclass(frozen=True, slots=True)
class QuotedMessage:
    """A message shown for context: one of the reply chain, or a thread's starter.

    Attributes:
        message_id: Its snowflake.
        author_id: Its author's Discord id.
        author_name: Its author's name.
        text: Its content.
        created_at: When it was sent.
        author_is_bot: Whether a bot wrote it.
    """

    message_id: int
    author_id: int
    author_name: str
    text: str
    created_at: datetime
    author_is_bot: bool = False

    def __post_init__(self) -> None:
        _check_id(self.message_id, "quoted.message_id")
        _check_id(self.author_id, "quoted.author_id")
        _check_time(self.created_at, "quoted.created_at")
        _clean(self, "text")
        _clean(self, "author_name")


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """One message to answer, with everything the transport knows about it.

    Attributes:
        author: Who wrote it; the only person the reply's tools act for.
        place: Where; the only channel the reply's history and tools read.
        message: The message itself.
        reply_chain: The messages it replies to, oldest first, ending with its
            direct parent. Empty: read from the cache via ``message.reply_to_id``.
        thread_starter: The message that opened the thread it was written in.
        bot_id: The bot's own Discord id, so its messages show as its own.
        incognito: Nothing from this message is remembered: no run is recorded and
            no memory work is queued (memories are still read).
    """

    author: Author
    place: Place
    message: IncomingMessage
    reply_chain: Sequence[QuotedMessage] = ()
    thread_starter: QuotedMessage | None = None
    bot_id: int | None = None
    incognito: bool = False

    def __post_init__(self) -> None:
        for name, kind in (("author", Author), ("place", Place), ("message", IncomingMessage)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidInputError(f"{name} must be a {kind.__name__}")
        if isinstance(self.reply_chain, str | bytes) or not all(
            isinstance(q, QuotedMessage) for q in self.reply_chain
        ):
            raise InvalidInputError("reply_chain must be a sequence of QuotedMessage")
        object.__setattr__(self, "reply_chain", tuple(self.reply_chain))
        _check_id(self.bot_id, "bot_id", optional=True)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What one reply did: stored as the run's metrics, read back for ``/why``.

    Attributes:
        model: The model that answered (as the endpoint named it).
        prompt_tokens: Prompt tokens (the endpoint's count; ours when it gave none).
        completion_tokens: Completion tokens, likewise.
        context_tokens: Our count of the context's tokens before any tool call.
        latency_ms: Milliseconds per step: ``context``, ``model``, ``tools``, ``total``,
            and the context's parts: ``context.memories`` (of which
            ``context.embedding`` waited for the message's vector),
            ``context.history``, ``context.chain``, ``context.runs``,
            ``context.companion`` (read in parallel, so they overlap) and
            ``context.build`` (the layout and token counts). The run is recorded
            after these, once the reply is delivered.
        memory_ids: The author's memories the context showed.
        message_ids: The cached messages the context showed (history, reply chain,
            thread starter), oldest first.
        run_ids: The earlier runs whose exchanges the context showed.
        cut: What did not fit the budget: ``memory_ids``, ``message_ids``,
            ``run_ids`` and ``current_message_chars`` (each present only when non-empty).
        tool_calls: The tools called, with their arguments and result sizes.
        errors: What went wrong (a model failure, a store that could not be read).
        channel_id: Where it was asked.
        guild_id: The server, if any.
        message_id: The message answered.
        streamed: Whether the text was handed on as it was written.
        flags: What the run is flagged for: ``crisis`` when the message showed a risk
            of self-harm or suicide (it was answered with care and resources).
    """

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_tokens: int = 0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    memory_ids: tuple[int, ...] = ()
    message_ids: tuple[int, ...] = ()
    run_ids: tuple[str, ...] = ()
    cut: Mapping[str, Any] = field(default_factory=dict)
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    channel_id: int | None = None
    guild_id: int | None = None
    message_id: int | None = None
    streamed: bool = False
    flags: tuple[str, ...] = ()

    def to_metrics(self) -> dict[str, Any]:
        """This record as the JSON object stored in ``agent_runs.metrics``."""
        return {
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "context_tokens": self.context_tokens,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "memory_ids": list(self.memory_ids),
            "message_ids": list(self.message_ids),
            "run_ids": list(self.run_ids),
            "cut": dict(self.cut),
            "tool_calls": [dict(c) for c in self.tool_calls],
            "errors": list(self.errors),
            "channel_id": self.channel_id,
            "guild_id": self.guild_id,
            "message_id": self.message_id,
            "streamed": self.streamed,
            "flags": list(self.flags),
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> RunRecord:
        """Read back what :meth:`to_metrics` stored (missing keys take their defaults)."""

        def ints(key: str) -> tuple[int, ...]:
            return tuple(int(v) for v in metrics.get(key) or ())

        return cls(
            model=str(metrics.get("model") or ""),
            prompt_tokens=int(metrics.get("prompt_tokens") or 0),
            completion_tokens=int(metrics.get("completion_tokens") or 0),
            context_tokens=int(metrics.get("context_tokens") or 0),
            latency_ms=dict(metrics.get("latency_ms") or {}),
            memory_ids=ints("memory_ids"),
            message_ids=ints("message_ids"),
            run_ids=tuple(str(v) for v in metrics.get("run_ids") or ()),
            cut=dict(metrics.get("cut") or {}),
            tool_calls=tuple(dict(c) for c in metrics.get("tool_calls") or ()),
            errors=tuple(str(e) for e in metrics.get("errors") or ()),
            channel_id=metrics.get("channel_id"),
            guild_id=metrics.get("guild_id"),
            message_id=metrics.get("message_id"),
            streamed=bool(metrics.get("streamed")),
            flags=tuple(str(f) for f in metrics.get("flags") or ()),
        )


@dataclass(frozen=True, slots=True)
class AgentReply:
    """The answer to a :class:`ReplyRequest`.

    Attributes:
        text: What to send (an in-character apology when the model failed).
        record: What the reply did (always set, recorded or not).
        run: The stored run (``None`` when incognito or when it could not be stored).
        failed: The model failed and :attr:`text` is the apology.
    """

    text: str
    record: RunRecord
    run: AgentRun | None = None
    failed: bool = False
