"""Edits and deletes older than the sync window: ``Backfill.verify``, the rolling verification
and ``barkeeper backfill --verify``, against the emulator and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from barkeeper.backfill import Backfill, BackfillResult, DiscordHistorySource, ProgressEvent
from barkeeper.db import Database
from barkeeper.history import MessageStore
from barkeeper.testing.discord import DiscordEmulator
from tests._backfill import MESSAGES_ROUTE, compare_with_truth, spec
from tests.test_backfill_process import _cli, _env

FAST_RETRY: dict[str, Any] = {"backoff": 0.05, "backoff_max": 0.3}


async def _run(emu: DiscordEmulator, db: Database, *, verify: bool = False, **options: Any) -> Any:
    async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
        engine = Backfill(db, source, **{**FAST_RETRY, **options})
        result: BackfillResult = await (engine.verify() if verify else engine.run())
        return result


def _ids(emu: DiscordEmulator, channel_id: int) -> list[int]:
    return [r["id"] for r in emu.truth()[channel_id]]


async def test_verify_reconciles_old_edits_and_deletes(db: Database) -> None:
    async with DiscordEmulator(spec(channels=2, messages_per_channel=450)) as emu:
        channels = emu.channel_ids()
        assert (await _run(emu, db)).ok
        assert (await compare_with_truth(db, emu, channels)).ok
        first, second = channels
        old = _ids(emu, first)
        emu.edit_message(first, old[10], "edited long after")
        emu.edit_message(second, _ids(emu, second)[5], "also edited")
        for message_id in (old[3], old[120], old[200]):
            emu.delete_message(first, message_id)

        # The sync (newest 200) does not reach them: the cache stays wrong.
        again = await _run(emu, db)
        assert again.ok and sum(c.deleted for c in again.channels) == 0
        stale = await compare_with_truth(db, emu, channels)
        assert sorted(stale.extra) == sorted([old[3], old[120], old[200]])
        assert {m for m, _ in stale.different} == {old[10], _ids(emu, second)[5]}

        emu.reset_stats()
        verified = await _run(emu, db, verify=True)
        assert verified.ok
        assert (await compare_with_truth(db, emu, channels)).ok
        by_id = {c.channel_id: c for c in verified.channels}
        assert by_id[first].verify_deleted == 3 and by_id[first].verify_updated == 1
        assert by_id[second].verify_deleted == 0 and by_id[second].verify_updated == 1
        # 447 and 450 messages: four full pages and a short one each
        assert [by_id[c].verify_pages for c in channels] == [5, 5]
        assert by_id[first].verified == 447 and by_id[second].verified == 450
        assert all(c.verify_done for c in verified.channels)
        assert verified.totals()["verify_pages"] == emu.stats.requests[MESSAGES_ROUTE] == 10


async def test_rolling_verification_walks_down_a_page_per_run(db: Database) -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=450)) as emu:
        (channel,) = emu.channel_ids()
        store = MessageStore(db)
        options = {"sync_limit": 100, "verify_pages": 1}
        assert (await _run(emu, db, **options)).ok
        ids = _ids(emu, channel)
        emu.edit_message(channel, ids[10], "edited in the oldest page")
        emu.delete_message(channel, ids[200])
        # Run 1 fetched everything fresh: nothing to verify. Then, below the sync
        # window (ids[350:]), one page per run: ids[250:350], ids[149:250] (the
        # delete), ids[49:149], ids[:49] (the edit).
        emu.reset_stats()
        runs = [await _run(emu, db, **options) for _ in range(3)]
        assert [r.channels[0].verify_pages for r in runs] == [1, 1, 1]
        assert [r.channels[0].verified for r in runs] == [100, 100, 100]
        assert [r.channels[0].verify_deleted for r in runs] == [0, 1, 0]
        assert not any(r.channels[0].verify_done for r in runs)
        assert await store.get(ids[200]) is None
        cached = await store.get(ids[10])
        assert cached is not None and cached.content != "edited in the oldest page"
        last = (await _run(emu, db, **options)).channels[0]
        assert last.verify_done and last.verified == 49 and last.verify_updated == 1
        cached = await store.get(ids[10])
        assert cached is not None and cached.content == "edited in the oldest page"
        assert (await compare_with_truth(db, emu, [channel])).ok
        # Each run: one catch-up page, one sync page, one verification page.
        assert emu.stats.requests[MESSAGES_ROUTE] == 4 * 3
        # Then it starts again just below the sync window.
        again = (await _run(emu, db, **options)).channels[0]
        assert again.verified == 100 and not again.verify_done


async def test_cli_verify_reports_its_cost(db: Database, server_url: str, tmp_path: Path) -> None:
    async with DiscordEmulator(spec(channels=2, messages_per_channel=150)) as emu:
        env = _env(db, server_url, tmp_path, token=emu.token, api_base=emu.base_url)
        code, _, err = await _cli(env)
        assert code == 0, err
        first = emu.channel_ids()[0]
        emu.delete_message(first, _ids(emu, first)[0])
        code, out, err = await _cli(env, "--verify", "--channel", str(first))
        assert code == 0, err
        assert "Verify: 1/1 channels successful" in out
        assert "Verification: 149 messages compared, 0 corrected, 1 deleted, 2 requests" in out
        assert (await compare_with_truth(db, emu, emu.channel_ids())).ok


async def test_verify_deletes_nothing_when_history_is_hidden_midway(db: Database) -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=250)) as emu:
        (channel,) = emu.channel_ids()
        assert (await _run(emu, db)).ok
        pages = 0

        def hide_after_first_page(event: ProgressEvent) -> None:
            nonlocal pages
            if event.kind == "page":
                pages += 1
                if pages == 1:  # the bot loses Read Message History: 200 [] from now on
                    emu.set_channel_access(channel, "empty")

        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            engine = Backfill(db, source, progress=hide_after_first_page, **FAST_RETRY)
            result = (await engine.verify()).channels[0]
        assert result.verified == 100 and result.verify_deleted == 0
        assert result.no_access and not result.verify_done
        assert result.verify_pages == 3  # a page, the empty page, the probe refused (403)
        assert await MessageStore(db).count(channel) == 250
        emu.set_channel_access(channel, "ok")
        assert (await compare_with_truth(db, emu, [channel])).ok
