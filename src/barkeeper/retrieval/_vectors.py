"""Embedding vectors on their way into and out of PostgreSQL, with or without pgvector.

With pgvector the columns are ``vector`` and vectors travel as their text literal
(``'[0.1,0.2]'``, cast in SQL), so no client-side codec is needed. Without it they
are ``bytea`` holding little-endian float32s: fetching 100 of them takes about 0.3 ms,
where ``real[]`` took 2-3 ms (asyncpg builds a Python float per element), and the
cosine is then computed here, with numpy when it is installed (the local embedder
needs it anyway) and in pure Python otherwise.

Every stored vector is L2-normalised, so cosine similarity is a dot product.

A row may also have *piece* vectors (an indexed turn's sentences, stored one after
another in one ``bytea``, or as a ``vector[]``): its score is then the mean of its own
cosine and the best cosine among it and its pieces, as the pgvector statement
computes it (see :func:`cosine_scores`).
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Sequence
from typing import Literal

import asyncpg

from barkeeper.errors import InvalidInputError

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy comes with the local embedder
    _np = None  # type: ignore[assignment]

__all__ = [
    "Storage",
    "cosine_ranks",
    "cosine_scores",
    "from_bytes",
    "get_storage",
    "normalise",
    "to_bytes",
    "to_literal",
]

Storage = Literal["vector", "bytea"]

_BIG_ENDIAN = sys.byteorder == "big"
MAX_DIMENSION = 16000  # pgvector's limit for a vector column


async def get_storage(conn: asyncpg.Connection) -> Storage:
    """How this schema stores embeddings (``barkeeper_meta.embedding_storage``)."""
    value = await conn.fetchval("SELECT value FROM barkeeper_meta WHERE key = 'embedding_storage'")
    return "vector" if value == "vector" else "bytea"


def normalise(vector: Sequence[float]) -> list[float]:
    """The vector scaled to unit length.

    Raises:
        InvalidInputError: It is empty, too long, all zeros, or holds NaN or infinity.
    """
    if not 0 < len(vector) <= MAX_DIMENSION:
        raise InvalidInputError(
            f"an embedding must have 1 to {MAX_DIMENSION} dimensions, not {len(vector)}"
        )
    if _np is not None:  # a query vector is normalised on every search: 10x faster
        try:
            array = _np.asarray(vector, dtype=_np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("an embedding must be a sequence of numbers") from None
        if array.ndim != 1:
            raise InvalidInputError("an embedding must be a flat sequence of numbers")
        length = float(_np.sqrt(array @ array))
        if not math.isfinite(length) or length == 0.0:
            raise InvalidInputError("an embedding must be finite and not all zeros")
        result: list[float] = (array / length).tolist()
        return result
    values = [float(x) for x in vector]
    norm = math.sqrt(math.fsum(x * x for x in values))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidInputError("an embedding must be finite and not all zeros")
    return [x / norm for x in values]


def to_literal(vector: Sequence[float]) -> str:
    """pgvector's text form of a vector."""
    return "[" + ",".join(format(x, ".8g") for x in vector) + "]"


def to_bytes(vector: Sequence[float]) -> bytes:
    """Little-endian float32 bytes of a vector."""
    packed = array.array("f", vector)
    if _BIG_ENDIAN:  # pragma: no cover - no big-endian CI
        packed.byteswap()
    return packed.tobytes()


def from_bytes(data: bytes) -> list[float]:
    """The vector stored as little-endian float32 bytes."""
    packed = array.array("f")
    packed.frombytes(data)
    if _BIG_ENDIAN:  # pragma: no cover
        packed.byteswap()
    return packed.tolist()


def cosine_scores(
    query: Sequence[float],
    stored: Sequence[bytes | None],
    pieces: Sequence[bytes | None] | None = None,
) -> list[float | None]:
    """Cosine similarity of a unit query vector with each stored unit vector.

    With ``pieces`` (each row's piece vectors, one after another, or ``None``), a row
    with pieces scores ``(w + max(w, best piece cosine)) / 2``, ``w`` its own cosine;
    a row without them (or whose pieces have another length) scores ``w``.

    ``None`` where nothing is stored or the stored vector has another length.
    """
    dimension = len(query)
    width = 4 * dimension
    wanted = [i for i, data in enumerate(stored) if data is not None and len(data) == width]
    scores: list[float | None] = [None] * len(stored)
    if not wanted:
        return scores
    split = [] if pieces is None else [k for k, i in enumerate(wanted) if _fits(pieces[i], width)]
    if _np is not None:
        unit = _np.asarray(query, dtype=_np.float32)
        matrix = _np.frombuffer(b"".join(stored[i] or b"" for i in wanted), dtype="<f4")
        products = (matrix.reshape(len(wanted), dimension) @ unit).astype(_np.float64)
        if split:
            assert pieces is not None
            blobs = [pieces[wanted[k]] or b"" for k in split]
            starts = _np.cumsum([0] + [len(b) // width for b in blobs[:-1]])
            each = _np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dimension) @ unit
            best = _np.maximum.reduceat(each, starts).astype(_np.float64)
            whole = products[split]
            products[split] = (whole + _np.maximum(whole, best)) / 2
        for i, value in zip(wanted, products.tolist(), strict=True):
            scores[i] = float(value)
        return scores
    for i in wanted:  # pragma: no cover - exercised only without numpy
        data = stored[i]
        assert data is not None
        scores[i] = math.fsum(a * b for a, b in zip(from_bytes(data), query, strict=True))
    for k in split:  # pragma: no cover - exercised only without numpy
        assert pieces is not None
        i = wanted[k]
        flat = from_bytes(pieces[i] or b"")
        best_piece = max(
            math.fsum(a * b for a, b in zip(flat[j : j + dimension], query, strict=True))
            for j in range(0, len(flat), dimension)
        )
        w = scores[i]
        assert w is not None
        scores[i] = (w + max(w, best_piece)) / 2
    return scores


def _fits(data: bytes | None, width: int) -> bool:
    """Whether ``data`` holds one or more whole vectors of ``width`` bytes."""
    return data is not None and len(data) > 0 and len(data) % width == 0


def cosine_ranks(
    query: Sequence[float],
    stored: Sequence[bytes | None],
    ids: Sequence[int],
    pieces: Sequence[bytes | None] | None = None,
) -> tuple[list[float | None], list[int | None]]:
    """:func:`cosine_scores` (with ``pieces`` if given), and each row's rank by it
    (1 = most similar; ties: the larger id first); ``None`` for both where there is no
    comparable vector."""
    scores = cosine_scores(query, stored, pieces)
    if _np is not None:
        valid = [i for i, score in enumerate(scores) if score is not None]
        ranks: list[int | None] = [None] * len(scores)
        if valid:
            values = _np.fromiter((scores[i] for i in valid), dtype=_np.float64, count=len(valid))
            keys = _np.fromiter((ids[i] for i in valid), dtype=_np.int64, count=len(valid))
            # lexsort: the last key is the primary one (descending score, then id)
            order = _np.lexsort((-keys, -values)).tolist()
            for rank, position in enumerate(order, 1):
                ranks[valid[position]] = rank
        return scores, ranks
    ranked = sorted(  # pragma: no cover - exercised only without numpy
        (i for i, score in enumerate(scores) if score is not None),
        key=lambda i: (-(scores[i] or 0.0), -ids[i]),
    )
    fallback: list[int | None] = [None] * len(scores)  # pragma: no cover
    for rank, i in enumerate(ranked, 1):  # pragma: no cover
        fallback[i] = rank
    return scores, fallback  # pragma: no cover
