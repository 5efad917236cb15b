"""The emulator's roles, members' roles and categories against the real discord.py:
in GUILD_CREATE, as live events, over REST and through the ``/_emulator/*`` helper routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest_asyncio

from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec, running_client
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
