"""barkeeper's memory layer: what the bot remembers about each user, in PostgreSQL.

- :class:`MemoryStore`: per-user memories with versions, validity, expiry, soft delete
  and hybrid search (BM25 in SQL + vectors + importance + recency).
- :class:`MessageIndex`: the same retrieval over raw turns (the Discord cache, transcripts).
- :class:`MemoryManager`: extraction of typed facts by the memory model and their
  consolidation (add / update / invalidate / nothing) against the user's most similar
  memories; :class:`MemoryWorker` runs it in the background.
- :mod:`barkeeper.embeddings._embedders`: the :class:`Embedder` protocol and the local
  MiniLM model; :mod:`barkeeper.learning._factory` builds all of it from settings.

Example::

    store = MemoryStore(db, MiniLMEmbedder())
    tea = await store.add(user_id, "Loves green tea", memory_type="preference")
    hits = await store.search(user_id, "what does she drink?", k=5, token_budget=200)
"""

from barkeeper.learning._commands import MemoryCommand, parse_memory_command
from barkeeper.learning._consolidation import Consolidator, MemoryChange, duplicate_kind
from barkeeper.embeddings._embedders import (
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
)
from barkeeper.learning._extraction import (
    CandidateFact,
    FactExtractor,
    UserMessage,
    is_sampled,
    skip_reason,
)
from barkeeper.learning._factory import build_memory_manager
from barkeeper.learning._manager import MemoryManager, MemoryOutcome
from barkeeper.turns._index import MessageIndex
from barkeeper.memory._models import (
    Hit,
    IndexedTurn,
    Memory,
    MemoryType,
    MemoryVersion,
    ScoreParts,
    TemporalRelevance,
    Turn,
)
from barkeeper.retrieval._search import Weights
from barkeeper.memory._store import MemoryStore
from barkeeper.learning._worker import MemoryWorker, WorkerStats

__all__ = [
    "CandidateFact",
    "Consolidator",
    "Embedder",
    "FactExtractor",
    "HashingEmbedder",
    "Hit",
    "IndexedTurn",
    "Memory",
    "MemoryChange",
    "MemoryCommand",
    "MemoryManager",
    "MemoryOutcome",
    "MemoryStore",
    "MemoryType",
    "MemoryVersion",
    "MemoryWorker",
    "MessageIndex",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "ScoreParts",
    "TemporalRelevance",
    "Turn",
    "UserMessage",
    "Weights",
    "WorkerStats",
    "build_memory_manager",
    "duplicate_kind",
    "is_sampled",
    "parse_memory_command",
    "skip_reason",
]
