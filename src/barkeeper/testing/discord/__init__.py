"""A local Discord REST API emulator the real, unmodified discord.py works against.

:class:`DiscordEmulator` serves generated (seeded, deterministic) or explicit
guilds, channels and messages under ``http://127.0.0.1:PORT/api/v10`` with
Discord's paging semantics, error bodies, rate-limit headers and 429s, plus seeded
fault injection (5xx, slow, dropped, truncated, broken JSON) and statistics.
:func:`point_discord_py_at` sets ``discord.http.Route.BASE`` so discord.py talks
to it; :func:`logged_in_client` does that and logs a client in.

Example:
    >>> async def demo() -> None:
    ...     async with DiscordEmulator(EmulatorSpec(seed=1)) as emu:
    ...         async with logged_in_client(emu.base_url, emu.token) as client:
    ...             channel = await client.fetch_channel(emu.channel_ids()[0])
    ...             got = [m.id async for m in channel.history(limit=None, oldest_first=True)]
    ...         assert got == [m["id"] for m in emu.truth()[channel.id]]

Standalone: ``python -m barkeeper.testing.discord --help``. Nothing here talks to
the real Discord.
"""

from __future__ import annotations

from barkeeper.testing.discord._client import (
    api_base,
    discord_py_pointed_at,
    logged_in_client,
    point_discord_py_at,
    running_client,
)
from barkeeper.testing.discord._content import (
    EmulatedChannel,
    EmulatedGuild,
    EmulatedMessage,
    EmulatedUser,
    MessageRef,
    OfflineChanges,
    World,
)
from barkeeper.testing.discord._faults import LOGIN_ROUTES
from barkeeper.testing.discord._server import API_PREFIX, ROUTE_KEYS, DiscordEmulator, EmulatorStats
from barkeeper.testing.discord._snowflake import (
    DISCORD_EPOCH_MS,
    iso_timestamp,
    make_snowflake,
    snowflake_ms,
    snowflake_time,
)
from barkeeper.testing.discord._spec import (
    FAULT_KINDS,
    ChannelAccess,
    EmulatorSpec,
    ExplicitAttachment,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitMessage,
    ExplicitUser,
    FaultKind,
)

__all__ = [
    "API_PREFIX",
    "DISCORD_EPOCH_MS",
    "FAULT_KINDS",
    "LOGIN_ROUTES",
    "ROUTE_KEYS",
    "ChannelAccess",
    "DiscordEmulator",
    "EmulatedChannel",
    "EmulatedGuild",
    "EmulatedMessage",
    "EmulatedUser",
    "EmulatorSpec",
    "EmulatorStats",
    "ExplicitAttachment",
    "ExplicitChannel",
    "ExplicitContent",
    "ExplicitGuild",
    "ExplicitMessage",
    "ExplicitUser",
    "FaultKind",
    "MessageRef",
    "OfflineChanges",
    "World",
    "api_base",
    "discord_py_pointed_at",
    "iso_timestamp",
    "logged_in_client",
    "make_snowflake",
    "point_discord_py_at",
    "running_client",
    "snowflake_ms",
    "snowflake_time",
]
