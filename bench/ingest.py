"""Ingest: barkeeper's batch path vs Junkie's per-message upsert vs plain COPY.

Run: ``python bench/ingest.py --out bench/results/ingest.json [--quick] [--database-url URL]``

The same generated messages (realistic lengths, some unicode, 5% with attachments, 3%
with embeds, 1% edited) arrive as a backfill delivers them: pages of one channel, newest
page first, channels taken in turn. Each method writes into a fresh, empty table with
the same indexes (primary key, ``(channel_id, message_id DESC)``, ``(author_id)``):

- ours: ``MessageStore.store_batch_and_advance(channel, page, before_id=...)`` — the
  backfill's path: probe which ids are cached, COPY the new rows, upsert the rest (rows
  with attachments), move the channel's cursor, all in one transaction; the table's
  statement triggers keep the per-channel counts. ``ours_store_many`` is
  ``store_many(page)`` (no cursor). ``ours_tombstones`` is ``ours`` with 1,000
  forgotten people in the tombstone table (none of them an author here): the cost of
  the erasure check once someone has been forgotten; with no tombstone the check is
  one empty-table probe per batch (compare ``ours`` with the same run on older code).
- copy: ``COPY`` of the same pages (prebuilt records, binary, one COPY per page) into
  ``CREATE TABLE … (LIKE discord_messages INCLUDING ALL)`` — same columns, defaults
  and indexes, no triggers, no conflict handling: the floor.
- junkie: seed 000's ``store_message``: one ``INSERT … ON CONFLICT (message_id) DO
  UPDATE`` per message, autocommit, a pool connection per call, into Junkie's own
  ``messages`` table and indexes. Slow, so it gets the first ``junkie_messages`` only.

Commit mode: our store commits ingest asynchronously (a cache of Discord's data; a page
and its cursor commit together or not at all). ``copy`` runs with the same
``synchronous_commit = off`` so that ``ratio_to_copy`` compares write paths, not the
disk's fsync latency; ``ours_durable`` (``MessageStore(durable=True)``) against
``copy_sync`` gives the same comparison with synchronous commits. Junkie runs as it did
(the server's default, synchronous). Methods alternate within each round and each
figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import Any

import asyncpg

from _common import JUNKIE_DDL, bench_database, environment, parse_args, write_json
from barkeeper.db import Database
from barkeeper.history import (
    DISCORD_EPOCH_MS,
    Attachment,
    MessageStore,
    StoredMessage,
)
from barkeeper.privacy._tombstones import ensure_key, write_tombstones

T0_MS = 1_600_000_000_000
# ours_tombstones: `ours` with this many forgotten people in the tombstone table (none
# an author of the batch): the cost of the erasure check once someone was forgotten.
TOMBSTONES = 1_000
CHANNELS = 20
WORDS = (
    "the a to and of I you it is in that for on was with so just like what lol yeah "
    "no okay think know really good time people would about get one out day café naïve "
    "😂 👍 🎉 ❤️ مرحبا שלום 日本語 ç ñ ü"
).split()

JUNKIE_STORE = """
INSERT INTO junkie_messages
    (message_id, channel_id, author_id, author_name, content, created_at, timestamp_str)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (message_id) DO UPDATE SET
    content = EXCLUDED.content, author_name = EXCLUDED.author_name,
    timestamp_str = EXCLUDED.timestamp_str
"""
COPY_COLUMNS = (
    "message_id",
    "channel_id",
    "guild_id",
    "author_id",
    "author_name",
    "author_is_bot",
    "content",
    "reply_to_id",
    "attachments",
    "embeds_count",
    "edited_at",
    "sanitized_chars",
)


def make_content(rng: random.Random) -> str:
    r = rng.random()
    words = (
        rng.randint(1, 12)
        if r < 0.6
        else rng.randint(12, 60)
        if r < 0.9
        else rng.randint(60, 300)
        if r < 0.99
        else 0
    )
    if words == 0:
        return ("long message " * 400)[:4000]
    return " ".join(rng.choices(WORDS, k=words))


def make_messages(total: int, seed: int = 1) -> list[list[StoredMessage]]:
    """Per channel, oldest first: ``total`` messages over ``CHANNELS`` channels."""
    rng = random.Random(seed)
    per_channel: list[list[StoredMessage]] = [[] for _ in range(CHANNELS)]
    edited = StoredMessage(1, 1, 1, "x", "x").created_at  # any aware datetime
    for i in range(total):
        c = i % CHANNELS
        ms = T0_MS + i * 997
        mid = ((ms - DISCORD_EPOCH_MS) << 22) | c
        has_att = rng.random() < 0.05
        attachments = (
            (Attachment(f"https://cdn.example/{mid}/p.png", "p.png", "image/png", 12345),)
            if has_att
            else ()
        )
        content = make_content(rng)
        if has_att:
            content += f"\n[Attachment: https://cdn.example/{mid}/p.png]"
        embeds = 1 if rng.random() < 0.03 else 0
        if embeds:
            content += "\n[Embed: 1 embed(s)]"
        author = rng.randrange(200)
        per_channel[c].append(
            StoredMessage(
                message_id=mid,
                channel_id=1000 + c,
                guild_id=1,
                author_id=10_000 + author,
                author_name=f"member {author}",
                author_is_bot=author < 4,
                content=content,
                attachments=attachments,
                embeds_count=embeds,
                edited_at=edited if rng.random() < 0.01 else None,
            )
        )
    return per_channel


def make_pages(per_channel: list[list[StoredMessage]], size: int) -> list[list[StoredMessage]]:
    """Pages as a backfill fetches them: newest page first per channel, channels in turn."""
    queues = []
    for messages in per_channel:
        pages = [messages[i : i + size] for i in range(0, len(messages), size)]
        queues.append(list(reversed(pages)))
    out: list[list[StoredMessage]] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


_BEFORE_ATTACHMENTS = attrgetter(*COPY_COLUMNS[:8])
_AFTER_ATTACHMENTS = attrgetter(*COPY_COLUMNS[9:])


def copy_record(m: StoredMessage) -> tuple[Any, ...]:
    """The COPY record of a message (C-level getters: the cheapest reasonable way)."""
    attachments = json.dumps([a.to_json() for a in m.attachments]) if m.attachments else "[]"
    return (*_BEFORE_ATTACHMENTS(m), attachments, *_AFTER_ATTACHMENTS(m))


async def reset_ours(db: Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("TRUNCATE discord_messages, discord_channels CASCADE")


async def set_tombstones(db: Database, n: int) -> None:
    """Have ``n`` forgotten people (none of them an author here), or none at all."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM forgotten")
        if n:
            await ensure_key(conn)
            await write_tombstones(conn, [f"discord:{i}" for i in range(1, n + 1)])


async def run_ours(
    db: Database,
    pages: list[list[StoredMessage]],
    *,
    durable: bool,
    cursor: bool,
    tombstones: int = 0,
) -> float:
    await reset_ours(db)
    await set_tombstones(db, tombstones)
    store = MessageStore(db, durable=durable)
    started = time.perf_counter()
    for page in pages:
        if cursor:
            await store.store_batch_and_advance(
                page[0].channel_id, page, before_id=page[0].message_id
            )
        else:
            await store.store_many(page)
    elapsed = time.perf_counter() - started
    n = sum(len(p) for p in pages)
    async with db.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM discord_messages")
        counted = await conn.fetchval("SELECT sum(message_count) FROM discord_channels")
    assert stored == n == counted, (stored, n, counted)
    await set_tombstones(db, 0)
    return n / elapsed


async def run_copy(
    conn: asyncpg.Connection,
    schema: str,
    pages: list[list[tuple[Any, ...]]] | list[list[StoredMessage]],
    *,
    from_objects: bool = False,
) -> float:
    await conn.execute(
        "DROP TABLE IF EXISTS copy_target; "
        "CREATE TABLE copy_target (LIKE discord_messages INCLUDING ALL)"
    )
    started = time.perf_counter()
    for page in pages:
        # from_objects: the records are built in the timing, as any COPY-based store
        # would have to build them from its message objects.
        records = [copy_record(m) for m in page] if from_objects else page  # type: ignore[arg-type]
        await conn.copy_records_to_table(
            "copy_target", records=records, columns=COPY_COLUMNS, schema_name=schema
        )
    elapsed = time.perf_counter() - started
    n = sum(len(p) for p in pages)
    assert await conn.fetchval("SELECT count(*) FROM copy_target") == n
    return n / elapsed


async def run_junkie(db: Database, messages: list[StoredMessage]) -> float:
    async with db.acquire() as conn:
        await conn.execute("TRUNCATE junkie_messages")
    pool = db.pool
    started = time.perf_counter()
    for m in messages:
        async with pool.acquire() as conn:
            await conn.execute(
                JUNKIE_STORE,
                m.message_id,
                m.channel_id,
                m.author_id,
                m.author_name,
                m.content,
                m.created_at,
                m.timestamp_str,
            )
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="rounds per page size")
    parser.add_argument("--page-sizes", default="100,1000,5000", help="comma-separated page sizes")


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "ingest", extra=_options)
    total = 20_000 if args.quick else 200_000
    junkie_n = 1_000 if args.quick else 5_000
    rounds = args.rounds
    sizes = [int(x) for x in args.page_sizes.split(",")]
    wall = time.perf_counter()
    per_channel = make_messages(total)
    flat = sorted((m for ms in per_channel for m in ms), key=lambda m: m.message_id)
    chars = sum(len(m.content) for m in flat)
    async with bench_database(args.database_url, prefix="bench_ingest") as db:
        async with db.acquire() as conn:
            await conn.execute(JUNKIE_DDL)
        plain = {"search_path": f'"{db.schema}"'}
        copy_async = await asyncpg.connect(
            db.url.dsn(), server_settings={**plain, "synchronous_commit": "off"}
        )
        copy_sync = await asyncpg.connect(db.url.dsn(), server_settings=plain)
        results: dict[int, dict[str, list[float]]] = {}
        try:
            for size in sizes:
                pages = make_pages(per_channel, size)
                records = [[copy_record(m) for m in page] for page in pages]
                methods: dict[str, Callable[[], Awaitable[float]]] = {
                    "ours": lambda p=pages: run_ours(db, p, durable=False, cursor=True),
                    "ours_store_many": lambda p=pages: run_ours(db, p, durable=False, cursor=False),
                    "ours_durable": lambda p=pages: run_ours(db, p, durable=True, cursor=True),
                    "ours_tombstones": lambda p=pages: run_ours(
                        db, p, durable=False, cursor=True, tombstones=TOMBSTONES
                    ),
                    "copy": lambda r=records: run_copy(copy_async, db.schema, r),
                    "copy_sync": lambda r=records: run_copy(copy_sync, db.schema, r),
                    "copy_from_objects": lambda p=pages: run_copy(
                        copy_async, db.schema, p, from_objects=True
                    ),
                }
                got: dict[str, list[float]] = {name: [] for name in methods}
                for rnd in range(rounds):
                    names = list(methods)
                    if rnd % 2:
                        names.reverse()
                    for name in names:
                        got[name].append(await methods[name]())
                results[size] = got
                print(
                    f"pages of {size}: "
                    + ", ".join(f"{k} {statistics.median(v):,.0f}/s" for k, v in got.items()),
                    flush=True,
                )
            junkie = [await run_junkie(db, flat[:junkie_n]) for _ in range(2)]
            env = await environment(db)
        finally:
            await copy_async.close()
            await copy_sync.close()

    def med(size: int, name: str) -> float:
        return round(statistics.median(results[size][name]), 1)

    headline = 1000 if 1000 in sizes else sizes[0]
    out: dict[str, Any] = {
        "benchmark": "ingest: MessageStore batch path vs Junkie per-message upsert vs COPY",
        "headline_page_size": headline,
        "ours_msgs_per_s": med(headline, "ours"),
        "junkie_msgs_per_s": round(statistics.median(junkie), 1),
        "copy_msgs_per_s": med(headline, "copy"),
        "ratio_to_copy": round(med(headline, "ours") / med(headline, "copy"), 3),
        "ratio_to_junkie": round(med(headline, "ours") / statistics.median(junkie), 1),
        "copy_from_objects_msgs_per_s": med(headline, "copy_from_objects"),
        "ratio_to_copy_from_objects": round(
            med(headline, "ours") / med(headline, "copy_from_objects"), 3
        ),
        "ours_tombstones_msgs_per_s": med(headline, "ours_tombstones"),
        "tombstones": TOMBSTONES,
        "ratio_tombstones_to_ours": round(
            med(headline, "ours_tombstones") / med(headline, "ours"), 3
        ),
        "ours_durable_msgs_per_s": med(headline, "ours_durable"),
        "copy_sync_msgs_per_s": med(headline, "copy_sync"),
        "ratio_durable_to_copy_sync": round(
            med(headline, "ours_durable") / med(headline, "copy_sync"), 3
        ),
        "by_page_size": {
            str(size): {
                **{f"{name}_msgs_per_s": med(size, name) for name in results[size]},
                "ratio_to_copy": round(med(size, "ours") / med(size, "copy"), 3),
                "ratio_to_copy_from_objects": round(
                    med(size, "ours") / med(size, "copy_from_objects"), 3
                ),
                "ratio_store_many_to_copy": round(
                    med(size, "ours_store_many") / med(size, "copy"), 3
                ),
                "ratio_durable_to_copy_sync": round(
                    med(size, "ours_durable") / med(size, "copy_sync"), 3
                ),
                "rounds": {name: [round(x) for x in v] for name, v in results[size].items()},
            }
            for size in sizes
        },
        "sizes": {
            "messages": total,
            "channels": CHANNELS,
            "junkie_messages": junkie_n,
            "mean_content_chars": round(chars / total, 1),
            "with_attachments": sum(1 for m in flat if m.attachments),
            "rounds": rounds,
        },
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - wall, 1),
        "environment": env,
    }
    write_json(args.out, out)
    print(
        f"ours {out['ours_msgs_per_s']:,.0f} msgs/s, COPY {out['copy_msgs_per_s']:,.0f} "
        f"(ratio {out['ratio_to_copy']}), Junkie {out['junkie_msgs_per_s']:,.0f} "
        f"(ours is {out['ratio_to_junkie']}x); pages of {headline}; wrote {args.out}"
    )


if __name__ == "__main__":
    asyncio.run(main())
