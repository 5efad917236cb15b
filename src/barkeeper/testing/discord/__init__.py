"""A local Discord (REST API and gateway) that the real, unmodified discord.py works against.

:class:`DiscordEmulator` serves generated (seeded, deterministic) or explicit
guilds, channels and messages under ``http://127.0.0.1:PORT/api/v10`` with
Discord's paging semantics, error bodies, rate-limit headers and 429s, plus seeded
fault injection (5xx, slow, dropped, truncated, broken JSON) and statistics.
:func:`point_discord_py_at` sets ``discord.http.Route.BASE`` so discord.py talks
to it; :func:`logged_in_client` does that and logs a client in.

The gateway (``ws://127.0.0.1:PORT/gateway``, :attr:`DiscordEmulator.gateway`) lets a
plain ``discord.Client``, a ``commands.Bot`` or an ``AutoShardedBot`` connect:
HELLO/heartbeats, IDENTIFY (wrong token → close 4004; a privileged intent not in
``EmulatorSpec.granted_intents`` → 4014), READY, GUILD_CREATE, MESSAGE_CREATE/UPDATE/
DELETE (content blanked without the message-content intent, except DMs, the bot's
own messages and messages mentioning it), THREAD_CREATE, INTERACTION_CREATE,
RESUME with replay, and fault hooks (:meth:`Gateway.drop`, :meth:`Gateway.reconnect`,
:meth:`Gateway.invalidate`, :attr:`Gateway.acking`). :func:`running_client` starts a
client against it and waits for ``on_ready``.

Tests drive it as people (:meth:`DiscordEmulator.person` → :class:`Person`: send,
reply, DM, edit, delete, open threads, invoke slash commands, have roles) and shape
the guild (:meth:`DiscordEmulator.add_role`, :meth:`DiscordEmulator.add_category`,
:meth:`DiscordEmulator.move_channel`: roles ride in every ``member`` payload, a role's
``permissions`` count in an interaction's ``member.permissions`` as on Discord —
``@everyone``'s :data:`EVERYONE_PERMISSIONS` OR the member's roles', every permission
for the owner or an administrator —, a text channel's category is its ``parent_id``)
and read what the bot did (:meth:`DiscordEmulator.bot_messages`,
:attr:`DiscordEmulator.activity`, :class:`EmulatedInteraction`,
:attr:`DiscordEmulator.command_syncs`), waiting with bounded ``wait_for_*`` helpers.

Example:
    >>> async def demo() -> None:
    ...     async with DiscordEmulator(EmulatorSpec(seed=1)) as emu:
    ...         async with logged_in_client(emu.base_url, emu.token) as client:
    ...             channel = await client.fetch_channel(emu.channel_ids()[0])
    ...             got = [m.id async for m in channel.history(limit=None, oldest_first=True)]
    ...         assert got == [m["id"] for m in emu.truth()[channel.id]]

    >>> async def converse(bot: discord.Client) -> None:
    ...     async with DiscordEmulator(EmulatorSpec(seed=1)) as emu:
    ...         async with running_client(emu, bot):
    ...             asked = emu.person("alice").send(emu.channel_ids()[0], "hi", mention_bot=True)
    ...             reply = await emu.wait_for_reply(asked, timeout=5)

discord.py sleeps 5 s before every IDENTIFY after the first (its
``Client.before_identify_hook``); override that hook in tests that invalidate sessions.

Standalone: ``python -m barkeeper.testing.discord --help`` (it also lists the
``/_emulator/*`` helper routes that drive the gateway from another process).
Nothing here talks to the real Discord.
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
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    EmulatedChannel,
    EmulatedGuild,
    EmulatedMessage,
    EmulatedRole,
    EmulatedUser,
    MessageRef,
    OfflineChanges,
    World,
)
from barkeeper.testing.discord._faults import LOGIN_ROUTES
from barkeeper.testing.discord._gateway import INTENT_BITS, Gateway, GatewaySession, shard_of
from barkeeper.testing.discord._people import (
    BotAction,
    BotActionKind,
    CommandSync,
    EmulatedInteraction,
    Person,
)
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
    PrivilegedIntent,
    RestFaultKind,
)

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "API_PREFIX",
    "DISCORD_EPOCH_MS",
    "EVERYONE_PERMISSIONS",
    "FAULT_KINDS",
    "INTENT_BITS",
    "LOGIN_ROUTES",
    "ROUTE_KEYS",
    "BotAction",
    "BotActionKind",
    "ChannelAccess",
    "CommandSync",
    "DiscordEmulator",
    "EmulatedChannel",
    "EmulatedGuild",
    "EmulatedInteraction",
    "EmulatedMessage",
    "EmulatedRole",
    "EmulatedUser",
    "EmulatorSpec",
    "EmulatorStats",
    "ExplicitAttachment",
    "ExplicitChannel",
    "ExplicitContent",
    "ExplicitGuild",
    "ExplicitMessage",
    "ExplicitUser",
    "Gateway",
    "GatewaySession",
    "MessageRef",
    "OfflineChanges",
    "Person",
    "PrivilegedIntent",
    "RestFaultKind",
    "World",
    "api_base",
    "discord_py_pointed_at",
    "iso_timestamp",
    "logged_in_client",
    "make_snowflake",
    "point_discord_py_at",
    "running_client",
    "shard_of",
    "snowflake_ms",
    "snowflake_time",
]
