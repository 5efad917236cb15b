"""The time barkeeper adds to a reply, and the prompt it sends, against a Junkie/Agno pipeline.

Two measurements, each in the same run as its baseline, repeated ``--runs`` times
(figures: the median over the runs of each run's p50 and p99):

- ``gateway``: the real bot end to end. The emulator (``barkeeper.testing.discord``)
  sends MESSAGE_CREATE to the real discord.py inside :class:`barkeeper.bot.Barkeeper`;
  the time runs until the reply's ``POST /channels/…/messages`` reaches the emulator,
  minus the model's own time (the chat model's calls, timed around them). Replies are
  sent whole (``BARKEEPER_STREAM_REPLIES=false``), so the POST comes after the model.
  The baseline is a plain ``discord.Client`` on the same emulator, database and model
  doing what Junkie/Agno do on ``?j`` messages: typing shown, the author looked up,
  the channel's newest 100 messages read and formatted, every memory of the user and
  the session's runs read, the model asked, the reply sent, the run written.
- ``pipeline``: :meth:`barkeeper.agent.Agent.reply` called directly, until the reply's
  text is ready to send (its ``deliver`` callback; the whole call where the agent has
  none), minus the model's time, with the per-step breakdown of the run record. Three
  variants interleaved message by message: ours with the companion, ours without it
  (``companion=None``: issue 10 asks that reading the companion adds at most 1 ms at
  p50), and the same Junkie/Agno pipeline without Discord.

Each reply is measured on an idle bot: the background work of the previous one
(memory hand-off, companion update, run record) is waited for before the next message.
Everything runs in one process and event loop (emulator, bot, model server), as the
tests do; the model is ``barkeeper.testing.llm`` behind the real ``openai`` client.

Data: 1,000,000 cached messages over 100 channels and 1,000,000 memories over 10,000
users (``--quick``: 20,000 / 20 / 20,000 / 200), bulk-loaded in SQL. Every memory has
a vector, so both halves of the hybrid search cost what they cost in production: the
memory texts are 390 kinds ("Cares about <topic> since <year>") plus a note number,
and each memory gets the vector of its kind's text, embedded once by the bench's
embedder (``--embedder``: ``local``, the bundled MiniLM the bot uses by default, or
``hashing``), which also embeds every incoming message. By default the database is
an ephemeral embedded PostgreSQL 18 with pgvector (vectors in ``vector`` columns,
cosine in SQL); ``vector_storage`` in the results says which storage was measured.
Then prompt tokens per reply for users with 10 / 100 / 1,000 memories: ours stays
within ``BARKEEPER_CONTEXT_TOKENS``; the Agno-style prompt grows with every memory.

Goal: ours p50 ≤ 10 ms, p99 ≤ 50 ms (gateway); the companion's cost p50 ≤ 1 ms.

    python bench/reply.py --out bench/results/reply.json [--quick] [--runs 3]
        [--embedder local|hashing] [--embedding-spin auto|always|never]
        [--embedding-threads N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord

from _common import bench_database, environment, percentile, summarize_ms, write_json
from barkeeper.agent import (
    Agent,
    AgentConfig,
    Author,
    IncomingMessage,
    Place,
    ReplyRequest,
    build_agent,
)
from barkeeper.bot import Barkeeper
from barkeeper.companion import Companion
from barkeeper.config import load_settings
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder
from barkeeper.history import DISCORD_EPOCH_MS, MessageStore
from barkeeper.llm import (
    ChatMessage,
    ChatResult,
    OpenAIChatModel,
    count_message_tokens,
    load_token_tables,
)
from barkeeper.memory import MemoryStore
from barkeeper.retrieval import get_vector_storage, vector_to_bytes, vector_to_literal
from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec, running_client
from barkeeper.testing.llm import LLMServer

MODEL = "openai/gpt-oss-120b"
FULL = {
    "messages": 1_000_000,
    "channels": 100,
    "users": 10_000,
    "memories": 1_000_000,
    "replies": 200,
}
QUICK = {"messages": 20_000, "channels": 20, "users": 200, "memories": 20_000, "replies": 60}
TALKERS = 50  # the users who talk (each with memories/users of the others' share)
WARMUP = 10
JUNKIE_PREFIX = "?j "
REPLY = "Evening! Tea's on: you said the garden was keeping you busy this week."
TOPICS = "tea whisky cats rain work music football grief garden books sister train exam".split()

_LOAD_USERS = """
INSERT INTO users (discord_id, discord_username)
SELECT 10000000 + g, 'user' || g FROM generate_series(1, $1) g
"""
# Snowflakes one second apart, ending a minute ago, spread over the channels.
_LOAD_MESSAGES = """
INSERT INTO discord_messages (message_id, channel_id, guild_id, author_id, author_name, content)
SELECT ((($4::bigint - 60000 - ($1 - g) * 1000) - 1420070400000) << 22) | (g % 4096),
       ($6::bigint[])[1 + g % $2], $7, 10000000 + 1 + (g * 7) % $3, 'user' || (1 + (g * 7) % $3),
       'message ' || g || ' about ' || ($5::text[])[1 + g % 13]
           || ' and ' || ($5::text[])[1 + (g / 13) % 13]
FROM generate_series(1, $1) g
"""
_LOAD_MEMORIES = """
INSERT INTO memories (user_id, memory_type, content, importance, embedding, embedding_model)
SELECT $2::bigint + g % $3, 'general',
       'Cares about ' || ($4::text[])[1 + g % 13] || ' since ' || (1990 + g % 30) || ', note ' || g,
       (g % 10) / 10.0, v.vector, $5::text
FROM generate_series(1, $1) g JOIN bench_vectors v ON v.kind = g % 390
"""
# The 390 kinds of memory text above ('Cares about <topic> since <year>', g % 390), each
# with the embedder's vector of that text: a memory's vector is its text's without the note.
_VECTORS_TABLE = "CREATE TABLE bench_vectors (kind int PRIMARY KEY, vector {type})"
_LOAD_VECTORS = """
INSERT INTO bench_vectors (kind, vector)
SELECT k, v::{type} FROM unnest($1::int[], $2::{param}[]) AS t(k, v)
"""


def memory_kinds() -> list[str]:
    """The text of each of the 390 kinds of loaded memory (``g % 390``), without its note."""
    return [f"Cares about {TOPICS[r % 13]} since {1990 + r % 30}" for r in range(390)]


async def load_vectors(db: Database, embedder: Embedder) -> str:
    """Embed the kinds of loaded memory into ``bench_vectors``: the vector storage used."""
    vectors = await embedder.embed(memory_kinds())
    async with db.acquire() as conn:
        storage = await get_vector_storage(conn)
        kind = "vector" if storage == "vector" else "bytea"
        await conn.execute(_VECTORS_TABLE.format(type=kind))
        values: list[Any] = (
            [vector_to_literal(v) for v in vectors]
            if storage == "vector"
            else [vector_to_bytes(v) for v in vectors]
        )
        await conn.execute(
            _LOAD_VECTORS.format(type=kind, param="text" if storage == "vector" else "bytea"),
            list(range(390)),
            values,
        )
    return storage


# The talkers become the emulator's people (their Discord ids), keeping their memories.
_ADOPT = """
UPDATE users SET discord_id = p.discord_id, discord_username = p.name
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS p(id, discord_id, name)
WHERE users.id = p.id
"""

_JUNKIE_USER = "SELECT id FROM users WHERE discord_id = $1"
_JUNKIE_HISTORY = """
SELECT message_id, author_id, author_name, content FROM discord_messages
WHERE channel_id = $1 ORDER BY message_id DESC LIMIT 100
"""
_AGNO_MEMORIES = "SELECT content FROM memories WHERE user_id = $1 AND is_active ORDER BY id"


class TimedModel:
    """A chat model that adds up the seconds spent in its calls (the model's own time)."""

    def __init__(self, inner: OpenAIChatModel) -> None:
        self.inner = inner
        self.seconds = 0.0

    async def _timed(self, call: Awaitable[ChatResult]) -> ChatResult:
        began = time.perf_counter()
        try:
            return await call
        finally:
            self.seconds += time.perf_counter() - began

    async def complete(self, messages: Sequence[ChatMessage], **options: Any) -> ChatResult:
        return await self._timed(self.inner.complete(messages, **options))

    async def complete_json(self, messages: Sequence[ChatMessage], **options: Any) -> Any:
        return await self.inner.complete_json(messages, **options)

    async def stream(self, messages: Sequence[ChatMessage], **options: Any) -> ChatResult:
        return await self._timed(self.inner.stream(messages, **options))


def snowflake_now(seq: int) -> int:
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (seq % 4096)


async def load(
    db: Database, sizes: dict[str, int], channels: list[int], guild_id: int, embedder: Embedder
) -> tuple[float, int]:
    """Bulk-load users, messages and memories: (seconds, the first user's id)."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    async with db.acquire() as conn:
        await conn.execute(_LOAD_USERS, sizes["users"])
        print("  users loaded", file=sys.stderr)
        await conn.execute(
            _LOAD_MESSAGES,
            sizes["messages"],
            sizes["channels"],
            sizes["users"],
            now_ms,
            TOPICS,
            channels,
            guild_id,
        )
        print("  messages loaded", file=sys.stderr)
        first: int = await conn.fetchval("SELECT min(id) FROM users")
        await conn.execute(
            _LOAD_MEMORIES, sizes["memories"], first, sizes["users"], TOPICS, embedder.name
        )
        print("  memories loaded", file=sys.stderr)
        await conn.execute("VACUUM (ANALYZE) discord_messages, memories, users")
    return time.perf_counter() - started, first


# --- the Junkie/Agno pipeline ----------------------------------------------------------------


async def junkie_prompt(
    db: Database, sessions: SessionStore, user_id: int, channel_id: int, text: str
) -> tuple[list[ChatMessage], str]:
    """Junkie's context and Agno's memories/history: (the prompt, the session id)."""
    session = await sessions.get_or_create_session("junkie", user_id, channel_id)
    async with db.acquire() as conn:
        rows = await conn.fetch(_JUNKIE_HISTORY, channel_id)
        memories = await conn.fetch(_AGNO_MEMORIES, user_id)
    runs = await sessions.get_recent_runs(session.id, 10)
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
        {"role": "user", "content": "\n".join(lines) + "\n--- CURRENT MESSAGE ---\n" + text}
    )
    return prompt, session.id


async def junkie_reply(
    db: Database, sessions: SessionStore, model: TimedModel, request: ReplyRequest
) -> tuple[float, int]:
    """The pipeline alone: (seconds until the reply is ready, minus the model's; tokens)."""
    started = time.perf_counter()
    channel = request.place.channel_id or 0
    text = request.message.text
    prompt, session_id = await junkie_prompt(db, sessions, request.author.user_id, channel, text)
    tokens = count_message_tokens(prompt, model=MODEL)
    model.seconds = 0.0
    result = await model.complete(prompt)
    ready = time.perf_counter() - started - model.seconds
    await sessions.add_run(session_id, input=text, output=result.text, messages=[], metrics={})
    return ready, tokens


class JunkieBot(discord.Client):
    """The baseline on Discord: answers ``?j`` messages the Junkie/Agno way."""

    def __init__(self, db: Database, sessions: SessionStore, model: TimedModel) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none())
        self.db = db
        self.sessions = sessions
        self.model = model
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.content.startswith(JUNKIE_PREFIX):
            return
        task = asyncio.create_task(self._answer(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, message: discord.Message) -> None:
        text = message.content[len(JUNKIE_PREFIX) :]
        async with message.channel.typing():
            async with self.db.acquire() as conn:
                user_id = await conn.fetchval(_JUNKIE_USER, message.author.id)
            prompt, session_id = await junkie_prompt(
                self.db, self.sessions, user_id, message.channel.id, text
            )
            result = await self.model.complete(prompt)
            await message.reply(result.text, mention_author=True)
        await self.sessions.add_run(
            session_id, input=text, output=result.text, messages=[], metrics={}
        )

    async def idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


# --- measuring ---------------------------------------------------------------------------------


def request_for(
    user_id: int, discord_id: int, guild: int, channel: int, seq: int, text: str
) -> ReplyRequest:
    return ReplyRequest(
        author=Author(user_id, f"user{seq % TALKERS}", discord_id=discord_id),
        place=Place.guild(guild, channel, channel_name="the-bar"),
        message=IncomingMessage(text, datetime.now(UTC), id=snowflake_now(seq)),
        bot_id=1,
    )


async def ours_reply(agent: Agent, model: TimedModel, request: ReplyRequest) -> tuple[float, Any]:
    """Seconds until the reply is ready to send (minus the model's), and the reply."""
    delivered: list[float] = []
    model.seconds = 0.0
    started = time.perf_counter()
    if "deliver" in inspect.signature(agent.reply).parameters:
        answer = await agent.reply(
            request, deliver=lambda _text: delivered.append(time.perf_counter())
        )
    else:  # an agent from before the deliver callback: the reply is ready when it returns
        answer = await agent.reply(request)
    ready = delivered[0] if delivered else time.perf_counter()
    return ready - started - model.seconds, answer


def text_for(n: int, variant: str = "") -> str:
    """A message of its own: nothing may be cached from an earlier one (the embedding)."""
    return f"what do you remember about {TOPICS[n % len(TOPICS)]} and my week? ({variant}{n})"


async def pipeline_round(
    db: Database,
    agents: dict[str, Agent],
    model: TimedModel,
    sessions: SessionStore,
    talkers: list[tuple[int, int]],
    channels: list[int],
    guild: int,
    replies: int,
    round_: int,
) -> dict[str, Any]:
    added: dict[str, list[float]] = {name: [] for name in (*agents, "junkie")}
    steps: dict[str, list[float]] = {}
    tokens: dict[str, list[int]] = {"ours": [], "junkie": []}
    names = [*agents, "junkie"]
    for n in range(replies + WARMUP):
        user_id, discord_id = talkers[n % len(talkers)]
        channel = channels[n % len(channels)]
        for name in names[n % len(names) :] + names[: n % len(names)]:  # rotate the order
            text = text_for(n, f"{round_}{name[0]}{len(name)}")
            request = request_for(user_id, discord_id, guild, channel, n, text)
            if name == "junkie":
                seconds, count = await junkie_reply(db, sessions, model, request)
                if n >= WARMUP:
                    tokens["junkie"].append(count)
            else:
                seconds, answer = await ours_reply(agents[name], model, request)
                await agents[name].drain()
                if n >= WARMUP and name == "ours":
                    tokens["ours"].append(answer.record.context_tokens)
                    for step, ms in answer.record.latency_ms.items():
                        if step.startswith("context"):
                            steps.setdefault(step, []).append(ms / 1000)
            if n >= WARMUP:
                added[name].append(seconds)
    return {
        "added_ms": {k: summarize_ms(v) for k, v in added.items()},
        "companion_cost_p50_ms": round(
            (percentile(added["ours"], 50) - percentile(added["ours_no_companion"], 50)) * 1000,
            3,
        ),
        "steps_ms": {k: summarize_ms(v) for k, v in sorted(steps.items())},
        "tokens_p50": {k: percentile(v, 50) for k, v in tokens.items()},
    }


async def gateway_round(
    emu: DiscordEmulator,
    bot: Barkeeper,
    junkie: JunkieBot,
    ours_model: TimedModel,
    junkie_model: TimedModel,
    people: list[Any],
    channels: list[int],
    replies: int,
    round_: int,
) -> dict[str, Any]:
    added: dict[str, list[float]] = {"ours": [], "junkie": []}
    for n in range(replies + WARMUP):
        person = people[n % len(people)]
        channel = channels[n % len(channels)]
        for name in ("ours", "junkie") if n % 2 == 0 else ("junkie", "ours"):
            model = ours_model if name == "ours" else junkie_model
            model.seconds = 0.0
            sent = time.monotonic()
            text = text_for(n, f"g{round_}{name}")
            if name == "ours":
                asked = person.send(channel, text, mention_bot=True)
            else:
                asked = person.send(channel, JUNKIE_PREFIX + text)
            reply = await emu.wait_for_reply(asked, timeout=60)
            posted = next(
                a.at for a in emu.activity if a.kind == "message" and a.message_id == reply.id
            )
            await bot.wait_idle(60)
            await junkie.idle()
            if n >= WARMUP:
                added[name].append(posted - sent - model.seconds)
        if n % 20 == 0:
            print(f"  gateway reply {n}", file=sys.stderr, end="\r")
    return {"added_ms": {k: summarize_ms(v) for k, v in added.items()}}


def median_of(rounds: list[dict[str, Any]], path: Sequence[str]) -> dict[str, float]:
    """The median over the runs of each statistic found at ``path`` in every round."""
    found = []
    for r in rounds:
        value: Any = r
        for key in path:
            value = value[key]
        found.append(value)
    return {stat: round(statistics.median(f[stat] for f in found), 3) for stat in found[0]}


@contextlib.asynccontextmanager
async def both_bots(
    db: Database,
    emu: DiscordEmulator,
    llm: LLMServer,
    memories: MemoryStore,
    ours_model: TimedModel,
    junkie_model: TimedModel,
    data_dir: Path,
) -> AsyncIterator[tuple[Barkeeper, JunkieBot]]:
    settings = load_settings(
        discord_token=emu.token,
        discord_api_base=emu.base_url,
        llm_base_url=llm.base_url,
        llm_api_key="bench",
        llm_model=MODEL,
        backfill_on_start=False,
        stream_replies=False,
        user_rate=0,
        user_daily_tokens=0,
        data_dir=data_dir,
    )
    agent = build_agent(db, settings, model=ours_model, memories=memories)  # type: ignore[arg-type]
    bot = Barkeeper(
        db=db, settings=settings, agent=agent, memories=memories, guild_ready_timeout=0.1
    )
    junkie = JunkieBot(db, SessionStore(db), junkie_model)
    try:
        async with running_client(emu, bot, timeout=30), running_client(emu, junkie, timeout=30):
            yield bot, junkie
    finally:
        await agent.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    if args.replies:
        sizes["replies"] = args.replies
    load_token_tables(MODEL, None)
    embedder: Embedder = HashingEmbedder()
    if args.embedder == "local":  # the default spin as the constructor's (older code has none)
        options: dict[str, Any] = {"threads": args.embedding_threads}
        if args.embedding_spin != "never":
            options["spin"] = args.embedding_spin
        embedder = MiniLMEmbedder(**options)
    if isinstance(embedder, MiniLMEmbedder):
        await embedder.load()
    spec = EmulatorSpec(
        seed=9,
        channels=sizes["channels"],
        messages_per_channel=1,
        users=1,
        heartbeat_interval=5.0,
        route_limit=1_000_000,
        global_limit=0,
    )
    async with (
        bench_database(args.database_url, prefix="bench_reply", max_size=16) as db,
        LLMServer() as llm,
        OpenAIChatModel(base_url=llm.base_url, model=MODEL) as raw_model,
        DiscordEmulator(spec) as emu,
    ):
        llm.responder = lambda body: REPLY  # one short message: no splitting either side
        channels = emu.channel_ids()[: sizes["channels"]]
        guild = next(iter(emu.world.guilds))
        print(f"loading {sizes}", file=sys.stderr)
        storage = await load_vectors(db, embedder)
        load_seconds, first = await load(db, sizes, channels, guild, embedder)
        people = [emu.person(f"talker{i}") for i in range(TALKERS)]
        async with db.acquire() as conn:
            await conn.execute(
                _ADOPT,
                [first + i for i in range(TALKERS)],
                [p.id for p in people],
                [f"talker{i}" for i in range(TALKERS)],
            )
        talkers = [(first + i, p.id) for i, p in enumerate(people)]
        model = TimedModel(raw_model)
        sessions = SessionStore(db)
        store = MemoryStore(db, embedder)
        config = AgentConfig(model=MODEL, max_agents=10)
        agents = {
            "ours": Agent(
                model,  # type: ignore[arg-type]
                sessions=sessions,
                messages=MessageStore(db),
                memories=store,
                memory_sink=lambda message: None,
                companion=Companion(db),
                config=config,
            ),
            "ours_no_companion": Agent(
                model,  # type: ignore[arg-type]
                sessions=sessions,
                messages=MessageStore(db),
                memories=store,
                memory_sink=lambda message: None,
                config=config,
            ),
        }
        ours_model, junkie_model = TimedModel(raw_model), TimedModel(raw_model)
        pipeline: list[dict[str, Any]] = []
        gateway: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as data_dir:
            async with both_bots(db, emu, llm, store, ours_model, junkie_model, Path(data_dir)) as (
                bot,
                junkie,
            ):
                for r in range(args.runs):
                    print(f"run {r + 1}/{args.runs}: pipeline", file=sys.stderr)
                    pipeline.append(
                        await pipeline_round(
                            db,
                            agents,
                            model,
                            sessions,
                            talkers,
                            channels,
                            guild,
                            sizes["replies"],
                            r,
                        )
                    )
                    print(f"run {r + 1}/{args.runs}: gateway", file=sys.stderr)
                    gateway.append(
                        await gateway_round(
                            emu,
                            bot,
                            junkie,
                            ours_model,
                            junkie_model,
                            people,
                            channels,
                            sizes["replies"],
                            r,
                        )
                    )
                    print(
                        f"  gateway {gateway[-1]['added_ms']['ours']['p50']} ms vs junkie "
                        f"{gateway[-1]['added_ms']['junkie']['p50']} ms (p50)",
                        file=sys.stderr,
                    )

        by_memories: dict[str, dict[str, int]] = {}
        for count in (10, 100, 1000):
            async with db.acquire() as conn:
                uid = await conn.fetchval(
                    "INSERT INTO users (discord_id) VALUES ($1) RETURNING id", 20_000_000 + count
                )
                await conn.execute(_LOAD_MEMORIES, count, uid, 1, TOPICS, embedder.name)
            request = request_for(
                uid,
                20_000_000 + count,
                guild,
                channels[0],
                9000 + count,
                "how is my sister doing, and the garden?",
            )
            _, answer = await ours_reply(agents["ours"], model, request)
            _, tokens = await junkie_reply(db, sessions, model, request)
            by_memories[str(count)] = {"ours": answer.record.context_tokens, "agno_style": tokens}
        # The companion's read alone (one round trip), with no other read competing.
        companion = Companion(db)
        alone: list[float] = []
        for n in range(200):
            user_id, _ = talkers[n % len(talkers)]
            started = time.perf_counter()
            await companion.before_reply(user_id, guild, text_for(n, "c"))
            alone.append(time.perf_counter() - started)
        for agent in agents.values():
            await agent.aclose()
        env = await environment(db)

    gateway_ms = {k: median_of(gateway, ("added_ms", k)) for k in ("ours", "junkie")}
    pipeline_ms = {k: median_of(pipeline, ("added_ms", k)) for k in pipeline[0]["added_ms"]}
    companion_cost = statistics.median(r["companion_cost_p50_ms"] for r in pipeline)
    steps = {k: median_of(pipeline, ("steps_ms", k)) for k in pipeline[0]["steps_ms"]}
    ours = gateway_ms["ours"]
    return {
        "benchmark": "reply",
        "sizes": sizes,
        "embedder": embedder.name,
        "embedding_spin": args.embedding_spin if args.embedder == "local" else None,
        "vector_storage": storage,
        "runs": args.runs,
        "load_seconds": round(load_seconds, 1),
        "gateway_added_ms": gateway_ms,
        "pipeline_added_ms": pipeline_ms,
        "pipeline_steps_ms": steps,
        "ratio_p50_junkie_to_ours": round(gateway_ms["junkie"]["p50"] / ours["p50"], 2),
        "companion": {
            "cost_p50_ms": round(companion_cost, 3),
            "read_alone_ms": summarize_ms(alone),
        },
        "goal": {
            "p50_ms": 10,
            "p99_ms": 50,
            "companion_cost_p50_ms": 1,
            "met": ours["p50"] <= 10 and ours["p99"] <= 50 and companion_cost <= 1,
        },
        "prompt_tokens": {
            "ours_p50": statistics.median(r["tokens_p50"]["ours"] for r in pipeline),
            "junkie_p50": statistics.median(r["tokens_p50"]["junkie"] for r in pipeline),
            "by_user_memories": by_memories,
            "budget": config.budget.total,
        },
        "per_run": {"gateway": gateway, "pipeline": pipeline},
        "environment": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="measurement rounds (median)")
    parser.add_argument("--replies", type=int, default=0, help="replies per round and variant")
    parser.add_argument("--embedder", choices=("local", "hashing"), default="local")
    parser.add_argument(
        "--embedding-spin",
        choices=("auto", "always", "never"),
        default="never",
        help="the local embedder's single-text session (BARKEEPER_EMBEDDING_SPIN)",
    )
    parser.add_argument(
        "--embedding-threads", type=int, default=0, help="the local embedder's threads (0: all)"
    )
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    write_json(args.out, results)
    print(results["gateway_added_ms"], results["companion"], file=sys.stderr)


if __name__ == "__main__":
    main()
