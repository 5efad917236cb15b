"""``barkeeper run`` end to end: the real process, the emulator's gateway and REST, the
scripted model server (both in this test process) and the test's PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from barkeeper.bot import run_bot
from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.errors import ConfigError
from barkeeper.history import MessageStore
from barkeeper.testing.discord import DiscordEmulator
from barkeeper.testing.llm import LLMServer, Reply
from tests._bot import spec

START = 60.0  # migrate + connect, on a slow CI machine
WAIT = 10.0


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BARKEEPER_", "POSTGRES_", "DATABASE_", "DB_", "DISCORD_", "GROQ_"))
        and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["BARKEEPER_DATA_DIR"] = os.environ["BARKEEPER_DATA_DIR"]  # set by clean_env
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


async def _spawn(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper",
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process, limit: float = 60) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout=limit)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_missing_token_names_the_variable_and_exits_2(tmp_path: Path) -> None:
    proc = await _spawn(_env(GROQ_API_KEY="x"), tmp_path)
    code, err = await _finish(proc)
    assert code == 2
    assert "DISCORD_TOKEN" in err and "developers/applications" in err
    assert "Traceback" not in err
    proc = await _spawn(_env(DISCORD_TOKEN="x.y.z"), tmp_path)
    code, err = await _finish(proc)
    assert code == 2
    assert "GROQ_API_KEY" in err and "Traceback" not in err


async def test_a_refused_token_is_one_line(tmp_path: Path, database_url: str) -> None:
    async with DiscordEmulator(spec()) as emu:
        env = _env(
            DISCORD_TOKEN="not-the-token",
            DISCORD_API_BASE=emu.base_url,
            BARKEEPER_LLM_API_KEY="x",
            BARKEEPER_DATABASE_URL=database_url,
            BARKEEPER_EMBEDDER="hashing",
        )
        code, err = await _finish(await _spawn(env, tmp_path))
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "DISCORD_TOKEN" in line]
    assert len(lines) == 1 and "refused" in lines[0]


@dataclass
class Running:
    emu: DiscordEmulator
    llm: LLMServer
    env: dict[str, str]
    cwd: Path
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self) -> asyncio.subprocess.Process:
        sessions = len(self.emu.gateway.sessions(connected=True))
        proc = await _spawn(self.env, self.cwd)
        self.procs.append(proc)
        await self.emu.wait_for_sessions(sessions + 1, timeout=START)
        return proc


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with DiscordEmulator(spec()) as emu, LLMServer() as llm:
        env = _env(
            DISCORD_TOKEN=emu.token,
            DISCORD_API_BASE=emu.base_url,
            BARKEEPER_LLM_BASE_URL=llm.base_url,
            BARKEEPER_LLM_API_KEY="x",
            BARKEEPER_LLM_MODEL="test-model",
            BARKEEPER_DATABASE_URL=database_url,
            BARKEEPER_EMBEDDER="hashing",
            BARKEEPER_FACT_EXTRACTION_RATE="0",
            BARKEEPER_STREAM_INTERVAL="1",
        )
        run = Running(emu, llm, env, tmp_path)
        try:
            yield run
        finally:
            for proc in run.procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def test_run_answers_streamed_and_split_caches_and_keeps_memories_over_a_restart(
    running: Running, database_url: str
) -> None:
    emu, llm = running.emu, running.llm
    proc = await running.start()
    await emu.wait_for_command_syncs(1, timeout=WAIT)
    long_reply = " ".join(f"word{i}" for i in range(500))  # ~3,900 characters: two messages
    llm.script(long_reply)
    alice = emu.person("alice")
    channel = emu.channel_ids()[0]
    asked = alice.send(channel, "a long one, please", mention_bot=True)
    first = await emu.wait_for_reply(asked, timeout=WAIT)
    await emu.wait_for_bot_messages(channel, 2, after=asked, timeout=WAIT)
    await emu.wait_until(
        lambda: (
            " ".join(m.content for m in emu.bot_messages(channel, after=asked.id)).split()
            == long_reply.split()
        ),
        timeout=WAIT,
        what="the whole reply shown",
    )
    assert all(len(m.content) <= 2000 for m in emu.bot_messages(channel, after=asked.id))
    assert any(a.kind == "typing" for a in emu.activity)

    remember = alice.invoke("remember", channel, options={"text": "I keep bees on my roof"})
    assert "remember" in (await remember.wait_for_response(timeout=WAIT)).content
    listed = alice.invoke("memories", channel)
    assert "bees" in (await listed.wait_for_response(timeout=WAIT)).content
    assert listed.ephemeral

    proc.send_signal(signal.SIGTERM)
    code, err = await _finish(proc, limit=30)
    assert code == 0, err
    assert "Traceback" not in err
    settings = load_settings()
    async with Database.connect(settings, url=database_url, min_size=1, max_size=2) as db:
        store = MessageStore(db)
        assert await store.get(asked.id) is not None
        mine = await store.get(first.id)
        assert mine is not None and mine.author_is_bot

    # Started again: the same commands are not synced again, the memory is still there.
    proc = await running.start()
    listed = alice.invoke("memories", channel)
    assert "bees" in (await listed.wait_for_response(timeout=WAIT)).content
    assert len(emu.command_syncs) == 1
    # Stopped while a reply is being written: the reply is finished first.
    llm.script(Reply(content="last call", delay=1.5))
    asked = alice.send(channel, "one more?", mention_bot=True)
    await emu.wait_until(
        lambda: llm.chat_requests[-1:] and "one more?" in str(llm.chat_requests[-1].messages),
        timeout=WAIT,
        what="the model asked",
    )
    proc.send_signal(signal.SIGINT)
    code, err = await _finish(proc, limit=30)
    assert code == 0, err
    assert "Traceback" not in err
    assert (await emu.wait_for_reply(asked, timeout=1)).content == "last call"


async def test_kill_9_mid_reply_loses_no_cached_message(
    running: Running, database_url: str
) -> None:
    emu, llm = running.emu, running.llm
    proc = await running.start()
    await emu.wait_for_command_syncs(1, timeout=WAIT)
    llm.script(Reply(content="too slow", delay=30))
    alice = emu.person("alice")
    channel = emu.channel_ids()[0]
    asked = alice.send(channel, "a question to die on", mention_bot=True)
    await emu.wait_until(lambda: llm.chat_requests, timeout=WAIT, what="the model asked")
    proc.kill()
    await proc.wait()
    settings = load_settings()
    async with Database.connect(settings, url=database_url, min_size=1, max_size=2) as db:
        assert await MessageStore(db).get(asked.id) is not None


async def test_a_refused_message_content_intent_says_which_switch(database_url: str) -> None:
    async with DiscordEmulator(spec(granted_intents=[])) as emu:
        settings = load_settings(
            discord_token=emu.token,
            discord_api_base=emu.base_url,
            llm_api_key="x",
            barkeeper_database_url=database_url,
            embedder="hashing",
            backfill_on_start=False,
        )
        with pytest.raises(ConfigError, match="Message Content intent"):
            await asyncio.wait_for(run_bot(settings), START)
