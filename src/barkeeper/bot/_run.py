""":func:`run_bot`: start-up (settings, migrate, connect) and a clean drain on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from barkeeper.agent import build_agent
from barkeeper.bot._bot import Barkeeper
from barkeeper.bot._followups import FollowupSink, build_followups
from barkeeper.companion import CompanionSettings
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import ConfigError, DiscordAuthenticationError, DiscordUnavailableError
from barkeeper.learning import build_memory_manager, build_outbox, build_outbox_worker

__all__ = ["missing_for_bot", "point_discord", "run_bot"]

_log = logging.getLogger(__name__)


def missing_for_bot(settings: Settings) -> list[str]:
    """The settings the bot needs that are not set, each with where to get it."""
    missing = []
    if settings.discord_token is None:
        missing.append(
            "DISCORD_TOKEN: the bot's token, from https://discord.com/developers/applications "
            "→ your application → Bot → Reset Token (see docs/operators.md)"
        )
    if settings.chat_llm_api_key() is None:
        missing.append(
            "GROQ_API_KEY (https://console.groq.com/keys), or OPENAI_API_KEY / "
            "BARKEEPER_LLM_API_KEY with OPENAI_BASE_URL for another OpenAI-compatible endpoint"
        )
    return missing


async def point_discord(settings: Settings) -> None:
    """Point discord.py at ``DISCORD_API_BASE`` and its gateway (when set).

    The gateway is ``DISCORD_GATEWAY_URL``, else what ``GET {DISCORD_API_BASE}/gateway``
    answers (a plain client never asks; it dials its default gateway).

    Raises:
        ConfigError: The URL is invalid.
        DiscordUnavailableError: The API base does not answer.
    """
    from barkeeper.backfill import normalize_api_base

    if settings.discord_api_base is None:
        if settings.discord_gateway_url is not None:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
                settings.discord_gateway_url
            )
        return
    try:
        base = normalize_api_base(settings.discord_api_base)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    discord.http.Route.BASE = base
    gateway = settings.discord_gateway_url
    if gateway is None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + "/gateway", timeout=aiohttp.ClientTimeout(total=10)) as resp,
            ):
                gateway = str((await resp.json())["url"])
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            raise DiscordUnavailableError(
                f"DISCORD_API_BASE {base} did not say where its gateway is ({exc}); "
                "set DISCORD_GATEWAY_URL"
            ) from None
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)


async def run_bot(settings: Settings) -> None:
    """Run barkeeper on Discord until SIGINT/SIGTERM (or the gateway refuses it).

    Start-up: migrate, connect, log in, sync commands, backfill in the background.
    Shutdown: replies in flight finish (or are cancelled after 10 s), the message
    cache is flushed, memory items in progress finish (what is still queued stays in
    the outbox for the next start), the pool is closed.

    Raises:
        ConfigError: A required setting is missing or invalid.
        DiscordAuthenticationError: Discord refused the token.
        DiscordUnavailableError: Discord (or ``DISCORD_API_BASE``) cannot be reached.
    """
    missing = missing_for_bot(settings)
    if missing:
        raise ConfigError("missing setting(s): " + "; ".join(missing))
    assert settings.discord_token is not None
    token = settings.discord_token.get_secret_value().strip()
    previous = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        await point_discord(settings)
        await _run(settings, token)
    finally:  # process-wide in discord.py: put back for whatever runs next
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = previous


async def _run(settings: Settings, token: str) -> None:
    async with Database.connect(settings, upgrade=True) as db:
        followups = build_followups(db, settings)
        manager = build_memory_manager(
            db,
            settings,
            events=(
                FollowupSink(followups, CompanionSettings(db, settings.companion_features()))
                if followups is not None
                else None
            ),
        )
        outbox = build_outbox(db, settings)
        async with manager, build_outbox_worker(manager, outbox, db, settings) as worker:
            # No memory sink: the bot queues memory work in the outbox with the cache.
            agent = build_agent(db, settings, memories=manager.store)
            bot = Barkeeper(
                db=db,
                settings=settings,
                agent=agent,
                memories=manager.store,
                worker=worker,
                manager=manager,
                followups=followups,
            )
            loop = asyncio.get_running_loop()
            stopping = asyncio.Event()
            closing: list[asyncio.Future[None]] = []

            def stop(name: str) -> None:
                if not stopping.is_set():
                    _log.info("%s: finishing replies and stopping", name)
                    stopping.set()
                    closing.append(asyncio.ensure_future(bot.close()))

            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop, sig.name)
            try:
                async with bot:
                    await bot.start(token)
            except discord.LoginFailure:
                raise DiscordAuthenticationError(
                    "Discord refused DISCORD_TOKEN: reset it in the developer portal "
                    "(Bot → Reset Token) and put the new one in .env"
                ) from None
            except discord.PrivilegedIntentsRequired:
                raise ConfigError(
                    "Discord refused the Message Content intent: enable it in the developer "
                    "portal (Bot → Privileged Gateway Intents), see docs/operators.md"
                ) from None
            except (aiohttp.ClientError, OSError, discord.GatewayNotFound) as exc:
                # Not chained: an aiohttp error can quote the request. Its type is enough.
                raise DiscordUnavailableError(
                    f"cannot reach Discord ({type(exc).__name__}): check the network, or "
                    "DISCORD_API_BASE / DISCORD_GATEWAY_URL if you point barkeeper elsewhere"
                ) from None
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError):
                        loop.remove_signal_handler(sig)
                await agent.aclose()
            _log.info("memory outbox: %d item(s) in progress, finishing", worker.in_flight)
