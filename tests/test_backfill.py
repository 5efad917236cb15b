"""The backfill engine: the real discord.py against the Discord emulator, a real PostgreSQL.

Every test compares the cache with the emulator's ground truth, message by message
(ids, content with attachment/embed summaries, authors, edits, replies). The fault
tests print the figures they measured (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import asyncpg
import pytest

from barkeeper.backfill import (
    Backfill,
    BackfillResult,
    ChannelLocks,
    Completion,
    DiscordHistorySource,
    LockLostError,
    ProgressEvent,
)
from barkeeper.db import Database, parse_database_url
from barkeeper.errors import InvalidInputError
from barkeeper.testing.discord import (
    DiscordEmulator,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitMessage,
    ExplicitUser,
)
from tests._backfill import MESSAGES_ROUTE, RecordingProxy, compare_with_truth, cursors, spec

FAST_RETRY: dict[str, Any] = {"backoff": 0.05, "backoff_max": 0.3}


async def backfill(
    db: Database,
    base_url: str,
    token: str,
    channel_ids: list[int] | None = None,
    *,
    request_timeout: float = 10.0,
    **options: Any,
) -> BackfillResult:
    async with DiscordHistorySource.connect(
        token, api_base=base_url, request_timeout=request_timeout
    ) as source:
        engine = Backfill(db, source, **{**FAST_RETRY, **options})
        return await engine.run(channel_ids)


def _ids(emu: DiscordEmulator, channel_id: int) -> list[int]:
    return [r["id"] for r in emu.truth()[channel_id]]


# -- the whole history, exactly ------------------------------------------------------------


async def test_backfill_equals_ground_truth(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    rich = {
        "edit_rate": 0.2,
        "attachment_rate": 0.15,
        "empty_attachment_rate": 0.05,
        "embed_rate": 0.1,
        "long_rate": 0.02,
        "unicode_rate": 0.2,
        "hostile_text": True,
        "hostile_rate": 0.05,
    }
    caplog.set_level(logging.INFO, logger="barkeeper.backfill")
    async with DiscordEmulator(spec(channels=4, messages_per_channel=450, **rich)) as emu:
        events: list[ProgressEvent] = []
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            engine = Backfill(db, source, concurrency=3, progress=events.append)
            result = await engine.run()
        channels = emu.channel_ids()
        comparison = await compare_with_truth(db, emu, channels)
        assert comparison.ok, comparison
        assert comparison.compared == 4 * 450
        assert result.ok and len(result.channels) == 4
        for channel in result.channels:
            assert channel.completion is Completion.START_OF_CHANNEL
            assert channel.fetched == channel.stored == channel.count == 450
            # newest page, 3 full pages before it, then the short one; no sync needed
            assert channel.pages == 5 and channel.synced and channel.retries == 0
            row = await cursors(db, channel.channel_id)
            ids = _ids(emu, channel.channel_id)
            assert row["backfill_after_id"] == ids[-1]
            assert row["backfill_before_id"] == ids[0]
            assert row["is_fully_backfilled"] and not row["no_access"]
            assert row["completion_reason"] == "start_of_channel"
            assert row["last_synced_at"] is not None
            assert row["name"] == emu.world.channels[channel.channel_id].name
        assert emu.stats.requests[MESSAGES_ROUTE] == 20
        kinds = Counter(e.kind for e in events)
        assert kinds["found"] == 1 and kinds["start"] == 4 and kinds["done"] == 4
        text = caplog.text
        assert "Found 4 channels to backfill" in text
        assert "⚡ No existing data for #" in text
        assert "iteration 1: 100/50000 (need 49900 more)" in text
        assert "✓ Progress: 200/50000 (0%)" in text
        assert "✓ Completed #" in text and ": 450/50000 (0%) - Fetched 450 messages" in text
        assert "Summary: 4/4 channels successful, 0 failed" in text
        assert emu.token not in text

        # A second run only catches up (one empty page) and syncs the newest 200.
        emu.reset_stats()
        caplog.clear()
        again = await backfill(db, emu.base_url, emu.token)
        assert again.ok
        assert [c.stored for c in again.channels] == [0] * 4
        assert [c.pages for c in again.channels] == [3] * 4
        assert emu.stats.requests[MESSAGES_ROUTE] == 12
        assert "↑ Catching up #" in caplog.text
        assert (await compare_with_truth(db, emu, channels)).ok


async def test_explicit_channel_selection_and_bad_ids(db: Database) -> None:
    async with DiscordEmulator(spec(channels=3, messages_per_channel=120)) as emu:
        wanted = emu.channel_ids()[1]
        result = await backfill(db, emu.base_url, emu.token, [wanted, wanted, 987654321])
        assert [c.channel_id for c in result.channels] == [wanted, 987654321]
        assert result.channels[0].ok and result.channels[0].count == 120
        assert result.channels[1].error is not None and "987654321" in result.channels[1].error
        assert result.failures == 1 and not result.ok
        async with db.acquire() as conn:
            assert (
                await conn.fetchval("SELECT count(DISTINCT channel_id) FROM discord_messages") == 1
            )
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            with pytest.raises(InvalidInputError):
                await Backfill(db, source).run([0])
            with pytest.raises(InvalidInputError):
                Backfill(db, source, page_size=101)
            with pytest.raises(InvalidInputError):
                Backfill(db, source, target=0)


# -- completion: start of channel, empty, no permission, target ------------------------------


def _explicit_world() -> ExplicitContent:
    users = [ExplicitUser(id=1000 + i, username=f"user{i}") for i in range(3)]

    def messages(n: int) -> list[ExplicitMessage]:
        return [ExplicitMessage(author_id=1000 + i % 3, content=f"message {i}") for i in range(n)]

    return ExplicitContent(
        users=users,
        guilds=[
            ExplicitGuild(
                name="pub",
                channels=[
                    ExplicitChannel(name="full", messages=messages(230)),
                    ExplicitChannel(name="exactly-100", messages=messages(100)),
                    ExplicitChannel(name="silent"),
                    ExplicitChannel(name="no-history", access="empty", messages=messages(40)),
                    ExplicitChannel(name="hidden", access="forbidden", messages=messages(40)),
                ],
            )
        ],
    )


async def test_no_permission_is_told_apart_from_empty_and_complete(db: Database) -> None:
    async with DiscordEmulator(spec(explicit=_explicit_world())) as emu:
        result = await backfill(db, emu.base_url, emu.token)
        by_name = {c.name: c for c in result.channels}
        assert set(by_name) == {"full", "exactly-100", "silent", "no-history", "hidden"}
        assert result.ok
        full, hundred, silent = by_name["full"], by_name["exactly-100"], by_name["silent"]
        no_history, hidden = by_name["no-history"], by_name["hidden"]
        assert full.completion is Completion.START_OF_CHANNEL and full.count == 230
        # a full page, then an empty one: the start, not "no access"
        assert hundred.completion is Completion.START_OF_CHANNEL and hundred.pages == 2
        assert silent.completion is Completion.EMPTY and not silent.no_access
        assert no_history.completion is Completion.NO_ACCESS and no_history.no_access
        assert hidden.completion is Completion.NO_ACCESS and hidden.no_access
        rows = {c.channel_id: await cursors(db, c.channel_id) for c in result.channels}
        assert rows[silent.channel_id]["is_fully_backfilled"]
        assert rows[silent.channel_id]["completion_reason"] == "empty_channel"
        for channel in (no_history, hidden):
            row = rows[channel.channel_id]
            assert row["no_access"] and not row["is_fully_backfilled"]
            assert row["completion_reason"] == "no_access"
            assert row["message_count"] == 0
        # Permission granted later: the next run backfills the channel and clears the flag.
        emu.set_channel_access(no_history.channel_id, "ok")
        emu.set_channel_access(hidden.channel_id, "ok")
        emu.world.add_message(silent.channel_id, "first words")
        again = await backfill(db, emu.base_url, emu.token)
        assert again.ok
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        assert comparison.ok and comparison.compared == 230 + 100 + 1 + 40 + 40, comparison
        for cid in (no_history.channel_id, hidden.channel_id, silent.channel_id):
            row = await cursors(db, cid)
            assert not row["no_access"] and row["is_fully_backfilled"]
            assert row["completion_reason"] == "start_of_channel"


async def test_losing_access_after_a_backfill_is_noticed(db: Database) -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=150)) as emu:
        cid = emu.channel_ids()[0]
        assert (await backfill(db, emu.base_url, emu.token)).ok
        emu.world.add_message(cid, "said while the bot could not read")
        emu.set_channel_access(cid, "empty")
        result = await backfill(db, emu.base_url, emu.token)
        assert result.channels[0].no_access
        row = await cursors(db, cid)
        assert row["no_access"] and row["message_count"] == 150


async def test_losing_history_mid_deepening_is_not_the_start_of_the_channel(
    db: Database,
) -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=450)) as emu:
        cid = emu.channel_ids()[0]
        first = await backfill(db, emu.base_url, emu.token, target=150)
        assert first.channels[0].completion is Completion.TARGET_REACHED
        # Read Message History taken away, no new message: catch-up sees nothing new,
        # and the deepening page before the cursor comes back as 200 [].
        emu.set_channel_access(cid, "empty")
        lost = await backfill(db, emu.base_url, emu.token, target=1000)
        channel = lost.channels[0]
        assert lost.ok and channel.no_access
        assert channel.completion is Completion.NO_ACCESS
        row = await cursors(db, cid)
        assert row["no_access"] and not row["is_fully_backfilled"]
        assert row["completion_reason"] == "no_access" and row["message_count"] == 150
        # With the permission back, deepening goes on from its cursor to the real start.
        emu.set_channel_access(cid, "ok")
        again = await backfill(db, emu.base_url, emu.token, target=1000)
        assert again.channels[0].completion is Completion.START_OF_CHANNEL
        assert again.channels[0].stored == 300
        comparison = await compare_with_truth(db, emu, [cid])
        assert comparison.ok and comparison.compared == 450, comparison
        row = await cursors(db, cid)
        assert row["is_fully_backfilled"] and not row["no_access"]


async def test_an_empty_sync_page_never_deletes_hidden_history(db: Database) -> None:
    async with DiscordEmulator(spec(channels=2, messages_per_channel=150)) as emu:
        named, unnamed = emu.channel_ids()
        assert (await backfill(db, emu.base_url, emu.token)).ok
        # Both channels are complete, so only the sync reads them again.
        emu.set_channel_access(named, "empty")  # Discord still names its last message
        # Every message deleted while the bot could not read: the channel's
        # last_message_id is null, and the history is hidden all the same.
        for mid in _ids(emu, unnamed):
            emu.world.delete_message(unnamed, mid)
        emu.set_channel_access(unnamed, "empty")
        result = await backfill(db, emu.base_url, emu.token)
        assert result.ok
        for channel in result.channels:
            assert channel.no_access and channel.completion is Completion.NO_ACCESS
            assert channel.deleted == 0 and not channel.synced
            row = await cursors(db, channel.channel_id)
            assert row["no_access"] and row["message_count"] == 150
        # Readable again: Discord now answers 404 for the messages, and only that
        # proves they were deleted.
        emu.set_channel_access(unnamed, "ok")
        again = await backfill(db, emu.base_url, emu.token, [unnamed])
        assert again.ok and again.channels[0].deleted == 150
        assert again.channels[0].count == 0 and not again.channels[0].no_access
        assert (await cursors(db, unnamed))["message_count"] == 0


async def test_a_message_that_cannot_be_read_is_skipped_not_retried(db: Database) -> None:
    users = [ExplicitUser(id=2000 + i, username=f"user{i}") for i in range(2)]
    messages = [ExplicitMessage(author_id=2000 + i % 2, content=f"m{i}") for i in range(250)]
    broken = {
        0: {"author": None},  # the channel's first message
        150: {"edited_timestamp": "yesterday"},  # the oldest of the newest page
        249: {"attachments": "none"},  # the newest message
    }
    for index, overrides in broken.items():
        messages[index] = messages[index].model_copy(update={"payload_overrides": overrides})
    world = ExplicitContent(
        users=users,
        guilds=[ExplicitGuild(name="g", channels=[ExplicitChannel(name="c", messages=messages)])],
    )
    async with DiscordEmulator(spec(explicit=world)) as emu:
        cid = emu.channel_ids()[0]
        ids = _ids(emu, cid)
        bad = [ids[249], ids[150], ids[0]]  # in the order the backfill meets them
        events: list[ProgressEvent] = []
        result = await backfill(db, emu.base_url, emu.token, progress=events.append)
        channel = result.channels[0]
        assert result.ok and channel.retries == 0
        assert channel.malformed == 3 and channel.malformed_ids == bad
        assert result.totals()["malformed"] == 3 and result.as_dict()["malformed"] == 3
        assert channel.completion is Completion.START_OF_CHANNEL
        assert channel.pages == 3  # the cursors moved past the unreadable messages
        assert channel.count == channel.stored == 247
        assert events[-1].kind == "done" and events[-1].malformed == 3
        assert max(e.malformed for e in events if e.kind == "page") == 3
        comparison = await compare_with_truth(db, emu, [cid])
        assert sorted(comparison.gaps) == sorted(bad)
        assert not (comparison.extra or comparison.different or comparison.duplicates)
        row = await cursors(db, cid)
        assert row["backfill_after_id"] == ids[-1] and row["backfill_before_id"] == ids[0]
        assert row["is_fully_backfilled"]

        # A cached message whose payload turns unreadable is not taken for deleted.
        emu.world.channels[cid].messages[ids[200]].payload_overrides = {"author": None}
        emu.world.add_message(cid, "new")
        again = await backfill(db, emu.base_url, emu.token)
        channel = again.channels[0]
        assert again.ok and channel.synced and channel.deleted == 0
        # catch-up starts after the newest, unreadable, message; the sync meets both
        # unreadable messages of the newest 200 once each
        assert channel.malformed == 3
        assert set(channel.malformed_ids) == {ids[249], ids[200], ids[150]}
        async with db.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM discord_messages WHERE message_id = $1", ids[200]
            )
        assert channel.count == 248


async def test_a_page_of_messages_without_ids_fails_the_channel_once(db: Database) -> None:
    garbage = ExplicitMessage(author_id=2000, content="?", payload_overrides={"id": None})
    world = ExplicitContent(
        users=[ExplicitUser(id=2000, username="u")],
        guilds=[ExplicitGuild(name="g", channels=[ExplicitChannel(name="c", messages=[garbage])])],
    )
    async with DiscordEmulator(spec(explicit=world)) as emu:
        result = await backfill(db, emu.base_url, emu.token)
        channel = result.channels[0]
        assert channel.error is not None and "cannot page past them" in channel.error
        assert channel.retries == 0 and channel.pages == 1 and channel.malformed == 0


async def test_target_stops_the_deepening_and_a_higher_target_resumes_it(db: Database) -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=450)) as emu:
        cid = emu.channel_ids()[0]
        ids = _ids(emu, cid)

        async def cached() -> list[int]:
            async with db.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT message_id FROM discord_messages WHERE channel_id = $1 "
                    "ORDER BY message_id",
                    cid,
                )
            return [r[0] for r in rows]

        first = await backfill(db, emu.base_url, emu.token, target=150)
        assert first.channels[0].completion is Completion.TARGET_REACHED
        assert await cached() == ids[-150:]
        assert first.channels[0].pages == 2  # 100, then exactly the 50 still needed
        row = await cursors(db, cid)
        assert not row["is_fully_backfilled"] and row["completion_reason"] == "target_reached"
        assert row["backfill_before_id"] == ids[-150]

        skipped = await backfill(db, emu.base_url, emu.token, target=150, sync=False)
        assert skipped.channels[0].pages == 1  # catch-up only: at target, no deepening

        deeper = await backfill(db, emu.base_url, emu.token, target=320, sync=False)
        assert await cached() == ids[-320:]
        assert deeper.channels[0].stored == 170

        # BACKFILL_MAX_ITERATIONS bounds one run; the next one goes on from the cursor.
        step = await backfill(db, emu.base_url, emu.token, max_iterations=1, sync=False)
        assert step.channels[0].completion is Completion.MAX_ITERATIONS
        assert await cached() == ids[-420:]
        done = await backfill(db, emu.base_url, emu.token)
        assert done.channels[0].completion is Completion.START_OF_CHANNEL
        assert (await compare_with_truth(db, emu, [cid])).ok


# -- faults ----------------------------------------------------------------------------------


FAULTS = {
    "server_error": {
        "fault_kinds": ["server_error"],
        "fault_statuses": [500, 503],
        "fault_rate": 0.3,
    },
    "slow": {"fault_kinds": ["slow"], "fault_slow_seconds": 1.0},
    "drop": {"fault_kinds": ["drop"]},
    "truncate": {"fault_kinds": ["truncate"]},
    "bad_json": {"fault_kinds": ["bad_json"]},
    "mixed": {"fault_kinds": ["server_error", "drop", "truncate", "bad_json", "slow"]},
}


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_faults_lose_and_duplicate_nothing(db: Database, kind: str) -> None:
    changes = {"fault_rate": 0.3, "fault_seed": 7, **FAULTS[kind]}
    if kind == "mixed":
        changes.update(fault_rate=0.3, fault_statuses=[502, 503], fault_routes=None)
    else:
        changes["fault_routes"] = [MESSAGES_ROUTE]
    async with DiscordEmulator(spec(channels=3, messages_per_channel=700, **changes)) as emu:
        result = await backfill(
            db, emu.base_url, emu.token, concurrency=3, request_timeout=0.4, max_attempts=12
        )
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        print(
            f"\nfault={kind}: faults injected {dict(emu.stats.faults)}, "
            f"statuses {dict(emu.stats.statuses)}, retries {result.totals()['retries']}, "
            f"messages compared {comparison.compared}, gaps {len(comparison.gaps)}, "
            f"duplicates {comparison.duplicates}, extra {len(comparison.extra)}"
        )
        assert result.ok, [c.error for c in result.channels]
        assert comparison.ok, comparison
        assert comparison.compared == 3 * 700
        assert emu.stats.total_faults >= 3
        if kind != "mixed":
            assert emu.stats.faults[kind] == emu.stats.total_faults
        retries, faults = result.totals()["retries"], emu.stats.total_faults
        if kind == "server_error":
            # discord.py retries 500 and 502 itself, never 503: those are ours
            assert retries == emu.stats.statuses[503]
        elif kind in ("drop", "mixed"):
            # aiohttp repeats a GET once when a kept-alive connection is dropped
            assert 1 <= retries + (kind == "drop") and retries <= faults
        else:
            assert retries == faults  # a timeout, a cut body, cut JSON: each one retry
        assert sum(c.stored for c in result.channels) == 3 * 700


STORMS = {
    # buckets of 3 per 250 ms and unexpected 429s while requests remain
    "route_and_shared": {
        "route_limit": 3,
        "route_window": 0.25,
        "global_limit": 0,
        "shared_429_rate": 0.15,
        "shared_retry_after": 0.05,
    },
    # a global limit below our pacing (another process shares the token): global 429s
    "global": {"route_limit": 0, "global_limit": 15, "global_window": 0.5},
}


@pytest.mark.parametrize("storm", list(STORMS))
async def test_429_storms_lose_nothing(db: Database, storm: str) -> None:
    limits = STORMS[storm]
    async with DiscordEmulator(spec(channels=4, messages_per_channel=1000, **limits)) as emu:
        result = await backfill(db, emu.base_url, emu.token, concurrency=4)
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        print(
            f"\n429 storm {storm}: 429s {dict(emu.stats.rate_limited)}, "
            f"requests {emu.stats.total_requests}, retries {result.totals()['retries']}, "
            f"messages compared {comparison.compared}, gaps {len(comparison.gaps)}, "
            f"duplicates {comparison.duplicates}"
        )
        assert result.ok, [c.error for c in result.channels]
        assert comparison.ok and comparison.compared == 4000, comparison
        # Buckets are waited out before they run dry: no 429 for an exhausted bucket
        # beyond discord.py's first, unknowing request per bucket.
        assert emu.stats.rate_limited["user"] <= 4
        if storm == "global":
            assert emu.stats.rate_limited["global"] >= 1
        else:
            assert emu.stats.rate_limited["shared"] >= 1
            assert emu.stats.rate_limited["global"] == 0


# -- interruption ------------------------------------------------------------------------------


async def _cached_total(db: Database) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval("SELECT coalesce(sum(message_count), 0) FROM discord_channels")
        )


async def test_cancelled_at_random_points_then_resumed(db: Database) -> None:
    limits = {"route_limit": 2, "route_window": 0.05, "global_limit": 0}
    rng = random.Random(20240611)
    async with DiscordEmulator(spec(channels=3, messages_per_channel=2000, **limits)) as emu:
        total = 3 * 2000
        partial: list[int] = []
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            for k in range(6):
                engine = Backfill(db, source, concurrency=3, **FAST_RETRY)
                task = asyncio.create_task(engine.run())
                # cancel once a random share more is cached, then at a random instant
                threshold = total * (k + rng.random()) / 7
                while not task.done():
                    if await _cached_total(db) >= threshold:
                        break
                    await asyncio.sleep(0.005)  # polling the database, not waiting on Discord
                await asyncio.sleep(rng.uniform(0, 0.03))
                task.cancel()
                outcome = await asyncio.gather(task, return_exceptions=True)
                assert isinstance(outcome[0], asyncio.CancelledError)
                partial.append(await _cached_total(db))
                async with db.acquire() as conn:
                    # nothing half-written: every channel's rows lie within its cursors
                    bad = await conn.fetchval(
                        "SELECT count(*) FROM discord_messages m JOIN discord_channels c "
                        "USING (channel_id) WHERE m.message_id < c.backfill_before_id "
                        "OR m.message_id > c.backfill_after_id"
                    )
                    assert bad == 0
            final = await Backfill(db, source, concurrency=3, **FAST_RETRY).run()
        assert final.ok
        assert all(0 < n < total for n in partial) and partial == sorted(partial), partial
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        print(f"\ncancel/resume: cached after each cancel {partial}; {comparison}")
        assert comparison.ok and comparison.compared == total, comparison


# -- offline edits, deletes, new messages --------------------------------------------------------


async def test_offline_edits_and_deletes_are_reconciled(db: Database) -> None:
    async with DiscordEmulator(spec(channels=3, messages_per_channel=260, edit_rate=0.0)) as emu:
        channels = emu.channel_ids()
        assert (await backfill(db, emu.base_url, emu.token)).ok
        world = emu.world
        first = channels[0]
        ids = _ids(emu, first)
        # inside the newest 200 (after 30 new messages, ids[-170:] are in the window)
        for i in (-1, -50, -160):
            world.edit_message(first, ids[i], f"edited offline {i}")
        for i in (-2, -100, -165):
            world.delete_message(first, ids[i])
        # far outside the window: a sync of the newest MESSAGE_SYNC_LIMIT cannot see these
        world.edit_message(first, ids[0], "edited long ago")
        world.delete_message(first, ids[1])
        changes = emu.apply_offline_changes(
            edits=8, deletes=6, new_messages=30, seed=3, channel_ids=channels[1:]
        )
        emu.apply_offline_changes(new_messages=30, seed=4, channel_ids=[first])
        result = await backfill(db, emu.base_url, emu.token, concurrency=3)
        assert result.ok and all(c.synced for c in result.channels)
        truth = emu.truth()
        async with db.acquire() as conn:
            for cid in channels:
                window = [r["id"] for r in truth[cid]][-200:]
                low = window[0]
                cached = [
                    r[0]
                    for r in await conn.fetch(
                        "SELECT message_id FROM discord_messages WHERE channel_id = $1 "
                        "AND message_id >= $2 ORDER BY message_id",
                        cid,
                        low,
                    )
                ]
                assert cached == window
        comparison = await compare_with_truth(db, emu, channels)
        # What lies beyond the sync window stays as it was (a stale edit, a message Discord
        # deleted): MESSAGE_SYNC_LIMIT bounds the reconciliation.
        lows = {cid: truth[cid][-200]["id"] for cid in channels}
        edited = [(first, ids[i]) for i in (-1, -50, -160, 0)] + list(changes.edited)
        deleted = [(first, ids[i]) for i in (-2, -100, -165, 1)] + list(changes.deleted)
        assert {m for m, _ in comparison.different} == {m for c, m in edited if m < lows[c]}
        assert set(comparison.extra) == {m for c, m in deleted if m < lows[c]}
        assert ids[0] in {m for m, _ in comparison.different} and ids[1] in comparison.extra
        assert not comparison.gaps and not comparison.duplicates
        reconciled = [m for c, m in deleted if m > lows[c]]
        assert len(reconciled) >= 3
        assert sum(c.deleted for c in result.channels) == len(reconciled)
        print(
            f"\noffline changes: {len(edited)} edits, {len(deleted)} deletes, 60 new; "
            f"{len(reconciled)} deletes reconciled in the sync window; {comparison}"
        )


# -- locks -----------------------------------------------------------------------------------------


async def test_channel_locks_across_sessions(db: Database, server_url: str) -> None:
    async with ChannelLocks.open(db) as first, ChannelLocks.open(db) as second:
        assert await first.try_acquire(42)
        assert await first.holds(42)
        assert not await first.try_acquire(42)  # exclusive within the process too
        assert not await second.try_acquire(42)
        assert await second.try_acquire(43)
        await first.release(42)
        assert not await first.holds(42)
        assert await second.try_acquire(42)
        assert second.held == {42, 43}
    # Keys are namespaced by schema: another bot's schema never blocks this one.
    conn = await asyncpg.connect(parse_database_url(server_url).dsn())
    try:
        other = ChannelLocks(conn, "another_bot")
        async with ChannelLocks.open(db) as mine:
            assert await mine.try_acquire(7)
            assert await other.try_acquire(7)
    finally:
        await conn.close()


async def test_losing_the_lock_connection_stops_the_work(db: Database) -> None:
    async with ChannelLocks.open(db) as locks:
        assert await locks.try_acquire(5)
        async with db.acquire() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'barkeeper-backfill-locks' AND pid <> pg_backend_pid()"
            )
        for _ in range(100):
            if locks.lost:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(LockLostError):
            locks.check()
            await locks.try_acquire(6)


async def test_two_engines_never_fetch_a_range_twice(db: Database) -> None:
    limits = {"route_limit": 5, "route_window": 0.2, "global_limit": 0}
    async with (
        DiscordEmulator(spec(channels=4, messages_per_channel=800, **limits)) as emu,
        RecordingProxy(emu.origin) as proxy,
    ):
        first, second = await asyncio.gather(
            backfill(db, proxy.base_url, emu.token, concurrency=2),
            backfill(db, proxy.base_url, emu.token, concurrency=2),
        )
        assert first.ok and second.ok
        counts = Counter(proxy.history)
        assert counts and max(counts.values()) == 1, counts.most_common(3)
        assert len(proxy.history) == 4 * 9  # 8 full pages and the empty one, per channel
        worked = [{c.channel_id for c in r.channels if c.skipped is None} for r in (first, second)]
        assert worked[0].isdisjoint(worked[1]) and worked[0] | worked[1] == set(emu.channel_ids())
        assert (await compare_with_truth(db, emu, emu.channel_ids())).ok
