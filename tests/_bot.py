"""Shared set-up for the bot's tests: the emulator, the LLM server, a bot on a real database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.agent import build_agent
from barkeeper.bot import Barkeeper, FollowupSink, build_followups
from barkeeper.companion import CompanionSettings
from barkeeper.config import Settings, load_settings
from barkeeper.db import Database
from barkeeper.embeddings import Embedder, HashingEmbedder
from barkeeper.history import MessageStore
from barkeeper.learning import MemoryManager, OutboxStore, OutboxWorker
from barkeeper.llm import OpenAIChatModel, RetryPolicy
from barkeeper.memory import MemoryStore
from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec, running_client
from barkeeper.testing.llm import LLMServer

WAIT = 8.0
FAST_RETRY = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, jitter=0)


def spec(**changes: Any) -> EmulatorSpec:
    base: dict[str, Any] = {
        "seed": 9,
        "channels": 2,
        "messages_per_channel": 3,
        "users": 3,
        "heartbeat_interval": 0.5,
        "route_limit": 10_000,
        "global_limit": 0,
    }
    base.update(changes)
    return EmulatorSpec(**base)


@dataclass
class Rig:
    emu: DiscordEmulator
    llm: LLMServer
    bot: Barkeeper
    db: Database
    memories: MemoryStore
    messages: MessageStore
    settings: Settings


@contextlib.asynccontextmanager
async def bot_rig(
    db: Database,
    emu_spec: EmulatorSpec | None = None,
    *,
    learn: bool = False,
    clock: Callable[[], datetime] | None = None,
    embedder: Embedder | None = None,
    **env: Any,
) -> AsyncIterator[Rig]:
    """A :class:`Barkeeper` started in-process against an emulator and a scripted model.

    ``embedder``: the memories' and the turn index's (default: :class:`HashingEmbedder`).

    ``learn``: answered messages go to the memory outbox and a real outbox worker
    (extraction rate 1).
    ``clock``: the follow-up scheduler's clock (default: the real time).
    """
    async with DiscordEmulator(emu_spec or spec()) as emu, LLMServer() as llm:
        options: dict[str, Any] = {
            "discord_token": emu.token,
            "discord_api_base": emu.base_url,
            "llm_base_url": llm.base_url,
            "llm_api_key": "test",
            "llm_model": "test-model",
            "backfill_on_start": False,
            "stream_interval": 1.0,
        }
        options.update(env)
        settings = load_settings(**options)
        memories = MemoryStore(db, embedder if embedder is not None else HashingEmbedder())
        model = OpenAIChatModel(
            base_url=llm.base_url,
            api_key="test",
            model="test-model",
            timeout=5,
            retry_policy=FAST_RETRY,
        )
        followups = build_followups(db, settings, clock=clock)
        sink = (
            FollowupSink(followups, CompanionSettings(db, settings.companion_features()))
            if followups is not None
            else None
        )
        manager = (
            MemoryManager(memories, model, extraction_rate=1.0, events=sink) if learn else None
        )
        worker = (
            OutboxWorker(
                manager, OutboxStore(db, backoff=0.1), history=MessageStore(db), poll_interval=0.1
            )
            if manager is not None
            else None
        )
        agent = build_agent(db, settings, model=model, memories=memories)
        bot = Barkeeper(
            db=db,
            settings=settings,
            agent=agent,
            memories=memories,
            worker=worker,
            manager=manager,
            followups=followups,
            guild_ready_timeout=0.1,
        )
        if worker is not None:
            worker.start()
        try:
            async with running_client(emu, bot, timeout=WAIT):
                yield Rig(emu, llm, bot, db, memories, MessageStore(db), settings)
        finally:
            await agent.aclose()
            if worker is not None:
                await worker.aclose()
            await model.aclose()
