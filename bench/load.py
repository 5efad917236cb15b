"""Load and soak: hundreds of simulated people talking to the running bot for minutes.

Run: ``python bench/load.py --out bench/results/load.json [--quick] [--people 300]
[--duration 120] [--rate 5] [--database-url URL]``

The real bot (``python -m barkeeper run``, its own process, as operators run it) connects
to the Discord emulator's gateway and REST API (``barkeeper.testing.discord``, in this
process, loopback only) and to the scripted model server (``barkeeper.testing.llm``,
the real ``openai`` client), which answers every chat request after a realistic delay
(log-normal around ``--model-latency`` seconds, the same for replies and for memory
extraction). Simulated people (``--people``, each a guild member) post at a steady total
rate (``--rate`` messages per second, Poisson-free: one every ``1/rate`` s) for
``--duration`` seconds in ``--channels`` channels; ``--mention-share`` of the messages
mention the bot and expect a reply. The bot runs with its defaults except: the hashing
embedder (no model download), replies sent whole (``BARKEEPER_STREAM_REPLIES=false``, so
"the reply appeared" is one event), and an admin id for ``/barkeeper status``.

Measured:

- messages sent vs cached: every message a person sent must be in ``discord_messages``
  once the bot's cache queue is empty (goal: equal);
- replies sent vs expected: messages mentioning the bot that got a reply (the bot's
  per-user limit answers with a note: a reply too);
- reply overhead, excluding the model: (reply posted - message sent) - the model's
  scripted delay for that message's chat request(s), p50/p90/p99;
- queues drained at the end: ``/barkeeper status`` (as the admin) until it shows
  memory, cache and replies at 0;
- the bot's RSS over time (``/proc/<pid>/status``), sampled every ``--sample`` s, with
  the growth over the second half of the run (after warm-up);
- database connections the bot holds (``pg_stat_activity`` by a per-run
  ``application_name``), total and active, against the pool's bound
  (``DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW``).

Without ``--database-url`` an ephemeral embedded PostgreSQL is started for the run and
its URL given to the bot; the bot works in a schema of its own (``bench_load_…``),
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from _common import percentile, summarize_ms, write_json
from barkeeper.db import start_embedded_server
from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec
from barkeeper.testing.llm import LLMServer, Reply, default_reply_text

TOKEN = re.compile(r"\[#(\d+)\]")
STATUS_QUEUES = re.compile(r"Queues: memory (\d+), cache (\d+), replies (\d+)")
WORDS = (
    "the a to and of I you it is in that for on was with so just like what lol yeah no "
    "okay think know really good time people would about get one out day beer cider "
    "tonight weekend music game coffee rain train work cat dog garden book film"
).split()
POOL_SIZE = 5  # the bot's defaults (DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW)
MAX_OVERFLOW = 10


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="load and soak against the running bot")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help="50 people, 20 s: a smoke run")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server to use")
    parser.add_argument("--people", type=int, default=300, help="simulated people")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second, total")
    parser.add_argument("--channels", type=int, default=4, help="guild channels")
    parser.add_argument(
        "--mention-share", type=float, default=0.2, help="share of messages to the bot"
    )
    parser.add_argument(
        "--model-latency", type=float, default=0.8, help="median model delay, seconds"
    )
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="seconds to wait for queues"
    )
    args = parser.parse_args()
    if args.quick:
        args.people, args.duration = min(args.people, 50), min(args.duration, 20.0)
    return args


def bot_env(**extra: str) -> dict[str, str]:
    """This environment without any barkeeper, database, Discord or model setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BARKEEPER_", "POSTGRES_", "DATABASE_", "DB_", "DISCORD_", "GROQ_"))
        and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env.update(extra)
    return env


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def with_application_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


class Model:
    """The scripted model's answers: a log-normal delay, noted per message token."""

    def __init__(self, median: float, seed: int = 7) -> None:
        self.median = median
        self.rng = random.Random(seed)
        self.reply_delay: dict[int, float] = {}  # message token -> model seconds (replies)
        self.first_asked: dict[int, float] = {}  # message token -> first request's arrival
        self.requests = {"reply": 0, "memory": 0}

    def __call__(self, body: Mapping[str, Any]) -> Reply:
        delay = min(self.median * math.exp(self.rng.gauss(0, 0.35)), 10 * self.median)
        if body.get("response_format") is not None:
            self.requests["memory"] += 1
        else:
            self.requests["reply"] += 1
            last = next(
                (
                    str(m.get("content"))
                    for m in reversed(body.get("messages") or [])
                    if isinstance(m, Mapping) and m.get("role") == "user"
                ),
                "",
            )
            found = TOKEN.findall(last)
            if found:
                key = int(found[-1])
                self.first_asked.setdefault(key, time.monotonic())
                self.reply_delay[key] = self.reply_delay.get(key, 0.0) + delay
        return Reply(content=default_reply_text(body), delay=delay)


async def sampler(
    pid: int, url: str, app: str, every: float, stop: asyncio.Event, out: list[dict[str, Any]]
) -> None:
    conn = await asyncpg.connect(url)
    started = time.monotonic()
    try:
        while not stop.is_set():
            row = await conn.fetchrow(
                "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'active') AS active "
                "FROM pg_stat_activity WHERE application_name = $1",
                app,
            )
            out.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "rss_mb": round((rss_kb(pid) or 0) / 1024, 1),
                    "db_connections": int(row["total"]),
                    "db_active": int(row["active"]),
                }
            )
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass
    finally:
        await conn.close()


async def admin_status(emu: DiscordEmulator, admin_name: str, channel: int) -> str:
    interaction = emu.person(admin_name).invoke("barkeeper status", channel)
    return (await interaction.wait_for_response(timeout=30)).content


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:10]
    schema = f"bench_load_{run_id}"
    app = f"barkeeper-load-{run_id}"
    model = Model(args.model_latency)
    spec = EmulatorSpec(
        seed=11, channels=args.channels, messages_per_channel=50, users=3, global_limit=0
    )
    workdir = Path(tempfile.mkdtemp(prefix="barkeeper-load-"))
    async with DiscordEmulator(spec) as emu, LLMServer(responder=model) as llm:
        people = [emu.person(f"guest{i}") for i in range(args.people)]
        admin = emu.person("load-admin")
        channels = emu.channel_ids()
        env = bot_env(
            DISCORD_TOKEN=emu.token,
            DISCORD_API_BASE=emu.base_url,
            BARKEEPER_LLM_BASE_URL=llm.base_url,
            BARKEEPER_LLM_API_KEY="x",
            BARKEEPER_LLM_MODEL="test-model",
            BARKEEPER_MEMORY_MODEL="test-model",
            BARKEEPER_DATABASE_URL=with_application_name(url, app),
            BARKEEPER_DB_SCHEMA=schema,
            BARKEEPER_DATA_DIR=str(workdir / "data"),
            BARKEEPER_EMBEDDER="hashing",
            BARKEEPER_STREAM_REPLIES="false",
            BARKEEPER_ADMIN_IDS=str(admin.id),
        )
        stderr = (workdir / "bot.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "barkeeper", "run",
            env=env, cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        samples: list[dict[str, Any]] = []
        stop = asyncio.Event()
        sampling: asyncio.Task[None] | None = None
        try:
            await emu.wait_for_sessions(1, timeout=120)
            await emu.wait_for_command_syncs(1, timeout=60)
            sampling = asyncio.create_task(sampler(proc.pid, url, app, args.sample, stop, samples))
            rng = random.Random(3)
            total = int(args.rate * args.duration)
            sent: list[tuple[int, int, bool, float]] = []  # message id, channel, mention, at
            loop_started = time.monotonic()
            lag: list[float] = []
            for k in range(total):
                due = loop_started + k / args.rate
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                lag.append(max(0.0, time.monotonic() - due))
                person = rng.choice(people)
                channel = rng.choice(channels)
                mention = rng.random() < args.mention_share
                text = " ".join(rng.choices(WORDS, k=rng.randint(3, 25))) + f" [#{k}]"
                message = person.send(channel, text, mention_bot=mention)
                sent.append((message.id, channel, mention, time.monotonic()))
            sending_s = time.monotonic() - loop_started
            print(f"sent {total} messages in {sending_s:.1f} s", flush=True)
            expected = {mid: (k, at) for k, (mid, _, mention, at) in enumerate(sent) if mention}

            def replies() -> dict[int, float]:
                got: dict[int, float] = {}
                for action in emu.activity:
                    if action.kind != "message" or action.message_id is None:
                        continue
                    msg = emu.world.channels[action.channel_id].messages.get(action.message_id)
                    if msg is not None and msg.reply_to in expected and msg.reply_to not in got:
                        got[msg.reply_to] = action.at
                return got

            with contextlib.suppress(TimeoutError):
                await emu.wait_until(
                    lambda: len(replies()) >= len(expected),
                    timeout=args.drain_timeout,
                    what="every expected reply",
                )
            got = replies()
            queues: tuple[int, int, int] | None = None
            status_text = ""
            drain_deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < drain_deadline:
                status_text = await admin_status(emu, admin.user.username, channels[0])
                found = STATUS_QUEUES.search(status_text)
                queues = tuple(map(int, found.groups())) if found else None  # type: ignore[assignment]
                if queues == (0, 0, 0):
                    break
                await asyncio.sleep(1.0)
            drained_after_s = round(time.monotonic() - loop_started - sending_s, 1)
            ids = [mid for mid, _, _, _ in sent]
            conn = await asyncpg.connect(url)
            try:
                cached = await conn.fetchval(
                    f'SELECT count(*) FROM "{schema}".discord_messages '  # noqa: S608
                    "WHERE message_id = ANY($1::bigint[])",
                    ids,
                )
                memory_rows = await conn.fetchval(f'SELECT count(*) FROM "{schema}".memories')  # noqa: S608
                # The agent's own step timings (its run records): what of the overhead
                # is the reply pipeline, and what is waiting around it.
                runs = await conn.fetch(
                    f"SELECT metrics->'latency_ms' AS steps FROM \"{schema}\".agent_runs"  # noqa: S608
                )
            finally:
                await conn.close()
        finally:
            stop.set()
            if sampling is not None:
                await sampling
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            stderr.close()
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    log = (workdir / "bot.log").read_text(errors="replace")
    rate_limited = dict(emu.stats.rate_limited)
    overhead = [
        got[mid] - at - model.reply_delay[k]
        for mid, (k, at) in expected.items()
        if mid in got and k in model.reply_delay
    ]
    latency = [got[mid] - at for mid, (k, at) in expected.items() if mid in got]
    before_model = [
        model.first_asked[k] - at for _, (k, at) in expected.items() if k in model.first_asked
    ]
    steps: dict[str, list[float]] = {}
    for run_row in runs:
        for step, ms in json.loads(run_row["steps"] or "{}").items():
            steps.setdefault(step, []).append(float(ms) / 1000)
    warm = [s for s in samples if s["t"] >= sending_s / 2 and s["t"] <= sending_s]
    rss = [s["rss_mb"] for s in samples]
    return {
        "messages_sent": len(sent),
        "messages_cached": int(cached),
        "sent_equals_cached": int(cached) == len(sent),
        "replies_expected": len(expected),
        "replies_sent": len(got),
        "reply_overhead_ms": summarize_ms(overhead),
        "reply_latency_ms_with_model": summarize_ms(latency),
        "reply_overhead_before_model_ms": summarize_ms(before_model),
        "agent_steps_ms": {step: summarize_ms(v) for step, v in sorted(steps.items())},
        "model_requests": model.requests,
        "memories_stored": int(memory_rows),
        "queues_at_end": dict(zip(("memory", "cache", "replies"), queues or (), strict=False)),
        "queues_drained": queues == (0, 0, 0),
        "drained_s_after_last_message": drained_after_s,
        "rss_mb": {
            "start": rss[0] if rss else None,
            "max": max(rss) if rss else None,
            "end": rss[-1] if rss else None,
            "second_half_first": warm[0]["rss_mb"] if warm else None,
            "second_half_last": warm[-1]["rss_mb"] if warm else None,
            "second_half_growth_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 1)
            if warm
            else None,
        },
        "db_connections": {
            "max": max((s["db_connections"] for s in samples), default=0),
            "max_active": max((s["db_active"] for s in samples), default=0),
            "p50": percentile([s["db_connections"] for s in samples], 50),
            "pool_bound": POOL_SIZE + MAX_OVERFLOW,
        },
        "send_lag_ms": summarize_ms(lag),
        "discord_429s_to_the_bot": rate_limited,
        "sending_s": round(sending_s, 1),
        "bot_exit_code": proc.returncode,
        "bot_log_tracebacks": log.count("Traceback"),
        "bot_log_errors": sum(1 for line in log.splitlines() if " ERROR " in line),
        "samples": samples,
    }


async def main() -> None:
    args = parse()
    load_before = [round(x, 2) for x in os.getloadavg()]
    wall = time.perf_counter()
    server = None
    url = args.database_url
    if url is None:
        server = await start_embedded_server(None, ephemeral=True)
        url = server.uri
    try:
        figures = await run(args, url)
        conn = await asyncpg.connect(url)
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    finally:
        if server is not None:
            await server.aclose()
    out: dict[str, Any] = {
        "benchmark": "load: simulated people through the emulator's gateway, the real bot",
        "config": {
            "people": args.people,
            "duration_s": args.duration,
            "rate_per_s": args.rate,
            "channels": args.channels,
            "mention_share": args.mention_share,
            "model_latency_median_s": args.model_latency,
            "database": "server" if args.database_url else "ephemeral embedded",
            "quick": args.quick,
        },
        **{k: v for k, v in figures.items() if k != "samples"},
        "environment": {
            "server_version": version,
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "wall_s": round(time.perf_counter() - wall, 1),
        "samples": figures["samples"],
    }
    write_json(args.out, out)
    print(
        f"sent {out['messages_sent']}, cached {out['messages_cached']}; replies "
        f"{out['replies_sent']}/{out['replies_expected']}; overhead p50 "
        f"{out['reply_overhead_ms']['p50']} ms p99 {out['reply_overhead_ms']['p99']} ms; "
        f"queues drained {out['queues_drained']}; RSS {out['rss_mb']}; DB connections max "
        f"{out['db_connections']['max']} (bound {out['db_connections']['pool_bound']}); "
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    asyncio.run(main())
