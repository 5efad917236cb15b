"""The time barkeeper adds to a reply, and the prompt it sends, against a Junkie/Agno pipeline.

Both pipelines answer the same messages on the same database, interleaved, through the
same local model server (``barkeeper.testing.llm``, the real ``openai`` client); the
model's own time is excluded from both:

- ``ours``: :meth:`barkeeper.agent.Agent.reply`: parallel reads (the author's memories by
  hybrid search, the channel's ``TEAM_LEADER_CONTEXT_LIMIT`` messages strictly before
  the message, the session's last runs), the budgeted layout counted with the model's
  tokenizer, the run recorded. Added time = the call's wall time − its model time.
- ``junkie``: the seeds' way: the channel's newest 100 messages read and formatted
  (Junkie), every memory of the user put in the prompt and the session's runs read
  (Agno's ``enable_user_memories`` / ``num_history_runs``), the run written afterwards.

Data: 1,000,000 cached messages over 100 channels and 1,000,000 memories over 10,000
users (``--quick``: 20,000 / 20 / 20,000 / 200), bulk-loaded in SQL without vectors
(hybrid search finds them by full text). Then prompt tokens per reply for users with
10 / 100 / 1,000 memories: ours stays within ``BARKEEPER_CONTEXT_TOKENS``; the
Agno-style prompt grows with every memory.

Ours runs with the companion on (``barkeeper.companion.Companion``: mood, relationship,
style and opinions read before each reply, in parallel with the other reads, and moved
after it in the background); ``companion_read_ms`` is its read alone (one round trip),
``companion_read_in_pipeline_ms`` its wall time while the other reads run beside it.
``companion_read_with_associations_ms`` is the same read once fact associations are on
(the guild's switch, 50 connected members whose memories were learnt in the guild, their
associations discovered: ``association_discovery_ms``, one background discovery each).

Goal: ours p50 ≤ 10 ms, p99 ≤ 50 ms; the companion's read p50 ≤ 1 ms.

    python bench/reply.py --out bench/results/reply.json [--quick] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import bench_database, environment, percentile, summarize_ms, write_json
from barkeeper.agent import (
    Agent,
    AgentConfig,
    Author,
    IncomingMessage,
    Place,
    ReplyRequest,
)
from barkeeper.companion import Companion
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.history import DISCORD_EPOCH_MS, MessageStore
from barkeeper.llm import ChatMessage, OpenAIChatModel, count_message_tokens
from barkeeper.memory import MemoryStore
from barkeeper.testing.llm import LLMServer

MODEL = "openai/gpt-oss-120b"
FULL = {
    "messages": 1_000_000,
    "channels": 100,
    "users": 10_000,
    "memories": 1_000_000,
    "replies": 300,
}
QUICK = {"messages": 20_000, "channels": 20, "users": 200, "memories": 20_000, "replies": 60}
GUILD = 42
WARMUP = 10
TOPICS = "tea whisky cats rain work music football grief garden books sister train exam".split()

_LOAD_USERS = """
INSERT INTO users (discord_id, discord_username)
SELECT 10000000 + g, 'user' || g FROM generate_series(1, $1) g
"""
# Snowflakes one second apart, ending a minute ago, spread over the channels.
_LOAD_MESSAGES = """
INSERT INTO discord_messages (message_id, channel_id, guild_id, author_id, author_name, content)
SELECT ((($4::bigint - 60000 - ($1 - g) * 1000) - 1420070400000) << 22) | (g % 4096),
       1 + g % $2, 42, 10000000 + 1 + (g * 7) % $3, 'user' || (1 + (g * 7) % $3),
       'message ' || g || ' about ' || ($5::text[])[1 + g % 13]
           || ' and ' || ($5::text[])[1 + (g / 13) % 13]
FROM generate_series(1, $1) g
"""
_LOAD_MEMORIES = """
INSERT INTO memories (user_id, memory_type, content, importance)
SELECT $2::bigint + g % $3, 'general',
       'Cares about ' || ($4::text[])[1 + g % 13] || ' since ' || (1990 + g % 30) || ', note ' || g,
       (g % 10) / 10.0
FROM generate_series(1, $1) g
"""

_JUNKIE_HISTORY = """
SELECT message_id, author_id, author_name, content FROM discord_messages
WHERE channel_id = $1 ORDER BY message_id DESC LIMIT 100
"""
_AGNO_MEMORIES = "SELECT content FROM memories WHERE user_id = $1 AND is_active ORDER BY id"


def snowflake_now(seq: int) -> int:
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (seq % 4096)


async def load(db: Database, sizes: dict[str, int]) -> float:
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    async with db.acquire() as conn:
        await conn.execute(_LOAD_USERS, sizes["users"])
        print("  users loaded", file=sys.stderr)
        await conn.execute(
            _LOAD_MESSAGES, sizes["messages"], sizes["channels"], sizes["users"], now_ms, TOPICS
        )
        print("  messages loaded", file=sys.stderr)
        first = await conn.fetchval("SELECT min(id) FROM users")
        await conn.execute(_LOAD_MEMORIES, sizes["memories"], first, sizes["users"], TOPICS)
        print("  memories loaded", file=sys.stderr)
        await conn.execute("VACUUM (ANALYZE) discord_messages, memories, users")
    return time.perf_counter() - started


async def junkie_reply(
    db: Database,
    sessions: SessionStore,
    model: OpenAIChatModel,
    request: ReplyRequest,
    session_id: str,
) -> tuple[float, int]:
    """Junkie's context and Agno's memories/history: (added seconds, prompt tokens)."""
    started = time.perf_counter()
    async with db.acquire() as conn:
        rows = await conn.fetch(_JUNKIE_HISTORY, request.place.channel_id)
        memories = await conn.fetch(_AGNO_MEMORIES, request.author.user_id)
    runs = await sessions.get_recent_runs(session_id, 10)
    now = datetime.now(UTC)
    lines = []
    for row in reversed(rows):
        ago = now - datetime.fromtimestamp(
            ((row["message_id"] >> 22) + DISCORD_EPOCH_MS) / 1000, UTC
        )
        who = f"{row['author_name']}({row['author_id']})"
        lines.append(f"[{int(ago.total_seconds() // 60)} min ago] {who}: {row['content']}")
    prompt: list[ChatMessage] = [
        {
            "role": "system",
            "content": "You are Bartender.\n<memories_from_previous_interactions>\n"
            + "\n".join(f"- {m['content']}" for m in memories)
            + "\n</memories_from_previous_interactions>",
        },
    ]
    for run in runs:
        prompt.append({"role": "user", "content": run.input or ""})
        prompt.append({"role": "assistant", "content": run.output or ""})
    prompt.append(
        {
            "role": "user",
            "content": "\n".join(lines) + "\n--- CURRENT MESSAGE ---\n" + request.message.text,
        }
    )
    tokens = count_message_tokens(prompt, model=MODEL)
    before_model = time.perf_counter()
    result = await model.complete(prompt)
    model_seconds = time.perf_counter() - before_model
    await sessions.add_run(
        session_id, input=request.message.text, output=result.text, messages=[], metrics={}
    )
    return time.perf_counter() - started - model_seconds, tokens


def request_for(user_id: int, discord_id: int, channel: int, seq: int, text: str) -> ReplyRequest:
    return ReplyRequest(
        author=Author(user_id, f"user{discord_id - 10_000_000}", discord_id=discord_id),
        place=Place.guild(GUILD, channel, channel_name="the-bar"),
        message=IncomingMessage(text, datetime.now(UTC), id=snowflake_now(seq)),
        bot_id=1,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    async with (
        bench_database(args.database_url, prefix="bench_reply") as db,
        LLMServer() as srv,
        OpenAIChatModel(base_url=srv.base_url, model=MODEL) as model,
    ):
        print(f"loading {sizes}", file=sys.stderr)
        load_seconds = await load(db, sizes)
        sessions = SessionStore(db)
        store = MemoryStore(db, HashingEmbedder())
        companion = Companion(db)
        agent = Agent(
            model,
            sessions=sessions,
            messages=MessageStore(db),
            memories=store,
            memory_sink=lambda message: None,
            companion=companion,
            config=AgentConfig(model=MODEL, max_agents=10),
        )
        async with db.acquire() as conn:
            users = await conn.fetch("SELECT id, discord_id FROM users ORDER BY id LIMIT 50")
        ours: list[float] = []
        ours_context: list[float] = []
        steps: dict[str, list[float]] = {}
        junkie: list[float] = []
        ours_tokens: list[int] = []
        junkie_tokens: list[int] = []
        for n in range(sizes["replies"] + WARMUP):
            user = users[n % len(users)]
            channel = 1 + n % sizes["channels"]
            text = f"what do you remember about {TOPICS[n % len(TOPICS)]} and my week?"
            request = request_for(user["id"], user["discord_id"], channel, n, text)
            session = await sessions.get_or_create_session("junkie", user["id"], channel)
            started = time.perf_counter()
            answer = await agent.reply(request)
            added = time.perf_counter() - started - answer.record.latency_ms["model"] / 1000
            context_seconds = answer.record.latency_ms["context"] / 1000
            for step, ms in answer.record.latency_ms.items():
                if step.startswith("context.") and n >= WARMUP:
                    steps.setdefault(step, []).append(ms / 1000)
            baseline, tokens = await junkie_reply(db, sessions, model, request, session.id)
            if n >= WARMUP:
                ours.append(added)
                ours_context.append(context_seconds)
                junkie.append(baseline)
                ours_tokens.append(answer.record.context_tokens)
                junkie_tokens.append(tokens)
            if n % 20 == 0:
                print(f"  reply {n}", file=sys.stderr, end="\r")
        await agent.drain()

        by_memories: dict[str, dict[str, int]] = {}
        for count in (10, 100, 1000):
            async with db.acquire() as conn:
                uid = await conn.fetchval(
                    "INSERT INTO users (discord_id) VALUES ($1) RETURNING id", 20_000_000 + count
                )
                await conn.execute(_LOAD_MEMORIES, count, uid, 1, TOPICS)
            request = request_for(
                uid, 20_000_000 + count, 1, 9000 + count, "how is my sister doing, and the garden?"
            )
            answer = await agent.reply(request)
            session = await sessions.get_or_create_session("junkie", uid, 1)
            _, tokens = await junkie_reply(db, sessions, model, request, session.id)
            by_memories[str(count)] = {"ours": answer.record.context_tokens, "agno_style": tokens}
        # The companion's read alone (one round trip), with no other read competing.
        alone: list[float] = []
        for n in range(200):
            user = users[n % len(users)]
            started = time.perf_counter()
            await companion.before_reply(user["id"], GUILD, f"how about {TOPICS[n % len(TOPICS)]}?")
            alone.append(time.perf_counter() - started)
        # With fact associations on: the guild's switch, the 50 users connected, their
        # memories learnt in the guild, associations discovered. A dense worst case: every
        # loaded memory shares words ("cares about … note") with every other.
        async with db.acquire() as conn:
            await conn.execute(
                "UPDATE memories SET guild_id = $1 WHERE user_id = ANY($2::bigint[])",
                GUILD,
                [u["id"] for u in users],
            )
        await companion.settings.set_feature(GUILD, "associations", True)
        for user in users:
            await companion.settings.set_connected(user["id"], GUILD, True)
        discovery: list[float] = []
        for user in users:
            started = time.perf_counter()
            await companion.associations.discover(user["id"], GUILD, datetime.now(UTC))
            discovery.append(time.perf_counter() - started)
        with_associations: list[float] = []
        shown = 0
        for n in range(200):
            user = users[n % len(users)]
            started = time.perf_counter()
            ctx = await companion.before_reply(
                user["id"], GUILD, f"how about {TOPICS[n % len(TOPICS)]}?", channel_id=1
            )
            with_associations.append(time.perf_counter() - started)
            shown += len(ctx.associations)
        async with db.acquire() as conn:
            associations = await conn.fetchval("SELECT count(*) FROM fact_associations")
        ours_ms = summarize_ms(ours)
        junkie_ms = summarize_ms(junkie)
        companion_ms = summarize_ms(alone)
        return {
            "benchmark": "reply",
            "sizes": sizes,
            "load_seconds": round(load_seconds, 1),
            "added_ms": {"ours": ours_ms, "junkie": junkie_ms},
            "ours_context_ms": summarize_ms(ours_context),
            "ours_context_steps_ms": {k: summarize_ms(v) for k, v in sorted(steps.items())},
            "ratio_p50_junkie_to_ours": round(junkie_ms["p50"] / ours_ms["p50"], 2),
            "companion_read_ms": companion_ms,
            "companion_read_in_pipeline_ms": summarize_ms(steps["context.companion"]),
            "companion_read_with_associations_ms": summarize_ms(with_associations),
            "association_discovery_ms": summarize_ms(discovery),
            "associations": {"stored": associations, "shown_per_read": shown / 200},
            "goal": {
                "p50_ms": 10,
                "p99_ms": 50,
                "companion_read_p50_ms": 1,
                "met": ours_ms["p50"] <= 10 and ours_ms["p99"] <= 50 and companion_ms["p50"] <= 1,
            },
            "prompt_tokens": {
                "ours_p50": percentile(ours_tokens, 50),
                "junkie_p50": percentile(junkie_tokens, 50),
                "by_user_memories": by_memories,
                "budget": agent.config.budget.total,
            },
            "environment": await environment(db),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    write_json(args.out, results)
    print(results["added_ms"], results["prompt_tokens"], file=sys.stderr)


if __name__ == "__main__":
    main()
