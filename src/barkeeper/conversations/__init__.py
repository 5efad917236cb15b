"""Conversations, their messages, and agent sessions with their runs, in PostgreSQL.

- :class:`ConversationStore`: Loyal Companion's conversations (per user and channel,
  a new one after the timeout) and VoltAgent's (per user and agent): messages with
  roles, a per-conversation storage limit enforced in the adding transaction,
  user-centric listing, paging (``has_more``) and ownership-checked access (the
  caller's ``user_id`` is required; ``add_message_unchecked`` is the system's own path).
- :class:`SessionStore`: Agno's agent sessions, normalised — the session holds state,
  each run is one row written once; the last ``AGENT_HISTORY_RUNS`` runs in one query.

Free text (message content, titles, run input/output) has NUL characters and lone
surrogates replaced by U+FFFD, since PostgreSQL text cannot hold them; identifiers and
JSON metadata/state containing them are refused with
:class:`~barkeeper.errors.InvalidInputError`.

Example::

    from barkeeper.conversations import ConversationStore

    store = ConversationStore(db, storage_limit=100)
    conv = await store.get_or_start_conversation(user.id, channel_id=channel.id)
    await store.add_message(conv.id, "user", "evening", user_id=user.id)
    await store.add_message_unchecked(conv.id, "assistant", "Evening. The usual?")
    recent = await store.get_recent_messages(conv.id, 20, user_id=user.id)
"""

from barkeeper.conversations._models import (
    AgentRun,
    AgentSession,
    Conversation,
    ConversationMessage,
    ConversationPage,
    Direction,
    MessageRole,
    OrderBy,
    RunStatus,
)
from barkeeper.conversations._sessions import SessionStore
from barkeeper.conversations._store import (
    DEFAULT_RESOURCE_ID,
    MAX_CONTENT_CHARS,
    ConversationStore,
)

__all__ = [
    "DEFAULT_RESOURCE_ID",
    "MAX_CONTENT_CHARS",
    "AgentRun",
    "AgentSession",
    "Conversation",
    "ConversationMessage",
    "ConversationPage",
    "ConversationStore",
    "Direction",
    "MessageRole",
    "OrderBy",
    "RunStatus",
    "SessionStore",
]
