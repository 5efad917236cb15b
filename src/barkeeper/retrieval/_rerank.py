"""The second stage of a search: lift candidates by their session and neighbours.

:func:`barkeeper.retrieval.fuse` scores each candidate on its own. A question is
often about one occasion, told over several turns ("we went camping" … "the kids
loved the marshmallows"), and its answer may sit next to the turn that matches
best. :func:`rerank` adds to each candidate a share (:attr:`Weights.session`) of
the best first-stage score among the candidates of its session, and a share
(:attr:`Weights.neighbour`) of the best score of the turns just before and after
it. A session is a run of items at most :attr:`Weights.session_gap_minutes` apart
in time. No model, no extra query: it works on the candidates already fetched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from barkeeper.retrieval._models import ScoreParts

if TYPE_CHECKING:
    from barkeeper.retrieval._search import Weights

__all__ = ["rerank"]


def _sessions(times: Sequence[datetime | None], gap_seconds: float) -> list[int | None]:
    """A session number per item: items sorted by time, cut where the gap is larger."""
    order = sorted((t, i) for i, t in enumerate(times) if t is not None)
    labels: list[int | None] = [None] * len(times)
    session = -1
    previous: datetime | None = None
    for when, index in order:
        if previous is None or (when - previous).total_seconds() > gap_seconds:
            session += 1
        labels[index] = session
        previous = when
    return labels


def rerank(
    scored: Sequence[tuple[Mapping[str, Any], ScoreParts]],
    *,
    weights: Weights,
    time_column: str | None,
    position_column: str | None = None,
) -> list[tuple[Mapping[str, Any], ScoreParts]]:
    """Add the session and neighbour terms to fused candidates and order them again.

    Args:
        scored: :func:`barkeeper.retrieval.fuse`'s output.
        weights: Its ``session``, ``neighbour`` and ``session_gap_minutes``.
        time_column: The row key of an item's time (sessions); items without a
            time get neither term.
        position_column: The row key of a turn's position in its scope
            (neighbours are positions one apart); ``None`` for items without order.

    Returns:
        The candidates best first, each with its ``parts.score`` and
        ``parts.session`` updated. Unchanged when both weights are 0.
    """
    if not scored or time_column is None or not (weights.session or weights.neighbour):
        return list(scored)
    times = [row.get(time_column) for row, _ in scored]
    sessions = _sessions(times, weights.session_gap_minutes * 60.0)
    best: dict[int, float] = {}
    by_position: dict[int, tuple[int | None, float]] = {}
    for (row, parts), session in zip(scored, sessions, strict=True):
        if session is None:
            continue
        best[session] = max(best.get(session, parts.score), parts.score)
        if position_column is not None and row.get(position_column) is not None:
            by_position[int(row[position_column])] = (session, parts.score)
    result: list[tuple[Mapping[str, Any], ScoreParts]] = []
    for (row, parts), session in zip(scored, sessions, strict=True):
        if session is None:
            result.append((row, parts))
            continue
        bonus = weights.session * best[session]
        position = row.get(position_column) if position_column is not None else None
        if weights.neighbour and position is not None:
            near = [by_position.get(int(position) + step) for step in (-1, 1)]
            scores = [e[1] for e in near if e is not None and e[0] == session]
            if scores:
                bonus += weights.neighbour * max(scores)
        lifted = ScoreParts(
            score=parts.score + bonus,
            text=parts.text,
            text_rank=parts.text_rank,
            vector=parts.vector,
            vector_rank=parts.vector_rank,
            recency=parts.recency,
            importance=parts.importance,
            speaker=parts.speaker,
            date=parts.date,
            session=bonus,
        )  # not dataclasses.replace: a third of the cost of the whole stage
        result.append((row, lifted))
    result.sort(key=lambda item: (-item[1].score, -int(item[0]["id"])))
    return result
