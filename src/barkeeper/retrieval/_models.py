"""The values a search hands out: hits and how each was scored.

Plain frozen dataclasses; they hold no connection and never write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar, get_args

__all__ = ["SEARCH_MODES", "Hit", "ScoreParts", "SearchMode"]

SearchMode = Literal["hybrid", "fulltext", "vector"]
"""Which signals a search ranks by: both, or one of them (the benchmark baselines)."""

SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """How a search hit was scored: the fused score and each signal behind it.

    Attributes:
        score: The fused score results are ordered by (higher is better).
        text: BM25 of the query's words against the item (0 without a match).
        text_rank: 1-based rank by ``text`` among the scope's items (``None``: no match).
        vector: The vector signal (``None``: no vector): the cosine similarity of the
            query and item vectors; for an indexed turn with pieces (its sentences),
            ``(w + max(w, best piece cosine)) / 2`` with ``w`` the whole turn's cosine.
        vector_rank: 1-based rank by ``vector`` (``None``: no vector).
        recency: 1 for brand new, halving every half-life.
        importance: The item's importance (memories) or 0 (turns).
        speaker: The bonus for a turn whose speaker the query names (else 0).
        date: The bonus for an item in a month or year the query names (else 0).
        session: What the item's session and neighbouring turns added (else 0).
    """

    score: float
    text: float
    text_rank: int | None
    vector: float | None
    vector_rank: int | None
    recency: float
    importance: float
    speaker: float = 0.0
    date: float = 0.0
    session: float = 0.0


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
