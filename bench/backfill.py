"""Backfill wall time vs the ideal, and vs Junkie's algorithm, against the Discord emulator.

Run: ``python bench/backfill.py --out bench/results/backfill.json [--quick]
[--repeat N] [--default-repeat N] [--database-url URL]``

The emulator runs as its own process (``python -m barkeeper.testing.discord``), a
fresh one per run, serving 20 channels × 5,000 messages (``--quick``: 4 × 600):

- ``discord_like``: 5 requests per 5 s per channel (the published field observation
  for ``GET /channels/{id}/messages``), 50 requests/s globally;
- ``loose``: 5 requests per 1 s per channel (Discord's documented default bucket),
  50 requests/s globally.

Both sides run in this process with the real discord.py, each into a fresh schema of
the same PostgreSQL (an ephemeral embedded one unless ``--database-url``):

- ours: :class:`barkeeper.backfill.Backfill`, sync on;
- Junkie's algorithm, reimplemented faithfully from its ``discord_bot/backfill.py`` and
  ``context_cache.fetch_and_cache_from_api``: per-process ``asyncio.Lock`` per
  channel, initial fetch then deepening in fetches of up to 1,000 messages through
  ``channel.history()`` (``BACKFILL_MAX_FETCH_LIMIT`` 1,000, ``BACKFILL_MAX_ITERATIONS``
  10), ``asyncio.sleep(0.5)`` between deepen iterations and ``asyncio.sleep(1)`` after
  each channel, ``COUNT(*)``/``MIN``/``MAX`` queries each iteration, one upsert
  statement per message into its own ``messages`` table.

Both engines run at equal concurrency (one channel per worker: concurrency =
channels), ``--repeat`` times each, alternating, and the median run is reported.
Junkie also runs at its own default concurrency, 2 (its semaphore), ``--default-repeat``
times, measured against the ideal at concurrency 2.

Ideal at concurrency ``c``: history requests needed (``ceil((n + 1) / 100)`` per
channel: a channel's start is only known from a short page) ÷ the request rate the
limits allow (``min(min(c, channels) × route_limit / route_window, global_limit)``).
``ratio_to_ideal`` = ideal ÷ wall time (1.0 = as fast as the limits allow; above 1 is
possible because a fresh bucket's first burst is free). Gaps are truth messages
missing from the cache, duplicates are rows sharing a message id.

``BACKFILL_PARALLEL_BATCHES``: one channel's history fetched by 1 vs 4 concurrent
walkers over equal snowflake-time slices, under each setting and a latency-bound one
(no per-route limit, every page delayed 100 ms), fetch only (no database).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.http

from barkeeper.backfill import Backfill, DiscordHistorySource
from barkeeper.config import DatabaseMode, load_settings
from barkeeper.db import Database
from barkeeper.testing.discord import EmulatorSpec, World

MESSAGES_ROUTE = "GET /channels/{channel_id}/messages"
GLOBAL_LIMIT = 50

SETTINGS: dict[str, dict[str, Any]] = {
    "discord_like": {"route_limit": 5, "route_window": 5.0, "global_limit": GLOBAL_LIMIT},
    "loose": {"route_limit": 5, "route_window": 1.0, "global_limit": GLOBAL_LIMIT},
}

# --- the emulator as a separate process --------------------------------------------------


class Emulator:
    """``python -m barkeeper.testing.discord`` with a spec file; stats over HTTP."""

    def __init__(self, spec: EmulatorSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.origin = ""
        self.token = ""
        self._dir = tempfile.TemporaryDirectory(prefix="bench-backfill-")

    async def __aenter__(self) -> Emulator:
        path = Path(self._dir.name) / "spec.json"
        path.write_text(self.spec.model_dump_json(exclude={"explicit"}), encoding="utf-8")
        self.proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "barkeeper.testing.discord", "--spec", str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        while not (self.base_url and self.token):
            line = await asyncio.to_thread(self.proc.stdout.readline)
            if not line:
                raise RuntimeError("the emulator exited during start-up")
            if line.startswith("DISCORD_API_BASE="):
                self.base_url = line.split("=", 1)[1].strip()
            elif line.startswith("DISCORD_TOKEN="):
                self.token = line.split("=", 1)[1].strip()
        self.origin = self.base_url.rsplit("/api", 1)[0]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.communicate)
        self._dir.cleanup()

    async def stats(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.origin + "/_emulator/stats") as response,
        ):
            data: dict[str, Any] = await response.json()
        return data


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def diff(key: str) -> dict[str, int]:
        keys = set(before[key]) | set(after[key])
        out = {k: after[key].get(k, 0) - before[key].get(k, 0) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}

    rate_limited = diff("rate_limited")
    return {
        "requests": after["total_requests"] - before["total_requests"],
        "history_requests": diff("requests").get(MESSAGES_ROUTE, 0),
        "requests_by_route": diff("requests"),
        "rate_limited": rate_limited,
        "total_429s": sum(rate_limited.values()),
        "messages_served": after["messages_served"] - before["messages_served"],
    }


# --- a database --------------------------------------------------------------------------


@asynccontextmanager
async def database(url: str | None, schema: str, pool: int) -> AsyncIterator[Database]:
    settings = load_settings()
    if url is None:
        settings = settings.model_copy(update={"database": DatabaseMode.EPHEMERAL})
    db = await Database.open(
        settings, url=url, schema=schema, min_size=2, max_size=pool, upgrade=True
    )
    try:
        yield db
    finally:
        try:
            async with db.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await db.close()


async def check_cache(db: Database, table: str, truth: dict[int, list[int]]) -> dict[str, int]:
    """Gaps (truth ids not cached), extra ids and duplicate rows, over every channel."""
    gaps = extra = duplicates = rows = 0
    async with db.acquire() as conn:
        for cid, ids in truth.items():
            cached = [
                r[0]
                for r in await conn.fetch(
                    f"SELECT message_id FROM {table} WHERE channel_id = $1",  # noqa: S608
                    cid,
                )
            ]
            rows += len(cached)
            unique = set(cached)
            duplicates += len(cached) - len(unique)
            want = set(ids)
            gaps += len(want - unique)
            extra += len(unique - want)
    return {"rows": rows, "gaps": gaps, "extra": extra, "duplicates": duplicates}


# --- ours --------------------------------------------------------------------------------


async def run_ours(emu: Emulator, db: Database, channels: int) -> dict[str, Any]:
    before = await emu.stats()
    async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
        engine = Backfill(db, source, concurrency=channels, target=50_000)
        result = await engine.run()
    after = await emu.stats()
    return {
        "wall_seconds": round(result.seconds, 3),
        "channels_ok": result.successes,
        **result.totals(),
        **stats_delta(before, after),
    }


# --- Junkie's algorithm, as its code does it ---------------------------------------------

_JUNKIE_DDL = """
CREATE TABLE IF NOT EXISTS messages (
    message_id BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    timestamp_str TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_messages_channel_created ON messages (channel_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_messages_message_id ON messages (message_id);
CREATE TABLE IF NOT EXISTS channel_status (
    channel_id BIGINT PRIMARY KEY,
    is_fully_backfilled BOOLEAN DEFAULT FALSE,
    last_updated TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);
"""

_JUNKIE_STORE = """
INSERT INTO messages (message_id, channel_id, author_id, author_name, content, created_at,
                      timestamp_str)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (message_id) DO UPDATE SET content = EXCLUDED.content,
    author_name = EXCLUDED.author_name
"""


class Junkie:
    """Junkie's backfill (seed 002 and its public source), on its own tables.

    ``concurrency`` is its ``asyncio.Semaphore`` size: 2 in Junkie's code (its default),
    or the concurrency ours runs at, for a comparison at equal concurrency.
    """

    TARGET = 50_000
    CONCURRENCY = 2
    MAX_ITERATIONS = 10
    MAX_FETCH_LIMIT = 1000

    def __init__(self, db: Database, concurrency: int = CONCURRENCY) -> None:
        self.db = db
        self.concurrency = concurrency
        self.locks: dict[int, asyncio.Lock] = {}
        self.fetched = 0

    async def _val(self, sql: str, *args: Any) -> Any:
        async with self.db.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def count(self, cid: int) -> int:
        return int(await self._val("SELECT COUNT(*) FROM messages WHERE channel_id = $1", cid))

    async def fully(self, cid: int) -> bool:
        value = await self._val(
            "SELECT is_fully_backfilled FROM channel_status WHERE channel_id = $1", cid
        )
        return bool(value)

    async def mark(self, cid: int) -> None:
        async with self.db.acquire() as conn:
            await conn.execute(
                "INSERT INTO channel_status (channel_id, is_fully_backfilled) VALUES ($1, true) "
                "ON CONFLICT (channel_id) DO UPDATE SET is_fully_backfilled = true, "
                "last_updated = CURRENT_TIMESTAMP",
                cid,
            )

    async def fetch_and_cache(
        self,
        channel: discord.TextChannel,
        limit: int,
        before: int | None = None,
        after: int | None = None,
    ) -> list[discord.Message]:
        fetch_limit = min(int(limit * 1.2), self.MAX_FETCH_LIMIT)
        kwargs: dict[str, Any] = {"limit": fetch_limit}
        if after is not None:
            kwargs["after"] = discord.Object(id=after)
        elif before is not None:
            kwargs["before"] = discord.Object(id=before)
        messages: list[discord.Message] = []
        try:
            async for m in channel.history(**kwargs):
                if m.content or m.attachments or m.embeds:
                    messages.append(m)
                    if len(messages) >= limit:
                        break
        except discord.Forbidden:
            return []
        if after is None:
            messages.reverse()
        self.fetched += len(messages)
        for m in messages:  # one statement per message, as store_message did
            parts = [m.content] if m.content else []
            parts += [f"[Attachment: {a.url}]" for a in m.attachments]
            if m.embeds and not m.attachments:
                parts.append(f"[Embed: {len(m.embeds)} embed(s)]")
            async with self.db.acquire() as conn:
                await conn.execute(
                    _JUNKIE_STORE,
                    m.id,
                    channel.id,
                    m.author.id,
                    m.author.display_name,
                    " ".join(parts) if parts else "[Empty message]",
                    m.created_at,
                    m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
        return messages

    async def backfill_channel(self, channel: discord.TextChannel) -> None:
        cid = channel.id
        lock = self.locks.setdefault(cid, asyncio.Lock())
        async with lock:
            current = await self.count(cid)
            if current >= self.TARGET * 0.9:
                return
            latest = await self._val(
                "SELECT MAX(message_id) FROM messages WHERE channel_id = $1", cid
            )
            oldest = await self._val(
                "SELECT MIN(message_id) FROM messages WHERE channel_id = $1", cid
            )
            if latest:
                await self.fetch_and_cache(channel, self.TARGET, after=latest)
                current = await self.count(cid)
                oldest = await self._val(
                    "SELECT MIN(message_id) FROM messages WHERE channel_id = $1", cid
                )
            else:
                fetched = len(await self.fetch_and_cache(channel, self.TARGET))
                current = await self.count(cid)
                oldest = await self._val(
                    "SELECT MIN(message_id) FROM messages WHERE channel_id = $1", cid
                )
                if fetched == 0:
                    await self.mark(cid)
            iteration = 0
            while current < self.TARGET and iteration < self.MAX_ITERATIONS:
                if await self.fully(cid):
                    break
                if not oldest:
                    break
                needed = self.TARGET - current
                old = await self.fetch_and_cache(channel, min(needed, 1000), before=oldest)
                if not old:
                    await self.mark(cid)
                    break
                current = await self.count(cid)
                oldest = await self._val(
                    "SELECT MIN(message_id) FROM messages WHERE channel_id = $1", cid
                )
                iteration += 1
                if iteration < self.MAX_ITERATIONS and current < self.TARGET:
                    await asyncio.sleep(0.5)

    async def run(self, channels: list[discord.TextChannel]) -> None:
        sem = asyncio.Semaphore(self.concurrency)

        async def bound(channel: discord.TextChannel) -> None:
            async with sem:
                try:
                    await self.backfill_channel(channel)
                finally:
                    await asyncio.sleep(1)

        await asyncio.gather(*(bound(c) for c in channels), return_exceptions=True)


async def run_junkie(
    emu: Emulator, db: Database, channel_ids: list[int], concurrency: int
) -> dict[str, Any]:
    async with db.acquire() as conn:
        await conn.execute(_JUNKIE_DDL)
    previous = discord.http.Route.BASE
    discord.http.Route.BASE = emu.base_url
    client = discord.Client(intents=discord.Intents(guilds=True))
    try:
        await client.login(emu.token)
        before = await emu.stats()
        started = time.monotonic()
        channels = []
        for cid in channel_ids:  # Junkie took these from the gateway cache; one request each
            channel = await client.fetch_channel(cid)
            assert isinstance(channel, discord.TextChannel)
            channels.append(channel)
        junkie = Junkie(db, concurrency)
        await junkie.run(channels)
        wall = time.monotonic() - started
        after = await emu.stats()
    finally:
        await client.close()
        discord.http.Route.BASE = previous
    return {
        "concurrency": concurrency,
        "wall_seconds": round(wall, 3),
        "fetched": junkie.fetched,
        **stats_delta(before, after),
    }


# --- BACKFILL_PARALLEL_BATCHES: split one channel by snowflake time ----------------------


async def walk(source: DiscordHistorySource, cid: int, low: int, high: int, seen: list[int]) -> int:
    """Page ``before=`` from ``high`` down to ``low``; returns the requests made."""
    before, requests = high, 0
    while True:
        page = await source.fetch_page(cid, before=before, limit=100)
        requests += 1
        ids = [m.message_id for m in page.messages]
        seen.extend(i for i in ids if i >= low)
        if len(ids) < 100 or ids[-1] < low:
            return requests
        before = ids[-1]


async def parallel_batches(quick: bool) -> dict[str, Any]:
    messages = 600 if quick else 3000
    latency_bound = {
        "route_limit": 0,
        "global_limit": 0,
        "fault_rate": 1.0,
        "fault_kinds": ["slow"],
        "fault_slow_seconds": 0.1,
        "fault_routes": [MESSAGES_ROUTE],
    }
    regimes: dict[str, dict[str, Any]] = {
        **({"loose": SETTINGS["loose"]} if quick else SETTINGS),
        "latency_bound": latency_bound,
    }
    out: dict[str, Any] = {"messages": messages}
    for name, limits in regimes.items():
        spec = EmulatorSpec(seed=3, channels=1, messages_per_channel=messages, **limits)
        truth = World.from_spec(spec).truth()
        cid = next(iter(truth))
        ids = [r["id"] for r in truth[cid]]
        rows: dict[str, Any] = {}
        for walkers in (1, 4):
            async with (
                Emulator(spec) as emu,
                DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as src,
            ):
                started = time.monotonic()
                # The oldest message bounds the split (the channel may be far older);
                # finding it costs one request, counted.
                first = await src.fetch_page(cid, after=0, limit=1)
                low, high = first.messages[0].message_id, ids[-1] + 1
                step = (high - low) // walkers
                bounds = [
                    (low + i * step, high if i == walkers - 1 else low + (i + 1) * step)
                    for i in range(walkers)
                ]
                seen: list[int] = []
                counts = await asyncio.gather(*(walk(src, cid, lo, hi, seen) for lo, hi in bounds))
                wall = time.monotonic() - started
            rows[f"walkers_{walkers}"] = {
                "wall_seconds": round(wall, 3),
                "requests": sum(counts) + 1,
                "complete": sorted(seen) == ids,
            }
        rows["speedup_4_vs_1"] = round(
            rows["walkers_1"]["wall_seconds"] / rows["walkers_4"]["wall_seconds"], 2
        )
        out[name] = rows
        print(f"  parallel batches, {name}: {rows}", flush=True)
    return out


# --- the run -----------------------------------------------------------------------------


def ideal_seconds(counts: list[int], concurrency: int, limits: dict[str, Any]) -> tuple[int, float]:
    requests = sum(math.ceil((n + 1) / 100) for n in counts)
    per_channel = limits["route_limit"] / limits["route_window"]
    rate = min(min(concurrency, len(counts)) * per_channel, limits["global_limit"])
    return requests, requests / rate


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (the lower middle one for an even count),
    with every run's wall time beside it."""
    ordered = sorted(runs, key=lambda r: r["wall_seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = len(runs)
    chosen["wall_seconds_each"] = [r["wall_seconds"] for r in runs]
    chosen["gaps"] = max(r["gaps"] for r in runs)
    chosen["duplicates"] = max(r["duplicates"] for r in runs)
    return chosen


async def run_setting(
    name: str,
    limits: dict[str, Any],
    channels: int,
    per_channel: int,
    url: str | None,
    repeat: int,
    default_repeat: int,
) -> dict[str, Any]:
    spec = EmulatorSpec(seed=1, channels=channels, messages_per_channel=per_channel, **limits)
    world = World.from_spec(spec)
    truth = {cid: [r["id"] for r in records] for cid, records in world.truth().items()}
    counts = [len(v) for v in truth.values()]
    # Equal concurrency: both engines work on every channel at once.
    concurrency = channels
    needed, ideal = ideal_seconds(counts, concurrency, limits)
    _, default_ideal = ideal_seconds(counts, Junkie.CONCURRENCY, limits)
    out: dict[str, Any] = {
        "limits": limits,
        "channels": channels,
        "messages": sum(counts),
        "history_requests_needed": needed,
        "concurrency": concurrency,
        "ideal_seconds": round(ideal, 3),
    }
    ours_runs: list[dict[str, Any]] = []
    junkie_runs: list[dict[str, Any]] = []
    environment: dict[str, Any] = {}
    # A fresh emulator for every run: full buckets, its own statistics. The two sides
    # alternate so that a noisy spell of the machine does not fall on one side only.
    for attempt in range(1, repeat + 1):
        async with (
            Emulator(spec) as emu,
            database(url, f"bench_ours_{uuid.uuid4().hex[:8]}", channels + 4) as db,
        ):
            ours = await run_ours(emu, db, concurrency)
            ours.update(await check_cache(db, "discord_messages", truth))
            environment = await _environment(db)
        ours_runs.append(ours)
        print(
            f"  {name} ours @{concurrency} #{attempt}: {ours['wall_seconds']} s "
            f"(ideal {ideal:.1f} s)",
            flush=True,
        )
        async with (
            Emulator(spec) as emu,
            database(url, f"bench_junkie_{uuid.uuid4().hex[:8]}", concurrency + 4) as db,
        ):
            junkie = await run_junkie(emu, db, list(truth), concurrency)
            junkie.update(await check_cache(db, "messages", truth))
        junkie_runs.append(junkie)
        print(f"  {name} junkie @{concurrency} #{attempt}: {junkie['wall_seconds']} s", flush=True)
    default_runs: list[dict[str, Any]] = []
    for attempt in range(1, default_repeat + 1):
        async with (
            Emulator(spec) as emu,
            database(url, f"bench_junkie_{uuid.uuid4().hex[:8]}", 8) as db,
        ):
            junkie = await run_junkie(emu, db, list(truth), Junkie.CONCURRENCY)
            junkie.update(await check_cache(db, "messages", truth))
        default_runs.append(junkie)
        print(
            f"  {name} junkie @{Junkie.CONCURRENCY} (its default) #{attempt}: "
            f"{junkie['wall_seconds']} s (ideal {default_ideal:.1f} s)",
            flush=True,
        )
    ours, junkie, default = (
        _median_run(ours_runs),
        _median_run(junkie_runs),
        _median_run(default_runs),
    )
    default["ideal_seconds"] = round(default_ideal, 3)
    default["ratio_to_ideal"] = round(default_ideal / default["wall_seconds"], 3)
    out["ours"] = ours
    out["junkie"] = junkie
    out["junkie_default"] = default
    out["ratio_to_ideal"] = round(ideal / ours["wall_seconds"], 3)
    out["junkie_ratio_to_ideal"] = round(ideal / junkie["wall_seconds"], 3)
    out["speedup_vs_junkie"] = round(junkie["wall_seconds"] / ours["wall_seconds"], 2)
    out["junkie_default_ratio_to_ideal"] = default["ratio_to_ideal"]
    out["speedup_vs_junkie_default"] = round(default["wall_seconds"] / ours["wall_seconds"], 2)
    out["environment"] = environment
    return out


async def _environment(db: Database) -> dict[str, Any]:
    return {
        "database_mode": db.mode.value,
        "server_version": db.capabilities.server_version,
        "python": sys.version.split()[0],
        "discord_py": discord.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    channels, per_channel = (4, 600) if args.quick else (20, 5000)
    results: dict[str, Any] = {
        "benchmark": "backfill",
        "quick": args.quick,
        "repeat": args.repeat,
        "default_repeat": args.default_repeat,
        "workload": {"channels": channels, "messages_per_channel": per_channel},
        "settings": {},
    }
    # One server for every run (each in a schema of its own): the embedded one unless given.
    async with database(args.database_url, f"bench_base_{uuid.uuid4().hex[:8]}", 2) as base:
        url = args.database_url or base.url.dsn()
        for name, limits in SETTINGS.items():
            print(f"{name}: {channels} channels × {per_channel} messages", flush=True)
            results["settings"][name] = await run_setting(
                name, limits, channels, per_channel, url, args.repeat, args.default_repeat
            )
    main_setting = results["settings"]["discord_like"]
    for key in (
        "concurrency",
        "ratio_to_ideal",
        "junkie_ratio_to_ideal",
        "speedup_vs_junkie",
        "junkie_default_ratio_to_ideal",
        "speedup_vs_junkie_default",
    ):
        results[key] = main_setting[key]
    results["gaps"] = sum(s["ours"]["gaps"] for s in results["settings"].values())
    results["duplicates"] = sum(s["ours"]["duplicates"] for s in results["settings"].values())
    sides = ("junkie", "junkie_default")
    results["junkie_gaps"] = sum(
        s[side]["gaps"] for s in results["settings"].values() for side in sides
    )
    results["parallel_batches"] = await parallel_batches(args.quick)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each engine at equal concurrency; the median is reported (default 3)",
    )
    parser.add_argument(
        "--default-repeat",
        type=int,
        default=1,
        help="runs of Junkie at its default concurrency 2, bound by its fixed sleeps and "
        "the rate limit (about 12 min under discord_like); the median is reported (default 1)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to run on (default: an ephemeral embedded PostgreSQL)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)
    started = time.monotonic()
    payload = asyncio.run(main(arguments))
    payload["bench_seconds"] = round(time.monotonic() - started, 1)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(
        f"at concurrency {payload['concurrency']}: ratio_to_ideal {payload['ratio_to_ideal']}, "
        f"junkie {payload['junkie_ratio_to_ideal']}; junkie at its default 2: "
        f"{payload['junkie_default_ratio_to_ideal']} of its own ideal; "
        f"gaps {payload['gaps']}, duplicates {payload['duplicates']} -> {arguments.out}"
    )
