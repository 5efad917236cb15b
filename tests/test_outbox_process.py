"""``kill -9`` of a real bot process mid-extraction: after a restart every queued message
is learnt from exactly once (the memory outbox, its leases and its transaction)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.testing.discord import DiscordEmulator
from barkeeper.testing.llm import LLMServer, Reply, ReplyLike
from tests._bot import spec
from tests.test_bot_process import WAIT, Running, _env
from tests.test_extraction import decisions_reply, fact, facts_reply

DONE = 90.0  # the lease (2 s) and a restart on a slow CI machine

SAID = {
    "alice": [
        "I keep three beehives on my roof in Porto",
        "my sister Ines is visiting from Lisbon in June",
        "I switched from coffee to green tea last winter",
    ],
    "bob": [
        "I have been learning the cello for two years now",
        "my dog Pimenta is afraid of thunderstorms",
    ],
}


class Model:
    """The scripted model's brain: quick replies; extractions held while ``stalled``."""

    def __init__(self) -> None:
        self.stalled = True
        self.released = asyncio.Event()
        self.started: list[tuple[int, str]] = []  # (generation, message) of each extraction
        self.generation = 0

    async def __call__(self, body: dict[str, Any]) -> ReplyLike:
        text = str(body["messages"][-1]["content"])
        if "<facts>" in text:  # consolidation: keep the new fact
            return decisions_reply({"fact": 1, "action": "add"})
        if "<message>\n" not in text:
            return Reply(content="Cheers to that.")
        said = text.split("<message>\n", 1)[1].split("\n</message>", 1)[0]
        self.started.append((self.generation, said))
        if self.stalled:
            await self.released.wait()  # the process is killed while it waits
        return facts_reply(fact(f"Said: {said}", "general"))


async def _rows(database_url: str) -> tuple[int, list[str]]:
    settings = load_settings()
    async with Database.connect(settings, url=database_url, min_size=1, max_size=1) as db:
        async with db.acquire() as conn:
            left = await conn.fetchval("SELECT count(*) FROM memory_outbox")
            contents = await conn.fetch("SELECT content FROM memories ORDER BY id")
    return int(left), [r["content"] for r in contents]


async def test_kill_9_mid_extraction_then_restart_learns_each_message_exactly_once(
    tmp_path: Path, database_url: str
) -> None:
    model = Model()
    async with DiscordEmulator(spec()) as emu, LLMServer(responder=model) as llm:
        env = _env(
            DISCORD_TOKEN=emu.token,
            DISCORD_API_BASE=emu.base_url,
            BARKEEPER_LLM_BASE_URL=llm.base_url,
            BARKEEPER_LLM_API_KEY="x",
            BARKEEPER_LLM_MODEL="test-model",
            BARKEEPER_DATABASE_URL=database_url,
            BARKEEPER_EMBEDDER="hashing",
            BARKEEPER_FACT_EXTRACTION_RATE="1",
            BARKEEPER_STREAM_REPLIES="false",
            BARKEEPER_MEMORY_WORKERS="2",
            BARKEEPER_MEMORY_LEASE_SECONDS="2",
            BARKEEPER_MEMORY_POLL_SECONDS="0.2",
            BARKEEPER_MEMORY_BACKOFF_SECONDS="0.2",
            # A message whose reply was sent just as the process died was not released
            # yet: it waits for this, as it would in production (default 120 s).
            BARKEEPER_MEMORY_HOLD_SECONDS="2",
        )
        run = Running(emu, llm, env, tmp_path)
        try:
            proc = await run.start()
            await emu.wait_for_command_syncs(1, timeout=WAIT)
            channel = emu.channel_ids()[0]
            for name, lines in SAID.items():
                person = emu.person(name)
                for line in lines:
                    asked = person.send(channel, line, mention_bot=True)
                    await emu.wait_for_reply(asked, timeout=WAIT)
            # Two workers: each user's first message is being extracted, the rest wait.
            await emu.wait_until(
                lambda: len(model.started) >= 2, timeout=WAIT, what="two extractions started"
            )
            proc.kill()  # kill -9, mid-extraction
            await proc.wait()
            left, memories = await _rows(database_url)
            assert left == 5 and memories == []  # nothing learnt, nothing lost
            cut_off = Counter(said for _, said in model.started)

            model.generation, model.stalled = 1, False
            model.released.set()  # what the dead process asked is answered into the void
            proc = await run.start()
            for _ in range(int(DONE / 0.2)):
                left, memories = await _rows(database_url)
                if left == 0 and len(memories) >= 5:
                    break
                await asyncio.sleep(0.2)
        finally:
            for p in run.procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()

    everything = [line for lines in SAID.values() for line in lines]
    assert left == 0
    assert sorted(memories) == sorted(f"Said: {line}" for line in everything)  # once each
    after = [said for generation, said in model.started if generation == 1]
    assert Counter(after) == Counter(everything)  # one extraction each after the restart
    for lines in SAID.values():  # in order per user, across the crash
        assert [s for s in after if s in lines] == lines
    # What the killed process was extracting: each user's first message.
    assert set(cut_off) == {SAID["alice"][0], SAID["bob"][0]}
