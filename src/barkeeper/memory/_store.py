"""The memory store: what barkeeper remembers about each user, with every change kept.

:class:`MemoryStore` adds, reads, updates, invalidates, restores and forgets memories,
and searches them (:mod:`barkeeper.retrieval`). Its rules:

- **One user at a time.** Every statement has ``WHERE user_id = $1`` (and ``AND id =
  $2`` for one memory): another user's memory id is :class:`NotFoundError`, exactly
  like an id that does not exist, and nothing is changed.
- **History.** Each change writes the memory's new state as the next row of
  ``memory_versions`` (kind, who, why) in the same statement or transaction as the
  change itself.
- **Validity.** A contradicted memory is *invalidated*: closed (``invalidated_at``
  set), kept with its history, no longer returned by searches; :meth:`restore`
  reopens it.
- **Forgetting is erasure.** :meth:`forget` is the user's request: the memory's text,
  vector, sources and the text of all its versions are scrubbed and the row is
  deactivated (``is_active`` false), leaving a content-free tombstone so the history
  says *that* something was forgotten and when, never *what*. :meth:`forget_all`
  deletes the user's memories and their histories outright.
- **Expiry.** A memory whose ``expires_at`` has passed is never returned by any read
  (filtered in SQL with ``now()``), and cannot be updated.
- **All or nothing.** Each method is one statement or transaction; several changes
  made inside ``async with store.transaction():`` commit together or not at all.

This module never calls a language model; the embedder is only asked for vectors.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import asyncpg

from barkeeper.db import Database
from barkeeper.embeddings import Embedder
from barkeeper.errors import BarkeeperError, InvalidInputError, NotFoundError
from barkeeper.memory._models import (
    MEMORY_TYPES,
    TEMPORAL_RELEVANCES,
    Memory,
    MemoryType,
    MemoryVersion,
    TemporalRelevance,
)
from barkeeper.memory._rows import (
    MEMORY_COLUMNS,
    VERSION_COLUMNS,
    memory_from_row,
    version_from_row,
)
from barkeeper.retrieval import (
    DEFAULT_MEMORY_WEIGHTS,
    Hit,
    SearchMode,
    SearchTable,
    VectorStorage,
    Weights,
    apply_token_budget,
    check_search_args,
    check_vector,
    fuse,
    get_vector_storage,
    query_vector,
    real,
    rerank,
    search_rows,
    vector_to_bytes,
    vector_to_literal,
)
from barkeeper.validation import (
    check_aware as check_timestamp,
)
from barkeeper.validation import (
    check_choice,
    check_id,
    check_ids,
    check_int_range,
    check_unit,
    clean_text,
)

__all__ = [
    "MAX_CONTENT_CHARS",
    "UNSET",
    "MemoryStore",
]

# What a search of one user's memories reads: their live, valid, unexpired rows.
_SEARCH_TABLE = SearchTable(
    name="memories",
    alias="m",
    columns=MEMORY_COLUMNS,
    owner_type="bigint",
    filter="""
    WHERE m.user_id = $1 AND m.is_active AND m.invalidated_at IS NULL
      AND (m.expires_at IS NULL OR m.expires_at > now())
      AND (__TYPES__::text[] IS NULL OR m.memory_type = ANY(__TYPES__::text[]))
""",
    recency_column="updated_at",
)

_log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 2000
"""Longest memory text accepted: a memory is one fact, not a document."""
_MAX_CONTEXT_CHARS = 4000
_MAX_LABEL_CHARS = 100
_MAX_REASON_CHARS = 1000
_MAX_SOURCES = 1000


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
"""Default of :meth:`MemoryStore.update` arguments that may be set to ``None``."""

_LIVE = "is_active AND invalidated_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
_NOT_EXPIRED = "(expires_at IS NULL OR expires_at > now())"

_VERSION_INSERT = """
    INSERT INTO memory_versions (memory_id, user_id, version, change, changed_by, reason,
        memory_type, content, confidence, importance, temporal_relevance, expires_at,
        source_message_ids)
"""

_ADD = f"""
WITH m AS (
    INSERT INTO memories (user_id, memory_type, content, confidence, importance,
        temporal_relevance, source, source_message_ids, extraction_context, guild_id,
        expires_at, valid_from, embedding, embedding_model)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, coalesce($12, now()), $13__VEC__, $14)
    RETURNING *
), v AS ({_VERSION_INSERT}
    SELECT id, user_id, version, 'add', $15, $16, memory_type, content, confidence,
           importance, temporal_relevance, expires_at, source_message_ids
    FROM m
)
SELECT {MEMORY_COLUMNS} FROM m
"""  # noqa: S608 - constant fragments

_GET = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE user_id = $1 AND id = $2 AND is_active AND {_NOT_EXPIRED}"  # noqa: S608, E501

_LOCK_LIVE = (
    f"SELECT {MEMORY_COLUMNS} FROM memories WHERE user_id = $1 AND id = $2 AND {_LIVE} FOR UPDATE"  # noqa: S608
)

_UPDATE = f"""
WITH m AS (
    UPDATE memories SET memory_type = $3, content = $4, confidence = $5, importance = $6,
        temporal_relevance = $7, expires_at = $8, source_message_ids = $9,
        extraction_context = $10,
        embedding = CASE WHEN $11 THEN $12__VEC__ ELSE embedding END,
        embedding_model = CASE WHEN $11 THEN $13 ELSE embedding_model END,
        version = version + 1, updated_at = now()
    WHERE user_id = $1 AND id = $2
    RETURNING *
), v AS ({_VERSION_INSERT}
    SELECT id, user_id, version, 'update', $14, $15, memory_type, content, confidence,
           importance, temporal_relevance, expires_at, source_message_ids
    FROM m
)
SELECT {MEMORY_COLUMNS} FROM m
"""  # noqa: S608 - constant fragments


def _state_change(change: str, set_clause: str, condition: str) -> str:
    return f"""
WITH m AS (
    UPDATE memories SET {set_clause}, version = version + 1, updated_at = now()
    WHERE user_id = $1 AND id = $2 AND {condition}
    RETURNING *
), v AS ({_VERSION_INSERT}
    SELECT id, user_id, version, '{change}', $3, $4, memory_type, content, confidence,
           importance, temporal_relevance, expires_at, source_message_ids
    FROM m
)
SELECT {MEMORY_COLUMNS} FROM m
"""  # noqa: S608 - constant fragments


_INVALIDATE = _state_change("invalidate", "invalidated_at = now()", _LIVE)
_RESTORE = _state_change(
    "restore",
    "invalidated_at = NULL",
    f"is_active AND invalidated_at IS NOT NULL AND {_NOT_EXPIRED}",
)

# The scrub of earlier versions and the tombstone version run in one statement with
# the deactivation, so a forget is all or nothing.
_FORGET = f"""
WITH m AS (
    UPDATE memories SET content = '', extraction_context = NULL, source_message_ids = '{{}}',
        embedding = NULL, embedding_model = NULL, is_active = false,
        version = version + 1, updated_at = now()
    WHERE user_id = $1 AND id = $2 AND is_active
    RETURNING *
), scrub AS (
    UPDATE memory_versions SET content = '', reason = NULL, source_message_ids = '{{}}'
    WHERE user_id = $1 AND memory_id = (SELECT id FROM m)
), v AS ({_VERSION_INSERT}
    SELECT id, user_id, version, 'forget', $3, $4, memory_type, '', confidence,
           importance, temporal_relevance, expires_at, '{{}}'
    FROM m
)
SELECT id FROM m
"""  # noqa: S608 - constant fragments

_LIST = f"""
SELECT {MEMORY_COLUMNS} FROM memories
WHERE user_id = $1 AND is_active AND {_NOT_EXPIRED}
  AND ($2 OR invalidated_at IS NULL)
  AND ($3::text[] IS NULL OR memory_type = ANY($3::text[]))
  AND ($4::bigint IS NULL OR id < $4)
ORDER BY id DESC
LIMIT $5
"""  # noqa: S608 - constant fragments

_COUNT = f"""
SELECT count(*) FROM memories
WHERE user_id = $1 AND is_active AND {_NOT_EXPIRED} AND ($2 OR invalidated_at IS NULL)
"""  # noqa: S608 - constant fragments

_HISTORY = f"""
SELECT {VERSION_COLUMNS} FROM memory_versions
WHERE user_id = $1 AND memory_id = $2
ORDER BY version
"""  # noqa: S608 - constant fragments

_EXISTS_FOR_HISTORY = f"SELECT 1 FROM memories WHERE user_id = $1 AND id = $2 AND {_NOT_EXPIRED}"  # noqa: S608

_FIND_SAME = f"""
SELECT {MEMORY_COLUMNS} FROM memories
WHERE user_id = $1 AND {_LIVE} AND lower(content) = lower($2)
ORDER BY id LIMIT 1
"""  # noqa: S608 - constant fragments


_REEMBED = """
UPDATE memories SET embedding = u.vec__VEC__, embedding_model = $4
FROM unnest($1::bigint[], $2::__ARRAY__, $3::text[]) AS u(id, vec, content)
WHERE memories.id = u.id AND ($5::bigint IS NULL OR memories.user_id = $5)
  AND memories.is_active AND memories.content = u.content
RETURNING memories.id
"""
_REEMBED_VECTOR = _REEMBED.replace("__VEC__", "::text::vector").replace("__ARRAY__", "text[]")
_REEMBED_BYTEA = _REEMBED.replace("__VEC__", "").replace("__ARRAY__", "bytea[]")


# The connection of the MemoryStore.transaction block the current task is in, with its
# database (a store on another database never uses it).
_BOUND: ContextVar[tuple[Database, asyncpg.Connection] | None] = ContextVar(
    "barkeeper_memory_transaction", default=None
)


def _vector_sql(sql: str, storage: VectorStorage) -> str:
    return sql.replace("__VEC__", "::real[]::vector" if storage == "vector" else "::bytea")


class MemoryStore:
    """Per-user memories in PostgreSQL, with versions, validity, expiry and search.

    Args:
        db: The database (migrated).
        embedder: Makes the vectors stored with each memory and each query. Vectors
            are compared only with vectors of the same :attr:`Embedder.name`; rows
            embedded by another are found by full text until :meth:`reembed`.
        weights: How searches fuse their signals (:class:`~barkeeper.retrieval.Weights`).

    Every method takes the internal ``users.id`` first and touches only that user's
    rows. Errors: :class:`InvalidInputError` for bad arguments (nothing written),
    :class:`NotFoundError` for a memory that is not that user's (or is gone, expired,
    or not in the state the operation needs), :class:`~barkeeper.errors.DatabaseError`
    subclasses for the database.

    Example::

        store = MemoryStore(db, MiniLMEmbedder())
        tea = await store.add(user_id, "Loves green tea", memory_type="preference")
        await store.update(user_id, tea.id, content="Loves oolong tea", reason="corrected")
        hits = await store.search(user_id, "what does she drink?", k=5, token_budget=200)
    """

    def __init__(
        self, db: Database, embedder: Embedder, *, weights: Weights = DEFAULT_MEMORY_WEIGHTS
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._weights = weights
        self._storage: VectorStorage | None = None

    def __repr__(self) -> str:
        return f"<MemoryStore db={self._db!r} embedder={self._embedder.name!r}>"

    @property
    def embedder(self) -> Embedder:
        """The embedder this store uses."""
        return self._embedder

    # --- transactions ---------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """Make every change of this store inside the block one transaction: all or nothing.

        Inside the block, every method of a store on the same database, called from
        this task, runs on one connection in one transaction, committed when the
        block ends and rolled back if it raises. Each method still runs in its own
        savepoint, so one that raises (e.g. :class:`NotFoundError`) undoes only its
        own work and, if the error is caught, the block may go on. Blocks nest
        (the inner one is a savepoint).

        Don't await anything slow inside (a model call, an embedding: pass the
        vectors, or ``embed=False``): the transaction holds a pooled connection and
        its row locks until it ends. Tasks started inside inherit the connection:
        don't use the store from several of them at once.

        Yields:
            The connection the block runs on, for the caller's own statements in the
            same transaction (e.g. marking a queued item done with the memories it
            produced).

        Raises:
            DatabaseError: The database failed (nothing of the block was written).

        Example::

            async with store.transaction():
                await store.invalidate(user_id, old.id, reason="moved")
                await store.add(user_id, "Lives in Lyon", memory_type="location")
        """
        bound = _BOUND.get()
        if bound is not None and bound[0] is self._db:
            async with bound[1].transaction():
                yield bound[1]
            return
        async with self._db.transaction() as conn:
            token = _BOUND.set((self._db, conn))
            try:
                yield conn
            finally:
                _BOUND.reset(token)

    @asynccontextmanager
    async def _connection(self, *, atomic: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """The connection of the enclosing :meth:`transaction` (in a savepoint), else a
        pooled one (in a transaction of its own when ``atomic``)."""
        bound = _BOUND.get()
        if bound is not None and bound[0] is self._db:
            async with bound[1].transaction():
                yield bound[1]
        elif atomic:
            async with self._db.transaction() as conn:
                yield conn
        else:
            async with self._db.acquire() as conn:
                yield conn

    # --- helpers --------------------------------------------------------------------------

    async def _get_storage(self, conn: asyncpg.Connection) -> VectorStorage:
        if self._storage is None:
            self._storage = await get_vector_storage(conn)
        return self._storage

    def _check_embedding(self, embedding: Sequence[float]) -> list[float]:
        return check_vector(self._embedder, embedding, "embedding")

    async def _embed(self, text: str) -> list[float] | None:
        """The unit vector of ``text``, or ``None`` (logged) when the embedder fails.

        The memory is then stored without a vector (full-text search still finds it)
        and :meth:`reembed` fills it in later: an embedding outage loses nothing.
        """
        try:
            vectors = await self._embedder.embed([text])
            return self._check_embedding(vectors[0])
        except (BarkeeperError, OSError, TimeoutError) as exc:
            _log.warning("embedding failed (%s); memory stored without a vector", exc)
            return None

    @staticmethod
    def _encode(storage: VectorStorage, vector: list[float] | None) -> Any:
        if vector is None:
            return None
        return vector if storage == "vector" else vector_to_bytes(vector)

    @staticmethod
    def _labels(changed_by: object, reason: object) -> tuple[str, str | None]:
        who = clean_text(changed_by, "changed_by", max_chars=_MAX_LABEL_CHARS)
        why = None
        if reason is not None:
            why = clean_text(reason, "reason", max_chars=_MAX_REASON_CHARS, allow_empty=True)
        return who, why or None

    # --- writing --------------------------------------------------------------------------

    async def add(
        self,
        user_id: int,
        content: str,
        *,
        memory_type: MemoryType = "general",
        confidence: float = 1.0,
        importance: float = 0.5,
        temporal_relevance: TemporalRelevance = "timeless",
        source: str = "conversation",
        source_message_ids: Sequence[int] = (),
        extraction_context: str | None = None,
        guild_id: int | None = None,
        expires_at: datetime | None = None,
        valid_from: datetime | None = None,
        embedding: Sequence[float] | None = None,
        embed: bool = True,
        changed_by: str = "system",
        reason: str | None = None,
    ) -> Memory:
        """Add a memory for a user (version 1, change ``add``).

        Args:
            user_id: The internal ``users.id``.
            content: The fact (at most :data:`MAX_CONTENT_CHARS` characters).
            memory_type: One of :data:`~barkeeper.memory._models.MEMORY_TYPES`.
            confidence: How sure the source is, 0..1.
            importance: How much it matters, 0..1.
            temporal_relevance: ``past``, ``present``, ``future`` or ``timeless``.
            source: Where it came from (``conversation``, ``explicit``, ``cli`` …).
            source_message_ids: Discord message ids it was learnt from.
            extraction_context: What the extractor read, kept for audit.
            guild_id: The guild it was learnt in.
            expires_at: From then on it is never returned (timezone-aware).
            valid_from: Since when it holds; now by default.
            embedding: Its vector if already computed with this store's embedder
                (saves a second embedding call during consolidation).
            embed: Without ``embedding``, ask the embedder for one; ``False`` stores
                the memory without a vector (:meth:`reembed` fills it in later), for
                callers that already tried, or that hold a :meth:`transaction`.
            changed_by: Who or what added it (``extraction``, ``user``, ``cli`` …).
            reason: Why, for the history.

        Returns:
            The stored memory.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: No user has this id.
        """
        uid = check_id(user_id, "user_id")
        text = clean_text(content, "content", max_chars=MAX_CONTENT_CHARS)
        kind = check_choice(memory_type, "memory_type", MEMORY_TYPES)
        conf = check_unit(confidence, "confidence")
        imp = check_unit(importance, "importance")
        when = check_choice(temporal_relevance, "temporal_relevance", TEMPORAL_RELEVANCES)
        src = clean_text(source, "source", max_chars=_MAX_LABEL_CHARS)
        sources = check_ids(source_message_ids, "source_message_ids", limit=_MAX_SOURCES)
        context = None
        if extraction_context is not None:
            context = clean_text(
                extraction_context,
                "extraction_context",
                max_chars=_MAX_CONTEXT_CHARS,
                allow_empty=True,
            )
        guild = check_id(guild_id, "guild_id") if guild_id is not None else None
        expiry = check_timestamp(expires_at, "expires_at") if expires_at is not None else None
        start = check_timestamp(valid_from, "valid_from") if valid_from is not None else None
        who, why = self._labels(changed_by, reason)
        vector = self._check_embedding(embedding) if embedding is not None else None
        if vector is None and embed:
            vector = await self._embed(text)
        async with self._connection() as conn:
            storage = await self._get_storage(conn)
            try:
                row = await conn.fetchrow(
                    _vector_sql(_ADD, storage),
                    uid,
                    kind,
                    text,
                    conf,
                    imp,
                    when,
                    src,
                    list(sources),
                    context or None,
                    guild,
                    expiry,
                    start,
                    self._encode(storage, vector),
                    self._embedder.name if vector is not None else None,
                    who,
                    why,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFoundError(f"no user with id {uid}") from exc
        assert row is not None
        return memory_from_row(row)

    async def remember(
        self,
        user_id: int,
        content: str,
        *,
        memory_type: MemoryType = "general",
        importance: float = 0.8,
        temporal_relevance: TemporalRelevance = "timeless",
        expires_at: datetime | None = None,
        source_message_ids: Sequence[int] = (),
        guild_id: int | None = None,
    ) -> Memory:
        """Store what the user explicitly asked to be remembered ("remember that …").

        Source ``explicit``, confidence 1, added by ``user``. If the user already has
        a live memory with the same text (ignoring case), that one is returned and
        nothing is added.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: No user has this id.
        """
        uid = check_id(user_id, "user_id")
        text = clean_text(content, "content", max_chars=MAX_CONTENT_CHARS)
        async with self._connection() as conn:
            row = await conn.fetchrow(_FIND_SAME, uid, text)
        if row is not None:
            return memory_from_row(row)
        return await self.add(
            uid,
            text,
            memory_type=memory_type,
            confidence=1.0,
            importance=importance,
            temporal_relevance=temporal_relevance,
            source="explicit",
            source_message_ids=source_message_ids,
            guild_id=guild_id,
            expires_at=expires_at,
            changed_by="user",
            reason="asked to remember",
        )

    async def update(
        self,
        user_id: int,
        memory_id: int,
        *,
        content: str | None = None,
        memory_type: MemoryType | None = None,
        confidence: float | None = None,
        importance: float | None = None,
        temporal_relevance: TemporalRelevance | None = None,
        expires_at: datetime | _Unset | None = UNSET,
        add_source_message_ids: Sequence[int] = (),
        extraction_context: str | _Unset | None = UNSET,
        embedding: Sequence[float] | None = None,
        embed: bool = True,
        changed_by: str = "system",
        reason: str | None = None,
    ) -> Memory:
        """Change a valid memory in place; the new state becomes its next version.

        Arguments left out keep their value; ``expires_at=None`` removes an expiry.
        A new ``content`` gets a new vector. If nothing would change, nothing is
        written and the memory is returned as it is.

        Args:
            user_id: The owner.
            memory_id: The memory.
            content: New text.
            memory_type: New type.
            confidence: New confidence, 0..1.
            importance: New importance, 0..1.
            temporal_relevance: New temporal relevance.
            expires_at: New expiry (timezone-aware) or ``None`` for none.
            add_source_message_ids: Message ids to add to its sources.
            extraction_context: New extraction context, or ``None`` to clear it.
            embedding: The new content's vector if already computed.
            embed: As for :meth:`add`: ``False`` leaves new content without a
                vector rather than asking the embedder.
            changed_by: Who or what changed it.
            reason: Why, for the history.

        Returns:
            The memory after the change.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such memory that is valid (not forgotten,
                invalidated or expired).
        """
        uid = check_id(user_id, "user_id")
        mid = check_id(memory_id, "memory_id")
        text = (
            clean_text(content, "content", max_chars=MAX_CONTENT_CHARS)
            if content is not None
            else None
        )
        kind = (
            check_choice(memory_type, "memory_type", MEMORY_TYPES)
            if memory_type is not None
            else None
        )
        conf = real(check_unit(confidence, "confidence")) if confidence is not None else None
        imp = real(check_unit(importance, "importance")) if importance is not None else None
        when = (
            check_choice(temporal_relevance, "temporal_relevance", TEMPORAL_RELEVANCES)
            if temporal_relevance is not None
            else None
        )
        if expires_at is not UNSET and expires_at is not None:
            check_timestamp(expires_at, "expires_at")
        if extraction_context is not UNSET and extraction_context is not None:
            extraction_context = clean_text(
                extraction_context,
                "extraction_context",
                max_chars=_MAX_CONTEXT_CHARS,
                allow_empty=True,
            )
        new_sources = check_ids(add_source_message_ids, "add_source_message_ids")
        who, why = self._labels(changed_by, reason)
        vector = None
        if embedding is not None:
            if text is None:
                raise InvalidInputError("an embedding can only be given with new content")
            vector = self._check_embedding(embedding)
        elif text is not None and embed:
            vector = await self._embed(text)
        async with self._connection(atomic=True) as conn:
            storage = await self._get_storage(conn)
            row = await conn.fetchrow(_LOCK_LIVE, uid, mid)
            if row is None:
                raise NotFoundError(f"user {uid} has no valid memory {mid}")
            current = memory_from_row(row)
            sources = tuple(dict.fromkeys(current.source_message_ids + new_sources))
            if len(sources) > _MAX_SOURCES:
                sources = sources[-_MAX_SOURCES:]
            after = {
                "memory_type": kind or current.memory_type,
                "content": text if text is not None else current.content,
                "confidence": conf if conf is not None else current.confidence,
                "importance": imp if imp is not None else current.importance,
                "temporal_relevance": when or current.temporal_relevance,
                "expires_at": current.expires_at if expires_at is UNSET else expires_at,
                "source_message_ids": sources,
                "extraction_context": (
                    current.extraction_context
                    if extraction_context is UNSET
                    else (extraction_context or None)
                ),
            }
            if all(getattr(current, name) == value for name, value in after.items()):
                return current
            new_content = after["content"] != current.content
            if new_content:
                # A vector of the old text would mislead searches: none until reembed.
                encoded = self._encode(storage, vector)
                model = self._embedder.name if vector is not None else None
            else:
                encoded, model = None, None
            updated = await conn.fetchrow(
                _vector_sql(_UPDATE, storage),
                uid,
                mid,
                after["memory_type"],
                after["content"],
                after["confidence"],
                after["importance"],
                after["temporal_relevance"],
                after["expires_at"],
                list(sources),
                after["extraction_context"],
                new_content,
                encoded,
                model,
                who,
                why,
            )
        assert updated is not None
        return memory_from_row(updated)

    async def invalidate(
        self,
        user_id: int,
        memory_id: int,
        *,
        changed_by: str = "system",
        reason: str | None = None,
    ) -> Memory:
        """Close a contradicted memory: kept with its history, no longer searched.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such valid memory.
        """
        return await self._change(_INVALIDATE, user_id, memory_id, changed_by, reason, "valid")

    async def restore(
        self,
        user_id: int,
        memory_id: int,
        *,
        changed_by: str = "system",
        reason: str | None = None,
    ) -> Memory:
        """Reopen an invalidated memory.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such invalidated (and unexpired) memory.
        """
        return await self._change(_RESTORE, user_id, memory_id, changed_by, reason, "invalidated")

    async def _change(
        self,
        sql: str,
        user_id: int,
        memory_id: int,
        changed_by: str,
        reason: str | None,
        state: str,
    ) -> Memory:
        uid = check_id(user_id, "user_id")
        mid = check_id(memory_id, "memory_id")
        who, why = self._labels(changed_by, reason)
        async with self._connection() as conn:
            row = await conn.fetchrow(sql, uid, mid, who, why)
        if row is None:
            raise NotFoundError(f"user {uid} has no {state} memory {mid}")
        return memory_from_row(row)

    async def forget(
        self,
        user_id: int,
        memory_id: int,
        *,
        changed_by: str = "user",
        reason: str | None = None,
    ) -> None:
        """Erase a memory at the user's request.

        Its text, vector, sources and extraction context, and the text and reasons
        of all its earlier versions, are scrubbed in one statement; the row stays as
        an inactive tombstone with a ``forget`` version, so history shows that a
        memory was forgotten and when, never what it said. Works on invalidated and
        expired memories too. Never returned by any read afterwards.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such memory (or it is already forgotten).
        """
        uid = check_id(user_id, "user_id")
        mid = check_id(memory_id, "memory_id")
        who, why = self._labels(changed_by, reason)
        async with self._connection() as conn:
            forgotten = await conn.fetchval(_FORGET, uid, mid, who, why)
        if forgotten is None:
            raise NotFoundError(f"user {uid} has no memory {mid}")

    async def forget_all(self, user_id: int) -> int:
        """Delete every memory of the user and every version of them.

        Unlike :meth:`forget`, no tombstones remain.

        Returns:
            How many memories were deleted (tombstones included).

        Raises:
            InvalidInputError: ``user_id`` is invalid.
        """
        uid = check_id(user_id, "user_id")
        async with self._connection() as conn:
            status = await conn.execute("DELETE FROM memories WHERE user_id = $1", uid)
        return int(status.split()[-1])

    async def mark_referenced(self, user_id: int, memory_ids: Sequence[int]) -> int:
        """Record that these memories were just put into a prompt (no new version).

        Returns:
            How many of them are the user's active memories.
        """
        uid = check_id(user_id, "user_id")
        ids = check_ids(memory_ids, "memory_ids")
        if not ids:
            return 0
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE memories SET last_referenced_at = now() "
                "WHERE user_id = $1 AND id = ANY($2::bigint[]) AND is_active",
                uid,
                list(ids),
            )
        return int(status.split()[-1])

    async def reembed(self, user_id: int | None = None, *, batch_size: int = 64) -> int:
        """Give a vector from this store's embedder to every active memory lacking one.

        Fills memories stored while the embedder was failing and those embedded by
        another embedder. Walks the table by id (the primary key), ``batch_size``
        memories per embedding call; one user's only when ``user_id`` is given.

        Returns:
            How many memories got a new vector.

        Raises:
            InvalidInputError: An argument is invalid.
            BarkeeperError: The embedder failed (what was done so far is kept).
        """
        uid = check_id(user_id, "user_id") if user_id is not None else None
        size = check_int_range(batch_size, "batch_size", 1, 10_000)
        name = self._embedder.name
        done, cursor = 0, 0
        while True:
            async with self._connection() as conn:
                storage = await self._get_storage(conn)
                rows = await conn.fetch(
                    "SELECT id, user_id, content FROM memories "
                    "WHERE id > $1 AND ($2::bigint IS NULL OR user_id = $2) AND is_active "
                    "AND content <> '' AND embedding_model IS DISTINCT FROM $3 "
                    "ORDER BY id LIMIT $4",
                    cursor,
                    uid,
                    name,
                    size,
                )
            if not rows:
                return done
            cursor = rows[-1]["id"]
            vectors = [
                self._check_embedding(v)
                for v in await self._embedder.embed([r["content"] for r in rows])
            ]
            encoded = [
                vector_to_literal(v) if storage == "vector" else vector_to_bytes(v) for v in vectors
            ]
            async with self._connection() as conn:
                # content = u.content: a memory edited meanwhile keeps its own vector.
                result = await conn.fetch(
                    _REEMBED_VECTOR if storage == "vector" else _REEMBED_BYTEA,
                    [r["id"] for r in rows],
                    encoded,
                    [r["content"] for r in rows],
                    name,
                    uid,
                )
            done += len(result)

    # --- reading --------------------------------------------------------------------------

    async def get(self, user_id: int, memory_id: int) -> Memory:
        """One memory of the user, valid or invalidated (not forgotten, not expired).

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such memory.
        """
        uid = check_id(user_id, "user_id")
        mid = check_id(memory_id, "memory_id")
        async with self._connection() as conn:
            row = await conn.fetchrow(_GET, uid, mid)
        if row is None:
            raise NotFoundError(f"user {uid} has no memory {mid}")
        return memory_from_row(row)

    async def list_memories(
        self,
        user_id: int,
        *,
        memory_types: Sequence[MemoryType] | None = None,
        include_invalid: bool = False,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Memory]:
        """The user's memories, newest first (one page).

        Args:
            user_id: The owner.
            memory_types: Only these types.
            include_invalid: Include invalidated memories.
            limit: At most this many (1..1000).
            before_id: Only memories with a smaller id (the last id of the previous page).

        Raises:
            InvalidInputError: An argument is invalid.
        """
        uid = check_id(user_id, "user_id")
        types = None
        if memory_types is not None:
            if isinstance(memory_types, str):
                raise InvalidInputError("memory_types must be a sequence of types")
            types = [check_choice(t, "memory_types", MEMORY_TYPES) for t in memory_types]
        size = check_int_range(limit, "limit", 1, 1000)
        before = check_id(before_id, "before_id") if before_id is not None else None
        async with self._connection() as conn:
            rows = await conn.fetch(_LIST, uid, bool(include_invalid), types, before, size)
        return [memory_from_row(r) for r in rows]

    async def iter_memories(
        self,
        user_id: int,
        *,
        memory_types: Sequence[MemoryType] | None = None,
        include_invalid: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[Memory]:
        """All the user's memories, newest first, fetched ``page_size`` at a time."""
        before: int | None = None
        while True:
            page = await self.list_memories(
                user_id,
                memory_types=memory_types,
                include_invalid=include_invalid,
                limit=page_size,
                before_id=before,
            )
            for memory in page:
                yield memory
            if len(page) < page_size:
                return
            before = page[-1].id

    async def count(self, user_id: int, *, include_invalid: bool = False) -> int:
        """How many memories the user has (valid ones, or also invalidated ones)."""
        uid = check_id(user_id, "user_id")
        async with self._connection() as conn:
            return int(await conn.fetchval(_COUNT, uid, bool(include_invalid)))

    async def history(self, user_id: int, memory_id: int) -> list[MemoryVersion]:
        """Every version of one of the user's memories, oldest first.

        A forgotten memory's history has its kinds and times but no text.

        Raises:
            InvalidInputError: An argument is invalid.
            NotFoundError: The user has no such memory, or it has expired.
        """
        uid = check_id(user_id, "user_id")
        mid = check_id(memory_id, "memory_id")
        async with self._connection() as conn:
            if await conn.fetchval(_EXISTS_FOR_HISTORY, uid, mid) is None:
                raise NotFoundError(f"user {uid} has no memory {mid}")
            rows = await conn.fetch(_HISTORY, uid, mid)
        return [version_from_row(r) for r in rows]

    async def search(
        self,
        user_id: int,
        query: str,
        *,
        k: int = 10,
        token_budget: int | None = None,
        mode: SearchMode = "hybrid",
        memory_types: Sequence[MemoryType] | None = None,
        query_embedding: Sequence[float] | None = None,
        weights: Weights | None = None,
    ) -> list[Hit[Memory]]:
        """The user's valid memories most relevant to ``query``, best first.

        Args:
            user_id: The owner: only their memories are read.
            query: What to look for (e.g. the message being answered).
            k: At most this many hits (1..200).
            token_budget: The hits' texts together cost at most this many tokens.
            mode: ``hybrid`` (default), or ``fulltext`` / ``vector`` alone.
            memory_types: Only these types.
            query_embedding: The query's vector if already computed.
            weights: Override the store's fusion weights.

        Returns:
            Hits with their memory, score components and token cost.

        Raises:
            InvalidInputError: An argument is invalid.
        """
        uid = check_id(user_id, "user_id")
        text, top, budget, chosen = check_search_args(query, k, token_budget, mode)
        types = None
        if memory_types is not None:
            if isinstance(memory_types, str):
                raise InvalidInputError("memory_types must be a sequence of types")
            types = [check_choice(t, "memory_types", MEMORY_TYPES) for t in memory_types]
        use = weights or self._weights
        vector = await query_vector(
            self._embedder, text, mode=chosen, query_embedding=query_embedding
        )
        async with self._connection() as conn:
            storage = await self._get_storage(conn)
            rows = await search_rows(
                conn,
                table=_SEARCH_TABLE,
                storage=storage,
                owner=uid,
                query=text,
                vector=vector,
                embedder_name=self._embedder.name,
                weights=use,
                k=top,
                memory_types=types,
            )
        scored = rerank(
            fuse(rows, mode=chosen, weights=use, query=text, time_column="valid_from"),
            weights=use,
            time_column="valid_from",
        )
        return apply_token_budget(
            scored,
            k=top,
            token_budget=budget,
            build=memory_from_row,
            text_of=lambda memory: memory.content,
        )

    async def similar(
        self,
        user_id: int,
        text: str,
        *,
        k: int = 10,
        embedding: Sequence[float] | None = None,
    ) -> list[Hit[Memory]]:
        """The user's valid memories closest to ``text``, for consolidation.

        Ranked by meaning and shared words only (no importance or recency).
        ``hit.parts.vector`` is the cosine similarity and ``hit.parts.text`` the
        BM25 score, for thresholds. Costs one embedding unless ``embedding`` is
        given, and never more than ``k`` rows, however many memories the user has.

        Raises:
            InvalidInputError: An argument is invalid.
        """
        base = self._weights
        weights = Weights(
            text=base.text,
            vector=base.vector,
            importance=0.0,
            recency=0.0,
            k1=base.k1,
            b=base.b,
            candidates=base.candidates,
        )
        return await self.search(
            user_id, text, k=k, mode="hybrid", query_embedding=embedding, weights=weights
        )
