"""Two bot "processes" × two shards each on one database, against the emulator.

Each bot has its own database pool, memory worker and gateway connections, as two
processes would; only the event loop is shared. Discord (the emulator) sends each
guild's events to the connection of its shard (``(guild_id >> 22) % shard_count``)
and DMs to shard 0, so every message reaches exactly one process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import discord
import pytest

from barkeeper.agent import build_agent
from barkeeper.bot import Barkeeper
from barkeeper.config import Settings, load_settings
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.errors import ConfigError
from barkeeper.history import MessageStore
from barkeeper.learning import MemoryManager, OutboxStore, OutboxWorker
from barkeeper.llm import OpenAIChatModel
from barkeeper.memory import MemoryStore
from barkeeper.testing.discord import (
    DiscordEmulator,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitMessage,
    ExplicitUser,
    discord_py_pointed_at,
    make_snowflake,
    running_client,
    shard_of,
)
from barkeeper.testing.llm import LLMServer
from tests._bot import FAST_RETRY, WAIT, spec

SHARDS = 4
HISTORY = 5  # messages per channel before the bots start


BASE_MS = 1_700_000_000_000
CAROL = make_snowflake(BASE_MS - 10**6)  # an admin of both processes


def _world() -> ExplicitContent:
    base_ms = BASE_MS
    carol = ExplicitUser(id=CAROL, username="carol")
    guilds = []
    for n in range(SHARDS * 2):  # ids one millisecond apart: two guilds per shard
        channels = [
            ExplicitChannel(
                id=make_snowflake(base_ms + 1000 * (n + 1) + c),
                name=f"bar-{n}-{c}",
                messages=[
                    ExplicitMessage(author_id=carol.id, content=f"old {n}.{c}.{i}")
                    for i in range(HISTORY)
                ],
            )
            for c in range(2)
        ]
        guild_id = make_snowflake(base_ms + n)
        guilds.append(ExplicitGuild(id=guild_id, name=f"g{n}", channels=channels))
    return ExplicitContent(users=[carol], guilds=guilds)


@dataclass
class Process:
    bot: Barkeeper
    worker: OutboxWorker
    seen: set[int] = field(default_factory=set)


@contextlib.asynccontextmanager
async def _process(
    emu: DiscordEmulator, llm: LLMServer, db: Database, **env: Any
) -> AsyncIterator[Process]:
    settings = load_settings(
        discord_token=emu.token,
        discord_api_base=emu.base_url,
        llm_base_url=llm.base_url,
        llm_api_key="test",
        llm_model="test-model",
        stream_replies=False,  # one message per reply (streaming is tested elsewhere)
        user_rate=0,  # alice asks in every channel at once
        admin_ids=str(CAROL),
        **env,
    )
    memories = MemoryStore(db, HashingEmbedder())
    model = OpenAIChatModel(
        base_url=llm.base_url,
        api_key="test",
        model="test-model",
        timeout=5,
        retry_policy=FAST_RETRY,
    )
    manager = MemoryManager(memories, model, extraction_rate=1.0)
    worker = OutboxWorker(
        manager, OutboxStore(db, backoff=0.1), history=MessageStore(db), poll_interval=0.1
    )
    agent = build_agent(db, settings, model=model, memories=memories)
    bot = Barkeeper(
        db=db,
        settings=settings,
        agent=agent,
        memories=memories,
        worker=worker,
        manager=manager,
        identify_delay=0,
        guild_ready_timeout=0.1,
    )
    process = Process(bot, worker)

    async def saw(message: discord.Message) -> None:
        process.seen.add(message.id)

    bot.add_listener(saw, "on_message")
    worker.start()
    try:
        async with running_client(emu, bot, timeout=WAIT):
            yield process
    finally:
        await agent.aclose()
        await worker.aclose()
        await model.aclose()


async def test_two_processes_of_two_shards_share_the_work(
    db: Database, server_url: str, settings: Settings
) -> None:
    emu_spec = spec(explicit=_world(), shards=SHARDS)
    second_pool = await Database.open(settings, url=server_url, schema=db.schema, max_size=4)
    try:
        await _two_processes(db, second_pool, emu_spec)
    finally:
        await second_pool.close()


async def _two_processes(db: Database, second_pool: Database, emu_spec: Any) -> None:
    async with (
        DiscordEmulator(emu_spec) as emu,
        LLMServer() as llm,
        _process(emu, llm, db, shard_count=SHARDS, shard_ids="0,1") as one,
        _process(emu, llm, second_pool, shard_count=SHARDS, shard_ids="2,3") as two,
    ):
        await emu.wait_for_sessions(SHARDS, timeout=WAIT)
        sessions = sorted(s.shard_id for s in emu.gateway.sessions(connected=True))
        assert sessions == [0, 1, 2, 3]
        owner = {0: one, 1: one, 2: two, 3: two}
        guild_of = {c: g.id for g in emu.world.guilds.values() for c in g.channel_ids}
        for process, shards in ((one, {0, 1}), (two, {2, 3})):
            assert {g.shard_id for g in process.bot.guilds} == shards
            assert {g.id for g in process.bot.guilds} == {
                g for g in emu.guild_ids() if shard_of(g, SHARDS) in shards
            }

        # The background backfill: each channel by the process of its guild's shard.
        results = [await asyncio.wait_for(p.bot.backfill_task, WAIT * 4) for p in (one, two)]
        assert all(r is not None and r.ok for r in results)
        done = [{c.channel_id for c in r.channels} for r in results if r is not None]
        assert done[0].isdisjoint(done[1])
        assert done[0] | done[1] == set(guild_of)
        for process, channels in zip((one, two), done, strict=True):
            for channel in channels:
                assert owner[shard_of(guild_of[channel], SHARDS)] is process
        store = MessageStore(db)
        for channel in guild_of:
            assert await store.count(channel) == HISTORY

        # Live: every message reaches one process, every reply is sent once.
        alice = emu.person("alice")
        asked = [alice.send(c, f"hello {c}", mention_bot=True) for c in guild_of]
        chatter = [alice.send(c, f"just talking in {c}") for c in guild_of]
        dm = alice.dm("hello in private")
        for message in [*asked, dm]:
            await emu.wait_for_reply(message, timeout=WAIT)
        for process in (one, two):
            await process.bot.wait_idle()
        for channel in guild_of:
            assert len(emu.bot_messages(channel)) == 1  # one reply, by one process
        assert len(emu.bot_messages(dm.channel_id)) == 1
        live = {m.id for m in [*asked, *chatter, dm]}
        live |= {m.id for c in [*guild_of, dm.channel_id] for m in emu.bot_messages(c)}
        for process in (one, two):
            await process.bot.cache.flush()
        assert one.seen.isdisjoint(two.seen)
        assert one.seen | two.seen == live
        assert dm.id in one.seen  # DMs go to shard 0
        for message in asked:
            process = owner[shard_of(guild_of[message.channel_id], SHARDS)]
            assert message.id in process.seen
        for message_id in live:
            assert await store.get(message_id) is not None

        # Slash commands: each answered once, by the process of the guild's shard.
        for channel in list(guild_of)[:: len(guild_of) // SHARDS]:
            interaction = alice.invoke("memories", channel)
            answer = await interaction.wait_for_response(timeout=WAIT)
            assert answer.content and interaction.followups == []

        # /barkeeper status names the process's shards.
        for process, shards in ((one, "0, 1"), (two, "2, 3")):
            channel = next(c for c in guild_of if owner[shard_of(guild_of[c], SHARDS)] is process)
            status = emu.person("carol").invoke("barkeeper status", channel)
            text = (await status.wait_for_response(timeout=WAIT)).content
            assert f"Shards: {shards} of {SHARDS} (this process)" in text

        # Memory work: every answered message is queued once (by the process that
        # answered it) and learnt from once, by whichever worker claims it first.
        # (A worker's drain() stops when the other process holds the user's current
        # item, so wait for the outbox itself to empty.)
        async with asyncio.timeout(WAIT * 4):
            while True:
                async with db.acquire() as conn:
                    left = await conn.fetchval("SELECT count(*) FROM memory_outbox")
                if left == 0:
                    break
                await asyncio.sleep(0.05)
        done = one.worker.stats.done + two.worker.stats.done
        claimed = one.worker.stats.claimed + two.worker.stats.claimed
        assert done == claimed == len(asked) + 1


def test_shard_settings_are_checked() -> None:
    settings = load_settings(shard_count=4, shard_ids="2, 3")
    assert settings.shard_id_list() == [2, 3]
    assert load_settings().shard_count is None and load_settings().shard_id_list() == []
    with pytest.raises(ConfigError, match="SHARD_IDS needs SHARD_COUNT"):
        load_settings(shard_ids="0")
    with pytest.raises(ConfigError, match="below SHARD_COUNT"):
        load_settings(shard_count=2, shard_ids="0,2")
    with pytest.raises(ConfigError, match="not a shard id"):
        load_settings(shard_count=2, shard_ids="one")


async def test_a_configured_gateway_wins_over_the_recommended_one(db: Database) -> None:
    # REST through "localhost", the gateway configured as 127.0.0.1: GET /gateway/bot
    # answers a localhost URL (the host REST was asked on), which must not be dialled.
    async with DiscordEmulator(spec()) as emu, LLMServer() as llm:
        assert emu.host == "127.0.0.1"
        api_base = emu.base_url.replace("127.0.0.1", "localhost")
        settings = load_settings(
            discord_token=emu.token,
            discord_api_base=api_base,
            discord_gateway_url=emu.gateway_url,
            llm_base_url=llm.base_url,
            llm_api_key="test",
            backfill_on_start=False,
        )
        memories = MemoryStore(db, HashingEmbedder())
        agent = build_agent(db, settings, memories=memories)
        bot = Barkeeper(
            db=db, settings=settings, agent=agent, memories=memories, guild_ready_timeout=0.1
        )
        with discord_py_pointed_at(api_base, gateway_url=emu.gateway_url):
            task = asyncio.create_task(bot.start(emu.token))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), WAIT)
                (session,) = emu.gateway.sessions(connected=True)
                assert session.connection is not None
                assert session.connection.request.host.startswith("127.0.0.1:")
                assert bot.shard_count == 1
            finally:
                await bot.close()
                await asyncio.wait_for(task, WAIT)
                await agent.aclose()
