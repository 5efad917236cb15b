"""Context windows: "the newest N messages of a channel before message X", ours vs Junkie's.

Run: ``python bench/context.py --out bench/results/context.json [--quick] [--database-url URL]``

A table of 1,000,000 messages over 100 channels (``--quick``: 100,000 over 10, so
each channel still has 10,000), loaded with
COPY into our ``discord_messages`` and into Junkie's ``messages`` table (seed 000: its
columns, ``timestamp_str`` included, and its indexes ``(channel_id, created_at DESC)``
and ``(message_id)``), then ``VACUUM ANALYZE``. The same logical data is loaded in two
physical orders, each measured on its own:

- ``backfill`` (the headline): rows arrive as a backfill stores them, pages of 100
  messages of one channel, channels in turn;
- ``interleaved``: rows in time order, neighbours from different channels (live
  traffic of 100 busy channels; the worst case for locality).

Each query picks a random channel and a random point in it (a message with at least
2,000 older ones in its channel) and asks for the newest 100 and 2,000 messages before
it. Timed from Python, pool acquire to the list in hand, oldest first:

- ours: ``MessageStore.get_context(channel, before=point, limit=n)`` —
  ``WHERE (channel_id, message_id) <= ($1, $2) AND channel_id >= $1 ORDER BY
  channel_id DESC, message_id DESC LIMIT $3``, a backward range scan of
  ``ix_discord_messages_channel_message`` (plans in the JSON), six columns, rows
  decoded straight into ``ContextMessage`` records, reversed in place;
- junkie: seed 000's query, ``SELECT * FROM messages WHERE channel_id = $1 ORDER BY
  created_at DESC LIMIT n`` then ``list(reversed(rows))``. It has no "before": it
  returns the channel's newest messages (later ones included: Junkie's leak);
- junkie_before: the same with ``AND created_at < $2`` (the point's time), the fair
  comparison for a point inside the history.

The three run on the same channel and point, in a shuffled order, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import asyncpg

from _common import JUNKIE_DDL, bench_database, environment, parse_args, summarize_ms, write_json
from barkeeper.db import Database
from barkeeper.history import DISCORD_EPOCH_MS, MessageStore, snowflake_time

T0_MS = 1_600_000_000_000
STEP_MS = 50  # one message every 50 ms overall
PER_CHANNEL = 10_000
PAGE = 100
MIN_BEFORE = 2000
WORDS = (
    "the a to and of I you it is in that for on was with so just like what lol yeah "
    "no okay think know really good time people would about get one out day café naïve "
    "😂 👍 🎉 ❤️ مرحبا שלום 日本語"
).split()

JUNKIE_QUERY = (
    "SELECT * FROM junkie_messages WHERE channel_id = $1 ORDER BY created_at DESC LIMIT $2"
)
JUNKIE_BEFORE = (
    "SELECT * FROM junkie_messages WHERE channel_id = $1 AND created_at < $3 "
    "ORDER BY created_at DESC LIMIT $2"
)
OUR_COLUMNS = (
    "message_id",
    "channel_id",
    "guild_id",
    "author_id",
    "author_name",
    "author_is_bot",
    "content",
    "reply_to_id",
    "embeds_count",
    "edited_at",
    "sanitized_chars",
)
JUNKIE_COLUMNS = (
    "message_id",
    "channel_id",
    "author_id",
    "author_name",
    "content",
    "created_at",
    "timestamp_str",
)


def message_id(i: int) -> int:
    """The i-th message overall (channel ``i % channels``)."""
    return ((T0_MS + i * STEP_MS - DISCORD_EPOCH_MS) << 22) | (i & 0xFFF)


def order(total: int, layout: str) -> Iterator[int]:
    """Message numbers in the physical order of ``layout``."""
    if layout == "interleaved":
        yield from range(total)
        return
    channels = total // PER_CHANNEL
    for page in range(0, PER_CHANNEL, PAGE):
        for c in range(channels):
            for k in range(page, min(page + PAGE, PER_CHANNEL)):
                yield k * channels + c


def content(i: int) -> str:
    rng = random.Random(i)
    r = rng.random()
    words = rng.randint(1, 12) if r < 0.6 else rng.randint(12, 60) if r < 0.95 else 200
    return " ".join(rng.choices(WORDS, k=words))


def our_rows(total: int, layout: str) -> Iterator[tuple[Any, ...]]:
    channels = total // PER_CHANNEL
    for i in order(total, layout):
        author = i % 300
        yield (
            message_id(i),
            1000 + i % channels,
            1,
            10_000 + author,
            f"member {author}",
            author < 3,
            content(i),
            None,
            0,
            None,
            0,
        )


def junkie_rows(total: int, layout: str) -> Iterator[tuple[Any, ...]]:
    channels = total // PER_CHANNEL
    for i in order(total, layout):
        author = i % 300
        created = snowflake_time(message_id(i))
        yield (
            message_id(i),
            1000 + i % channels,
            10_000 + author,
            f"member {author}",
            content(i),
            created,
            created.strftime("%Y-%m-%d %H:%M:%S"),
        )


async def load(db: Database, total: int, layout: str) -> dict[str, float]:
    conn = await asyncpg.connect(
        db.url.dsn(),
        server_settings={"search_path": f'"{db.schema}"', "synchronous_commit": "off"},
    )
    try:
        await conn.execute(JUNKIE_DDL)
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "discord_messages", records=our_rows(total, layout), columns=OUR_COLUMNS
        )
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "junkie_messages", records=junkie_rows(total, layout), columns=JUNKIE_COLUMNS
        )
        junkie_s = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE discord_messages")
        await conn.execute("VACUUM ANALYZE junkie_messages")
    finally:
        await conn.close()
    return {
        "ours_load_rows_per_s": round(total / ours_s),
        "junkie_load_rows_per_s": round(total / junkie_s),
    }


async def plans(db: Database, point: int, channel: int) -> dict[str, list[str]]:
    """The plans of both queries (ours as MessageStore sends it)."""
    from barkeeper.history import _store

    async with db.acquire() as conn:
        ours = await conn.fetch("EXPLAIN " + _store._CONTEXT, channel, point - 1, 2000)
        junkie = await conn.fetch("EXPLAIN " + JUNKIE_QUERY, channel, 2000)
    return {"ours": [r[0] for r in ours], "junkie": [r[0] for r in junkie]}


async def measure(db: Database, total: int, queries: int, warmup: int) -> dict[str, Any]:
    store = MessageStore(db)
    pool = db.pool
    channels = total // PER_CHANNEL
    rng = random.Random(42)

    async def ours(channel: int, point: int, n: int) -> int:
        return len(await store.get_context(channel, before=point, limit=n))

    async def junkie(channel: int, point: int, n: int) -> int:
        async with pool.acquire() as conn:
            rows = await conn.fetch(JUNKIE_QUERY, channel, n)
        return len(list(reversed(rows)))

    async def junkie_before(channel: int, point: int, n: int) -> int:
        async with pool.acquire() as conn:
            rows = await conn.fetch(JUNKIE_BEFORE, channel, n, snowflake_time(point))
        return len(list(reversed(rows)))

    methods = {"ours": ours, "junkie": junkie, "junkie_before": junkie_before}
    out: dict[str, Any] = {}
    # Server-side execution alone (EXPLAIN ANALYZE), to tell it from transfer and decoding.
    from barkeeper.history import _store

    async with db.acquire() as conn:
        for n in (100, 2000):
            server: list[float] = []
            for _ in range(min(queries, 200)):
                c = rng.randrange(channels)
                point = message_id(rng.randrange(MIN_BEFORE, PER_CHANNEL) * channels + c)
                plan = await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + _store._CONTEXT, 1000 + c, point - 1, n
                )
                server.append(plan[0]["Execution Time"] / 1000)
            out[f"ours_server_p50_ms_{n}"] = summarize_ms(server)["p50"]
    # What a window weighs: the text that has to cross the socket and be decoded.
    sizes = []
    for _ in range(50):
        c = rng.randrange(channels)
        point = message_id(rng.randrange(MIN_BEFORE, PER_CHANNEL) * channels + c)
        window = await store.get_context(1000 + c, before=point, limit=2000)
        sizes.append(sum(len(m.content.encode()) + len(m.author_name.encode()) for m in window))
    out["mean_text_kb_per_2000_window"] = round(sum(sizes) / len(sizes) / 1024, 1)
    for n in (100, 2000):
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for q in range(warmup + queries):
            c = rng.randrange(channels)
            k = rng.randrange(MIN_BEFORE, PER_CHANNEL)
            point = message_id(k * channels + c)
            names = list(methods)
            rng.shuffle(names)
            for name in names:
                started = time.perf_counter()
                got = await methods[name](1000 + c, point, n)
                elapsed = time.perf_counter() - started
                assert got == n, (name, got, n)
                if q >= warmup:
                    samples[name].append(elapsed)
        for name, values in samples.items():
            s = summarize_ms(values)
            out[f"{name}_p50_ms_{n}"] = s["p50"]
            out[f"{name}_p99_ms_{n}"] = s["p99"]
            out[f"{name}_mean_ms_{n}"] = s["mean"]
    return out


async def run_layout(
    database_url: str | None, total: int, layout: str, queries: int, warmup: int
) -> dict[str, Any]:
    async with bench_database(database_url, prefix="bench_context", max_size=4) as db:
        loaded = await load(db, total, layout)
        figures = await measure(db, total, queries, warmup)
        point = message_id((PER_CHANNEL // 2) * (total // PER_CHANNEL))
        env = await environment(db)
        result = {**figures, **loaded, "plans": await plans(db, point, 1000), "env": env}
    print(
        f"{layout}: 2000 before a point: ours p50 {figures['ours_p50_ms_2000']} ms "
        f"(p99 {figures['ours_p99_ms_2000']}), Junkie p50 {figures['junkie_p50_ms_2000']} ms, "
        f"Junkie+before p50 {figures['junkie_before_p50_ms_2000']} ms; 100: ours p50 "
        f"{figures['ours_p50_ms_100']} ms, Junkie {figures['junkie_p50_ms_100']} ms",
        flush=True,
    )
    return result


async def compare_servers(total: int, queries: int, warmup: int, mb: int) -> dict[str, Any]:
    """Two embedded servers at once, the default memory sizing and ``shared_buffers = mb``,
    the same data (backfill layout) in each, the same queries interleaved across both,
    so that the machine's load falls on both alike."""
    async with contextlib.AsyncExitStack() as stack:
        auto = await stack.enter_async_context(
            bench_database(None, prefix="bench_context", max_size=4)
        )
        os.environ["BARKEEPER_EMBEDDED_SHARED_BUFFERS_MB"] = str(mb)
        try:
            fixed = await stack.enter_async_context(
                bench_database(None, prefix="bench_context", max_size=4)
            )
        finally:
            del os.environ["BARKEEPER_EMBEDDED_SHARED_BUFFERS_MB"]
        servers = {"auto": auto, f"{mb}mb": fixed}
        buffers = {}
        for name, db in servers.items():
            await load(db, total, "backfill")
            async with db.acquire() as conn:
                buffers[name] = await conn.fetchval("SHOW shared_buffers")
        stores = {name: MessageStore(db) for name, db in servers.items()}
        channels = total // PER_CHANNEL
        rng = random.Random(7)
        samples: dict[str, list[float]] = {}
        server_ms: dict[str, list[float]] = {name: [] for name in servers}
        for q in range(warmup + queries):
            c = rng.randrange(channels)
            point = message_id(rng.randrange(MIN_BEFORE, PER_CHANNEL) * channels + c)
            runs: list[tuple[str, Any]] = []
            for name, db in servers.items():
                runs.append((f"ours_{name}", stores[name]))
                runs.append((f"junkie_before_{name}", db))
            rng.shuffle(runs)
            for label, target in runs:
                started = time.perf_counter()
                if isinstance(target, MessageStore):
                    got = len(await target.get_context(1000 + c, before=point, limit=2000))
                else:
                    async with target.acquire() as conn:
                        rows = await conn.fetch(
                            JUNKIE_BEFORE, 1000 + c, 2000, snowflake_time(point)
                        )
                    got = len(list(reversed(rows)))
                elapsed = time.perf_counter() - started
                assert got == 2000, (label, got)
                if q >= warmup:
                    samples.setdefault(label, []).append(elapsed)
            if q >= warmup and q % 10 == 0:  # the server's execution alone, now and then
                from barkeeper.history import _store

                for name, db in servers.items():
                    async with db.acquire() as conn:
                        plan = await conn.fetchval(
                            "EXPLAIN (ANALYZE, FORMAT JSON) " + _store._CONTEXT,
                            1000 + c,
                            point - 1,
                            2000,
                        )
                    server_ms[name].append(plan[0]["Execution Time"] / 1000)
        figures = {label: summarize_ms(v) for label, v in sorted(samples.items())}
        server = {name: summarize_ms(v) for name, v in server_ms.items()}
        other = f"{mb}mb"
        return {
            "shared_buffers": buffers,
            "p50_ms_2000": {label: f["p50"] for label, f in figures.items()},
            "p99_ms_2000": {label: f["p99"] for label, f in figures.items()},
            "server_p50_ms_2000": {name: f["p50"] for name, f in server.items()},
            "ratio_ours_p50_auto_to_fixed": round(
                figures["ours_auto"]["p50"] / figures[f"ours_{other}"]["p50"], 3
            ),
            "ratio_server_p50_auto_to_fixed": round(
                server["auto"]["p50"] / server[other]["p50"], 3
            ),
            "ratio_ours_to_junkie_before_p50": {
                name: round(
                    figures[f"ours_{name}"]["p50"] / figures[f"junkie_before_{name}"]["p50"], 3
                )
                for name in servers
            },
            "queries": queries,
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        }


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="only the comparison of --compare-shared-buffers-mb (default 128)",
    )
    parser.add_argument(
        "--layouts",
        default="backfill,interleaved",
        help="comma-separated physical orders to measure (default: both)",
    )
    parser.add_argument(
        "--compare-shared-buffers-mb",
        type=int,
        default=None,
        help="also compare, on two embedded servers at once with queries interleaved, "
        "the automatic memory sizing with this shared_buffers (e.g. 128, PostgreSQL's "
        "default)",
    )


async def main() -> None:
    args = parse_args("context windows: ours vs Junkie's query", extra=_options)
    total = 100_000 if args.quick else 1_000_000
    queries = 300 if args.quick else 2000
    warmup = 50 if args.quick else 300
    wall = time.perf_counter()
    if args.compare_only:
        load_before = [round(x, 2) for x in os.getloadavg()]
        compared = await compare_servers(
            total, queries, warmup, args.compare_shared_buffers_mb or 128
        )
        write_json(
            args.out,
            {
                "benchmark": "context: the embedded server's memory sizing, same data and "
                "queries on two servers at once",
                "compared_shared_buffers": compared,
                "sizes": {"messages": total, "channels": total // PER_CHANNEL},
                "load_average_1_5_15_before": load_before,
                "quick": args.quick,
                "wall_s": round(time.perf_counter() - wall, 1),
            },
        )
        print(compared)
        return
    layouts = {
        layout: await run_layout(args.database_url, total, layout, queries, warmup)
        for layout in args.layouts.split(",")
    }
    head = layouts["backfill"]
    env = head.pop("env")
    for other in layouts.values():
        other.pop("env", None)
    compared: dict[str, Any] = {}
    if args.compare_shared_buffers_mb is not None and args.database_url is None:
        compared = await compare_servers(total, queries, warmup, args.compare_shared_buffers_mb)
    keys = [
        f"{who}_{stat}_ms_{n}"
        for who in ("ours", "junkie", "junkie_before")
        for n in (100, 2000)
        for stat in ("p50", "p99")
    ] + ["ours_server_p50_ms_100", "ours_server_p50_ms_2000", "mean_text_kb_per_2000_window"]
    out: dict[str, Any] = {
        "benchmark": "context: newest N messages before a point, ours vs Junkie's query",
        "layout": "backfill",
        **{k: head[k] for k in keys},
        "speedup_p50_2000_vs_junkie": round(
            head["junkie_p50_ms_2000"] / head["ours_p50_ms_2000"], 2
        ),
        "speedup_p50_2000_vs_junkie_before": round(
            head["junkie_before_p50_ms_2000"] / head["ours_p50_ms_2000"], 2
        ),
        "goal_p50_ms_2000": 1.0,
        "layouts": layouts,
        "compared_shared_buffers": compared,
        "sizes": {
            "messages": total,
            "channels": total // PER_CHANNEL,
            "queries_per_size": queries,
            "warmup_queries": warmup,
            "min_older_messages_at_point": MIN_BEFORE,
        },
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - wall, 1),
        "environment": env,
    }
    write_json(args.out, out)
    print(
        f"ours p50 {out['ours_p50_ms_2000']} ms for 2000 (goal 1.0), Junkie "
        f"{out['junkie_p50_ms_2000']} ms; wrote {args.out}"
    )


if __name__ == "__main__":
    asyncio.run(main())
