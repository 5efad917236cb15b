"""Hybrid retrieval: full-text (BM25 in SQL), vector similarity, recency and importance.

The search engine under :class:`barkeeper.memory.MemoryStore` and
:class:`barkeeper.turns.MessageIndex`: each declares its table
(:class:`SearchTable`), runs :func:`search_rows` on its owner's rows, scores them
with :func:`fuse` by :class:`Weights`, lifts them by their session and
neighbouring turns with :func:`rerank`, and keeps what fits a token budget with
:func:`apply_token_budget`. A search returns :class:`Hit` values whose
:class:`ScoreParts` say how each was scored. Vectors are stored as pgvector's
``vector`` when the database has it, else as ``bytea`` (:data:`VectorStorage`).
No language model runs at query time.

Example::

    from barkeeper.retrieval import Weights

    hits = await store.search(user_id, "what does she drink?", weights=Weights(recency=0.0))
    for hit in hits:
        print(hit.score, hit.parts.text, hit.parts.vector, hit.item)
"""

from barkeeper.retrieval._dates import NamedDates, named_dates
from barkeeper.retrieval._models import SEARCH_MODES, Hit, ScoreParts, SearchMode
from barkeeper.retrieval._rerank import rerank
from barkeeper.retrieval._search import (
    DEFAULT_MEMORY_WEIGHTS,
    DEFAULT_TURN_WEIGHTS,
    MAX_K,
    MAX_QUERY_CHARS,
    SearchTable,
    Weights,
    apply_token_budget,
    check_search_args,
    check_vector,
    embed_query,
    fuse,
    query_vector,
    real,
    search_rows,
)
from barkeeper.retrieval._vectors import Storage as VectorStorage
from barkeeper.retrieval._vectors import get_storage as get_vector_storage
from barkeeper.retrieval._vectors import normalise as normalise_vector
from barkeeper.retrieval._vectors import to_bytes as vector_to_bytes
from barkeeper.retrieval._vectors import to_literal as vector_to_literal

__all__ = [
    "DEFAULT_MEMORY_WEIGHTS",
    "DEFAULT_TURN_WEIGHTS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "SEARCH_MODES",
    "Hit",
    "NamedDates",
    "ScoreParts",
    "SearchMode",
    "SearchTable",
    "VectorStorage",
    "Weights",
    "apply_token_budget",
    "check_search_args",
    "check_vector",
    "embed_query",
    "fuse",
    "get_vector_storage",
    "named_dates",
    "normalise_vector",
    "query_vector",
    "real",
    "rerank",
    "search_rows",
    "vector_to_bytes",
    "vector_to_literal",
]
