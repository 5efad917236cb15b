"""``barkeeper backfill`` as separate processes: SIGKILL and resume, two at once, the CLI.

The emulator runs in the test's event loop; the backfills run as
``python -m barkeeper backfill`` subprocesses against it and the test's PostgreSQL
schema, exactly as a user would run them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from barkeeper.db import Database
from barkeeper.testing.discord import DiscordEmulator
from tests._backfill import RecordingProxy, compare_with_truth, spec


def _env(
    db: Database, server_url: str, tmp_path: Path, *, token: str, api_base: str, **extra: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BARKEEPER_", "POSTGRES_", "DATABASE_", "DB_", "DISCORD_", "BACKFILL"))
    }
    env.update(
        BARKEEPER_DATABASE_URL=server_url,
        BARKEEPER_DB_SCHEMA=db.schema,
        BARKEEPER_DATA_DIR=str(tmp_path / "data"),
        DISCORD_TOKEN=token,
        DISCORD_API_BASE=api_base,
        COLUMNS="200",
        **extra,
    )
    return env


async def _spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper",
        "backfill",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await _spawn(env, *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _cached_total(db: Database) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval("SELECT coalesce(sum(message_count), 0) FROM discord_channels")
        )


async def _outside_cursors(db: Database) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM discord_messages m JOIN discord_channels c "
                "USING (channel_id) WHERE m.message_id < c.backfill_before_id "
                "OR m.message_id > c.backfill_after_id"
            )
        )


async def test_sigkill_at_random_moments_then_resume(
    db: Database, server_url: str, tmp_path: Path
) -> None:
    limits = {"route_limit": 2, "route_window": 0.05, "global_limit": 0}
    rng = random.Random(99)
    async with DiscordEmulator(spec(channels=3, messages_per_channel=2000, **limits)) as emu:
        env = _env(db, server_url, tmp_path, token=emu.token, api_base=emu.base_url)
        total = 3 * 2000
        partial: list[int] = []
        for k in range(4):
            proc = await _spawn(env, "--concurrency", "3")
            threshold = total * (k + rng.random()) / 5
            while proc.returncode is None:
                if await _cached_total(db) >= threshold:
                    break
                await asyncio.sleep(0.005)  # polling the database
            await asyncio.sleep(rng.uniform(0, 0.03))
            assert proc.returncode is None, "the backfill finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
            assert proc.returncode == -signal.SIGKILL
            partial.append(await _cached_total(db))
            assert await _outside_cursors(db) == 0
        code, _out, err = await _cli(env, "--concurrency", "3")
        assert code == 0, err
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        print(f"\nSIGKILL/resume: cached after each kill {partial}; {comparison}")
        assert all(0 < n < total for n in partial) and partial == sorted(partial), partial
        assert comparison.ok and comparison.compared == total, comparison


async def test_two_processes_at_once_never_fetch_a_range_twice(
    db: Database, server_url: str, tmp_path: Path
) -> None:
    limits = {"route_limit": 1, "route_window": 0.1, "global_limit": 0}
    async with (
        DiscordEmulator(spec(channels=4, messages_per_channel=1500, **limits)) as emu,
        RecordingProxy(emu.origin) as proxy,
    ):
        env = _env(db, server_url, tmp_path, token=emu.token, api_base=proxy.base_url)
        outputs = [tmp_path / "first.json", tmp_path / "second.json"]
        procs = [await _spawn(env, "--concurrency", "2", "--json", str(path)) for path in outputs]
        results = await asyncio.gather(*(p.communicate() for p in procs))
        for proc, (_, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err.decode()
        counts = Counter(proxy.history)
        assert max(counts.values()) == 1, counts.most_common(3)
        assert len(proxy.history) == 4 * 16  # 15 full pages and the empty one per channel
        reports: list[dict[str, Any]] = [json.loads(p.read_text()) for p in outputs]
        worked = [{c["channel_id"] for c in r["channels"] if c["skipped"] is None} for r in reports]
        print(f"\ntwo processes: channels worked {[len(w) for w in worked]}")
        assert worked[0].isdisjoint(worked[1])
        assert worked[0] | worked[1] == set(emu.channel_ids())
        assert all(worked), "both processes should have taken channels"
        comparison = await compare_with_truth(db, emu, emu.channel_ids())
        assert comparison.ok and comparison.compared == 4 * 1500, comparison


async def test_cli_end_to_end(db: Database, server_url: str, tmp_path: Path) -> None:
    async with DiscordEmulator(spec(channels=3, messages_per_channel=250, empty_channels=1)) as emu:
        env = _env(db, server_url, tmp_path, token=emu.token, api_base=emu.base_url)
        readable = emu.channel_ids(access="ok")

        code, out, err = await _cli({**env, "DISCORD_TOKEN": ""})
        assert code == 2
        assert "DISCORD_TOKEN is not set" in err and "Traceback" not in err
        code, out, err = await _cli({**env, "DISCORD_TOKEN": emu.token + "x"})
        assert code == 1
        assert "refused the bot token" in err and "Traceback" not in err
        assert emu.token not in out + err

        code, out, err = await _cli(
            env, "--channel", str(readable[0]), "--target", "120", "--no-sync"
        )
        assert code == 0, err
        assert "120/120" in out and "target reached" in out
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM discord_messages") == 120

        report = tmp_path / "all.json"
        code, out, err = await _cli(env, "--json", str(report))
        assert code == 0, err
        data = json.loads(report.read_text())
        assert data["successes"] == 3 and data["failures"] == 0
        completions = sorted(c["completion"] for c in data["channels"])
        assert completions == ["no_access", "start_of_channel", "start_of_channel"]
        assert "Summary: 3/3 channels successful, 0 failed" in err
        comparison = await compare_with_truth(db, emu, readable)
        assert comparison.ok and comparison.compared == 2 * 250, comparison

        code, out, err = await _cli(env, "--channel", "4242", "--channel", str(readable[1]))
        assert code == 1
        assert "4242" in out and "failed" in err


@pytest.mark.parametrize("flag", ["--target", "--concurrency"])
def test_cli_refuses_bad_numbers(flag: str) -> None:
    from typer.testing import CliRunner

    from barkeeper.cli import app

    result = CliRunner().invoke(app, ["backfill", flag, "0"])
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_progress_bars_follow_the_events() -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    from barkeeper.backfill import ChannelInfo, ChannelResult, ProgressEvent
    from barkeeper.cli._backfill import _Bars

    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    bars = _Bars(progress)
    general = ChannelInfo(1, 9, "general")
    bars(ProgressEvent("found", total=2, target=500))
    bars(ProgressEvent("start", general, 0, 500))
    bars(ProgressEvent("page", general, 100, 500))
    overall, channel = progress.tasks
    assert (overall.total, overall.completed) == (2, 0)
    assert (channel.description, channel.total, channel.completed) == ("#general", 500, 100)
    bars(ProgressEvent("page", general, 900, 500))
    assert progress.tasks[1].completed == 500  # never past the target
    bars(ProgressEvent("done", general, 900, 500, result=ChannelResult(1)))
    assert [t.description for t in progress.tasks] == ["channels"]
    assert progress.tasks[0].completed == 1


def test_the_summary_shows_skipped_unreadable_messages() -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    from barkeeper.backfill import BackfillResult, ChannelInfo, ChannelResult, ProgressEvent
    from barkeeper.cli._backfill import _Bars, _malformed_note, _summary

    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    bars = _Bars(progress)
    general = ChannelInfo(1, 9, "general")
    bars(ProgressEvent("found", total=1, target=500))
    bars(ProgressEvent("start", general, 0, 500))
    bars(ProgressEvent("page", general, 100, 500, malformed=2))
    assert progress.tasks[1].description == "#general (2 unreadable skipped)"

    clean = BackfillResult([ChannelResult(1, "general", count=10)])
    assert _malformed_note(clean) is None
    result = BackfillResult(
        [
            ChannelResult(1, "general", count=10, malformed=2, malformed_ids=[111, 222]),
            ChannelResult(2, "random", count=5, malformed=1),
        ]
    )
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(_summary(result, 500))
    table = out.getvalue()
    assert "malformed" in table
    general_row = next(line for line in table.splitlines() if "#general" in line)
    assert general_row.split("│")[8].strip() == "2"
    assert _malformed_note(result) == (
        "3 message(s) could not be read and were skipped (ids 111, 222); the log says why for each"
    )
