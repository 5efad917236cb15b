"""Hybrid retrieval: full-text (BM25 in SQL), vector similarity, recency and importance.

One search reads one user's memories (or one scope's indexed turns) through a btree
index on the owner column, so nothing of anyone else's is ever read, and ranks them
in a single statement:

- **Full text**: BM25 over PostgreSQL's own ``tsvector`` (english stemming), with
  document frequencies computed over the owner's rows at query time. Any word of the
  query may match (OR semantics: a question shares only some words with its answer).
  Positions weighted ``B`` (neighbouring-turn context) count ``context_weight`` of a
  word of the text itself.
- **Vectors**: cosine similarity with pgvector's ``<=>`` in the database; without
  pgvector, the owner's ``bytea`` vectors are compared here (see ``_vectors``). A
  table with piece vectors (:attr:`SearchTable.pieces_column`: an indexed turn's
  sentences) scores a row ``(w + max(w, best piece cosine)) / 2``, ``w`` the cosine
  of its own vector: a question about one sentence of a long turn finds it, and the
  whole still counts half. A row without pieces scores ``w``.
  Search is exact: one owner has hundreds of rows, not millions, and exact search
  over them costs about what an HNSW probe does while never missing a row.
- **Fusion** (:class:`Weights`): BM25 normalised by the best match, plus cosine
  normalised by the best cosine among the candidates, plus small importance and
  recency terms. Both signals keep their shape (how far each row is from the best),
  which ranked better than rank fusion (RRF) on LoCoMo's tuning conversations; scaling
  both to a best of 1 keeps one signal from outweighing the other on queries where
  the embedding finds nothing close (a best cosine of 0.3 counted for little against
  BM25's 1).

The top ``candidates`` of each signal (100 each, or 4 per hit asked for if more: the
second stage needs room) are fused; a token budget then keeps the best
hits whose text fits. No language model runs at query time.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from barkeeper.embeddings import Embedder
from barkeeper.errors import BarkeeperError, InvalidInputError
from barkeeper.llm import count_tokens
from barkeeper.retrieval import _vectors
from barkeeper.retrieval._dates import named_dates
from barkeeper.retrieval._models import SEARCH_MODES, Hit, ScoreParts, SearchMode
from barkeeper.validation import check_choice, check_int_range, clean_text

__all__ = [
    "DEFAULT_MEMORY_WEIGHTS",
    "DEFAULT_TURN_WEIGHTS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "SearchTable",
    "Weights",
    "apply_token_budget",
    "check_vector",
    "embed_query",
    "fuse",
    "query_vector",
    "real",
    "search_rows",
]

_log = logging.getLogger(__name__)

MAX_K = 200
"""Most hits one search returns."""
MAX_QUERY_CHARS = 10_000
"""Longest query text accepted (a long Discord message is 4,000)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Weights:
    """How the signals of a search are combined.

    score = ``text`` x BM25 / best BM25 + ``vector`` x cosine / best cosine (or the
    raw cosine without ``scale_vector``; for a turn with pieces the cosine is its
    combined vector signal, see :class:`barkeeper.retrieval.ScoreParts`) + ``importance`` x
    importance + ``recency`` x 0.5 ** (age / ``half_life_days``) + ``speaker`` if the
    query names the turn's speaker + ``date`` if the query names the month or year
    the item is about. A second stage (:func:`rerank`) then adds ``session`` x the
    best score among candidates of the same session (items at most
    ``session_gap_minutes`` apart) and ``neighbour`` x the best score of the turns
    just before and after (same session): a question is often answered across a
    few turns, and about one occasion.

    Attributes:
        text: Weight of the normalised BM25 score.
        vector: Weight of the cosine similarity (the vector signal).
        importance: Weight of a memory's importance (0..1).
        recency: Weight of the recency term (0..1).
        half_life_days: Age at which the recency term halves.
        speaker: Bonus of a turn whose speaker the query names ("what did Ana say
            about …"): people mostly talk about themselves.
        context_weight: How much a word of the neighbouring-turn context counts
            against a word of the turn itself, in BM25's term frequency.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        candidates: Rows taken from the top of each signal before fusing, at least
            (see ``candidates_per_hit``). The second stage reranks them, so a search
            for 10 hits ranks best with many more candidates than 20.
        candidates_per_hit: Rows taken from each signal per hit asked for, when that
            is more than ``candidates``: the second stage moves hits up from deep in
            the list, so the pool must reach well below the last hit (the 50th of 50
            hits ranked better from 200 candidates than from 100).
        date: Bonus of an item whose time (a turn's, a memory's ``valid_from``) is
            in a month or year the query names ("in June", "in 2022", "last month").
        session: Share of the best score among the candidates of an item's session
            added to its score.
        neighbour: Share of the best score of the turns next to a turn (same
            session) added to its score.
        session_gap_minutes: Items at most this far apart in time are one session.
        scale_vector: Divide the cosine by the best cosine among the candidates, as
            BM25 is divided by the best BM25 (``False``: the raw cosine).
        pieces: In a table with piece vectors (indexed turns), combine a row's best
            sentence with its whole (``False``: the whole's cosine alone, as before
            schema v9; for comparison).
    """

    text: float = 1.0
    vector: float = 1.0
    importance: float = 0.1
    recency: float = 0.1
    half_life_days: float = 30.0
    speaker: float = 0.0
    context_weight: float = 0.5
    k1: float = 1.2
    b: float = 0.75
    candidates: int = 100
    candidates_per_hit: int = 4
    date: float = 0.0
    session: float = 0.0
    neighbour: float = 0.0
    session_gap_minutes: float = 60.0
    scale_vector: bool = True
    pieces: bool = True

    def __post_init__(self) -> None:
        names = (
            "text",
            "vector",
            "importance",
            "recency",
            "speaker",
            "context_weight",
            "k1",
            "b",
            "date",
            "session",
            "neighbour",
            "session_gap_minutes",
        )
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"Weights.{name} must be a finite number >= 0")
        if not self.half_life_days > 0:
            raise InvalidInputError("Weights.half_life_days must be positive")
        check_int_range(self.candidates, "Weights.candidates", 1, 10_000)
        check_int_range(self.candidates_per_hit, "Weights.candidates_per_hit", 1, 50)
        if not isinstance(self.scale_vector, bool):
            raise InvalidInputError("Weights.scale_vector must be True or False")
        if not isinstance(self.pieces, bool):
            raise InvalidInputError("Weights.pieces must be True or False")


DEFAULT_MEMORY_WEIGHTS = Weights(date=0.3, session=0.2)
"""For memories: relevance first, importance and recency as tie-breakers; named dates;
memories that hold since about the same time lift each other a little."""
DEFAULT_TURN_WEIGHTS = Weights(
    vector=1.2,
    importance=0.0,
    recency=0.05,
    speaker=1.0,
    date=0.3,
    session=0.4,
    neighbour=0.2,
)
"""For indexed turns: no importance; a little recency; bonuses for the named speaker and
dates; the session and neighbour terms (chosen on LoCoMo's tuning conversations). The
speaker bonus is large because a turn search embeds its query without the names it
gives (:meth:`barkeeper.turns.MessageIndex.search`): who is weighed here, what by the
vector."""


# --- SQL ---------------------------------------------------------------------------------
#
# Built once from constant fragments (never from input). Each variant reads the owner's
# live rows in a CTE (``docs``, materialised: it is read several times), scores BM25
# from the tsvectors of those rows only, and returns the top candidates of each signal.

# The query's distinct lexemes, each as three tsqueries: anywhere, in the text itself
# (weight D, the default) and in the context (weight B). They are quoted because they
# are already normalised and the text-to-tsquery cast must not parse them again.
_QUERY = r"""
WITH lex AS (
    SELECT l.lexeme, l.quoted::tsquery AS q, (l.quoted || ':D')::tsquery AS q_text,
           (l.quoted || ':B')::tsquery AS q_context
    FROM (
        SELECT DISTINCT t.lexeme,
               '''' || replace(replace(t.lexeme, '\', '\\'), '''', '''''') || '''' AS quoted
        FROM unnest(to_tsvector('english', $2::text)) AS t
    ) l
)
"""

# BM25 with a binary term frequency per place (1 in the text, ``context_weight`` in the
# context): a turn or a memory is a sentence or two, where a word rarely repeats, and
# testing each query word with @@ costs a quarter of unnesting every matching tsvector.
_BM25 = """
, hits AS (
    SELECT d.id, d.dl, l.lexeme,
           ((d.search @@ l.q_text)::int + __CTX__ * (d.search @@ l.q_context)::int)::float8
               AS tf
    FROM docs d JOIN lex l ON d.search @@ l.q
)
-- MATERIALIZED: computed once, whatever the planner guesses of docs (a table filled
-- moments ago has no statistics, and an inlined aggregate got rescanned per hit).
, df AS MATERIALIZED (SELECT lexeme, count(*)::float8 AS df FROM hits GROUP BY lexeme)
, stats AS MATERIALIZED (
    SELECT count(*)::float8 AS n, greatest(avg(dl), 1)::float8 AS avgdl FROM docs
)
, bm25 AS (
    SELECT h.id,
           sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
               * h.tf * (__K1__ + 1) / (h.tf + __K1__ * (1 - __B__ + __B__ * h.dl / s.avgdl)))
               AS text
    FROM hits h JOIN df USING (lexeme) CROSS JOIN stats s
    GROUP BY h.id
)
, ranked AS (
    SELECT d.id, coalesce(b.text, 0)::float8 AS text, d.vector,
           CASE WHEN b.text IS NOT NULL
                THEN row_number() OVER (ORDER BY b.text DESC NULLS LAST, d.id DESC) END
               AS text_rank,
           CASE WHEN d.vector IS NOT NULL
                THEN row_number() OVER (ORDER BY d.vector DESC NULLS LAST, d.id DESC) END
               AS vector_rank
    FROM docs d LEFT JOIN bm25 b USING (id)
)
__SELECT__
"""

# pgvector: ranks are computed on narrow rows (id, scores); only the candidates' full
# rows are read back, from pages the docs scan has just brought into shared buffers.
_SELECT_CANDIDATES = """
SELECT __COLUMNS__, r.text, r.text_rank, r.vector, r.vector_rank, m.__RECENCY__ AS recency_at
FROM ranked r JOIN __TABLE__ m ON m.id = r.id
WHERE (r.text_rank <= $8 OR r.vector_rank <= $8) AND __OWNER__
"""

# bytea: every row goes back with its vector (and pieces); the cosine and the cut are
# done in Python.
_SELECT_ALL = """
SELECT __COLUMNS__, m.vector_bytes__PIECE_BYTES__, r.text, r.text_rank, NULL::float8 AS vector,
       r.vector_rank, m.__RECENCY__ AS recency_at
FROM ranked r JOIN docs m ON m.id = r.id
"""


@dataclass(frozen=True)
class SearchTable:
    """One searchable table: its rows, its owner column and its filter.

    The store that owns the table declares it (memories in :mod:`barkeeper.memory`,
    turns in :mod:`barkeeper.turns`); the statement is built from these constant
    fragments, never from input.

    Attributes:
        name: The table.
        alias: Its alias in ``filter`` (``m``).
        columns: The columns a hit is built from, comma-separated.
        owner_type: The SQL type of the owner parameter ``$1``.
        filter: ``WHERE`` clause on the owner (``$1``) first; ``__TYPES__`` stands for
            the memory-types parameter when the table filters by type.
        recency_column: The timestamp recency is measured from.
        pieces_column: The column holding each row's piece vectors (``vector[]``, or
            ``bytea`` of float32 vectors one after another; ``NULL``: none), by the
            embedder of its ``embedding``; ``None``: the table has none.
    """

    name: str
    alias: str
    columns: str
    owner_type: str
    filter: str
    recency_column: str
    pieces_column: str | None = None

    @property
    def filters_types(self) -> bool:
        """Whether searches pass a memory-types parameter."""
        return "__TYPES__" in self.filter


def real(value: float) -> float:
    """A ``real`` (float4) column's value as the decimal it was written as (0.8, not 0.80000001)."""
    return float(f"{value:.7g}")


@functools.cache
def _build_sql(table: SearchTable, storage: _vectors.Storage, pieces: bool) -> str:
    """The search statement for ``table`` with vectors stored as ``storage``.

    Parameters, pgvector: $1 owner, $2 query, $3 vector (real[]) or NULL, $4 embedder
    name, $5 context weight, $6 k1, $7 b, $8 candidates, $9 memory types.
    bytea: the same without $3 and $8 ($3 embedder name … $6 b, $7 memory types);
    the vectors come back as bytes and the candidates are cut after the cosine.
    ``pieces``: combine each row's piece vectors into its cosine (the table has them).
    """
    cols = ", ".join(f"m.{c.strip()}" for c in table.columns.split(","))
    if storage == "vector":
        # The query vector is cast once, in qv (a cast in the row expression ran per row).
        head = ", qv AS MATERIALIZED (SELECT $3::real[]::vector AS v)\n"
        cosine = "1 - (m.embedding <=> qv.v)"
        if pieces:
            # greatest() ignores NULL: a row without pieces scores (w + w) / 2 = w
            best = f"(SELECT max(1 - (p <=> qv.v)) FROM unnest(m.{table.pieces_column}) p)"  # noqa: S608 - constant fragments
            cosine = f"({cosine} + greatest({cosine}, {best})) / 2"
        select = (
            "m.id, CASE WHEN qv.v IS NOT NULL AND m.embedding_model = $4::text "
            f"THEN {cosine} END AS vector"
        )
        source = f"{table.name} m CROSS JOIN qv"
        params = {"__CTX__": "$5::float8", "__K1__": "$6::float8", "__B__": "$7::float8"}
        types, tail = "$9", _SELECT_CANDIDATES
    else:
        head = ""
        select = (
            f"{cols}, NULL::float8 AS vector, "
            "CASE WHEN m.embedding_model = $3::text THEN m.embedding END AS vector_bytes"
        )
        source = f"{table.name} m"
        params = {"__CTX__": "$4::float8", "__K1__": "$5::float8", "__B__": "$6::float8"}
        types, tail = "$7", _SELECT_ALL
    docs = (
        f"{head}, docs AS MATERIALIZED (\n    SELECT {select},\n"  # noqa: S608 - constant fragments
        f"        m.search, length(m.search)::float8 AS dl\n"
        f"    FROM {source}\n"
        f"    {table.filter.replace('__TYPES__', types).strip()}\n)"
    )
    owner = table.filter.strip().removeprefix("WHERE ").split(" AND ")[0]
    sql = _QUERY + docs + _BM25.replace("__SELECT__", tail.strip())
    for key, value in params.items():
        sql = sql.replace(key, value)
    piece_bytes = ""
    if pieces and storage != "vector":
        # Read by primary key for the rows that go back, not carried in docs: docs
        # stays narrow (every row's pieces, about 5 kB a LoCoMo turn, in a CTE read
        # three times would spill past work_mem on a large scope).
        piece_bytes = (
            f", (SELECT CASE WHEN t.embedding_model = $3::text THEN t.{table.pieces_column} END"  # noqa: S608 - constant fragments
            f" FROM {table.name} t WHERE t.id = r.id) AS piece_bytes"
        )
    return (
        sql.replace("__COLUMNS__", cols)
        .replace("__PIECE_BYTES__", piece_bytes)
        .replace("__RECENCY__", table.recency_column)
        .replace("__TABLE__", table.name)
        .replace("__OWNER__", owner)
    )


# --- running a search ----------------------------------------------------------------------


async def embed_query(embedder: Embedder, query: str) -> list[float] | None:
    """The unit vector of ``query``, or ``None`` (logged) if the embedder fails.

    A search without its vector still ranks by full text: a down embedding endpoint
    degrades retrieval instead of breaking the reply.
    """
    try:
        vector = await embedder.embed_query(query)
        return _vectors.normalise(vector)
    except (BarkeeperError, OSError, TimeoutError) as exc:
        _log.warning("query embedding failed (%s); searching by full text only", exc)
        return None


def check_vector(embedder: Embedder, vector: Sequence[float], what: str) -> list[float]:
    """``vector`` as a unit vector, once checked to have ``embedder``'s dimension.

    Args:
        embedder: The embedder whose space the vector must be in.
        vector: A caller's vector.
        what: Its name in the error message.

    Raises:
        InvalidInputError: It has another number of dimensions.
    """
    if len(vector) != embedder.dimension:
        raise InvalidInputError(
            f"{what} has {len(vector)} dimensions; {embedder.name} makes {embedder.dimension}"
        )
    return _vectors.normalise(vector)


async def query_vector(
    embedder: Embedder,
    query: str,
    *,
    mode: SearchMode,
    query_embedding: Sequence[float] | None,
) -> list[float] | None:
    """The unit vector a search ranks by, or ``None`` when it has none.

    ``None`` for a ``fulltext`` search; else the caller's ``query_embedding``
    (checked, see :func:`check_vector`) or, without one, :func:`embed_query`.

    Raises:
        InvalidInputError: ``query_embedding`` has the wrong dimension.
    """
    if mode == "fulltext":
        return None
    if query_embedding is not None:
        return check_vector(embedder, query_embedding, "query_embedding")
    return await embed_query(embedder, query)


async def search_rows(
    conn: asyncpg.Connection,
    *,
    table: SearchTable,
    storage: _vectors.Storage,
    owner: int | str,
    query: str,
    vector: Sequence[float] | None,
    embedder_name: str,
    weights: Weights,
    k: int,
    memory_types: Sequence[str] | None = None,
) -> list[Mapping[str, Any]]:
    """The owner's candidate rows for ``query`` with their ``text`` and ``vector`` scores.

    Args:
        conn: A connection (search_path set to barkeeper's schema).
        table: The table searched (its owner declares it).
        storage: How the schema stores vectors.
        owner: The user id (memories) or scope (turns).
        query: The cleaned query text.
        vector: The query's unit vector, or ``None`` to skip vectors.
        embedder_name: Only vectors made by this embedder are compared.
        weights: BM25 parameters and the candidate count.
        k: The hits wanted: at least ``weights.candidates_per_hit * k`` candidates
            come from each signal.
        memory_types: Only these types (memories only).

    Returns:
        Rows with the table's columns plus ``text``, ``text_rank``, ``vector``,
        ``vector_rank`` and ``recency_at``.
    """
    pieces = weights.pieces and table.pieces_column is not None
    sql = _build_sql(table, storage, pieces)
    types = list(memory_types) if memory_types is not None else None
    ctx, k1, b = weights.context_weight, weights.k1, weights.b
    keep = max(weights.candidates, weights.candidates_per_hit * k)
    if storage == "vector":
        query_vector = list(vector) if vector is not None else None
        args: list[Any] = [owner, query, query_vector, embedder_name, ctx, k1, b, keep]
        if table.filters_types:
            args.append(types)
        return list(await conn.fetch(sql, *args))
    args = [owner, query, embedder_name, ctx, k1, b]
    if table.filters_types:
        args.append(types)
    records = await conn.fetch(sql, *args)
    return _bytea_candidates(records, vector, keep, pieces=pieces)


def _bytea_candidates(
    records: Sequence[asyncpg.Record],
    vector: Sequence[float] | None,
    keep: int,
    *,
    pieces: bool = False,
) -> list[Mapping[str, Any]]:
    """Without pgvector: every owner's row came back with its vector bytes (and, with
    ``pieces``, its piece vectors' bytes); score them by cosine (combined with the
    pieces' as in SQL), rank them, and keep the top ``keep`` of either signal.

    Only the kept rows (about ``2 * keep`` of the owner's, often far fewer than all) are
    turned into dicts: building one per row cost more than the cosine itself.
    """
    if vector is None or not records:
        scores: list[float | None] = [None] * len(records)
        ranks: list[int | None] = [None] * len(records)
    else:
        scores, ranks = _vectors.cosine_ranks(
            vector,
            [r["vector_bytes"] for r in records],
            [r["id"] for r in records],
            [r["piece_bytes"] for r in records] if pieces else None,
        )
    kept: list[Mapping[str, Any]] = []
    for record, score, rank in zip(records, scores, ranks, strict=True):
        text_rank = record["text_rank"]
        if (rank is None or rank > keep) and (text_rank is None or text_rank > keep):
            continue
        row = dict(record)
        del row["vector_bytes"]
        if pieces:
            del row["piece_bytes"]
        row["vector"] = score
        row["vector_rank"] = rank
        kept.append(row)
    return kept


_WORDS = re.compile(r"\w+")


def _names_speaker(query_words: set[str], speaker: str) -> bool:
    words = _WORDS.findall(speaker.lower())
    return bool(words) and all(word in query_words for word in words)


def fuse(
    rows: Sequence[Mapping[str, Any]],
    *,
    mode: SearchMode,
    weights: Weights,
    query: str = "",
    now: datetime | None = None,
    time_column: str | None = None,
) -> list[tuple[Mapping[str, Any], ScoreParts]]:
    """Score candidate rows and order them best first.

    ``fulltext`` keeps only rows matching a word of the query and ranks by BM25;
    ``vector`` keeps only rows with a vector and ranks by cosine; ``hybrid`` uses
    both, each divided by its best among ``rows`` (the cosine only with
    :attr:`Weights.scale_vector` and a positive best). Importance, recency, the
    speaker bonus (rows with a ``speaker`` whose every word is in ``query``) and the
    date bonus (rows whose ``time_column`` is in a month or year ``query`` names, see
    :func:`named_dates`) are added in every mode, by their weights. Ties go to the newer row.
    """
    now = now or datetime.now(UTC)
    query_words = set(_WORDS.findall(query.lower())) if weights.speaker else set()
    dates = named_dates(query, now) if weights.date and time_column else None
    best_text = max((float(r["text"]) for r in rows), default=0.0)
    best_vector = 1.0
    if weights.scale_vector:
        best = max((float(r["vector"]) for r in rows if r["vector"] is not None), default=0.0)
        best_vector = best if best > 0 else 1.0
    scored: list[tuple[Mapping[str, Any], ScoreParts]] = []
    for row in rows:
        text = float(row["text"])
        vector = row["vector"]
        if mode == "fulltext" and row["text_rank"] is None:
            continue
        if mode == "vector" and vector is None:
            continue
        text_norm = text / best_text if best_text > 0 else 0.0
        when = row["recency_at"]
        if when is None:
            recency = 0.0
        else:
            age_days = max((now - when).total_seconds(), 0.0) / 86400.0
            recency = 0.5 ** (age_days / weights.half_life_days)
        importance = real(float(row.get("importance", 0.0)))
        speaker = 0.0
        if query_words and _names_speaker(query_words, str(row.get("speaker", ""))):
            speaker = weights.speaker
        date = 0.0
        if dates and time_column is not None and dates.matches(row.get(time_column)):
            date = weights.date
        score = weights.importance * importance + weights.recency * recency + speaker + date
        if mode != "vector":
            score += weights.text * text_norm
        if mode != "fulltext" and vector is not None:
            score += weights.vector * float(vector) / best_vector
        parts = ScoreParts(
            score=score,
            text=text,
            text_rank=row["text_rank"],
            vector=None if vector is None else float(vector),
            vector_rank=row["vector_rank"],
            recency=recency,
            importance=importance,
            speaker=speaker,
            date=date,
        )
        scored.append((row, parts))
    scored.sort(key=lambda item: (-item[1].score, -int(item[0]["id"])))
    return scored


def apply_token_budget(
    scored: Sequence[tuple[Mapping[str, Any], ScoreParts]],
    *,
    k: int,
    token_budget: int | None,
    build: Callable[[Mapping[str, Any]], T],
    text_of: Callable[[T], str],
) -> list[Hit[T]]:
    """The best ``k`` hits whose texts together cost at most ``token_budget`` tokens.

    A hit too large for what is left of the budget is skipped and smaller ones after
    it may still fit. Tokens are counted offline (:func:`barkeeper.llm.count_tokens`).
    """
    hits: list[Hit[T]] = []
    used = 0
    for row, parts in scored:
        if len(hits) >= k:
            break
        item = build(row)
        tokens = count_tokens(text_of(item))
        if token_budget is not None and used + tokens > token_budget:
            continue
        used += tokens
        hits.append(Hit(item=item, parts=parts, tokens=tokens))
    return hits


def check_search_args(
    query: object, k: object, token_budget: object, mode: object
) -> tuple[str, int, int | None, SearchMode]:
    """Validated (query, k, token_budget, mode) of a search call.

    Raises:
        InvalidInputError: One is out of range; the message says which.
    """
    text = clean_text(query, "query", max_chars=MAX_QUERY_CHARS)
    top = check_int_range(k, "k", 1, MAX_K)
    budget = None
    if token_budget is not None:
        budget = check_int_range(token_budget, "token_budget", 1, 10_000_000)
    chosen = check_choice(mode, "mode", SEARCH_MODES)
    return text, top, budget, chosen
