"""The values the turn index takes and hands out: turns, and turns as indexed.

Plain frozen dataclasses; they hold no connection and never write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TURN_COLUMNS", "IndexedTurn", "Turn", "turn_from_row"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance to index for search (a chat message, a line of a transcript).

    Attributes:
        source_id: Its id in the source (a Discord message id, a LoCoMo ``dia_id``);
            unique within a scope. Indexing the same id again replaces it.
        speaker: Who said it (shown and searched with the text).
        text: What was said.
        occurred_at: When, if known (used for recency).
        context: Text searched with this turn at a lower weight, never shown;
            ``None`` lets the index make it from the neighbouring turns of the same
            batch and the month and year (see :meth:`barkeeper.turns.MessageIndex.add_turns`).
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


TURN_COLUMNS = "id, scope, source_id, position, speaker, content, occurred_at, discord_message_id"


def turn_from_row(row: Mapping[str, Any]) -> IndexedTurn:
    """An :class:`IndexedTurn` from a row holding :data:`TURN_COLUMNS`."""
    return IndexedTurn(
        id=row["id"],
        scope=row["scope"],
        source_id=row["source_id"],
        position=row["position"],
        speaker=row["speaker"],
        content=row["content"],
        occurred_at=row["occurred_at"],
        discord_message_id=row["discord_message_id"],
    )
