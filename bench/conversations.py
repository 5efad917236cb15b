"""Adding messages under a storage limit: barkeeper's ConversationStore vs VoltAgent's pattern.

Run: ``python bench/conversations.py --out bench/results/conversations.json [--quick]
[--database-url URL]``

Both sides add the same messages (same conversations, same contents, same order) with a
per-conversation storage limit of 100, on the same PostgreSQL (an ephemeral embedded
one unless ``--database-url`` is given), through the same asyncpg pool:

- ours: :meth:`barkeeper.conversations.ConversationStore.add_message` — lock the
  conversation row, one statement inserting the message, deleting the oldest beyond
  the limit (read from the (conversation_id, created_at, id) index) and updating the
  conversation's counter and times;
- VoltAgent's ``PostgresStorage.addMessage`` (``@voltagent/postgres``), on its own
  tables (``voltagent_memory_conversations``/``_messages`` with its indexes) in a
  separate schema: ``BEGIN; INSERT; SELECT COUNT(*) … WHERE conversation_id; if over
  the limit DELETE … WHERE message_id IN (SELECT … ORDER BY created_at ASC LIMIT
  count - limit); COMMIT``. It keeps no counter and does not touch the conversation.

Adds are interleaved (one conversation, one side then the other, the order swapped
each round) so that server-side effects (autovacuum, checkpoints, cache) fall on both
alike. Each add is timed alone; adds/s is adds over the summed time. A last check
fires 50 concurrent adds at one conversation with a limit of 10 on each side and
records how many messages remain.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from _common import bench_database, environment, parse_args, percentile, write_json
from barkeeper.companion import UserStore
from barkeeper.conversations import ConversationStore
from barkeeper.db import Database

STORAGE_LIMIT = 100

# --- VoltAgent's tables and addMessage, as @voltagent/postgres creates and runs them --------

_VOLT_DDL = """
CREATE TABLE {s}.voltagent_memory_conversations (
    id TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    title TEXT,
    metadata JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT timezone('utc'::text, now()),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT timezone('utc'::text, now())
);
CREATE TABLE {s}.voltagent_memory_messages (
    conversation_id TEXT NOT NULL
        REFERENCES {s}.voltagent_memory_conversations(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT timezone('utc'::text, now()),
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX idx_voltagent_memory_conversations_resource
    ON {s}.voltagent_memory_conversations(resource_id);
CREATE INDEX idx_voltagent_memory_conversations_user
    ON {s}.voltagent_memory_conversations(user_id);
CREATE INDEX idx_voltagent_memory_messages_lookup
    ON {s}.voltagent_memory_messages(conversation_id, created_at);
"""


class VoltAgentPattern:
    """VoltAgent's ``addMessage``: insert, count the conversation, delete the oldest excess."""

    def __init__(self, db: Database, schema: str, storage_limit: int) -> None:
        self._db = db
        self.storage_limit = storage_limit
        s = f'"{schema}"'
        self._insert = (
            f"INSERT INTO {s}.voltagent_memory_messages "  # noqa: S608 - bench's own schema name
            "(conversation_id, message_id, role, content, type, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)"
        )
        self._count = (
            f"SELECT COUNT(*) AS count FROM {s}.voltagent_memory_messages "  # noqa: S608
            "WHERE conversation_id = $1"
        )
        self._trim = (
            f"DELETE FROM {s}.voltagent_memory_messages WHERE conversation_id = $1 "  # noqa: S608
            "AND message_id IN (SELECT message_id FROM "
            f"{s}.voltagent_memory_messages WHERE conversation_id = $1 "
            "ORDER BY created_at ASC LIMIT $2)"
        )
        self._create = (
            f"INSERT INTO {s}.voltagent_memory_conversations "  # noqa: S608
            "(id, resource_id, user_id, title, metadata) VALUES ($1, $2, $3, $4, $5)"
        )
        self._messages = (
            f"SELECT content FROM {s}.voltagent_memory_messages "  # noqa: S608
            "WHERE conversation_id = $1 ORDER BY created_at ASC"
        )

    async def create_conversation(self, conversation_id: str, user_id: str) -> None:
        async with self._db.acquire() as conn:
            await conn.execute(self._create, conversation_id, "bench", user_id, None, {})

    async def add_message(self, conversation_id: str, role: str, content: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                self._insert,
                conversation_id,
                str(uuid.uuid4()),
                role,
                content,
                "text",
                datetime.now(UTC),  # VoltAgent passes the message's createdAt from the client
            )
            if self.storage_limit > 0:
                count = int(await conn.fetchval(self._count, conversation_id))
                if count > self.storage_limit:
                    await conn.execute(self._trim, conversation_id, count - self.storage_limit)

    async def contents(self, conversation_id: str) -> list[str]:
        async with self._db.acquire() as conn:
            return [r[0] for r in await conn.fetch(self._messages, conversation_id)]


# --- the workload ---------------------------------------------------------------------------

_WORDS = (
    "the stout is smooth tonight did you hear about the quiz my sister called again i "
    "miss her more than i say the rain will not stop pour me the usual please how was "
    "your week honestly it was long thank you for remembering cheers"
).split()


def message_texts(count: int, seed: int) -> list[str]:
    """``count`` chat lines of 5 to 60 words (about 25–330 characters)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(5, 60))) for _ in range(count)]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def concurrency_check(
    db: Database, volt_schema: str, *, adds: int, limit: int
) -> dict[str, Any]:
    """Fire ``adds`` concurrent adds at one conversation per side; count what remains."""
    ours = ConversationStore(db, storage_limit=limit)
    volt = VoltAgentPattern(db, volt_schema, limit)
    user = await UserStore(db).get_or_create_external_user("bench-concurrency")
    conv = await ours.create_conversation(user.id, resource_id="bench-concurrency")
    await volt.create_conversation(conv.id, "bench-concurrency")
    sides: dict[str, Callable[[int], Awaitable[object]]] = {
        "ours": lambda i: ours.add_message(conv.id, "user", f"c{i}", user_id=user.id),
        "voltagent": lambda i: volt.add_message(conv.id, "user", f"c{i}"),
    }
    result: dict[str, Any] = {"adds": adds, "storage_limit": limit}
    for name, add in sides.items():
        outcomes = await asyncio.gather(*(add(i) for i in range(adds)), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        remaining = (
            await ours.count_messages(conv.id, user_id=user.id)
            if name == "ours"
            else len(await volt.contents(conv.id))
        )
        result[f"{name}_remaining"] = remaining
        result[f"{name}_errors"] = len(errors)
        result[f"{name}_error_kinds"] = sorted({_error_kind(e) for e in errors})
    return result


def _error_kind(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} {sqlstate}" if sqlstate else type(exc).__name__


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conversations, per_conversation = (20, 150) if args.quick else (100, 300)
    volt_schema = f"bench_volt_{uuid.uuid4().hex[:10]}"
    async with bench_database(args.database_url, prefix="bench_conv") as db:
        async with db.acquire() as conn:
            await conn.execute(f'CREATE SCHEMA "{volt_schema}"')
            await conn.execute(_VOLT_DDL.format(s=f'"{volt_schema}"'))
        try:
            load_before = os.getloadavg()[0]
            result = await measure(db, volt_schema, conversations, per_conversation)
            # The machine may be shared: the figures mean less when this is high.
            result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            result["check_concurrent_adds"] = await concurrency_check(
                db, volt_schema, adds=50, limit=10
            )
            result["quick"] = bool(args.quick)
            result["environment"] = await environment(db)
            return result
        finally:
            async with db.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{volt_schema}" CASCADE')


async def measure(
    db: Database, volt_schema: str, conversations: int, per_conversation: int
) -> dict[str, Any]:
    """Interleaved adds on both sides; per-add latencies; then check what both kept."""
    store = ConversationStore(db, storage_limit=STORAGE_LIMIT)
    volt = VoltAgentPattern(db, volt_schema, STORAGE_LIMIT)
    users = UserStore(db)
    ids: list[str] = []
    owners: list[int] = []
    for i in range(conversations):
        user = await users.get_or_create_external_user(f"user-{i % 10}")
        conv = await store.create_conversation(user.id, resource_id="bench")
        await volt.create_conversation(conv.id, f"user-{i % 10}")
        ids.append(conv.id)
        owners.append(user.id)
    texts = [message_texts(per_conversation, seed=i) for i in range(conversations)]

    ours_times: list[float] = []
    volt_times: list[float] = []
    started = time.perf_counter()
    for m in range(per_conversation):
        role = "user" if m % 2 == 0 else "assistant"
        for c in range(conversations):
            cid, text = ids[c], texts[c][m]
            # The user's words owner-checked, the reply as the bot adds its own.
            ours = (
                functools.partial(store.add_message, cid, "user", text, user_id=owners[c])
                if role == "user"
                else functools.partial(store.add_message_unchecked, cid, "assistant", text)
            )
            theirs = functools.partial(volt.add_message, cid, role, text)
            if (m + c) % 2 == 0:
                ours_times.append(await timed(ours))
                volt_times.append(await timed(theirs))
            else:
                volt_times.append(await timed(theirs))
                ours_times.append(await timed(ours))
        if (m + 1) % 50 == 0:
            print(
                f"  round {m + 1}/{per_conversation}: ours "
                f"{len(ours_times) / sum(ours_times):,.0f} adds/s, voltagent "
                f"{len(volt_times) / sum(volt_times):,.0f} adds/s",
                file=sys.stderr,
            )
    wall = time.perf_counter() - started

    kept = min(per_conversation, STORAGE_LIMIT)
    same = True
    counters_exact = True
    for c, cid in enumerate(ids):
        ours_kept = [
            m.content for m in await store.get_messages(cid, user_id=owners[c], limit=1000)
        ]
        same = same and ours_kept == texts[c][-kept:] == await volt.contents(cid)
        conv = await store.get_conversation(cid)
        counters_exact = counters_exact and conv is not None and conv.message_count == kept

    ours_rate = len(ours_times) / sum(ours_times)
    volt_rate = len(volt_times) / sum(volt_times)
    return {
        "benchmark": "conversations: add_message with a storage limit",
        "ours_adds_per_s": round(ours_rate, 1),
        "voltagent_adds_per_s": round(volt_rate, 1),
        "ratio": round(ours_rate / volt_rate, 3),
        # per-add medians: less moved than the means by a shared machine's stalls
        "ratio_p50": round(percentile(volt_times, 50) / percentile(ours_times, 50), 3),
        "ours_p50_ms": round(percentile(ours_times, 50) * 1000, 3),
        "ours_p99_ms": round(percentile(ours_times, 99) * 1000, 3),
        "voltagent_p50_ms": round(percentile(volt_times, 50) * 1000, 3),
        "voltagent_p99_ms": round(percentile(volt_times, 99) * 1000, 3),
        "sizes": {
            "conversations": conversations,
            "messages_per_conversation": per_conversation,
            "storage_limit": STORAGE_LIMIT,
            "adds_per_side": len(ours_times),
            "mean_content_chars": round(statistics.mean(len(t) for ts in texts for t in ts), 1),
        },
        "same_messages_kept_on_both_sides": same,
        "ours_message_count_exact": counters_exact,
        "wall_s": round(wall, 2),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    result = asyncio.run(run(args))
    write_json(args.out, result)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
