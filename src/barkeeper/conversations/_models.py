"""The rows the conversation and session stores return, as frozen dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "ROLES",
    "RUN_STATUSES",
    "AgentRun",
    "AgentSession",
    "Conversation",
    "ConversationMessage",
    "ConversationPage",
    "Direction",
    "MessageRole",
    "OrderBy",
    "RunStatus",
]

MessageRole = Literal["user", "assistant", "system", "tool"]
"""Who wrote a stored message (:data:`barkeeper.llm.Role` is a model request's roles)."""
ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "tool"})
OrderBy = Literal["created_at", "updated_at", "title"]
Direction = Literal["asc", "desc"]
RunStatus = Literal["pending", "running", "completed", "paused", "cancelled", "error"]
RUN_STATUSES: frozenset[str] = frozenset(
    {"pending", "running", "completed", "paused", "cancelled", "error"}
)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation of one user with an agent (Loyal Companion's and VoltAgent's).

    Attributes:
        id: text id (given by the caller or a generated UUID).
        resource_id: the agent it belongs to (VoltAgent's ``resourceId``).
        user_id: the owner's internal id (``users.id``).
        title: shown in conversation lists; None until set.
        metadata: free JSON object.
        guild_id: Discord guild, None for DMs and non-Discord agents.
        channel_id: Discord channel, None for non-Discord agents.
        started_at: when it started.
        last_message_at: the newest message's time (the start time until one is added).
        message_count: messages currently stored (after the storage limit trimmed it).
        is_active: False once a newer conversation replaced it after the timeout.
        created_at: when the row was created.
        updated_at: when its title, metadata or messages last changed.
    """

    id: str
    resource_id: str
    user_id: int
    title: str | None
    metadata: dict[str, Any]
    guild_id: int | None
    channel_id: int | None
    started_at: datetime
    last_message_at: datetime
    message_count: int
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Conversation:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            resource_id=row["resource_id"],
            user_id=row["user_id"],
            title=row["title"],
            metadata=row["metadata"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            started_at=row["started_at"],
            last_message_at=row["last_message_at"],
            message_count=row["message_count"],
            is_active=row["is_active"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class ConversationMessage:
    """One turn of a conversation.

    Attributes:
        id: internal, increasing id (ties on ``created_at`` are broken by it).
        conversation_id: the conversation.
        message_id: VoltAgent's per-conversation message id (a UUID unless given).
        user_id: the conversation's owner, when the message was added owner-checked
            (:meth:`ConversationStore.add_message`); None for what the system added
            (:meth:`ConversationStore.add_message_unchecked`).
        discord_message_id: the Discord message it came from, if any.
        role: ``user``, ``assistant``, ``system`` or ``tool``.
        type: VoltAgent's message type (``text``, ``tool-call``, ``tool-result`` …).
        content: the text (NUL characters replaced by U+FFFD).
        has_images: whether ``image_urls`` is non-empty.
        image_urls: attached image URLs.
        token_count: tokens, when the caller counted them.
        created_at: when it was stored; messages are ordered by (created_at, id).
        updated_at: when it was last changed.
    """

    id: int
    conversation_id: str
    message_id: str
    user_id: int | None
    discord_message_id: int | None
    role: str
    type: str
    content: str
    has_images: bool
    image_urls: list[str]
    token_count: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConversationMessage:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            conversation_id=row["conversation_id"],
            message_id=row["message_id"],
            user_id=row["user_id"],
            discord_message_id=row["discord_message_id"],
            role=row["role"],
            type=row["type"],
            content=row["content"],
            has_images=row["has_images"],
            image_urls=row["image_urls"],
            token_count=row["token_count"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """One page of a user's conversations (VoltAgent's ``getPaginatedUserConversations``).

    Attributes:
        items: the conversations on this page.
        page: 1-based page number.
        page_size: conversations per page.
        has_more: whether a later page has at least one conversation.
    """

    items: list[Conversation]
    page: int
    page_size: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class AgentSession:
    """An agent's session with one user in one channel (Agno's ``agent_sessions``).

    Attributes:
        id: text id (a UUID).
        agent_id: the agent.
        user_id: the user's internal id.
        channel_id: the Discord channel, or None for a session outside channels.
        state: the agent's session state (a JSON object).
        created_at: when it was created.
        updated_at: when its state last changed or a run was added.
    """

    id: str
    agent_id: str
    user_id: int
    channel_id: int | None
    state: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AgentSession:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            agent_id=row["agent_id"],
            user_id=row["user_id"],
            channel_id=row["channel_id"],
            state=row["state"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class AgentRun:
    """One run of an agent in a session: a row written once, never rewritten.

    Attributes:
        id: internal, increasing id (runs are ordered by it).
        session_id: the session.
        user_id: the session's user.
        run_id: a UUID naming the run.
        input: what the agent was asked.
        output: what it answered.
        messages: the run's transcript (OpenAI-format message objects).
        metrics: token counts, timings … (a JSON object).
        status: ``pending``, ``running``, ``completed``, ``paused``, ``cancelled`` or ``error``.
        created_at: when it was stored.
    """

    id: int
    session_id: str
    user_id: int
    run_id: str
    input: str | None
    output: str | None
    messages: list[Any]
    metrics: dict[str, Any]
    status: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AgentRun:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            session_id=row["session_id"],
            user_id=row["user_id"],
            run_id=row["run_id"],
            input=row["input"],
            output=row["output"],
            messages=row["messages"],
            metrics=row["metrics"],
            status=row["status"],
            created_at=row["created_at"],
        )
