"""The memory layer's names the agent uses, imported in this one place.

The memory package is being split (turns, embeddings, learning); only this module
needs to follow it.
"""

from __future__ import annotations

from barkeeper.memory import (
    Hit,
    IndexedTurn,
    Memory,
    MemoryStore,
    MessageIndex,
    UserMessage,
    build_memory_manager,
)
from barkeeper.memory.factory import build_embedder

__all__ = [
    "Hit",
    "IndexedTurn",
    "Memory",
    "MemoryStore",
    "MessageIndex",
    "UserMessage",
    "build_embedder",
    "build_memory_manager",
    "channel_scope",
]


def channel_scope(channel_id: int) -> str:
    """The message-index scope of a Discord channel (``MessageIndex.sync_discord_channel``'s)."""
    return f"discord:channel:{channel_id}"
