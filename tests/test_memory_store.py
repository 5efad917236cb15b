"""MemoryStore on a real PostgreSQL: versions, validity, expiry, forgetting, isolation, input."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barkeeper.db import Database
from barkeeper.db._schema.v0007_health_memories import MEMORY_TYPES as SCHEMA_MEMORY_TYPES
from barkeeper.embeddings import HashingEmbedder, OpenAIEmbedder
from barkeeper.errors import InvalidInputError, NotFoundError
from barkeeper.llm import count_tokens
from barkeeper.memory import MEMORY_TYPES, MemoryStore
from barkeeper.memory._store import MAX_CONTENT_CHARS


async def _new_user(db: Database, discord_id: int) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO users (discord_id) VALUES ($1) RETURNING id", discord_id
            )
        )


@pytest.fixture
async def users(db: Database) -> tuple[int, int]:
    return await _new_user(db, 1001), await _new_user(db, 1002)


@pytest.fixture
def store(db: Database) -> MemoryStore:
    return MemoryStore(db, HashingEmbedder())


async def _raw(db: Database, sql: str, *args: Any) -> list[Any]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql, *args))


def test_memory_types_match_the_schema() -> None:
    assert MEMORY_TYPES == SCHEMA_MEMORY_TYPES
    assert "health" in MEMORY_TYPES


async def test_a_health_memory_is_stored_and_versioned(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Takes insulin for type 1 diabetes", memory_type="health")
    assert (await store.get(a, memory.id)).memory_type == "health"
    assert [m.id for m in await store.list_memories(a, memory_types=["health"])] == [memory.id]
    (version,) = await store.history(a, memory.id)
    assert version.memory_type == "health"


# --- add / get / history ---------------------------------------------------------------


async def test_add_then_get_and_history(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    expires = datetime.now(UTC) + timedelta(days=30)
    memory = await store.add(
        a,
        "  Lost her father in March  ",
        memory_type="grief_context",
        confidence=0.9,
        importance=0.95,
        temporal_relevance="past",
        source_message_ids=[11, 12, 11],
        guild_id=77,
        expires_at=expires,
        changed_by="extraction",
        reason="said so in #general",
    )
    assert memory.content == "Lost her father in March"
    assert memory.memory_type == "grief_context"
    assert memory.source_message_ids == (11, 12)
    assert memory.version == 1 and memory.is_valid
    assert memory.embedding_model == "hashing-384"
    assert memory.expires_at == expires
    assert await store.get(a, memory.id) == memory
    (version,) = await store.history(a, memory.id)
    assert (version.version, version.change, version.changed_by, version.reason) == (
        1,
        "add",
        "extraction",
        "said so in #general",
    )
    assert version.content == memory.content and version.source_message_ids == (11, 12)


async def test_add_for_unknown_user_is_not_found(store: MemoryStore) -> None:
    with pytest.raises(NotFoundError, match="no user"):
        await store.add(987654, "likes tea")


async def test_remember_is_explicit_and_not_duplicated(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    first = await store.remember(a, "My sister's birthday is on June 3", memory_type="family")
    again = await store.remember(a, "my sister's birthday is on june 3")
    assert again.id == first.id
    assert (first.source, first.confidence, first.importance) == ("explicit", 1.0, 0.8)
    (version,) = await store.history(a, first.id)
    assert version.changed_by == "user"
    assert await store.count(a) == 1


# --- update ------------------------------------------------------------------------------


async def test_update_writes_a_version_and_reembeds(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Lives in Paris", memory_type="location", source_message_ids=[1])
    assert (await store.search(a, "Paris", mode="vector"))[0].parts.vector == pytest.approx(
        1 / math.sqrt(3), abs=1e-5
    )
    updated = await store.update(
        a,
        memory.id,
        content="Lives in Berlin",
        importance=0.7,
        add_source_message_ids=[2, 1],
        changed_by="consolidation",
        reason="moved",
    )
    assert updated.version == 2
    assert updated.content == "Lives in Berlin" and updated.importance == 0.7
    assert updated.source_message_ids == (1, 2)
    assert updated.updated_at >= memory.updated_at
    versions = await store.history(a, memory.id)
    assert [(v.version, v.change, v.content) for v in versions] == [
        (1, "add", "Lives in Paris"),
        (2, "update", "Lives in Berlin"),
    ]
    assert versions[1].changed_by == "consolidation" and versions[1].reason == "moved"
    # the vector follows the new text: the old word no longer matches at all
    berlin = await store.search(a, "Berlin", mode="vector")
    assert berlin[0].item.id == memory.id
    assert berlin[0].parts.vector == pytest.approx(1 / math.sqrt(3), abs=1e-5)
    assert await store.search(a, "Paris", mode="fulltext") == []


async def test_update_without_change_writes_nothing(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Plays the cello", memory_type="hobby")
    same = await store.update(a, memory.id, content="Plays the cello", memory_type="hobby")
    assert same.version == 1
    assert len(await store.history(a, memory.id)) == 1


async def test_update_can_clear_expiry(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    memory = await store.add(a, "Is on holiday", expires_at=datetime.now(UTC) + timedelta(days=3))
    cleared = await store.update(a, memory.id, expires_at=None)
    assert cleared.expires_at is None and cleared.version == 2


async def test_concurrent_updates_each_get_their_own_version(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Has two cats")
    await asyncio.gather(
        store.update(a, memory.id, content="Has three cats"),
        store.update(a, memory.id, importance=0.9),
    )
    versions = await store.history(a, memory.id)
    assert [v.version for v in versions] == [1, 2, 3]
    final = await store.get(a, memory.id)
    assert (final.version, final.content, final.importance) == (3, "Has three cats", 0.9)


# --- validity ----------------------------------------------------------------------------


async def test_invalidate_keeps_history_and_restore_reopens(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Works as a barista", memory_type="work")
    closed = await store.invalidate(a, memory.id, changed_by="consolidation", reason="now a nurse")
    assert closed.invalidated_at is not None and not closed.is_valid and closed.version == 2
    assert await store.list_memories(a) == []
    assert [m.id for m in await store.list_memories(a, include_invalid=True)] == [memory.id]
    assert (await store.get(a, memory.id)).invalidated_at == closed.invalidated_at
    assert await store.search(a, "barista") == []
    assert await store.count(a) == 0 and await store.count(a, include_invalid=True) == 1
    with pytest.raises(NotFoundError):
        await store.invalidate(a, memory.id)
    with pytest.raises(NotFoundError):
        await store.update(a, memory.id, content="Works as a chef")
    reopened = await store.restore(a, memory.id, reason="was right after all")
    assert reopened.is_valid and reopened.version == 3
    assert [h.item.id for h in await store.search(a, "barista")] == [memory.id]
    assert [(v.change, v.content) for v in await store.history(a, memory.id)] == [
        ("add", "Works as a barista"),
        ("invalidate", "Works as a barista"),
        ("restore", "Works as a barista"),
    ]
    with pytest.raises(NotFoundError):
        await store.restore(a, memory.id)


# --- expiry ------------------------------------------------------------------------------


async def test_expired_memories_are_never_returned(
    db: Database, store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = await store.add(a, "Has a dentist appointment on Friday", expires_at=past)
    live = await store.add(
        a, "Has a dentist she trusts", expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert [m.id for m in await store.list_memories(a, include_invalid=True)] == [live.id]
    assert [h.item.id for h in await store.search(a, "dentist appointment Friday")] == [live.id]
    assert [h.item.id for h in await store.similar(a, "dentist appointment Friday")] == [live.id]
    assert [m.id async for m in store.iter_memories(a, include_invalid=True)] == [live.id]
    assert await store.count(a, include_invalid=True) == 1
    for call in (
        store.get(a, expired.id),
        store.history(a, expired.id),
        store.update(a, expired.id, importance=1.0),
        store.invalidate(a, expired.id),
    ):
        with pytest.raises(NotFoundError):
            await call
    # a memory that expires after it was stored disappears the same way
    await store.update(a, live.id, expires_at=past)
    assert await store.search(a, "dentist") == []
    # the user may still ask for an expired memory to be erased
    await store.forget(a, expired.id)
    (row,) = await _raw(db, "SELECT content, is_active FROM memories WHERE id = $1", expired.id)
    assert tuple(row) == ("", False)


# --- forgetting --------------------------------------------------------------------------


async def test_forget_scrubs_text_everywhere(
    db: Database, store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    memory = await store.add(a, "Secret: afraid of the dark", source_message_ids=[5])
    await store.update(a, memory.id, content="Secret: afraid of deep water", reason="corrected it")
    await store.forget(a, memory.id, reason="user asked")
    (row,) = await _raw(
        db,
        "SELECT content, embedding, embedding_model, source_message_ids, is_active, "
        "length(search) AS words FROM memories WHERE id = $1",
        memory.id,
    )
    assert dict(row) == {
        "content": "",
        "embedding": None,
        "embedding_model": None,
        "source_message_ids": [],
        "is_active": False,
        "words": 0,
    }
    versions = await _raw(
        db,
        "SELECT change, content, reason FROM memory_versions WHERE memory_id = $1 ORDER BY version",
        memory.id,
    )
    assert [tuple(v) for v in versions] == [
        ("add", "", None),
        ("update", "", None),
        ("forget", "", "user asked"),
    ]
    leftovers = await _raw(
        db, "SELECT 1 FROM memory_versions WHERE content LIKE '%afraid%' OR reason LIKE '%corr%'"
    )
    assert leftovers == []
    assert [v.change for v in await store.history(a, memory.id)] == ["add", "update", "forget"]
    for call in (store.get(a, memory.id), store.forget(a, memory.id), store.restore(a, memory.id)):
        with pytest.raises(NotFoundError):
            await call
    assert await store.search(a, "afraid dark water") == []
    assert await store.list_memories(a, include_invalid=True) == []


async def test_forget_all_deletes_only_that_users_memories(
    db: Database, store: MemoryStore, users: tuple[int, int]
) -> None:
    a, b = users
    for text in ("Likes jazz", "Has a brother", "Runs marathons"):
        await store.add(a, text)
    kept = await store.add(b, "Likes jazz")
    assert await store.forget_all(a) == 3
    assert await _raw(db, "SELECT 1 FROM memories WHERE user_id = $1", a) == []
    assert await _raw(db, "SELECT 1 FROM memory_versions WHERE user_id = $1", a) == []
    assert await store.get(b, kept.id) == kept
    assert await store.forget_all(a) == 0


# --- isolation -----------------------------------------------------------------------------


async def test_another_users_memory_can_be_neither_read_nor_changed(
    db: Database, store: MemoryStore, users: tuple[int, int]
) -> None:
    a, b = users
    secret = await store.add(a, "A's secret: lost her job last week", importance=1.0)
    calls = [
        store.get(b, secret.id),
        store.history(b, secret.id),
        store.update(b, secret.id, content="overwritten by B"),
        store.invalidate(b, secret.id),
        store.restore(b, secret.id),
        store.forget(b, secret.id),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call
    assert await store.mark_referenced(b, [secret.id]) == 0
    assert await store.forget_all(b) == 0
    assert await store.get(a, secret.id) == secret
    assert len(await store.history(a, secret.id)) == 1
    (row,) = await _raw(db, "SELECT last_referenced_at FROM memories WHERE id = $1", secret.id)
    assert row["last_referenced_at"] is None


async def test_search_never_crosses_users_even_for_the_best_match(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, b = users
    query = "lost her job last week"
    best = await store.add(a, "Lost her job last week", importance=1.0)
    weak = await store.add(b, "Started a new hobby last year", importance=0.1)
    for hits in (
        await store.search(b, query, k=50),
        await store.similar(b, query, k=50),
        await store.search(
            b, query, mode="vector", query_embedding=(await HashingEmbedder().embed([query]))[0]
        ),
    ):
        assert [h.item.id for h in hits] == [weak.id]
        assert all(h.item.user_id == b for h in hits)
    assert [h.item.id for h in await store.search(a, query)] == [best.id]
    assert [m.id for m in await store.list_memories(b, include_invalid=True)] == [weak.id]


# --- listing -------------------------------------------------------------------------------


async def test_list_pages_and_filters(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    ids = [
        (await store.add(a, f"fact number {i}", memory_type="hobby" if i % 2 else "work")).id
        for i in range(7)
    ]
    newest_first = list(reversed(ids))
    assert [m.id async for m in store.iter_memories(a, page_size=3)] == newest_first
    page = await store.list_memories(a, limit=2)
    assert [m.id for m in page] == newest_first[:2]
    after = await store.list_memories(a, limit=2, before_id=page[-1].id)
    assert [m.id for m in after] == newest_first[2:4]
    hobbies = await store.list_memories(a, memory_types=["hobby"])
    assert [m.id for m in hobbies] == [i for i in newest_first if ids.index(i) % 2]


async def test_mark_referenced(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    memory = await store.add(a, "Drinks coffee black")
    assert await store.mark_referenced(a, [memory.id, memory.id]) == 1
    assert (await store.get(a, memory.id)).last_referenced_at is not None
    assert (await store.get(a, memory.id)).version == 1


# --- embedder failures -----------------------------------------------------------------------


async def test_memory_is_kept_when_the_embedder_is_down(
    db: Database, users: tuple[int, int]
) -> None:
    a, _ = users
    async with OpenAIEmbedder(
        base_url="http://127.0.0.1:9/v1", dimension=384, max_retries=0, timeout=2
    ) as down:
        broken = MemoryStore(db, down)
        memory = await broken.add(a, "Collects vintage postcards", memory_type="hobby")
        assert memory.embedding_model is None
        hits = await broken.search(a, "vintage postcards")  # query embedding fails too
        assert [h.item.id for h in hits] == [memory.id] and hits[0].parts.vector is None
    working = MemoryStore(db, HashingEmbedder())
    assert await working.search(a, "postcards", mode="vector") == []
    assert await working.reembed(a) == 1
    assert (await working.get(a, memory.id)).embedding_model == "hashing-384"
    assert [h.item.id for h in await working.search(a, "postcards", mode="vector")] == [memory.id]
    assert await working.reembed() == 0


async def test_vectors_of_another_embedder_are_not_compared(
    db: Database, users: tuple[int, int]
) -> None:
    a, _ = users
    small = MemoryStore(db, HashingEmbedder(16))
    await small.add(a, "Paints watercolours")
    big = MemoryStore(db, HashingEmbedder(384))
    assert await big.search(a, "watercolours", mode="vector") == []
    assert len(await big.search(a, "watercolours")) == 1  # still found by its words
    assert await big.reembed(a, batch_size=1) == 1
    assert len(await big.search(a, "watercolours", mode="vector")) == 1


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": ""}, "content must not be empty"),
        ({"content": " \n\t "}, "content must not be empty"),
        ({"content": "x" * (MAX_CONTENT_CHARS + 1)}, "at most 2000"),
        ({"content": b"bytes"}, "content must be a string"),
        ({"memory_type": "secret"}, "memory_type must be one of"),
        ({"confidence": 1.5}, "confidence must be between 0 and 1"),
        ({"confidence": float("nan")}, "confidence must be between 0 and 1"),
        ({"importance": -0.1}, "importance must be between 0 and 1"),
        ({"importance": True}, "importance must be a number"),
        ({"temporal_relevance": "soon"}, "temporal_relevance must be one of"),
        ({"expires_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"expires_at": "tomorrow"}, "expires_at must be a datetime"),
        ({"source_message_ids": ["12"]}, "source_message_ids must be an integer id"),
        ({"source_message_ids": [2**63]}, "source_message_ids must be between"),
        ({"guild_id": -5}, "guild_id must be between"),
        ({"changed_by": ""}, "changed_by must not be empty"),
        ({"embedding": [0.0] * 384}, "not all zeros"),
        ({"embedding": [1.0] * 3}, "has 3 dimensions"),
        ({"embedding": [float("inf")] + [0.0] * 383}, "finite"),
    ],
)
async def test_add_rejects_bad_input_and_writes_nothing(
    store: MemoryStore, users: tuple[int, int], kwargs: dict[str, Any], message: str
) -> None:
    a, _ = users
    args: dict[str, Any] = {"content": "valid content"} | kwargs
    content = args.pop("content")
    with pytest.raises(InvalidInputError, match=message):
        await store.add(a, content, **args)
    assert await store.count(a, include_invalid=True) == 0


@pytest.mark.parametrize("user_id", [0, -1, 2**63, True, "1", 1.0, None])
async def test_bad_user_ids_are_rejected(store: MemoryStore, user_id: Any) -> None:
    for call in (
        store.add(user_id, "x"),
        store.get(user_id, 1),
        store.list_memories(user_id),
        store.search(user_id, "x"),
        store.forget_all(user_id),
    ):
        with pytest.raises(InvalidInputError, match="user_id"):
            await call


async def test_odd_text_is_stored_safely(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    nul = await store.add(a, "before\x00after")
    assert nul.content == "before\ufffdafter"
    surrogate = await store.add(a, "broken \ud800 surrogate")
    assert surrogate.content == "broken \ufffd surrogate"
    odd = "Zoë 🐕‍🦺 שלום\u200b Ω ' \" \\ ; DROP TABLE memories; --"
    stored = await store.add(a, odd)
    assert (await store.get(a, stored.id)).content == odd
    assert await store.count(a) == 3


@pytest.mark.parametrize(
    "query",
    [
        "a & b | !c <-> d:* 'quoted' \\ (",
        "the of and a",
        "'; DROP TABLE memories; --",
        "日本語のテキスト",
        "🐕",
        "x" * 10_000,
    ],
)
async def test_any_query_text_is_searched_safely(
    store: MemoryStore, users: tuple[int, int], query: str
) -> None:
    a, _ = users
    memory = await store.add(a, "Has a dog called Biscuit")
    hits = await store.search(a, query)
    assert [h.item.id for h in hits] == [memory.id]  # the only candidate, by vector
    assert await store.count(a) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "query must not be empty"),
        ({"query": "x" * 10_001}, "at most 10000"),
        ({"query": "tea", "k": 0}, "k must be an integer between 1 and 200"),
        ({"query": "tea", "k": 201}, "k must be an integer between 1 and 200"),
        ({"query": "tea", "token_budget": 0}, "token_budget"),
        ({"query": "tea", "mode": "semantic"}, "mode must be one of"),
        ({"query": "tea", "memory_types": "hobby"}, "memory_types must be a sequence"),
        ({"query": "tea", "memory_types": ["nope"]}, "memory_types must be one of"),
        ({"query": "tea", "query_embedding": [1.0, 0.0]}, "has 2 dimensions"),
    ],
)
async def test_search_rejects_bad_arguments(
    store: MemoryStore, users: tuple[int, int], kwargs: dict[str, Any], message: str
) -> None:
    a, _ = users
    query = kwargs.pop("query")
    with pytest.raises(InvalidInputError, match=message):
        await store.search(a, query, **kwargs)


# --- search ----------------------------------------------------------------------------------


async def test_search_ranks_the_relevant_memory_first(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    await store.add(a, "Works night shifts as a nurse", memory_type="work")
    dog = await store.add(a, "Her dog Biscuit died in the spring", memory_type="grief_context")
    await store.add(a, "Prefers short answers", memory_type="preference")
    await store.add(a, "Lives near the sea in Porto", memory_type="location")
    hits = await store.search(a, "how is she coping since her dog died?")
    assert hits[0].item.id == dog.id
    assert hits[0].parts.text_rank == 1 and hits[0].parts.vector_rank == 1
    assert hits[0].score > hits[1].score
    only = await store.search(a, "dog", mode="fulltext")
    assert [h.item.id for h in only] == [dog.id]
    typed = await store.search(a, "dog", memory_types=["work", "location"])
    assert dog.id not in [h.item.id for h in typed] and len(typed) == 2


async def test_importance_breaks_ties(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    high = await store.add(a, "Likes green tea", importance=0.9)
    await store.add(a, "Likes green tea", importance=0.2)
    hits = await store.search(a, "green tea")
    assert hits[0].item.id == high.id
    assert hits[0].parts.importance == pytest.approx(0.9)
    assert hits[0].score - hits[1].score == pytest.approx(0.1 * 0.7, abs=1e-6)


async def test_token_budget_is_respected(store: MemoryStore, users: tuple[int, int]) -> None:
    a, _ = users
    for i in range(12):
        await store.add(a, f"Travel memory {i}: " + "went to the mountains and hiked " * (i + 1))
    unlimited = await store.search(a, "mountains hiked travel", k=12)
    assert len(unlimited) == 12
    for hit in unlimited:
        assert hit.tokens == count_tokens(hit.item.content)
    budget = 60
    limited = await store.search(a, "mountains hiked travel", k=12, token_budget=budget)
    assert limited and sum(h.tokens for h in limited) <= budget
    assert len(limited) < 12
    # what is kept is the best of what fits, in rank order
    fits = [h for h in unlimited if h.tokens <= budget]
    assert limited[0].item.id == fits[0].item.id
    assert await store.search(a, "mountains", token_budget=1) == []
    assert len(await store.search(a, "mountains", k=3)) == 3


async def test_a_transaction_commits_all_or_nothing(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    alice, _ = users
    tea = await store.add(alice, "Loves green tea")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction():
            await store.invalidate(alice, tea.id, reason="contradicted")
            await store.add(alice, "Loves oolong tea")
            assert await store.count(alice) == 1  # its own changes are visible inside
            raise Boom
    assert [m.content for m in await store.list_memories(alice, include_invalid=True)] == [
        "Loves green tea"
    ]
    assert (await store.get(alice, tea.id)).is_valid

    async with store.transaction():
        with pytest.raises(NotFoundError):  # undoes only itself: the block goes on
            await store.invalidate(alice, 987654, reason="no such memory")
        with pytest.raises(NotFoundError):  # a database error (no such user), caught
            await store.add(987654, "Belongs to nobody")
        await store.invalidate(alice, tea.id, reason="contradicted")
        async with store.transaction():  # nested: a savepoint
            await store.add(alice, "Loves oolong tea")
    assert [m.content for m in await store.list_memories(alice)] == ["Loves oolong tea"]
    assert not (await store.get(alice, tea.id)).is_valid


async def test_embed_false_stores_without_a_vector_for_reembed(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    alice, _ = users
    tea = await store.add(alice, "Loves green tea", embed=False)
    assert tea.embedding_model is None
    cake = await store.add(alice, "Bakes carrot cake")
    lemon = await store.update(alice, cake.id, content="Bakes lemon cake", embed=False)
    assert lemon.embedding_model is None
    assert await store.reembed(alice) == 2
    assert {m.embedding_model for m in await store.list_memories(alice)} == {store.embedder.name}


async def test_the_message_a_memory_came_from_is_searched_at_a_lower_weight(
    store: MemoryStore, users: tuple[int, int]
) -> None:
    a, _ = users
    pottery = await store.add(
        a,
        "Joined a ceramics course",
        extraction_context="I signed up for a pottery class at the community centre!",
    )
    potter = await store.add(a, "Her aunt is a pottery teacher")
    await store.add(a, "Drinks oolong tea", extraction_context="tea, always tea")
    hits = await store.search(a, "pottery", mode="fulltext")
    assert [h.item.id for h in hits] == [potter.id, pottery.id]  # context words count less
    assert 0 < hits[1].parts.text
    assert hits[1].item.content == "Joined a ceramics course"  # the context is never shown
    assert [h.item.id for h in await store.search(a, "community centre", mode="fulltext")] == [
        pottery.id
    ]
    await store.forget(a, pottery.id)  # erasure takes the context's words with it
    assert await store.search(a, "community centre", mode="fulltext") == []
