"""Columns read from the memory tables, and the models built from those rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from barkeeper.memory._models import Memory, MemoryVersion
from barkeeper.retrieval import real

__all__ = [
    "MEMORY_COLUMNS",
    "VERSION_COLUMNS",
    "memory_from_row",
    "version_from_row",
]

# Never the embedding or the tsvector: they stay in the database.
MEMORY_COLUMNS = (
    "id, user_id, memory_type, content, confidence, importance, temporal_relevance, source, "
    "source_message_ids, extraction_context, guild_id, expires_at, valid_from, invalidated_at, "
    "version, last_referenced_at, embedding_model, created_at, updated_at"
)

VERSION_COLUMNS = (
    "id, memory_id, user_id, version, change, changed_by, reason, memory_type, content, "
    "confidence, importance, temporal_relevance, expires_at, source_message_ids, created_at"
)


def memory_from_row(row: Mapping[str, Any]) -> Memory:
    """A :class:`Memory` from a row holding :data:`MEMORY_COLUMNS`."""
    return Memory(
        id=row["id"],
        user_id=row["user_id"],
        memory_type=cast(Any, row["memory_type"]),
        content=row["content"],
        confidence=real(row["confidence"]),
        importance=real(row["importance"]),
        temporal_relevance=cast(Any, row["temporal_relevance"]),
        source=row["source"],
        source_message_ids=tuple(row["source_message_ids"] or ()),
        extraction_context=row["extraction_context"],
        guild_id=row["guild_id"],
        expires_at=row["expires_at"],
        valid_from=row["valid_from"],
        invalidated_at=row["invalidated_at"],
        version=row["version"],
        last_referenced_at=row["last_referenced_at"],
        embedding_model=row["embedding_model"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def version_from_row(row: Mapping[str, Any]) -> MemoryVersion:
    """A :class:`MemoryVersion` from a row holding :data:`VERSION_COLUMNS`."""
    return MemoryVersion(
        id=row["id"],
        memory_id=row["memory_id"],
        user_id=row["user_id"],
        version=row["version"],
        change=cast(Any, row["change"]),
        changed_by=row["changed_by"],
        reason=row["reason"],
        memory_type=cast(Any, row["memory_type"]),
        content=row["content"],
        confidence=real(row["confidence"]),
        importance=real(row["importance"]),
        temporal_relevance=cast(Any, row["temporal_relevance"]),
        expires_at=row["expires_at"],
        source_message_ids=tuple(row["source_message_ids"] or ()),
        created_at=row["created_at"],
    )
