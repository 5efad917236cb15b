"""The values the memory layer hands out: memories, their versions, indexed turns, search hits.

Plain frozen dataclasses built from database rows; they hold no connection and never
write. Embeddings are not part of them (they stay in the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeVar, get_args

__all__ = [
    "CHANGE_KINDS",
    "MEMORY_TYPES",
    "SEARCH_MODES",
    "TEMPORAL_RELEVANCES",
    "ChangeKind",
    "Hit",
    "IndexedTurn",
    "Memory",
    "MemoryType",
    "MemoryVersion",
    "ScoreParts",
    "SearchMode",
    "TemporalRelevance",
    "Turn",
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
]
"""What a memory is about (seed 003's fact types plus the Bartender's three)."""

TemporalRelevance = Literal["past", "present", "future", "timeless"]
"""When a memory holds: it happened, it holds now, it is planned, or always."""

ChangeKind = Literal["add", "update", "invalidate", "forget", "restore", "expire"]
"""What a :class:`MemoryVersion` records."""

SearchMode = Literal["hybrid", "fulltext", "vector"]
"""Which signals a search ranks by: both, or one of them (the benchmark baselines)."""

MEMORY_TYPES: tuple[MemoryType, ...] = get_args(MemoryType)
TEMPORAL_RELEVANCES: tuple[TemporalRelevance, ...] = get_args(TemporalRelevance)
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)


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
        extraction_context: Free text the extractor kept (e.g. the sentence it read).
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


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance to index for search (a chat message, a line of a transcript).

    Attributes:
        source_id: Its id in the source (a Discord message id, a LoCoMo ``dia_id``);
            unique within a scope. Indexing the same id again replaces it.
        speaker: Who said it (shown and searched with the text).
        text: What was said.
        occurred_at: When, if known (used for recency).
        context: Text searched with this turn at a lower weight; ``None`` lets the
            index use the previous turn of the same batch.
        discord_message_id: Set when the turn is a cached Discord message: deleting
            that message (or its author's data) deletes the indexed turn too.
        user_id: The speaker's ``users.id``, when the speaker is someone barkeeper
            knows: the turn is then theirs for privacy (shown, exported, forgotten
            with them). A transcript turn without it belongs to nobody barkeeper can
            name (documented in ``docs/schema.md``).
    """

    source_id: str
    speaker: str
    text: str
    occurred_at: datetime | None = None
    context: str | None = None
    discord_message_id: int | None = None
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class IndexedTurn:
    """A turn as stored in the message index.

    Attributes:
        id: Row id.
        scope: The scope it was indexed under (a channel, a user, a transcript).
        source_id: Its id in the source.
        position: Order within the scope.
        speaker: Who said it.
        content: ``"speaker: text"``, what a prompt would show.
        occurred_at: When it was said, if known.
        discord_message_id: The cached Discord message it came from, if any.
    """

    id: int
    scope: str
    source_id: str
    position: int
    speaker: str
    content: str
    occurred_at: datetime | None
    discord_message_id: int | None


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """How a search hit was scored: the fused score and each signal behind it.

    Attributes:
        score: The fused score results are ordered by (higher is better).
        text: BM25 of the query's words against the item (0 without a match).
        text_rank: 1-based rank by ``text`` among the scope's items (``None``: no match).
        vector: Cosine similarity of the query and item vectors (``None``: no vector).
        vector_rank: 1-based rank by ``vector`` (``None``: no vector).
        recency: 1 for brand new, halving every half-life.
        importance: The item's importance (memories) or 0 (turns).
        speaker: The bonus for a turn whose speaker the query names (else 0).
    """

    score: float
    text: float
    text_rank: int | None
    vector: float | None
    vector_rank: int | None
    recency: float
    importance: float
    speaker: float = 0.0


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hit(Generic[T]):
    """One search result: the item, its score and what its text costs in tokens."""

    item: T
    parts: ScoreParts
    tokens: int = field(default=0)

    @property
    def score(self) -> float:
        """The fused score (``parts.score``)."""
        return self.parts.score
