"""The values the memory store hands out: memories and their versions.

Plain frozen dataclasses built from database rows; they hold no connection and never
write. Embeddings are not part of them (they stay in the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

__all__ = [
    "CHANGE_KINDS",
    "MEMORY_TYPES",
    "TEMPORAL_RELEVANCES",
    "ChangeKind",
    "Memory",
    "MemoryType",
    "MemoryVersion",
    "TemporalRelevance",
]

MemoryType = Literal[
    "hobby",
    "work",
    "family",
    "preference",
    "location",
    "event",
    "relationship",
    "general",
    "attachment_pattern",
    "grief_context",
    "coping_mechanism",
    "health",
]
"""What a memory is about (seed 003's fact types, the Bartender's three, and ``health``)."""

TemporalRelevance = Literal["past", "present", "future", "timeless"]
"""When a memory holds: it happened, it holds now, it is planned, or always."""

ChangeKind = Literal["add", "update", "invalidate", "forget", "restore", "expire"]
"""What a :class:`MemoryVersion` records."""

MEMORY_TYPES: tuple[MemoryType, ...] = get_args(MemoryType)
TEMPORAL_RELEVANCES: tuple[TemporalRelevance, ...] = get_args(TemporalRelevance)
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)


@dataclass(frozen=True, slots=True)
class Memory:
    """One thing remembered about one user, as it stands now.

    Attributes:
        id: The memory's id (unique across users, but only meaningful with its user).
        user_id: The internal ``users.id`` it belongs to.
        memory_type: What it is about.
        content: The fact, in one sentence.
        confidence: How sure the source was, 0..1.
        importance: How much it matters for conversations, 0..1.
        temporal_relevance: When it holds.
        source: Where it came from (``conversation``, ``explicit``, ``cli``, …).
        source_message_ids: Discord message ids it was learnt from.
        extraction_context: Free text the extractor kept (e.g. the sentence it read);
            searched with the memory at a lower weight, never shown.
        guild_id: The Discord guild it was learnt in, if any.
        expires_at: After this instant it is never returned.
        valid_from: Since when it holds.
        invalidated_at: When it was contradicted and closed (``None`` while valid).
        version: 1 when added, +1 on every change.
        last_referenced_at: When it was last put into a prompt, if recorded.
        embedding_model: The embedder whose vector is stored (``None``: no vector).
        created_at: When it was added.
        updated_at: When it last changed.
    """

    id: int
    user_id: int
    memory_type: MemoryType
    content: str
    confidence: float
    importance: float
    temporal_relevance: TemporalRelevance
    source: str
    source_message_ids: tuple[int, ...]
    extraction_context: str | None
    guild_id: int | None
    expires_at: datetime | None
    valid_from: datetime
    invalidated_at: datetime | None
    version: int
    last_referenced_at: datetime | None
    embedding_model: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_valid(self) -> bool:
        """Not contradicted (``invalidated_at`` unset)."""
        return self.invalidated_at is None


@dataclass(frozen=True, slots=True)
class MemoryVersion:
    """A memory as it stood after one change, and who made the change and why.

    Version 1 is the ``add``; each later change adds the next version. A forgotten
    memory's versions keep their kinds and times but lose their content.
    """

    id: int
    memory_id: int
    user_id: int
    version: int
    change: ChangeKind
    changed_by: str
    reason: str | None
    memory_type: MemoryType
    content: str
    confidence: float
    importance: float
    temporal_relevance: TemporalRelevance
    expires_at: datetime | None
    source_message_ids: tuple[int, ...]
    created_at: datetime
