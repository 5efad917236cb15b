"""Two real ``barkeeper run`` processes, two shards each (``SHARD_COUNT=4``), on one database.

The emulator and the scripted model run in the test process; each bot process is
started with its own ``SHARD_IDS``. The in-process test (``tests/test_sharding.py``)
looks inside the bots; this one checks what an operator would see.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.history import MessageStore
from barkeeper.testing.discord import DiscordEmulator, shard_of
from barkeeper.testing.llm import LLMServer
from tests._backfill import MESSAGES_ROUTE
from tests._bot import spec
from tests.test_bot_process import START, WAIT, _env, _finish, _spawn
from tests.test_sharding import HISTORY, SHARDS, _world


async def test_two_processes_split_the_shards(tmp_path: Path, database_url: str) -> None:
    async with DiscordEmulator(spec(explicit=_world(), shards=SHARDS)) as emu, LLMServer() as llm:
        env = _env(
            DISCORD_TOKEN=emu.token,
            DISCORD_API_BASE=emu.base_url,
            BARKEEPER_LLM_BASE_URL=llm.base_url,
            BARKEEPER_LLM_API_KEY="x",
            BARKEEPER_LLM_MODEL="test-model",
            BARKEEPER_DATABASE_URL=database_url,
            BARKEEPER_EMBEDDER="hashing",
            BARKEEPER_FACT_EXTRACTION_RATE="0",
            BARKEEPER_STREAM_REPLIES="false",  # one message per reply, nothing in flight
            BARKEEPER_USER_RATE="0",
            SHARD_COUNT=str(SHARDS),
        )
        procs = [await _spawn({**env, "SHARD_IDS": ids}, tmp_path) for ids in ("0,1", "2,3")]
        try:
            await emu.wait_for_sessions(SHARDS, timeout=START)
            assert sorted(s.shard_id for s in emu.gateway.sessions(connected=True)) == [0, 1, 2, 3]
            guild_of = {c: g.id for g in emu.world.guilds.values() for c in g.channel_ids}
            settings = load_settings()
            async with Database.connect(settings, url=database_url, min_size=1, max_size=2) as db:
                store = MessageStore(db)

                async def backfilled() -> bool:
                    counts = [await store.count(c) for c in guild_of]
                    return all(n == HISTORY for n in counts)

                for _ in range(int(START * 10)):
                    if await backfilled():
                        break
                    await asyncio.sleep(0.1)  # polling the database, not a timing threshold
                assert await backfilled()

                alice = emu.person("alice")
                asked = [alice.send(c, f"hello {c}", mention_bot=True) for c in guild_of]
                dm = alice.dm("hello in private")
                for message in [*asked, dm]:
                    await emu.wait_for_reply(message, timeout=WAIT)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            results = [await _finish(proc, limit=30) for proc in procs]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

        for code, err in results:
            assert code == 0, err
            assert "Traceback" not in err
        # Each process listed and backfilled only its shards' servers' channels.
        for (_, err), shards in zip(results, ({0, 1}, {2, 3}), strict=True):
            mine = [c for c, g in guild_of.items() if shard_of(g, SHARDS) in shards]
            assert f"Found {len(mine)} channels to backfill" in err
        # One history request per channel in all: nobody fetched a channel twice.
        assert emu.stats.requests[MESSAGES_ROUTE] == len(guild_of)
        # One reply per question, whichever process got it.
        for channel in [*guild_of, dm.channel_id]:
            sent = [m.content for m in emu.bot_messages(channel)]
            assert len(sent) == 1, (sent, [e for _, e in results])
