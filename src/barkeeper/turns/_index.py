"""Search over raw turns: the Discord message cache, or any transcript, by scope.

:class:`MessageIndex` keeps a searchable copy of turns in ``message_index``: the text
as a prompt would show it (``"speaker: text"``), its vector (of that text alone), the
vectors of its pieces (its sentences, see :mod:`barkeeper.turns._pieces`; a search's
vector signal for the turn is the mean of its own cosine and the best among it and its
pieces), and a full-text vector of the text and, at a lower weight, of its context: the neighbouring
turns (a question is often answered in the turn after the one that shares its words,
and a short reply says what it is about only next to them) and the month and year it
was said in, as words. The context is searched, never shown. A *scope* is what one search may see (a
channel, a user's conversation with the bot, a transcript); the caller chooses it,
and a search reads that scope's rows only.

Turns from the Discord cache reference their message and the message their context
came from, so deleting either (an edit-delete event, or privacy's forget) deletes
the indexed turn with it. :meth:`MessageIndex.sync_discord_channel` (re)indexes what
the cache holds that the index lacks or holds stale.

Retrieval is that of :mod:`barkeeper.retrieval._search` (no importance; little
recency). This module never calls a language model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from barkeeper.db import Database
from barkeeper.embeddings import Embedder
from barkeeper.errors import BarkeeperError, InvalidInputError
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.retrieval import (
    DEFAULT_TURN_WEIGHTS,
    Hit,
    SearchMode,
    SearchTable,
    VectorStorage,
    Weights,
    apply_token_budget,
    check_search_args,
    embed_query,
    fuse,
    get_vector_storage,
    normalise_vector,
    query_vector,
    rerank,
    search_rows,
    vector_to_bytes,
    vector_to_literal,
)
from barkeeper.turns._models import TURN_COLUMNS, IndexedTurn, Turn, turn_from_row
from barkeeper.turns._names import without_speakers
from barkeeper.turns._pieces import pieces
from barkeeper.validation import check_aware as check_timestamp
from barkeeper.validation import check_id, check_int_range, clean_text

__all__ = [
    "MAX_TURN_CHARS",
    "ChannelIndexCounts",
    "MessageIndex",
    "count_channel_index",
    "discord_channel_scope",
]

_log = logging.getLogger(__name__)

MAX_TURN_CHARS = 20_000
"""Longest turn text accepted."""
_MAX_SCOPE_CHARS = 200
_MAX_LABEL_CHARS = 200
_MAX_CONTEXT_CHARS = 1_000
_MAX_BATCH = 10_000
_DISCORD_BEFORE = 2
"""Messages before a Discord message in its context (one after it), as add_turns's default."""
_CHANNEL_PREFIX = "discord:channel:"

# What a search of one scope reads: its rows.
_SEARCH_TABLE = SearchTable(
    name="message_index",
    alias="m",
    columns=TURN_COLUMNS,
    owner_type="text",
    filter="\n    WHERE m.scope = $1\n",
    recency_column="occurred_at",
    pieces_column="piece_embeddings",
)


_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _date_words(when: datetime | None) -> str:
    """A turn's month and year as words ("May 2023"), whatever the locale; "" without."""
    return "" if when is None else f"{_MONTH_NAMES[when.month - 1]} {when.year}"


def _context_text(before: Sequence[str], after: Sequence[str], when: datetime | None) -> str:
    """A turn's searched context: the turns before it, those after it, its month and year.

    Each side keeps at most :data:`_MAX_CONTEXT_CHARS` characters, those nearest the turn.
    """
    parts = [
        "\n".join(before)[-_MAX_CONTEXT_CHARS:],
        "\n".join(after)[:_MAX_CONTEXT_CHARS],
        _date_words(when),
    ]
    return "\n".join(part for part in parts if part)


def discord_channel_scope(channel_id: int) -> str:
    """The scope :meth:`MessageIndex.sync_discord_channel` indexes a channel under."""
    return f"{_CHANNEL_PREFIX}{check_id(channel_id, 'channel_id')}"


# The scopes of Discord channels, by a loose scan of an index leading with scope, one
# probe per scope (2 ms for 300 scopes); then their turns and those without a vector,
# counted from indexes only (33 ms for 300,000 turns; 0.1 ms through
# ix_message_index_unembedded, schema v10).
_CHANNEL_SCOPES = """
WITH RECURSIVE s AS (
    (SELECT scope FROM message_index ORDER BY scope LIMIT 1)
    UNION ALL
    SELECT (SELECT m.scope FROM message_index m WHERE m.scope > s.scope
            ORDER BY m.scope LIMIT 1)
    FROM s WHERE s.scope IS NOT NULL
)
SELECT scope FROM s WHERE starts_with(scope, $1)
"""
_COUNT_TURNS = "SELECT count(*) FROM message_index WHERE scope = ANY($1::text[])"
_COUNT_WITHOUT_VECTOR = """
SELECT count(*) FROM message_index WHERE scope = ANY($1::text[]) AND embedding IS NULL
"""


@dataclass(frozen=True, slots=True)
class ChannelIndexCounts:
    """What the turn index holds of Discord channels (see :func:`count_channel_index`)."""

    channels: int
    """Channels with turns indexed."""
    turns: int
    """Their turns."""
    without_vector: int
    """Their turns stored without any vector (the embedder failed when they were
    written; found by their words only until :meth:`MessageIndex.reembed`)."""


async def count_channel_index(db: Database) -> ChannelIndexCounts:
    """Count the Discord channels' turns in the index, and those without a vector.

    Read from indexes only (schema v10 or later): about 0.1 s per million turns. Turns
    with another embedder's vector are not told apart (that would read every row).
    """
    async with db.acquire() as conn:
        scopes = [r["scope"] for r in await conn.fetch(_CHANNEL_SCOPES, _CHANNEL_PREFIX)]
        turns = await conn.fetchval(_COUNT_TURNS, scopes)
        without = await conn.fetchval(_COUNT_WITHOUT_VECTOR, scopes)
    return ChannelIndexCounts(channels=len(scopes), turns=int(turns), without_vector=int(without))


@dataclass(frozen=True, slots=True)
class _Row:
    source_id: str
    discord_message_id: int | None
    context_message_id: int | None
    context_source_ids: list[str]
    user_id: int | None
    position: int
    speaker: str
    content: str
    context: str
    occurred_at: datetime | None
    pieces: tuple[str, ...] = ()
    """The texts of the turn's pieces (its sentences, see :func:`pieces`), or none."""


def _encode_pieces(units: Sequence[Sequence[float]], storage: VectorStorage) -> str | bytes:
    """A turn's piece vectors as the upsert takes them: a ``vector[]`` literal
    (``{"[…]","[…]"}``, cast in SQL), or their float32 bytes one after another."""
    if storage == "vector":
        return "{" + ",".join(f'"{vector_to_literal(u)}"' for u in units) + "}"
    return b"".join(vector_to_bytes(u) for u in units)


def _is_stale(
    message: StoredMessage, quoted: Sequence[StoredMessage], indexed: asyncpg.Record | None
) -> bool:
    """Whether the index lacks ``message`` or holds it stale.

    Stale: the message was edited since it was indexed, its context quotes other
    messages now (a message arrived after it, one before it was deleted), or one of
    those was edited since.
    """
    if indexed is None:
        return True
    at = indexed["indexed_at"]
    return (
        (message.edited_at is not None and message.edited_at > at)
        or list(indexed["context_source_ids"]) != [str(q.message_id) for q in quoted]
        or any(q.edited_at is not None and q.edited_at > at for q in quoted)
    )


# A row's piece vectors ($14) travel as one value per row: with pgvector, the text
# literal of its vector[] (an array of arrays cannot be unnested row by row), else
# their bytes; NULL without pieces or without a vector.
_UPSERT = """
INSERT INTO message_index (scope, source_id, discord_message_id, context_message_id,
    position, speaker, content, context, occurred_at, embedding, embedding_model, indexed_at,
    user_id, context_source_ids, piece_embeddings)
SELECT $1, u.source_id, u.discord_message_id, u.context_message_id, u.position, u.speaker,
       u.content, u.context, u.occurred_at, u.vec__VEC__,
       CASE WHEN u.vec IS NULL THEN NULL ELSE $11 END, now(), u.user_id,
       -- the turns quoted in the context: deleting one clears this row's context
       ARRAY(SELECT jsonb_array_elements_text(u.sources::jsonb)),
       CASE WHEN u.vec IS NOT NULL THEN u.pieces__PIECES__ END
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[], $10::__ARRAY__, $12::bigint[], $13::text[],
            $14::__ARRAY__)
     AS u(source_id, discord_message_id, context_message_id, position, speaker, content,
          context, occurred_at, vec, user_id, sources, pieces)
ON CONFLICT (scope, source_id) DO UPDATE SET
    discord_message_id = EXCLUDED.discord_message_id,
    context_message_id = EXCLUDED.context_message_id,
    user_id = EXCLUDED.user_id, context_source_ids = EXCLUDED.context_source_ids,
    speaker = EXCLUDED.speaker, content = EXCLUDED.content, context = EXCLUDED.context,
    occurred_at = EXCLUDED.occurred_at, embedding = EXCLUDED.embedding,
    embedding_model = EXCLUDED.embedding_model,
    piece_embeddings = EXCLUDED.piece_embeddings, indexed_at = now()
RETURNING source_id
"""
_UPSERT_VECTOR = (
    _UPSERT.replace("__VEC__", "::vector")
    .replace("__PIECES__", "::vector[]")
    .replace("__ARRAY__", "text[]")
)
_UPSERT_BYTEA = (
    _UPSERT.replace("__VEC__", "").replace("__PIECES__", "").replace("__ARRAY__", "bytea[]")
)

# The stored vectors (whole and pieces) of turns about to be written again with the same
# text, by this index's embedder.
_KEPT = """
SELECT m.source_id, m.embedding__TEXT__ AS vec, m.piece_embeddings__TEXT__ AS pieces
FROM message_index m
JOIN unnest($2::text[], $3::text[]) AS u(source_id, content)
  ON m.source_id = u.source_id AND m.content = u.content
WHERE m.scope = $1 AND m.embedding IS NOT NULL AND m.embedding_model = $4
"""
_KEPT_VECTOR = _KEPT.replace("__TEXT__", "::text")
_KEPT_BYTEA = _KEPT.replace("__TEXT__", "")

# What the index holds of one page of a channel: when each turn was indexed and which
# messages its context quotes.
_INDEXED = """
SELECT source_id, indexed_at, context_source_ids FROM message_index
WHERE scope = $1 AND source_id = ANY($2::text[])
"""


def _text_of(speaker: str, content: str) -> str:
    """A stored turn's text: its ``content`` without the ``"speaker: "`` it starts with."""
    prefix = f"{speaker}: "
    return content[len(prefix) :] if speaker and content.startswith(prefix) else content


def _stored_pieces(row: asyncpg.Record) -> list[str]:
    """The pieces of a stored turn (a row with ``speaker`` and ``content``)."""
    return pieces(row["speaker"], _text_of(row["speaker"], row["content"]))


# The names a search's query may name: the scope's speakers, by a loose scan of
# ix_message_index_scope_speaker (schema v9), one probe per speaker, the first 1,000
# (a DISTINCT reads every row: 38 ms for a scope of 100,000 turns against 1 ms).
_SPEAKERS = """
WITH RECURSIVE s AS (
    (SELECT speaker FROM message_index WHERE scope = $1 ORDER BY speaker LIMIT 1)
    UNION ALL
    SELECT (SELECT m.speaker FROM message_index m
            WHERE m.scope = $1 AND m.speaker > s.speaker ORDER BY m.speaker LIMIT 1)
    FROM s WHERE s.speaker IS NOT NULL
)
SELECT speaker FROM s WHERE speaker IS NOT NULL LIMIT 1000
"""


# What reembed and add_pieces look for (``$3``: the index's embedder). A turn stored
# without any vector (the embedder failed) is in ix_message_index_unembedded (schema v10).
_LACKS_VECTOR = "embedding_model IS DISTINCT FROM $3"
_LACKS_ANY_VECTOR = "embedding IS NULL AND embedding_model IS DISTINCT FROM $3"
_LACKS_PIECES = "embedding_model = $3 AND piece_embeddings IS NULL"

# A page of the turns lacking something, in id order: of one scope, read through an
# index that leads with scope (one query for both, "$2 IS NULL OR scope = $2", ran
# through the primary key filtered by scope once prepared: 300 ms for a scope of a
# table of 300,000 turns, against 0.05 ms through ix_message_index_unembedded); or of
# all ($2 is NULL).
_PAGE_OF_SCOPE = """
SELECT id, speaker, content FROM message_index
WHERE scope = $2 AND id > $1 AND __LACKING__ ORDER BY id LIMIT $4
"""
_PAGE_OF_ALL = """
SELECT id, speaker, content FROM message_index
WHERE id > $1 AND $2::text IS NULL AND __LACKING__ ORDER BY id LIMIT $4
"""


class _MessagesGone(Exception):
    """Cached messages a write referenced were deleted before it (nothing was written)."""

    def __init__(self, message_ids: set[int]) -> None:
        super().__init__(f"{len(message_ids)} messages deleted meanwhile")
        self.message_ids = message_ids


class MessageIndex:
    """Hybrid search over turns, one scope at a time.

    Args:
        db: The database (migrated).
        embedder: Makes the turns' and queries' vectors.
        weights: How searches fuse their signals.
        pieces: Whether turns embedded from now on get piece vectors (their
            sentences', see :meth:`add_turns`). ``False`` embeds each turn once, for
            installations that mind the indexing cost (pieces about double the
            embedding work of chat turns) more than questions about one sentence of
            a long turn: :meth:`add_turns`, :meth:`sync_discord_channel` and
            :meth:`reembed` store every turn as a turn of one sentence is stored (no
            piece vectors; its vector signal is its own cosine), and
            :meth:`add_pieces` does nothing. Turns that already have piece vectors
            keep them (also when written again with the same text), and searches
            still use them (unless their weights say ``pieces=False``); nothing else
            about a search changes.

    Example::

        index = MessageIndex(db, MiniLMEmbedder())
        await index.add_turns("transcript:42", [Turn("1", "Ana", "I adopted a cat")])
        hits = await index.search("transcript:42", "does Ana have pets?", k=5)
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        weights: Weights = DEFAULT_TURN_WEIGHTS,
        pieces: bool = True,
    ) -> None:
        self._db = db
        self._cache = MessageStore(db)
        self._embedder = embedder
        self._weights = weights
        self._pieces = pieces
        self._storage: VectorStorage | None = None

    def __repr__(self) -> str:
        return f"<MessageIndex db={self._db!r} embedder={self._embedder.name!r}>"

    async def _get_storage(self, conn: asyncpg.Connection) -> VectorStorage:
        if self._storage is None:
            self._storage = await get_vector_storage(conn)
        return self._storage

    # --- writing --------------------------------------------------------------------------

    async def add_turns(
        self,
        scope: str,
        turns: Sequence[Turn],
        *,
        context_turns: int = 2,
        following_turns: int = 1,
    ) -> int:
        """Index turns under ``scope``, in the order given, after any already there.

        A turn whose ``source_id`` is already in the scope is replaced (its text,
        context and vector), keeping its position; one with the same text keeps its
        vector (indexing existing turns again for a new context embeds nothing).
        Unless a turn brings its own ``context``, its context (searched at a lower
        weight, never shown) is the ``context_turns`` turns before it and the
        ``following_turns`` turns after it in this batch, then its month and year in
        words ("May 2023") when it has an ``occurred_at``: a question's words are
        often in the turn before its answer, a short reply ("Yes, it was amazing!")
        says what it is about only next to its neighbours, and "in May 2023" then
        matches the turns of that month. Pass one conversation session per call to
        keep sessions apart. Vectors (of the turn alone, and of each of its pieces: its
        sentences, ``"speaker: sentence"``, at most 8, none for a turn of one
        sentence) are computed in one batch; a search's vector signal for a turn is
        ``(w + max(w, best piece cosine)) / 2``, ``w`` the whole turn's cosine, so a
        question about one sentence of a long turn finds it (an index made with
        ``pieces=False`` embeds the turn alone). A turn kept with the same text keeps
        its piece vectors too, or their absence (a turn indexed before schema v9, or
        without pieces, has none until :meth:`add_pieces`). If the embedder fails the
        turns are stored without vectors (logged) and found by full text until
        :meth:`reembed`. A turn whose ``user_id`` was forgotten after it was said is
        not stored, and no other turn's context quotes it.

        Args:
            scope: The scope (at most 200 characters).
            turns: Up to 10,000 turns with distinct ``source_id`` values.
            context_turns: How many preceding turns are in a turn's context (0..5).
            following_turns: How many following turns are in it (0..5).

        Returns:
            How many turns were written (not those of forgotten speakers).

        Raises:
            InvalidInputError: An argument or a turn is invalid (nothing is written).
        """
        where = clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS)
        window = check_int_range(context_turns, "context_turns", 0, 5)
        ahead = check_int_range(following_turns, "following_turns", 0, 5)
        if isinstance(turns, Turn) or not isinstance(turns, Sequence):
            raise InvalidInputError("turns must be a sequence of Turn")
        if len(turns) > _MAX_BATCH:
            raise InvalidInputError(f"at most {_MAX_BATCH} turns per call, not {len(turns)}")
        if not turns:
            return 0
        cleaned: list[tuple[Turn, str, str, str]] = []
        seen: set[str] = set()
        for n, turn in enumerate(turns):
            if not isinstance(turn, Turn):
                raise InvalidInputError(f"turn {n} is a {type(turn).__name__}, not a Turn")
            source = clean_text(turn.source_id, f"turn {n} source_id", max_chars=_MAX_LABEL_CHARS)
            if source in seen:
                raise InvalidInputError(f"turn {n}: source_id {source!r} appears twice")
            seen.add(source)
            speaker = clean_text(
                turn.speaker, f"turn {n} speaker", max_chars=_MAX_LABEL_CHARS, allow_empty=True
            )
            text = clean_text(turn.text, f"turn {n} text", max_chars=MAX_TURN_CHARS)
            if turn.occurred_at is not None:
                check_timestamp(turn.occurred_at, f"turn {n} occurred_at")
            if turn.discord_message_id is not None:
                check_id(turn.discord_message_id, f"turn {n} discord_message_id")
            if turn.user_id is not None:
                check_id(turn.user_id, f"turn {n} user_id")
            cleaned.append((turn, source, speaker, text))
        async with self._db.acquire() as conn:
            start = await conn.fetchval(
                "SELECT coalesce(max(position), 0) FROM message_index WHERE scope = $1", where
            )
        contents = [f"{speaker}: {text}" if speaker else text for _, _, speaker, text in cleaned]

        def rows_without(skipped: frozenset[str]) -> list[_Row]:
            """The rows, their contexts drawn from the turns not in ``skipped`` only."""
            live = [n for n, c in enumerate(cleaned) if c[1] not in skipped]
            rows: list[_Row] = []
            for k, n in enumerate(live):
                turn, source, speaker, text = cleaned[n]
                context_id = None
                quoted: list[str] = []
                if turn.context is not None:
                    context = clean_text(
                        turn.context,
                        f"turn {n} context",
                        max_chars=_MAX_CONTEXT_CHARS * 5,
                        allow_empty=True,
                    )
                else:
                    before = live[max(0, k - window) : k]
                    after = live[k + 1 : k + 1 + ahead]
                    context = _context_text(
                        [contents[i] for i in before],
                        [contents[i] for i in after],
                        turn.occurred_at,
                    )
                    quoted = [cleaned[i][1] for i in (*before, *after)]
                    if window and k > 0:
                        context_id = cleaned[live[k - 1]][0].discord_message_id
                rows.append(
                    _Row(
                        source_id=source,
                        discord_message_id=turn.discord_message_id,
                        context_message_id=context_id,
                        context_source_ids=quoted,
                        user_id=turn.user_id,
                        position=int(start) + n + 1,
                        speaker=speaker,
                        content=contents[n],
                        context=context,
                        occurred_at=turn.occurred_at,
                        pieces=tuple(pieces(speaker, text)),
                    )
                )
            return rows

        # A turn the privacy guard refuses (its speaker was forgotten after saying it)
        # is not stored; its neighbours are written again, in the same transaction,
        # with contexts that do not quote it.
        return await self._write(where, rows_without(frozenset()), redo=rows_without)

    async def _write(
        self,
        scope: str,
        rows: list[_Row],
        *,
        redo: Callable[[frozenset[str]], list[_Row]] | None = None,
        hold: bool = False,
    ) -> int:
        """Upsert ``rows`` (vectors kept or embedded); how many were stored.

        The privacy guard drops a row whose speaker was forgotten after saying it.
        ``redo`` then gives the rows again without those (their contexts no longer
        quoting them); the ones whose context changed are written again in the same
        transaction, so a refused turn's words are never stored as another's context.

        ``hold`` (Discord rows, whose source ids are message ids): the cached messages
        the rows are, follow or quote are held (:meth:`MessageStore.hold`) for the
        transaction; if one was deleted since it was read, nothing is written and
        :class:`_MessagesGone` says which.
        """
        # A turn indexed again with the same text (its context changed: a message came
        # after it, a re-index) keeps its vector: only new texts are embedded.
        async with self._db.acquire() as conn:
            storage = await self._get_storage(conn)
            kept = {
                r["source_id"]: (r["vec"], r["pieces"])
                for r in await conn.fetch(
                    _KEPT_VECTOR if storage == "vector" else _KEPT_BYTEA,
                    scope,
                    [r.source_id for r in rows],
                    [r.content for r in rows],
                    self._embedder.name,
                )
            }
        encoded: list[tuple[Any, Any]] = [kept.get(r.source_id, (None, None)) for r in rows]
        todo = [n for n, r in enumerate(rows) if r.source_id not in kept]
        if todo:
            try:
                made = await self._embed_turns(
                    [rows[n].content for n in todo], [rows[n].pieces for n in todo], storage
                )
            except (BarkeeperError, OSError, TimeoutError) as exc:
                _log.warning(
                    "embedding failed (%s); %d turns stored without vectors", exc, len(todo)
                )
            else:
                for n, pair in zip(todo, made, strict=True):
                    encoded[n] = pair
        vectors = {r.source_id: v for r, v in zip(rows, encoded, strict=True)}
        query = _UPSERT_VECTOR if storage == "vector" else _UPSERT_BYTEA

        async def upsert(conn: asyncpg.Connection, batch: list[_Row]) -> set[str]:
            stored = await conn.fetch(
                query,
                scope,
                [r.source_id for r in batch],
                [r.discord_message_id for r in batch],
                [r.context_message_id for r in batch],
                [r.position for r in batch],
                [r.speaker for r in batch],
                [r.content for r in batch],
                [r.context for r in batch],
                [r.occurred_at for r in batch],
                [vectors[r.source_id][0] for r in batch],
                self._embedder.name,
                [r.user_id for r in batch],
                [json.dumps(r.context_source_ids) for r in batch],
                [vectors[r.source_id][1] for r in batch],
            )
            return {r["source_id"] for r in stored}

        async with self._db.acquire() as conn:
            try:
                async with conn.transaction():
                    if hold:
                        referenced = {
                            *(r.discord_message_id for r in rows if r.discord_message_id),
                            *(r.context_message_id for r in rows if r.context_message_id),
                            *(int(q) for r in rows for q in r.context_source_ids),
                        }
                        gone = referenced - await self._cache.hold(conn, referenced)
                        if gone:
                            raise _MessagesGone(gone)
                    stored = await upsert(conn, rows)
                    refused = frozenset(r.source_id for r in rows) - stored
                    if refused and redo is not None:
                        was = {r.source_id: r for r in rows}
                        again = [
                            r
                            for r in redo(refused)
                            if r.context_source_ids != was[r.source_id].context_source_ids
                        ]
                        if again:
                            await upsert(conn, again)
            except asyncpg.ForeignKeyViolationError as exc:
                if "user_id" in (exc.constraint_name or ""):
                    raise InvalidInputError("a turn's user_id is not a known user") from exc
                raise InvalidInputError(
                    "a turn's discord_message_id is not in the Discord message cache"
                ) from exc
        return len(stored)

    async def sync_discord_channel(
        self, channel_id: int, *, after_message_id: int = 0, page_size: int = 500
    ) -> int:
        """Index the channel's cached messages the index lacks or holds stale.

        Walks the channel's messages in the Discord cache oldest first
        (:meth:`barkeeper.history.MessageStore.get_page`) from ``after_message_id``. A
        message's context is, as :meth:`add_turns` makes it, the two messages with text
        before it, the one right after it (if it has text), then its month and year in
        words; before ``after_message_id`` only the message just before is quoted. A
        message is (re)indexed when it is new, edited since it was indexed, or its
        context quotes other messages or edited ones (so the newest message is indexed
        again once the next one arrives). Messages without text are skipped.

        A message deleted while the sync runs is indexed by no row and quoted by none:
        each page is written holding the messages its rows are, follow or quote
        (:meth:`barkeeper.history.MessageStore.hold`), and a page one of them left
        since it was read is walked again without it (one deleted after the write
        takes its row and its quotes with it). The sync goes on.

        Args:
            channel_id: The Discord channel.
            after_message_id: Start after this message (0: the whole channel).
            page_size: Messages read per query (10..10,000).

        Returns:
            How many turns were (re)indexed (not those deleted during the sync).

        Raises:
            InvalidInputError: An argument is invalid.
        """
        scope = discord_channel_scope(channel_id)
        size = check_int_range(page_size, "page_size", 10, _MAX_BATCH)
        cursor = check_int_range(after_message_id, "after_message_id", 0, 2**63 - 1)
        # The messages with text just before the next one to index, oldest first, and
        # the one just before it (with or without text: its foreign key). Only indexed
        # messages of this scope are quoted (deleting one clears what quotes it), and the
        # one just before (deleting it deletes the row quoting it): ``outside`` holds
        # those read before the walk's start that are not indexed.
        before: list[StoredMessage] = []
        previous_id: int | None = None
        outside: set[int] = set()
        pending: list[StoredMessage] = []  # read, waiting for the message after it
        refresh_only: int | None = None  # the message at the cursor: indexed already?
        if 0 < cursor < 2**63 - 1:
            read = [
                await self._cache.get(c.message_id)
                for c in await self._cache.get_context(
                    channel_id, before=cursor + 1, limit=1 + _DISCORD_BEFORE
                )
            ]
            earlier = [m for m in read if m is not None]
            async with self._db.acquire() as conn:
                known = {
                    r["source_id"]
                    for r in await conn.fetch(_INDEXED, scope, [str(m.message_id) for m in earlier])
                }
            outside = {m.message_id for m in earlier if str(m.message_id) not in known}
            if earlier:
                # the last one read is walked again, to refresh its context if indexed
                pending = earlier[-1:]
                refresh_only = earlier[-1].message_id
                earlier = earlier[:-1]
            for message in earlier:
                if self._speaker_and_text(message)[1]:
                    before.append(message)
                previous_id = message.message_id
            before = before[-_DISCORD_BEFORE:]
        written: set[str] = set()  # a page's last message may be written twice
        while True:
            page = await self._cache.get_page(channel_id, after=cursor, limit=size)
            last_page = len(page) < size  # the channel's end: its last message has no next
            carried, start = pending, (before, previous_id)
            # Messages deleted since they were read: the page is walked again without
            # them, so that no row is or quotes them (the write holds the others).
            gone: set[int] = set()
            while True:
                stream = [m for m in carried + page if m.message_id not in gone]
                before = [q for q in start[0] if q.message_id not in gone]
                previous_id = start[1]
                if previous_id in gone:
                    previous_id = before[-1].message_id if before else None
                # The stream's last message is walked again with the next page (its
                # context then quotes the one after it). Not indexed yet, it is indexed
                # now too, with no message after it: every message a row quotes is thus
                # written in the same statement as the row or before it, so deleting it
                # clears the quote (a message deleted between two pages stayed quoted by
                # the row before it).
                pending = [] if last_page else stream[-1:]
                rows, resume = await self._page_rows(
                    scope, stream, last_page, before, previous_id, outside, refresh_only
                )
                if rows:
                    try:
                        await self._write(scope, rows, hold=True)
                    except _MessagesGone as exc:
                        if exc.message_ids <= gone:  # cannot be: they were left out
                            raise
                        gone |= exc.message_ids
                        written.difference_update(str(i) for i in exc.message_ids)
                        continue
                    written.update(r.source_id for r in rows)
                break
            if page:
                cursor = page[-1].message_id
            if last_page:
                return len(written)
            before, previous_id = resume

    async def _page_rows(
        self,
        scope: str,
        stream: list[StoredMessage],
        last_page: bool,
        before: list[StoredMessage],
        previous_id: int | None,
        outside: set[int],
        refresh_only: int | None,
    ) -> tuple[list[_Row], tuple[list[StoredMessage], int | None]]:
        """A sync's rows for one page's messages (``stream``), and where the next page
        starts from: the messages with text before its first message, and the one just
        before it."""
        resume = (before, previous_id)
        async with self._db.acquire() as conn:
            indexed = {
                r["source_id"]: r
                for r in await conn.fetch(_INDEXED, scope, [str(m.message_id) for m in stream])
            }
        rows: list[_Row] = []
        for n, message in enumerate(stream):
            if n == len(stream) - 1 and not last_page:
                resume = (before, previous_id)  # the next page starts from here again
                if str(message.message_id) in indexed:
                    break
            speaker, text, content = self._speaker_and_text(message)
            source = str(message.message_id)
            added = message.message_id != refresh_only or source in indexed
            if not added:  # the cursor's own message is refreshed, never added
                outside.add(message.message_id)
            if text:
                prior = [
                    q for q in before if q.message_id not in outside or q.message_id == previous_id
                ]
                after = [q for q in stream[n + 1 : n + 2] if self._speaker_and_text(q)[1]]
                quoted = [*prior, *after]
                if added and _is_stale(message, quoted, indexed.get(source)):
                    rows.append(
                        _Row(
                            source_id=source,
                            discord_message_id=message.message_id,
                            context_message_id=previous_id,
                            context_source_ids=[str(q.message_id) for q in quoted],
                            user_id=None,
                            position=message.message_id,
                            speaker=speaker,
                            content=content[:MAX_TURN_CHARS],
                            context=_context_text(
                                [self._speaker_and_text(q)[2] for q in prior],
                                [self._speaker_and_text(q)[2] for q in after],
                                message.created_at,
                            ),
                            occurred_at=message.created_at,
                            pieces=tuple(pieces(speaker, text[:MAX_TURN_CHARS])),
                        )
                    )
                before = [*before, message][-_DISCORD_BEFORE:]
            previous_id = message.message_id
        return rows, resume

    @staticmethod
    def _speaker_and_text(message: StoredMessage) -> tuple[str, str, str]:
        """A cached message's (speaker, text, ``"speaker: text"``) as the index shows it."""
        text = clean_text(message.content, "content", max_chars=10**9, allow_empty=True)
        speaker = clean_text(message.author_name, "author", max_chars=10**9, allow_empty=True)[
            :_MAX_LABEL_CHARS
        ]
        return speaker, text, f"{speaker}: {text}" if speaker else text

    async def reembed(
        self, scope: str | None = None, *, batch_size: int = 256, only_missing: bool = False
    ) -> int:
        """Give a vector from this index's embedder to every turn lacking one.

        A turn's pieces (its sentences) get theirs in the same batch (none, and any
        earlier ones dropped, with ``pieces=False``). Turns that have
        this embedder's vector already are left as they are, even those indexed before
        schema v9 without piece vectors: :meth:`add_pieces` gives them theirs.

        Args:
            scope: Only this scope's turns (all scopes when ``None``).
            batch_size: Turns read and embedded per round trip.
            only_missing: Only the turns stored without any vector (the embedder
                failed when they were written), not those with another embedder's:
                read through ``ix_message_index_unembedded`` (schema v10), so finding
                none costs one index probe however many turns the scope holds.

        Returns:
            How many turns got a new vector.

        Raises:
            InvalidInputError: An argument is invalid.
            BarkeeperError: The embedder failed (what was done so far is kept).
        """
        name = self._embedder.name
        done = 0
        lacking = _LACKS_ANY_VECTOR if only_missing else _LACKS_VECTOR
        async for storage, rows in self._pages(scope, batch_size, lacking):
            made = await self._embed_turns(
                [r["content"] for r in rows], [_stored_pieces(r) for r in rows], storage
            )
            cast, array = ("::vector", "text[]") if storage == "vector" else ("", "bytea[]")
            async with self._db.acquire() as conn:
                result = await conn.fetch(
                    f"UPDATE message_index SET embedding = u.vec{cast}, embedding_model = $3, "  # noqa: S608
                    f"piece_embeddings = u.pieces{cast}{'[]' if cast else ''} "
                    f"FROM unnest($1::bigint[], $2::{array}, $4::text[], $5::{array}) "
                    "AS u(id, vec, content, pieces) "
                    "WHERE message_index.id = u.id AND message_index.content = u.content "
                    "RETURNING message_index.id",
                    [r["id"] for r in rows],
                    [whole for whole, _ in made],
                    name,
                    [r["content"] for r in rows],
                    [parts for _, parts in made],
                )
            done += len(result)
        return done

    async def add_pieces(self, scope: str | None = None, *, batch_size: int = 256) -> int:
        """Give piece vectors to turns indexed before schema v9.

        A turn that has this index's embedder's vector but no piece vectors, and whose
        text has two sentences or more, gets its pieces embedded (its own vector is
        kept); from then on its vector signal counts its best sentence. One pass over
        the rows in id order; safe to run again (it then finds nothing to do) and
        alongside indexing (a turn whose text changed meanwhile is left alone). An
        index made with ``pieces=False`` gives none (it returns 0 after checking its
        arguments): it brings turns up to what it writes itself, like :meth:`reembed`.

        Args:
            scope: Only this scope's turns (all scopes when ``None``).
            batch_size: Turns read and embedded per round trip.

        Returns:
            How many turns got piece vectors.

        Raises:
            InvalidInputError: An argument is invalid.
            BarkeeperError: The embedder failed (what was done so far is kept).
        """
        if not self._pieces:
            if scope:
                clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS)
            check_int_range(batch_size, "batch_size", 1, _MAX_BATCH)
            return 0
        name = self._embedder.name
        done = 0
        async for storage, rows in self._pages(scope, batch_size, _LACKS_PIECES):
            todo = [(r, split) for r in rows if (split := _stored_pieces(r))]
            if not todo:
                continue
            made = await self._embed_turns(
                [None] * len(todo), [split for _, split in todo], storage
            )
            cast, array = ("::vector[]", "text[]") if storage == "vector" else ("", "bytea[]")
            async with self._db.acquire() as conn:
                result = await conn.fetch(
                    f"UPDATE message_index SET piece_embeddings = u.pieces{cast} "  # noqa: S608
                    f"FROM unnest($1::bigint[], $2::{array}, $3::text[]) "
                    "AS u(id, pieces, content) "
                    "WHERE message_index.id = u.id AND message_index.content = u.content "
                    "AND message_index.embedding_model = $4 "
                    "AND message_index.piece_embeddings IS NULL "
                    "RETURNING message_index.id",
                    [r["id"] for r, _ in todo],
                    [parts for _, parts in made],
                    [r["content"] for r, _ in todo],
                    name,
                )
            done += len(result)
        return done

    async def _embed_turns(
        self,
        wholes: Sequence[str | None],
        splits: Sequence[Sequence[str]],
        storage: VectorStorage,
    ) -> list[tuple[Any, Any]]:
        """Each turn's (whole vector, piece vectors) as the writes take them, from one
        embedding batch: the whole texts first, then every turn's pieces.

        A whole of ``None`` is not embedded (its vector is kept), and turns without
        pieces get ``None`` for them, as every turn does when this index writes no
        pieces (``pieces=False``: ``splits`` are then not embedded).

        Raises:
            BarkeeperError: The embedder failed or gave another number of vectors.
        """
        if not self._pieces:
            splits = [()] * len(wholes)
        texts = [whole for whole in wholes if whole is not None]
        for split in splits:
            texts.extend(split)
        units = [normalise_vector(v) for v in await self._embedder.embed(texts)]
        if len(units) != len(texts):
            raise BarkeeperError(f"{len(units)} vectors for {len(texts)} texts")
        made: list[tuple[Any, Any]] = []
        k, start = 0, len(texts) - sum(len(split) for split in splits)
        for whole, split in zip(wholes, splits, strict=True):
            vector = None
            if whole is not None:
                unit = units[k]
                vector = vector_to_literal(unit) if storage == "vector" else vector_to_bytes(unit)
                k += 1
            count = len(split)
            parts = _encode_pieces(units[start : start + count], storage) if count else None
            start += count
            made.append((vector, parts))
        return made

    async def _pages(
        self, scope: str | None, batch_size: int, lacking: str
    ) -> AsyncIterator[tuple[VectorStorage, list[asyncpg.Record]]]:
        """Pages of the turns (``id, speaker, content``) ``lacking`` something of this
        index's embedder, in id order; ``lacking``: a constant fragment on ``$3``.

        Raises:
            InvalidInputError: ``scope`` or ``batch_size`` is invalid.
        """
        where = clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS) if scope else None
        size = check_int_range(batch_size, "batch_size", 1, _MAX_BATCH)
        query = (_PAGE_OF_ALL if where is None else _PAGE_OF_SCOPE).replace("__LACKING__", lacking)
        cursor = 0
        while True:
            async with self._db.acquire() as conn:
                storage = await self._get_storage(conn)
                rows = await conn.fetch(
                    query,
                    cursor,
                    where,
                    self._embedder.name,
                    size,
                )
            if not rows:
                return
            cursor = rows[-1]["id"]
            yield storage, list(rows)

    async def delete_scope(self, scope: str) -> int:
        """Delete every turn of a scope.

        Returns:
            How many turns were deleted.
        """
        where = clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS)
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM message_index WHERE scope = $1", where)
        return int(status.split()[-1])

    # --- reading --------------------------------------------------------------------------

    async def count(self, scope: str) -> int:
        """How many turns the scope holds."""
        where = clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS)
        async with self._db.acquire() as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM message_index WHERE scope = $1", where)
            )

    async def search(
        self,
        scope: str,
        query: str,
        *,
        k: int = 10,
        token_budget: int | None = None,
        mode: SearchMode = "hybrid",
        query_embedding: Sequence[float] | None = None,
        weights: Weights | None = None,
    ) -> list[Hit[IndexedTurn]]:
        """The scope's turns most relevant to ``query``, best first.

        Args:
            scope: Only this scope's turns are read.
            query: What to look for.
            k: At most this many hits (1..200).
            token_budget: The hits' contents together cost at most this many tokens.
            mode: ``hybrid`` (default), or ``fulltext`` / ``vector`` alone.
            query_embedding: The query's vector if already computed; used as given.
                Without it, the vector is of the query without the names of the
                scope's speakers it names ("What does Ana do to relax?" is embedded
                as "What does do to relax?"): whom it names is weighed by the speaker
                bonus, what it asks by the vector.
            weights: Override the index's fusion weights.

        Returns:
            Hits with their turn, score components and token cost.

        Raises:
            InvalidInputError: An argument is invalid.
        """
        where = clean_text(scope, "scope", max_chars=_MAX_SCOPE_CHARS)
        text, top, budget, chosen = check_search_args(query, k, token_budget, mode)
        use = weights or self._weights
        if chosen != "fulltext" and query_embedding is None:
            # the vector is of what the query asks; whom it names, the speaker bonus weighs
            async with self._db.acquire() as conn:
                speakers = [r[0] for r in await conn.fetch(_SPEAKERS, where)]
            vector = await embed_query(self._embedder, without_speakers(text, speakers))
        else:
            vector = await query_vector(
                self._embedder, text, mode=chosen, query_embedding=query_embedding
            )
        async with self._db.acquire() as conn:
            storage = await self._get_storage(conn)
            rows = await search_rows(
                conn,
                table=_SEARCH_TABLE,
                storage=storage,
                owner=where,
                query=text,
                vector=vector,
                embedder_name=self._embedder.name,
                weights=use,
                k=top,
            )
        scored = rerank(
            fuse(rows, mode=chosen, weights=use, query=text, time_column="occurred_at"),
            weights=use,
            time_column="occurred_at",
            position_column="position",
        )
        return apply_token_budget(
            scored,
            k=top,
            token_budget=budget,
            build=turn_from_row,
            text_of=lambda turn: turn.content,
        )
