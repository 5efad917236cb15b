"""Conformance suite of the Discord message cache (``barkeeper.history.MessageStore``).

Runs on a real PostgreSQL (embedded 18, or TEST_DATABASE_URL's 15): idempotent
upserts, edits, deletes, strictly-before context windows, counts, channel status and
cursor atomicity, hostile content, and a 10k-message batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random

import asyncpg
import pytest

import barkeeper.history as history
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, QueryError
from barkeeper.history import (
    DISCORD_EPOCH_MS,
    Attachment,
    ChannelStatus,
    MessageStore,
    StoredMessage,
    message_from_payload,
    snowflake_time,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z in Unix ms
UTC = dt.UTC


def sf(ms_after: int, seq: int = 0) -> int:
    """A snowflake ``ms_after`` ms after T0 (seq in the low bits keeps ids unique)."""
    return ((T0 + ms_after - DISCORD_EPOCH_MS) << 22) | (seq & 0xFFF)


def msg(
    n: int,
    channel: int = 100,
    *,
    content: str | None = None,
    author: int = 7,
    edited: dt.datetime | None = None,
    **kw: object,
) -> StoredMessage:
    return StoredMessage(
        message_id=sf(n * 1000),
        channel_id=channel,
        author_id=author,
        author_name=f"user{author}",
        content=f"message {n}" if content is None else content,
        edited_at=edited,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(db: Database) -> MessageStore:
    return MessageStore(db)


async def test_public_names_are_exactly_these() -> None:
    assert sorted(history.__all__) == sorted(
        [
            "DISCORD_EPOCH_MS",
            "MAX_SNOWFLAKE",
            "Attachment",
            "ChannelStatus",
            "ChannelStatusUpdate",
            "ContextMessage",
            "MessageStore",
            "StoreResult",
            "StoredMessage",
            "message_from_discord",
            "message_from_payload",
            "sanitize_text",
            "snowflake_time",
            "summarize_content",
        ]
    )
    for name in history.__all__:
        assert getattr(history, name) is not None


# --- upsert ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5, 200], ids=["single-statement", "copy-path"])
async def test_store_many_is_idempotent(store: MessageStore, size: int) -> None:
    batch = [msg(i) for i in range(size)]
    first = await store.store_many(batch)
    assert (first.inserted, first.updated, first.skipped) == (size, 0, 0)
    again = await store.store_many(batch)
    assert (again.inserted, again.updated, again.skipped) == (0, 0, size)
    assert await store.count(100) == size
    assert [m async for m in store.iter_channel(100)] == batch


@pytest.mark.parametrize("size", [6, 300], ids=["single-statement", "copy-path"])
async def test_mixed_batch_reports_inserted_updated_skipped(store: MessageStore, size: int) -> None:
    third = size // 3
    await store.store_many([msg(i) for i in range(2 * third)])
    edited_at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    batch = (
        [msg(i) for i in range(third)]  # unchanged
        + [msg(i, content="edited", edited=edited_at) for i in range(third, 2 * third)]
        + [msg(i) for i in range(2 * third, 3 * third)]  # new
    )
    random.Random(1).shuffle(batch)
    result = await store.store_many(batch)
    assert (result.inserted, result.updated, result.skipped) == (third, third, third)
    assert result.written == 2 * third
    got = await store.get(sf(third * 1000))
    assert got is not None and got.content == "edited" and got.edited_at == edited_at
    assert await store.count(100) == 3 * third


async def test_newer_edit_wins_and_stale_copies_are_ignored(store: MessageStore) -> None:
    t1 = dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    t2 = t1 + dt.timedelta(minutes=5)
    await store.store(msg(1, content="original"))
    assert (await store.store(msg(1, content="first edit", edited=t1))).updated == 1
    assert (await store.store(msg(1, content="second edit", edited=t2))).updated == 1
    # an older copy arriving late (a page fetched before the edits) never wins
    assert (await store.store(msg(1, content="original"))).skipped == 1
    assert (await store.store(msg(1, content="first edit", edited=t1))).skipped == 1
    got = await store.get(sf(1000))
    assert got is not None and (got.content, got.edited_at) == ("second edit", t2)
    # same edit time but different data (Discord unfurled a link): the richer copy wins
    richer = msg(1, content="second edit\n[Embed: 1 embed(s)]", edited=t2, embeds_count=1)
    assert (await store.store(richer)).updated == 1
    got = await store.get(sf(1000))
    assert got is not None and got.embeds_count == 1
    assert await store.count(100) == 1


async def test_stale_copy_ignored_on_copy_path_too(store: MessageStore) -> None:
    t1 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    await store.store_many([msg(i, content=f"edit {i}", edited=t1) for i in range(100)])
    result = await store.store_many([msg(i) for i in range(150)])  # 100 stale + 50 new
    assert (result.inserted, result.updated, result.skipped) == (50, 0, 100)
    got = await store.get(sf(42 * 1000))
    assert got is not None and got.content == "edit 42"


async def test_a_page_cached_by_another_process_is_merged_not_duplicated(
    store: MessageStore, db: Database
) -> None:
    t1 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    await store.store_many([msg(i) for i in range(100)])
    other = MessageStore(db)  # knows nothing of what `store` wrote: tries COPY first
    page = [msg(i, content="edited", edited=t1) if i % 10 == 0 else msg(i) for i in range(50, 150)]
    result = await other.store_many(page)
    assert (result.inserted, result.updated, result.skipped) == (50, 5, 45)
    assert await store.count(100) == 150
    again = await other.store_many(page)  # now inside what `other` wrote: upsert directly
    assert (again.inserted, again.updated, again.skipped) == (0, 0, 100)
    got = await store.get(sf(60_000))
    assert got is not None and got.content == "edited"


async def test_duplicate_ids_in_one_batch_keep_the_newest_copy(store: MessageStore) -> None:
    t1 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    result = await store.store_many([msg(1), msg(1, content="edited", edited=t1), msg(1)])
    assert (result.inserted, result.skipped) == (1, 2)
    got = await store.get(sf(1000))
    assert got is not None and got.content == "edited"
    big = [msg(i) for i in range(100)] + [msg(5, content="later copy")]
    await store.store_many(big)
    got = await store.get(sf(5000))
    assert got is not None and got.content == "later copy", "a tie goes to the later copy"


async def test_guild_id_is_not_erased_by_a_copy_without_one(store: MessageStore) -> None:
    await store.store(msg(1, guild_id=55))
    await store.store(msg(1, content="edited", edited=dt.datetime(2024, 1, 1, tzinfo=UTC)))
    got = await store.get(sf(1000))
    assert got is not None and got.guild_id == 55 and got.content == "edited"


async def test_concurrent_overlapping_batches_store_each_message_once(
    store: MessageStore,
) -> None:
    batch = [msg(i) for i in range(500)]
    results = await asyncio.gather(*(store.store_many(batch) for _ in range(3)))
    assert sum(r.inserted for r in results) == 500
    assert sum(r.skipped for r in results) == 1000
    assert await store.count(100) == 500


async def test_created_at_is_the_snowflake_time(store: MessageStore, db: Database) -> None:
    rng = random.Random(3)
    ms_values = [0, 1, 999, 2**41 - 1] + [rng.randrange(2**41) for _ in range(300)]
    ids = sorted({(ms << 22) | rng.randrange(1 << 22) for ms in ms_values} - {0})
    await store.store_many(StoredMessage(i, 100, 7, "u", "x") for i in ids)
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT message_id, created_at FROM discord_messages")
    assert len(rows) == len(ids)
    for row in rows:
        assert row["created_at"] == snowflake_time(row["message_id"])


# --- deletes -----------------------------------------------------------------------------


async def _contents(db: Database) -> list[str]:
    async with db.acquire() as conn:
        return [r[0] for r in await conn.fetch("SELECT content FROM discord_messages")]


async def test_delete_removes_content(store: MessageStore, db: Database) -> None:
    await store.store_many([msg(i, content=f"secret {i}") for i in range(10)])
    assert await store.delete(sf(3000)) is True
    assert await store.delete(sf(3000)) is False
    assert await store.delete_many([sf(4000), sf(5000), sf(999_000)]) == 2
    assert await store.delete_many([]) == 0
    contents = await _contents(db)
    assert not {"secret 3", "secret 4", "secret 5"} & set(contents)
    assert len(contents) == 7 and await store.count(100) == 7
    assert await store.get(sf(3000)) is None


async def test_hold_keeps_messages_from_deletes_until_the_holder_ends(
    store: MessageStore, db: Database
) -> None:
    await store.store_many([msg(1), msg(2), msg(3)])
    one, two, three = sf(1000), sf(2000), sf(3000)
    async with db.acquire() as other:
        # One being deleted is as good as gone; one being edited is held.
        tx = other.transaction()
        await tx.start()
        await other.execute("DELETE FROM discord_messages WHERE message_id = $1", one)
        await other.execute(
            "UPDATE discord_messages SET content = 'edited' WHERE message_id = $1", two
        )
        async with db.transaction() as conn:
            assert await store.hold(conn, [one, two, three, sf(9000)]) == {two, three}
        await tx.rollback()
        # Held: a delete cannot go through before the holder's transaction ends.
        async with db.transaction() as conn:
            assert await store.hold(conn, [three]) == {three}
            await other.execute("SET lock_timeout = '100ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute("DELETE FROM discord_messages WHERE message_id = $1", three)
            await other.execute("RESET lock_timeout")
    assert await store.delete(three) is True  # released with the transaction


async def test_delete_channel_forgets_messages_and_status(store: MessageStore) -> None:
    await store.store_many([msg(i, 100) for i in range(5)] + [msg(i, 200) for i in range(5, 8)])
    await store.update_channel_status(100, is_fully_backfilled=True)
    assert await store.delete_channel(100) == 5
    assert await store.get_channel_status(100) is None
    assert await store.count(100) == 0
    assert await store.count(200) == 3


async def test_delete_author_removes_their_messages_everywhere(store: MessageStore) -> None:
    await store.store_many(
        [msg(i, 100, author=1 + i % 2) for i in range(10)]
        + [msg(i, 200, author=1 + i % 2) for i in range(10, 16)]
    )
    assert await store.delete_author(1) == 8
    for channel in (100, 200):
        left = [m async for m in store.iter_channel(channel)]
        assert left and all(m.author_id == 2 for m in left)
    assert await store.count(100) == 5 and await store.count(200) == 3
    assert await store.delete_author(1) == 0


async def test_count_stays_exact_whoever_deletes(store: MessageStore, db: Database) -> None:
    await store.store_many([msg(i, 100) for i in range(50)] + [msg(i, 200) for i in range(50, 60)])
    assert (await store.count(100), await store.count(200)) == (50, 10)
    async with db.acquire() as conn:
        # what the privacy module does: plain SQL, not our API
        await conn.execute("DELETE FROM discord_messages WHERE message_id < $1", sf(10_000))
        assert await store.count(100) == 40
        await conn.execute("TRUNCATE discord_messages CASCADE")
    assert [await store.count(c) for c in (100, 200)] == [0, 0]


async def test_recount_repairs_counts_after_raw_inserts(store: MessageStore, db: Database) -> None:
    await store.store_many([msg(i, 100) for i in range(3)])
    async with db.acquire() as conn:
        # inserts that bypass MessageStore are not counted until a recount
        await conn.execute(
            "INSERT INTO discord_messages (message_id, channel_id, author_id, author_name, "
            "content) VALUES ($1, 300, 1, 'x', 'y'), ($2, 100, 1, 'x', 'y')",
            sf(70_000),
            sf(71_000),
        )
    assert (await store.count(100), await store.count(300)) == (3, 0)
    assert await store.recount(100) == 1
    assert (await store.count(100), await store.count(300)) == (4, 0)
    assert await store.recount() == 1, "channel 300 gets its row"
    assert await store.count(300) == 1
    assert await store.recount() == 0


# --- context windows ---------------------------------------------------------------------


async def test_context_is_strictly_before_and_oldest_first(store: MessageStore) -> None:
    batch = [msg(i) for i in range(10)]
    await store.store_many(batch)
    current = batch[5]
    window = await store.get_context(100, before=current.message_id, limit=3)
    assert [m.message_id for m in window] == [b.message_id for b in batch[2:5]]
    # Junkie's leak: later messages exist and must not appear, nor the current one
    assert all(m.message_id < current.message_id for m in window)
    first = window[0]
    assert (first.author_name, first.content, first.author_id) == ("user7", "message 2", 7)
    assert first["content"] == "message 2"
    assert first.created_at == snowflake_time(batch[2].message_id)
    assert first.timestamp_str == "2023-11-14 22:13:22"
    assert first.author_is_bot is False and first.reply_to_id is None
    newest = await store.get_context(100, limit=2)
    assert [m.message_id for m in newest] == [batch[8].message_id, batch[9].message_id]


async def test_context_limits(store: MessageStore) -> None:
    batch = [msg(i) for i in range(20)]
    await store.store_many(batch)
    before = batch[10].message_id
    assert await store.get_context(100, before=before, limit=0) == []
    assert [m.message_id for m in await store.get_context(100, before=before, limit=1)] == [
        batch[9].message_id
    ]
    everything = await store.get_context(100, before=before, limit=100_000)
    assert [m.message_id for m in everything] == [m.message_id for m in batch[:10]]
    assert await store.get_context(100, before=batch[0].message_id, limit=5) == []
    assert await store.get_context(999, limit=5) == []
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(InvalidInputError):
            await store.get_context(100, limit=bad)  # type: ignore[arg-type]


async def test_context_before_an_uncached_id(store: MessageStore) -> None:
    await store.store_many([msg(i) for i in range(0, 10, 2)])  # 0, 2, 4, 6, 8
    window = await store.get_context(100, before=sf(5000), limit=10)
    assert [m.message_id for m in window] == [sf(0), sf(2000), sf(4000)]


async def test_context_shows_edits_and_excludes_deleted(store: MessageStore) -> None:
    await store.store_many([msg(i) for i in range(5)])
    await store.store(msg(2, content="fixed typo", edited=dt.datetime(2024, 1, 1, tzinfo=UTC)))
    await store.delete(sf(3000))
    window = await store.get_context(100, limit=10)
    assert [m.content for m in window] == ["message 0", "message 1", "fixed typo", "message 4"]


async def test_channels_are_isolated(store: MessageStore) -> None:
    # interleaved ids: each channel's neighbours in time belong to the other
    await store.store_many([msg(i, 100 if i % 2 else 200) for i in range(40)])
    window = await store.get_context(100, before=sf(30_000), limit=100)
    assert {(await store.get(m.message_id)).channel_id for m in window} == {100}  # type: ignore[union-attr]
    assert [m.message_id for m in window] == [sf(i * 1000) for i in range(1, 30, 2)]
    assert await store.count(100) == 20 and await store.count(200) == 20
    assert await store.newest_id(100) == sf(39_000) and await store.newest_id(200) == sf(38_000)
    assert await store.oldest_id(100) == sf(1000) and await store.oldest_id(200) == sf(0)
    assert await store.get_ids_between(200, sf(0), sf(6000)) == [
        sf(0),
        sf(2000),
        sf(4000),
        sf(6000),
    ]
    assert {m.channel_id async for m in store.iter_channel(200)} == {200}


async def test_counts_of_an_unknown_channel(store: MessageStore) -> None:
    assert await store.count(5) == 0
    assert await store.newest_id(5) is None and await store.oldest_id(5) is None
    assert await store.get_channel_status(5) is None
    assert await store.get_ids_between(5, 1, 2**62) == []
    assert [m async for m in store.iter_channel(5)] == []


async def test_get_ids_between_is_inclusive(store: MessageStore) -> None:
    await store.store_many([msg(i) for i in range(10)])
    assert await store.get_ids_between(100, sf(2000), sf(5000)) == [
        sf(i * 1000) for i in range(2, 6)
    ]
    assert await store.get_ids_between(100, sf(2000) + 1, sf(5000) - 1) == [sf(3000), sf(4000)]
    assert await store.get_ids_between(100, sf(5000), sf(2000)) == []


async def test_iter_channel_pages_in_order(store: MessageStore) -> None:
    batch = [msg(i) for i in range(50)]
    await store.store_many(batch)
    assert [m async for m in store.iter_channel(100, page_size=7)] == batch
    assert [m async for m in store.iter_channel(100, page_size=50)] == batch
    middle = [m async for m in store.iter_channel(100, after=sf(9000), before=sf(20_000))]
    assert middle == batch[10:20]
    with pytest.raises(InvalidInputError):
        async for _ in store.iter_channel(100, page_size=0):
            pass


async def test_get_page_walks_one_channel_forward(store: MessageStore) -> None:
    batch = [msg(i) for i in range(25)]
    await store.store_many([*batch, msg(1003, channel=101), msg(1030, channel=99)])
    first = await store.get_page(100, limit=10)
    assert first == batch[:10]
    second = await store.get_page(100, after=first[-1].message_id, limit=10)
    assert second == batch[10:20]
    assert await store.get_page(100, after=batch[-1].message_id) == []
    assert await store.get_page(100, after=sf(4500), limit=2) == batch[5:7]
    for bad in ({"after": -1}, {"after": 2**63}, {"limit": 0}, {"limit": 10_001}, {"limit": True}):
        with pytest.raises(InvalidInputError):
            await store.get_page(100, **bad)  # type: ignore[arg-type]


# --- channel status and cursors ----------------------------------------------------------


async def test_update_channel_status_sets_only_given_fields(store: MessageStore) -> None:
    synced = dt.datetime(2024, 2, 2, tzinfo=UTC)
    first = await store.update_channel_status(
        100, guild_id=9, name="general", backfill_before_id=sf(500), last_synced_at=synced
    )
    assert (first.guild_id, first.name, first.backfill_before_id) == (9, "general", sf(500))
    assert first.is_fully_backfilled is False and first.message_count == 0
    second = await store.update_channel_status(
        100, is_fully_backfilled=True, completion_reason="start"
    )
    assert second.name == "general" and second.last_synced_at == synced
    assert second.is_fully_backfilled and second.completion_reason == "start"
    assert second.last_updated >= first.last_updated
    reset = await store.update_channel_status(100, backfill_before_id=None, name=None)
    assert reset.backfill_before_id is None and reset.name is None and reset.guild_id == 9
    assert await store.get_channel_status(100) == reset
    with pytest.raises(InvalidInputError, match="unknown channel status field"):
        await store.update_channel_status(100, message_count=5)  # type: ignore[call-arg]
    with pytest.raises(InvalidInputError):
        await store.update_channel_status(100, no_access="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await store.update_channel_status(100, last_synced_at=dt.datetime(2024, 1, 1))


async def test_status_derives_oldest_and_newest_from_the_messages(store: MessageStore) -> None:
    await store.store_many([msg(i) for i in range(5)])
    status = await store.get_channel_status(100)
    assert status is not None
    assert (status.oldest_message_id, status.newest_message_id) == (sf(0), sf(4000))
    assert status.message_count == 5
    await store.delete_many([sf(0), sf(4000)])
    status = await store.get_channel_status(100)
    assert status is not None
    assert (status.oldest_message_id, status.newest_message_id) == (sf(1000), sf(3000))


async def test_list_channels(store: MessageStore) -> None:
    await store.store_many(
        [msg(1, 300, guild_id=1), msg(2, 100, guild_id=2), msg(3, 200, guild_id=1)]
    )
    await store.update_channel_status(400, guild_id=2, no_access=True)
    assert [c.channel_id for c in await store.list_channels()] == [100, 200, 300, 400]
    assert [c.channel_id for c in await store.list_channels(guild_id=1)] == [200, 300]
    only = {c.channel_id: c for c in await store.list_channels(guild_id=2)}
    assert only[400].no_access and only[100].message_count == 1


async def test_batch_and_cursors_move_together(store: MessageStore) -> None:
    async def status() -> ChannelStatus:
        got = await store.get_channel_status(100)
        assert got is not None
        return got

    page1 = [msg(i) for i in range(100, 200)]
    result = await store.store_batch_and_advance(
        100, page1, before_id=page1[0].message_id, after_id=page1[-1].message_id
    )
    assert result.inserted == 100
    now = await status()
    assert (now.backfill_before_id, now.backfill_after_id) == (sf(100_000), sf(199_000))
    assert now.message_count == 100
    # deepen: before_id only moves down, after_id only up
    page0 = [msg(i) for i in range(0, 100)]
    await store.store_batch_and_advance(100, page0, before_id=sf(0), after_id=sf(50_000))
    now = await status()
    assert (now.backfill_before_id, now.backfill_after_id) == (sf(0), sf(199_000))
    await store.store_batch_and_advance(100, [], before_id=sf(150_000))
    assert (await status()).backfill_before_id == sf(0)
    await store.store_batch_and_advance(
        100, [], is_fully_backfilled=True, completion_reason="start of channel"
    )
    now = await status()
    assert now.is_fully_backfilled and now.completion_reason == "start of channel"
    assert now.message_count == 200 and await store.count(100) == 200
    # a small page (single statement, no COPY) moves cursors the same way
    await store.store_batch_and_advance(100, [msg(300), msg(301)], after_id=sf(301_000))
    now = await status()
    assert (now.backfill_after_id, now.message_count) == (sf(301_000), 202)


async def test_batch_with_deletes_reconciles(store: MessageStore) -> None:
    await store.store_many([msg(i) for i in range(10)] + [msg(i, 200) for i in range(10, 12)])
    now = dt.datetime.now(UTC)
    fetched = [msg(i) for i in range(10) if i not in (3, 7)]
    edited = msg(5, content="edited", edited=now)
    cached = await store.get_ids_between(100, sf(0), sf(9000))
    gone = sorted(set(cached) - {m.message_id for m in fetched})
    result = await store.store_batch_and_advance(
        100,
        [*fetched[:4], edited, *fetched[5:]],
        delete_ids=[*gone, sf(10_000)],  # an id of another channel is not touched
        last_synced_at=now,
    )
    assert (result.deleted, result.updated) == (2, 1)
    status = await store.get_channel_status(100)
    assert status is not None and status.last_synced_at == now and status.message_count == 8
    assert await store.get_ids_between(100, sf(0), sf(9000)) == [
        sf(i * 1000) for i in range(10) if i not in (3, 7)
    ]
    assert await store.count(200) == 2


async def test_store_batch_and_advance_refuses_bad_arguments(store: MessageStore) -> None:
    with pytest.raises(InvalidInputError, match="channel"):
        await store.store_batch_and_advance(100, [msg(1, 100), msg(2, 200)], before_id=sf(0))
    with pytest.raises(InvalidInputError, match="both stored and deleted"):
        await store.store_batch_and_advance(100, [msg(1)], delete_ids=[sf(1000)])
    with pytest.raises(InvalidInputError, match="not both"):
        await store.store_batch_and_advance(100, [], before_id=sf(1), backfill_before_id=sf(2))
    with pytest.raises(InvalidInputError):
        await store.store_batch_and_advance(100, [], after_id=-5)
    with pytest.raises(InvalidInputError):
        await store.store_batch_and_advance(100, [], bogus=1)  # type: ignore[call-arg]
    assert await store.get_channel_status(100) is None, "nothing was written"


@pytest.mark.parametrize("poison_has_attachment", [False, True], ids=["in-copy", "in-upsert"])
async def test_a_batch_that_fails_midway_leaves_no_rows_and_no_cursor_move(
    store: MessageStore, db: Database, poison_has_attachment: bool
) -> None:
    await store.store_batch_and_advance(
        100, [msg(i) for i in range(1000, 1010)], before_id=sf(1_000_000)
    )
    async with db.acquire() as conn:
        # a constraint of the test's own: the 150th message of the page is refused
        await conn.execute(
            "ALTER TABLE discord_messages ADD CONSTRAINT test_poison CHECK (content <> 'poison')"
        )
    extra = (
        {"attachments": (Attachment("https://x/y.png", "y.png"),)} if poison_has_attachment else {}
    )
    page = [msg(i) for i in range(800, 1000)]
    page[150] = msg(950, content="poison", **extra)
    with pytest.raises(QueryError) as failure:
        await store.store_batch_and_advance(100, page, before_id=sf(800_000))
    assert failure.value.sqlstate == "23514"
    status = await store.get_channel_status(100)
    assert status is not None
    assert status.backfill_before_id == sf(1_000_000) and status.message_count == 10
    assert await store.get_ids_between(100, sf(800_000), sf(999_000)) == []


async def test_a_cancelled_batch_leaves_no_rows_and_no_cursor_move(
    store: MessageStore, db: Database
) -> None:
    await store.update_channel_status(100, backfill_before_id=sf(1_000_000))
    locker = await asyncpg.connect(db.url.dsn(), server_settings={"search_path": db.schema})
    try:
        # hold the channel row: the batch inserts its messages, then waits on this lock
        tx = locker.transaction()
        await tx.start()
        await locker.execute("SELECT 1 FROM discord_channels WHERE channel_id = 100 FOR UPDATE")
        locker_pid = await locker.fetchval("SELECT pg_backend_pid()")
        task = asyncio.create_task(
            store.store_batch_and_advance(
                100, [msg(i) for i in range(500, 1000)], before_id=sf(500_000)
            )
        )
        async with db.acquire() as conn:
            for _ in range(500):
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    locker_pid,
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting == 1, "the batch never reached the lock"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tx.rollback()
    finally:
        await locker.close()
    status = await store.get_channel_status(100)
    assert status is not None and status.backfill_before_id == sf(1_000_000)
    assert status.message_count == 0 and await store.get_ids_between(100, 1, 2**62) == []
    # the pool still works, and the same page goes in whole afterwards
    result = await store.store_batch_and_advance(
        100, [msg(i) for i in range(500, 1000)], before_id=sf(500_000)
    )
    assert result.inserted == 500
    status = await store.get_channel_status(100)
    assert status is not None and status.backfill_before_id == sf(500_000)


async def test_a_10k_message_batch(store: MessageStore) -> None:
    rng = random.Random(10)
    batch = [
        msg(
            i,
            100 + i % 3,
            content=" ".join(rng.choices(["a", "bé", "😀", "מה"], k=rng.randrange(1, 60))),
        )
        for i in range(10_000)
    ]
    result = await store.store_many(batch)
    assert result.inserted == 10_000
    assert [await store.count(c) for c in (100, 101, 102)] == [3334, 3333, 3333]
    assert (await store.store_many(batch)).skipped == 10_000
    t1 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    edited = [msg(i, 100 + i % 3, content=f"e{i}", edited=t1) for i in range(10_000)]
    assert (await store.store_many(edited)).updated == 10_000
    window = await store.get_context(101, before=sf(5_000_000), limit=2000)
    assert len(window) == 1667 and window[-1].content == "e4999"
    assert [m.message_id for m in window] == sorted(m.message_id for m in window)


# --- hostile content ---------------------------------------------------------------------

ROUND_TRIP = {
    "emoji": "family 👩‍👩‍👧‍👦 flag 🏳️‍🌈 skin 👍🏽 keycap 1️⃣",
    "rtl": "مرحبا بالعالم — שלום עולם \u202eevil\u202c",
    "zero-width": "a\u200bb\u200cc\u200dd\u2060e\ufeff",
    "combining": "e\u0301 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ ﷽",
    "controls": "tab\tnewline\nreturn\rbackslash\\N \x01\x1f\x7f bell\x07",
    "astral-and-nonchars": "\U0010ffff \uffff \ufffe \U0001f9ea",
    "4000-emoji": "😀" * 4000,
    "4000-mixed": ("aé😀ש\u0301" * 800)[:4000],
    "longer-than-discord": "x" * 12_000,
    "empty": "",
}


@pytest.mark.parametrize("path_size", [1, 100], ids=["single-statement", "copy-path"])
async def test_unicode_round_trips_exactly(store: MessageStore, path_size: int) -> None:
    messages = [
        StoredMessage(sf(n * 1000), 100, 7, text[:50] or "anon", text)
        for n, text in enumerate(ROUND_TRIP.values())
    ]
    filler = [msg(i) for i in range(100, 100 + path_size - 1)] if path_size > 1 else []
    for m in messages:
        result = await store.store_many([m, *filler]) if path_size > 1 else await store.store(m)
        assert result.sanitized_chars == 0
    for m in messages:
        got = await store.get(m.message_id)
        assert got is not None and got.content == m.content and got.author_name == m.author_name
    window = await store.get_context(100, before=sf(50_000), limit=50)
    assert [w.content for w in window] == list(ROUND_TRIP.values())


async def test_nul_and_lone_surrogates_are_replaced_counted_and_logged(
    store: MessageStore, caplog: pytest.LogCaptureFixture
) -> None:
    raw = (
        '{"id": "ID", "channel_id": "100", "type": 0,'
        ' "content": "half \\ud800 a pair \\ud83d\\ude00",'
        ' "author": {"id": "7", "username": "bad\\u0000name"},'
        ' "attachments": [{"url": "https://x/a\\u0000.png", "filename": "a\\udfff.png",'
        ' "size": 3}]}'
    )
    payload = json.loads(raw.replace("ID", str(sf(1000))))
    from_json = message_from_payload(payload)
    # content's lone surrogate, the name's NUL, the url's NUL (in the attachment and in
    # its summary line in content), the filename's lone surrogate
    assert from_json.sanitized_chars == 5
    good = [msg(i) for i in range(2, 60)]
    nul = msg(60, content="before\x00after\x00")
    with caplog.at_level(logging.WARNING, logger="barkeeper.history"):
        result = await store.store_many([from_json, *good, nul])
    assert result.inserted == 60, "one bad message never loses the batch"
    assert await store.count(100) == 60
    assert result.sanitized_message_ids == (sf(1000), sf(60_000))
    assert result.sanitized_chars == 7
    got = await store.get(sf(1000))
    assert got is not None
    assert got.content.startswith("half \ufffd a pair 😀")
    assert got.author_name == "bad\ufffdname" and got.sanitized_chars == 5
    assert got.attachments[0].filename == "a\ufffd.png"
    stored_nul = await store.get(sf(60_000))
    assert stored_nul is not None and stored_nul.content == "before\ufffdafter\ufffd"
    assert stored_nul.sanitized_chars == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert str(sf(1000)) in logged and str(sf(60_000)) in logged
    assert "before" not in logged and "half" not in logged, "content is never logged"


async def test_attachment_only_message_is_kept(store: MessageStore) -> None:
    payload = {
        "id": str(sf(1000)),
        "channel_id": "100",
        "type": 0,
        "content": "",
        "author": {"id": "7", "username": "u"},
        "attachments": [
            {
                "id": "1",
                "url": "https://cdn/x.jpg",
                "filename": "x.jpg",
                "size": 5,
                "content_type": "image/jpeg",
            }
        ],
    }
    await store.store(message_from_payload(payload))
    window = await store.get_context(100, limit=5)
    assert [w.content for w in window] == ["[Attachment: https://cdn/x.jpg]"]
    got = await store.get(sf(1000))
    assert got is not None
    assert got.attachments == (Attachment("https://cdn/x.jpg", "x.jpg", "image/jpeg", 5),)


async def test_durable_store_writes_too(db: Database) -> None:
    store = MessageStore(db, durable=True)
    assert (await store.store_many([msg(i) for i in range(100)])).inserted == 100
    assert (await store.store(msg(200))).inserted == 1
    assert await store.count(100) == 101


async def test_bad_messages_are_refused_before_any_write(store: MessageStore) -> None:
    for bad in (0, -1, 2**63, True, "5", 1.0):
        with pytest.raises(InvalidInputError):
            StoredMessage(bad, 100, 7, "u", "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            StoredMessage(sf(0), bad, 7, "u", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        StoredMessage(sf(0), 100, 7, "u", "x", edited_at=dt.datetime(2024, 1, 1))
    with pytest.raises(InvalidInputError):
        StoredMessage(sf(0), 100, 7, "u", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        StoredMessage(sf(0), 100, 7, "u", "x", embeds_count=-1)
    with pytest.raises(InvalidInputError, match="StoredMessage"):
        await store.store_many([msg(1), {"id": 1}])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        await store.delete_many([1, "2"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        await store.get_context(0)
    assert await store.count(100) == 0


# --- query plans -------------------------------------------------------------------------


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_channel_reads_use_the_channel_index(
    store: MessageStore, db: Database, plan_cache_mode: str
) -> None:
    # Few channels, interleaved in time: the layout where a planner given
    # `channel_id = $1 AND message_id < $2` prefers walking the primary key backwards.
    await store.store_many(msg(i, 100 + i % 3) for i in range(30_000))
    from barkeeper.history import _store as sql

    queries = {
        "context": (sql._CONTEXT, (101, sf(20_000_000), 2000)),
        "page": (sql._PAGE, (101, sf(1000), sf(29_000_000), 1000)),
        "page_after": (sql._PAGE_AFTER, (101, sf(1000), 1000)),
        "ids_between": (sql._IDS_BETWEEN, (101, sf(1000), sf(9_000_000))),
        "newest": (sql._NEWEST, (101,)),
        "oldest": (sql._OLDEST, (101,)),
        "unknown_channel": (sql._CONTEXT, (999, sf(20_000_000), 2000)),
    }
    async with db.acquire() as conn:
        await conn.execute("ANALYZE discord_messages")
        await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        try:
            for name, (query, args) in queries.items():
                stmt = f"plan_{name}"
                await conn.execute(f"PREPARE {stmt} AS {query}")
                values = ", ".join(str(a) for a in args)
                plan = "\n".join(
                    r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE {stmt}({values})")
                )
                assert "ix_discord_messages_channel_message" in plan, (name, plan)
                assert "pkey" not in plan and "Seq Scan" not in plan, (name, plan)
                if name != "ids_between":  # the LIMIT queries read in index order
                    assert "Sort" not in plan, (name, plan)
                await conn.execute(f"DEALLOCATE {stmt}")
        finally:
            await conn.execute("RESET plan_cache_mode")
