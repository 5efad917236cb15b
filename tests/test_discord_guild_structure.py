"""The emulator's roles, members' roles and categories against the real discord.py:
in GUILD_CREATE, as live events, over REST and through the ``/_emulator/*`` helper routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from barkeeper.testing.discord import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    DiscordEmulator,
    EmulatorSpec,
    running_client,
)
from barkeeper.testing.discord.__main__ import build_parser

WAIT = 5.0


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    spec = EmulatorSpec(
        seed=3,
        channels=2,
        messages_per_channel=2,
        users=2,
        heartbeat_interval=0.5,
        route_limit=10_000,
        global_limit=0,
    )
    async with DiscordEmulator(spec) as emulator:
        yield emulator


class Watcher(discord.Client):
    """A plain client that queues the messages and the events it gets."""

    def __init__(self, *, members: bool) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = members
        super().__init__(intents=intents, guild_ready_timeout=0.1)
        self.messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def on_message(self, message: discord.Message) -> None:
        self.messages.put_nowait(message)

    async def on_guild_role_create(self, role: discord.Role) -> None:
        self.events.put_nowait(("role", role))

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        self.events.put_nowait(("channel_create", channel))

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        self.events.put_nowait(("channel_update", after))

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        self.events.put_nowait(("member_update", after))

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def next_event(self, name: str) -> Any:
        async with asyncio.timeout(WAIT):
            while True:
                event, value = await self.events.get()
                if event == name:
                    return value


async def test_roles_and_categories_made_before_connecting_are_in_guild_create(
    emu: DiscordEmulator,
) -> None:
    first, second = emu.channel_ids()[:2]
    alice = emu.person("alice")
    bar = emu.add_category("the bar", channel_ids=[first])
    regulars = emu.add_role("regulars")
    alice.set_roles(regulars)
    client = Watcher(members=True)
    async with running_client(emu, client):
        guild = client.guilds[0]
        role = guild.get_role(regulars.id)
        assert role is not None and role.name == "regulars"
        category = guild.get_channel(bar.id)
        assert isinstance(category, discord.CategoryChannel) and category.name == "the bar"
        inside, outside = guild.get_channel(first), guild.get_channel(second)
        assert isinstance(inside, discord.TextChannel) and inside.category_id == bar.id
        assert isinstance(outside, discord.TextChannel) and outside.category_id is None
        assert [c.id for c in category.text_channels] == [first]
        member = guild.get_member(alice.id)
        assert member is not None and [r.id for r in member.roles[1:]] == [regulars.id]
        # Over REST too: the category and the guild's channel list.
        fetched = await client.fetch_channel(bar.id)
        assert isinstance(fetched, discord.CategoryChannel)
        listed = {c.id: c for c in await guild.fetch_channels()}
        assert isinstance(listed[bar.id], discord.CategoryChannel)
        assert listed[first].category_id == bar.id  # type: ignore[union-attr]
        fetched_member = await guild.fetch_member(alice.id)
        assert [r.id for r in fetched_member.roles[1:]] == [regulars.id]


async def test_live_roles_member_roles_and_category_moves_reach_the_client(
    emu: DiscordEmulator,
) -> None:
    first, second = emu.channel_ids()[:2]
    bob = emu.person("bob")
    client = Watcher(members=False)  # no members intent: roles come with messages
    async with running_client(emu, client):
        guild = client.guilds[0]
        staff = emu.add_role("staff")
        assert (await client.next_event("role")).id == staff.id
        bob.set_roles(staff)
        bob.send(first, "I work here now")
        message = await client.next_message()
        assert isinstance(message.author, discord.Member)
        assert [r.id for r in message.author.roles[1:]] == [staff.id]
        bob.set_roles()
        bob.send(first, "not any more")
        message = await client.next_message()
        assert [r.id for r in message.author.roles[1:]] == []  # type: ignore[union-attr]

        cellar = emu.add_category("cellar")
        created = await client.next_event("channel_create")
        assert isinstance(created, discord.CategoryChannel) and created.id == cellar.id
        emu.move_channel(second, cellar.id)
        moved = await client.next_event("channel_update")
        assert moved.id == second and moved.category_id == cellar.id
        bob.send(second, "down here")
        message = await client.next_message()
        assert message.channel.category_id == cellar.id  # type: ignore[union-attr]
        emu.move_channel(second, None)
        moved = await client.next_event("channel_update")
        assert moved.category_id is None
        assert guild.get_channel(second).category_id is None  # type: ignore[union-attr]


async def test_helper_routes_make_roles_give_them_and_make_categories(
    emu: DiscordEmulator,
) -> None:
    first, second = emu.channel_ids()[:2]
    guild_id = emu.guild_ids()[0]
    client = Watcher(members=True)
    async with (
        running_client(emu, client),
        aiohttp.ClientSession(base_url=emu.origin) as http,
    ):

        async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
            async with http.request(method, "/_emulator/" + path, json=body) as response:
                return response.status, await response.json()

        status, role = await call("POST", "roles", {"name": "regulars"})
        assert status == 200 and role["name"] == "regulars"
        status, member = await call("PUT", "members/dana/roles", {"role_ids": [role["id"]]})
        assert status == 200 and member["roles"] == [role["id"]]
        assert member["guild_id"] == str(guild_id)
        dana = member["user"]["id"]
        await client.next_event("member_update")
        known = client.guilds[0].get_member(int(dana))
        assert known is not None and [r.id for r in known.roles[1:]] == [int(role["id"])]
        status, category = await call(
            "POST", "categories", {"name": "the bar", "channel_ids": [str(first)]}
        )
        assert status == 200 and category["type"] == 4
        status, channel = await call("PATCH", f"channels/{second}", {"parent_id": category["id"]})
        assert status == 200 and channel["parent_id"] == category["id"]
        await call(
            "POST", "messages", {"author": "dana", "channel_id": str(second), "content": "hi"}
        )
        message = await client.next_message()
        assert message.channel.category_id == int(category["id"])  # type: ignore[union-attr]
        assert [r.id for r in message.author.roles[1:]] == [int(role["id"])]  # type: ignore[union-attr]
        assert emu.world.channels[first].parent_id == int(category["id"])
        async with http.get("/_emulator/info") as response:
            info = await response.json()
        assert [c["id"] for c in info["categories"]] == [category["id"]]
        assert [(r["id"], r["members"]) for r in info["roles"]] == [(role["id"], [dana])]
        # Mistakes are answered, not crashed on.
        assert (await call("POST", "roles", {}))[0] == 400
        assert (await call("PUT", "members/dana/roles", {"role_ids": ["123"]}))[0] == 404
        assert (await call("PATCH", f"channels/{second}", {"parent_id": "123"}))[0] == 404
        assert (await call("PATCH", f"channels/{second}", {}))[0] == 400


def test_cli_help_lists_the_structure_routes() -> None:
    text = build_parser().format_help()
    for route in ("/_emulator/roles", "/_emulator/members/USER/roles", "/_emulator/categories"):
        assert route in text


class PermissionsBot(commands.Bot):
    """Answers ``/perms`` with what discord.py says the invoker may do."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.1
        )
        self.seen: dict[int, tuple[int, bool, bool | None]] = {}

        @app_commands.command(description="your permissions here")
        async def perms(interaction: discord.Interaction) -> None:
            user = interaction.user
            in_guild = (
                user.guild_permissions.manage_guild if isinstance(user, discord.Member) else None
            )
            self.seen[user.id] = (
                interaction.permissions.value,
                interaction.permissions.manage_guild,
                in_guild,
            )
            await interaction.response.send_message("ok", ephemeral=True)

        self.tree.add_command(perms)

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def test_member_permissions_come_from_everyone_and_their_roles(
    emu: DiscordEmulator,
) -> None:
    guild_id, channel_id = emu.guild_ids()[0], emu.channel_ids()[0]
    owner_id = emu.world.guilds[guild_id].owner_id
    owner = emu.person(emu.world.users[owner_id].username)
    alice, bob, carol = emu.person("alice"), emu.person("bob"), emu.person("carol")
    assert not EVERYONE_PERMISSIONS & discord.Permissions(manage_guild=True).value
    with pytest.raises(ValueError, match="non-negative"):
        emu.add_role("broken", permissions=-1)
    bot = PermissionsBot()
    async with running_client(emu, bot):
        await emu.wait_for_command_syncs(1, timeout=WAIT)
        manage_guild = discord.Permissions(manage_guild=True).value
        manage_messages = discord.Permissions(manage_messages=True).value
        assert not EVERYONE_PERMISSIONS & manage_messages
        managers = emu.add_role("managers", permissions=manage_guild)
        regulars = emu.add_role("regulars", permissions=manage_messages)
        admins = emu.add_role("admins", permissions=ADMINISTRATOR)
        alice.set_roles(managers, regulars)
        bob.set_roles(regulars)
        carol.set_roles(admins)

        async def perms(person: Any, channel: int | None = channel_id) -> tuple[Any, ...]:
            await person.invoke("perms", channel).wait_for_response(timeout=WAIT)
            return bot.seen.pop(person.id)

        assert await perms(alice) == (
            EVERYONE_PERMISSIONS | manage_guild | manage_messages,
            True,
            True,
        )
        assert await perms(bob) == (EVERYONE_PERMISSIONS | manage_messages, False, False)
        assert await perms(carol) == (ALL_PERMISSIONS, True, True)
        assert (await perms(owner))[:2] == (ALL_PERMISSIONS, True)
        # A role taken away takes its permissions with it; a DM has none.
        alice.set_roles(regulars)
        assert await perms(alice) == (EVERYONE_PERMISSIONS | manage_messages, False, False)
        assert await perms(alice, None) == (0, False, None)
