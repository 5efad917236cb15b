"""barkeeper's memories: what the bot remembers about each user, in PostgreSQL.

:class:`MemoryStore` keeps per-user :class:`Memory` values with versions
(:class:`MemoryVersion`), validity, expiry and soft delete, and searches them
(hybrid search from :mod:`barkeeper.retrieval`). Learning memories from messages is
:mod:`barkeeper.learning`'s; vectors come from an :mod:`barkeeper.embeddings`
embedder; raw turns are searched by :mod:`barkeeper.turns`.

Example::

    from barkeeper.embeddings import MiniLMEmbedder
    from barkeeper.memory import MemoryStore

    store = MemoryStore(db, MiniLMEmbedder())
    tea = await store.add(user_id, "Loves green tea", memory_type="preference")
    hits = await store.search(user_id, "what does she drink?", k=5, token_budget=200)
"""

from barkeeper.memory._models import (
    CHANGE_KINDS,
    MEMORY_TYPES,
    TEMPORAL_RELEVANCES,
    ChangeKind,
    Memory,
    MemoryType,
    MemoryVersion,
    TemporalRelevance,
)
from barkeeper.memory._store import UNSET, MemoryStore

__all__ = [
    "CHANGE_KINDS",
    "MEMORY_TYPES",
    "TEMPORAL_RELEVANCES",
    "UNSET",
    "ChangeKind",
    "Memory",
    "MemoryStore",
    "MemoryType",
    "MemoryVersion",
    "TemporalRelevance",
]
