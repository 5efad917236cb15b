"""The emulator's gateway against the real, unmodified discord.py.

Plain ``discord.Client``, ``commands.Bot`` with a synced app-command tree and
``AutoShardedBot`` connect to ``barkeeper.testing.discord``; simulated people post,
reply, open threads, DM and invoke slash commands; the bot replies, edits, deletes
and types; sockets drop and sessions are resumed or invalidated. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from barkeeper.testing.discord import (
    DiscordEmulator,
    EmulatorSpec,
    ExplicitAttachment,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitUser,
    discord_py_pointed_at,
    make_snowflake,
    running_client,
)
from barkeeper.testing.discord.__main__ import build_parser

WAIT = 5.0
FAST: dict[str, Any] = {"route_limit": 10_000, "global_limit": 0}


def _spec(**changes: Any) -> EmulatorSpec:
    base: dict[str, Any] = {
        "seed": 5,
        "channels": 2,
        "messages_per_channel": 3,
        "users": 3,
        "heartbeat_interval": 0.5,
        **FAST,
    }
    base.update(changes)
    return EmulatorSpec(**base)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(_spec()) as emulator:
        yield emulator


def _intents(*, content: bool = True, members: bool = False) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = content
    intents.members = members
    return intents


class Recorder(discord.Client):
    """A plain client that queues what it receives."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", _intents())
        super().__init__(guild_ready_timeout=0.1, **options)
        self.messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.ready_count = 0
        self.resumed_count = 0

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py's documented hook sleeps 5 s before every IDENTIFY after the
        # first (Discord's identify rate limit); the emulator has none.
        return None

    async def on_ready(self) -> None:
        self.ready_count += 1
        self.events.put_nowait(("ready", None))

    async def on_resumed(self) -> None:
        self.resumed_count += 1
        self.events.put_nowait(("resumed", None))

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id != self.user.id:  # type: ignore[union-attr]
            self.messages.put_nowait(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        self.events.put_nowait(("edit", payload))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.events.put_nowait(("delete", payload))

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.events.put_nowait(("thread", thread))

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def next_event(self, name: str) -> Any:
        async with asyncio.timeout(WAIT):
            while True:
                event, value = await self.events.get()
                if event == name:
                    return value


# -- connecting ---------------------------------------------------------------------------------


async def test_client_connects_with_guilds_channels_and_compression(
    emu: DiscordEmulator,
) -> None:
    client = Recorder(intents=_intents(members=True))
    async with running_client(emu, client):
        assert sorted(g.id for g in client.guilds) == sorted(emu.guild_ids())
        guild = client.guilds[0]
        assert {c.id for c in guild.text_channels} == set(emu.world.guilds[guild.id].channel_ids)
        assert guild.default_role.id == guild.id
        assert guild.chunked and len(guild.members) == len(emu.world.users)
        assert client.user is not None and client.user.id == emu.bot_user_id
        assert client.ready_count == 1
        (session,) = emu.gateway.sessions(connected=True)
        assert session.shard_id == 0 and session.intents == client.intents.value
        assert emu.gateway.identifies == 1
        assert emu.gateway.compressions == ["zlib-stream"]
        joined = asyncio.create_task(client.wait_for("member_join", timeout=WAIT))
        newcomer = emu.person("newcomer")
        assert (await joined).id == newcomer.id
    # discord.py's close() reaches the server as 4000 (its reader closes first), so the
    # session stays resumable, as it would on Discord
    assert [s.connected for s in emu.gateway.sessions()] == [False]
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_message_arrives_and_content_is_blanked_without_the_intent(
    emu: DiscordEmulator,
) -> None:
    alice = emu.person("alice", global_name="Alice")
    channel_id = emu.channel_ids()[0]
    client = Recorder(intents=_intents(content=False))
    async with running_client(emu, client):
        typing = asyncio.create_task(client.wait_for("typing", timeout=WAIT))
        alice.type(channel_id)
        where, who, _ = await typing
        assert (where.id, who.id) == (channel_id, alice.id)
        alice.send(channel_id, "nobody pinged you")
        plain = await client.next_message()
        assert plain.channel.id == channel_id and plain.author.id == alice.id
        assert isinstance(plain.author, discord.Member)
        assert plain.content == ""

        alice.send(channel_id, "hello bot", mention_bot=True)
        mentioned = await client.next_message()
        assert mentioned.content == f"<@{emu.bot_user_id}> hello bot"
        assert client.user in mentioned.mentions

        alice.dm("a secret")
        dm = await client.next_message()
        assert isinstance(dm.channel, discord.DMChannel)
        assert dm.guild is None and dm.content == "a secret"

    # the world (and REST history) keeps the text either way
    assert emu.world.channels[channel_id].messages[plain.id].content == "nobody pinged you"


async def test_with_the_intent_content_is_kept_and_hidden_channels_stay_hidden() -> None:
    async with DiscordEmulator(_spec(channels=3, forbidden_channels=1)) as emu:
        client = Recorder()
        async with running_client(emu, client):
            bob = emu.person("bob")
            (hidden,) = emu.channel_ids(access="forbidden")
            bob.send(hidden, "you cannot see this")
            bob.send(emu.channel_ids(access="ok")[0], "plain words")
            assert (await client.next_message()).content == "plain words"
            photo = ExplicitAttachment(filename="cat.png", size=2048, content_type="image/png")
            bob.send(emu.channel_ids(access="ok")[0], "", attachments=[photo])
            only_file = await client.next_message()
            assert only_file.content == "" and [a.filename for a in only_file.attachments] == [
                "cat.png"
            ]
            with pytest.raises(ValueError, match="4000 at most"):
                bob.send(emu.channel_ids(access="ok")[0], "x" * 4001)
            with pytest.raises(ValueError, match="content or attachments"):
                bob.send(emu.channel_ids(access="ok")[0], "")


async def test_reply_edit_delete_and_thread_reach_the_client(emu: DiscordEmulator) -> None:
    alice, bob = emu.person("alice"), emu.person("bob")
    channel_id = emu.channel_ids()[0]
    client = Recorder()
    async with running_client(emu, client):
        first = alice.send(channel_id, "first!")
        await client.next_message()
        bob.send(channel_id, "agreed", reply_to=first)
        reply = await client.next_message()
        assert reply.type is discord.MessageType.reply
        assert reply.reference is not None and reply.reference.message_id == first.id
        assert isinstance(reply.reference.resolved, discord.Message)
        assert reply.reference.resolved.content == "first!"
        assert [u.id for u in reply.mentions] == [alice.id]

        alice.edit(first, "first! (edited)")
        edit = await client.next_event("edit")
        assert edit.message_id == first.id and edit.data["content"] == "first! (edited)"
        bob.delete(emu.world.channels[channel_id].messages[reply.id])
        deleted = await client.next_event("delete")
        assert deleted.message_id == reply.id

        thread = alice.open_thread(channel_id, "side talk", message=first)
        created = await client.next_event("thread")
        assert created.id == thread.id == first.id and created.parent_id == channel_id
        bob.send(thread.id, "in the thread")
        inside = await client.next_message()
        assert isinstance(inside.channel, discord.Thread)
        assert inside.channel.id == thread.id and inside.channel.parent_id == channel_id


# -- the bot acting -----------------------------------------------------------------------------


class Echo(Recorder):
    """Replies to mentions with typing, then edits, sends and deletes a second message."""

    async def on_message(self, message: discord.Message) -> None:
        await super().on_message(message)
        if self.user is None or self.user not in message.mentions:
            return
        await message.add_reaction("👀")
        assert message.guild is not None
        member = await message.guild.fetch_member(message.author.id)
        async with message.channel.typing():
            sent = await message.reply("thinking…", mention_author=False)
        await sent.edit(content=f"{member.name}, you said: {message.content}")
        extra = await message.channel.send("and one more")
        await extra.delete()


async def test_bot_replies_edits_types_and_deletes(emu: DiscordEmulator) -> None:
    alice = emu.person("alice")
    channel_id = emu.channel_ids()[0]
    client = Echo()
    async with running_client(emu, client):
        asked = alice.send(channel_id, "hi", mention_bot=True)
        reply = await emu.wait_for_reply(asked, timeout=WAIT)
        await emu.wait_for_actions("delete", timeout=WAIT)
        kinds = [a.kind for a in emu.activity]
        assert kinds == ["react", "typing", "message", "edit", "message", "delete"]
        assert emu.activity[0].content == "👀" and emu.activity[0].message_id == asked.id
        assert reply.content == f"alice, you said: <@{emu.bot_user_id}> hi"
        assert reply.edited_ms is not None
        assert reply.mention_ids == []  # mention_author=False: no ping
        assert [m.id for m in emu.bot_messages(channel_id)] == [reply.id]
        truth = emu.truth()[channel_id]
        assert truth[-1]["id"] == reply.id and truth[-1]["reply_to"] == asked.id

        # a DM both ways: the person writes, the bot answers through POST /users/@me/channels
        user = await client.fetch_user(alice.id)
        await user.send("psst")
        (dm,) = await emu.wait_for_bot_messages(alice.dm_channel.id, timeout=WAIT)
        assert dm.content == "psst" and dm.guild_id is None


# -- slash commands -----------------------------------------------------------------------------


class CommandBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix="!", intents=_intents(), guild_ready_timeout=0.1)
        self.guild_id = guild_id
        self.calls: list[tuple[str, Any]] = []

        @app_commands.command(description="repeat text")
        async def echo(interaction: discord.Interaction, text: str, times: int = 1) -> None:
            self.calls.append(("echo", (text, times, interaction.channel_id)))
            await interaction.response.send_message(text * times)
            original = await interaction.original_response()
            await interaction.followup.send(f"followup to {original.id}", ephemeral=True)

        @app_commands.command(description="slow answer")
        async def slow(interaction: discord.Interaction, who: discord.User) -> None:
            self.calls.append(("slow", who.id))
            await interaction.response.defer(thinking=True, ephemeral=True)
            await interaction.edit_original_response(content=f"done for {who.name}")

        @app_commands.command(description="deferred, then a followup")
        async def later(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await interaction.followup.send("later!")

        self.tree.add_command(echo)
        self.tree.add_command(later)
        self.tree.add_command(slow, guild=discord.Object(guild_id))

    async def setup_hook(self) -> None:
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))


async def test_slash_commands_reach_the_tree_and_answers_are_readable(
    emu: DiscordEmulator,
) -> None:
    guild_id = emu.guild_ids()[0]
    channel_id = emu.channel_ids()[0]
    alice, bob = emu.person("alice"), emu.person("bob")
    bot = CommandBot(guild_id)
    async with running_client(emu, bot):
        syncs = await emu.wait_for_command_syncs(2, timeout=WAIT)
        assert [(s.guild_id, s.names) for s in syncs] == [
            (None, ["echo", "later"]),
            (guild_id, ["slow"]),
        ]
        assert [c["name"] for c in emu.commands()] == ["echo", "later"]

        echo = alice.invoke("echo", channel_id, options={"text": "ab", "times": 2})
        response = await echo.wait_for_response(timeout=WAIT)
        assert response.content == "abab" and not echo.ephemeral
        assert emu.world.channels[channel_id].messages[response.id].type == 20
        (followup,) = await echo.wait_for_followups(timeout=WAIT)
        assert followup.content == f"followup to {response.id}"
        assert followup.flags & 64 and followup.id not in emu.world.channels[channel_id].messages

        slow = alice.invoke("slow", channel_id, options={"who": bob.id})
        done = await slow.wait_for_response(timeout=WAIT)
        assert done.content == "done for bob" and slow.ephemeral and slow.response_type == 5
        assert bot.calls == [("echo", ("ab", 2, channel_id)), ("slow", bob.id)]

        # after a defer, the first followup becomes the response (as on Discord)
        later = bob.invoke("later", channel_id)
        filled = await later.wait_for_response(timeout=WAIT)
        assert filled.content == "later!" and later.followups == [] and not later.ephemeral
        assert emu.world.channels[channel_id].messages[filled.id].content == "later!"

        # in a DM, only global commands exist
        dm_echo = alice.invoke("echo", options={"text": "x"})
        assert (await dm_echo.wait_for_response(timeout=WAIT)).content == "x"
        with pytest.raises(LookupError, match="slow"):
            alice.invoke("slow", options={"who": bob.id})
        with pytest.raises(ValueError, match="no option 'loud'"):
            alice.invoke("echo", channel_id, options={"text": "x", "loud": True})


# -- sharding -----------------------------------------------------------------------------------


class ShardedBot(commands.AutoShardedBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # no 5 s between the shards' IDENTIFYs (see Recorder)


async def test_auto_sharded_bot_gets_each_guild_on_its_shard() -> None:
    # guild ids one millisecond apart land on alternating shards
    base_ms = 1_700_000_000_000
    explicit = ExplicitContent(
        users=[ExplicitUser(id=make_snowflake(base_ms - 10**6), username="carol")],
        guilds=[
            ExplicitGuild(
                id=make_snowflake(base_ms + n),
                name=f"guild {n}",
                channels=[ExplicitChannel(id=make_snowflake(base_ms + 100 + n), name="general")],
            )
            for n in range(4)
        ],
    )
    async with DiscordEmulator(_spec(explicit=explicit, shards=2)) as emu:
        bot = ShardedBot(command_prefix="!", intents=_intents(), guild_ready_timeout=0.1)
        received: asyncio.Queue[discord.Message] = asyncio.Queue()
        bot.add_listener(received.put, "on_message")
        async with running_client(emu, bot):
            await emu.wait_for_sessions(2, timeout=WAIT)
            assert bot.shard_count == 2
            shards = {g.id: g.shard_id for g in bot.guilds}
            assert shards == {g: (g >> 22) % 2 for g in emu.guild_ids()}
            assert set(shards.values()) == {0, 1}
            for session in emu.gateway.sessions():
                assert session.shard_count == 2
            alice = emu.person("alice")
            for channel_id in emu.channel_ids():
                alice.send(channel_id, f"hi {channel_id}")
            got = [await asyncio.wait_for(received.get(), WAIT) for _ in emu.channel_ids()]
            assert sorted(m.channel.id for m in got) == sorted(emu.channel_ids())
            assert {m.guild.shard_id for m in got if m.guild} == {0, 1}


# -- refused logins -----------------------------------------------------------------------------


async def test_bad_token_is_a_login_failure(emu: DiscordEmulator) -> None:
    client = discord.Client(intents=_intents())
    with discord_py_pointed_at(emu.base_url, gateway_url=emu.gateway_url):
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(client.start("not-the-token"), WAIT)
        await client.close()
    assert emu.gateway.identifies == 0


async def test_token_reset_before_identify_closes_4004(emu: DiscordEmulator) -> None:
    client = discord.Client(intents=_intents())
    with discord_py_pointed_at(emu.base_url, gateway_url=emu.gateway_url):
        await client.login(emu.token)
        emu.reset_token()
        with pytest.raises(discord.ConnectionClosed) as raised:
            await asyncio.wait_for(client.connect(), WAIT)
        await client.close()
    assert raised.value.code == 4004
    assert emu.gateway.closes == [4004]


async def test_privileged_intent_not_granted_closes_4014() -> None:
    async with DiscordEmulator(_spec(granted_intents=["members"])) as emu:
        client = discord.Client(intents=_intents(content=True))
        with discord_py_pointed_at(emu.base_url, gateway_url=emu.gateway_url):
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(client.start(emu.token), WAIT)
            await client.close()
        assert emu.gateway.closes == [4014]
        # without the intent the same application connects
        async with running_client(emu, Recorder(intents=_intents(content=False))):
            assert emu.gateway.identifies == 1


# -- resume, reconnect, invalid session ---------------------------------------------------------


async def test_dropped_socket_resumes_and_replays_missed_events(emu: DiscordEmulator) -> None:
    alice = emu.person("alice")
    channel_id = emu.channel_ids()[0]
    client = Recorder()
    async with running_client(emu, client):
        assert emu.gateway.drop() == 1
        sent = [alice.send(channel_id, f"while away {n}") for n in range(3)]
        await client.next_event("resumed")
        got = [await client.next_message() for _ in sent]
        assert [m.id for m in got] == [m.id for m in sent]
        assert emu.gateway.identifies == 1 and emu.gateway.resumes == 1
        assert client.ready_count == 1


async def test_a_session_past_its_resume_window_must_identify_again(emu: DiscordEmulator) -> None:
    client = Recorder()
    async with running_client(emu, client):
        client.events = asyncio.Queue()
        emu.gateway.resume_window = 0.0
        emu.gateway.drop()
        await client.next_event("ready")  # RESUME refused with op 9, then a fresh IDENTIFY
        assert emu.gateway.identifies == 2 and emu.gateway.resumes == 0


async def test_reconnect_and_invalid_session_are_survived(emu: DiscordEmulator) -> None:
    alice = emu.person("alice")
    channel_id = emu.channel_ids()[0]
    client = Recorder()
    async with running_client(emu, client):
        assert emu.gateway.reconnect() == 1
        await client.next_event("resumed")
        assert emu.gateway.resumes == 1

        assert emu.gateway.invalidate(resumable=True) == 1
        await client.next_event("resumed")
        assert emu.gateway.resumes == 2

        assert emu.gateway.invalidate(resumable=False) == 1
        await client.next_event("ready")
        assert emu.gateway.identifies == 2 and client.ready_count == 2
        assert len(emu.gateway.sessions()) == 1

        alice.send(channel_id, "still there?")
        assert (await client.next_message()).content == "still there?"


async def test_withheld_heartbeat_acks_make_the_client_resume(emu: DiscordEmulator) -> None:
    client = Recorder(heartbeat_timeout=1.0)
    async with running_client(emu, client):
        emu.gateway.acking = False
        await client.next_event("resumed")
        emu.gateway.acking = True
        assert emu.gateway.resumes >= 1 and emu.gateway.identifies == 1


# -- HTTP --------------------------------------------------------------------------------------


async def test_gateway_routes_point_at_the_websocket(emu: DiscordEmulator) -> None:
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.base_url}/gateway") as response:
            assert (await response.json())["url"] == emu.gateway_url
        async with http.get(f"{emu.base_url}/gateway/bot", headers=headers) as response:
            body = await response.json()
        assert body["url"] == emu.gateway_url and body["shards"] == 1


# -- driven from another process ----------------------------------------------------------------


async def _started_cli(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper.testing.discord",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    values: dict[str, str] = {}
    while "DISCORD_TOKEN" not in values:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "the emulator exited before printing its address"
        if "=" in line:
            name, _, value = line.strip().partition("=")
            values[name] = value
    return process, values


class MentionBot(CommandBot):
    async def on_message(self, message: discord.Message) -> None:
        if self.user is not None and self.user in message.mentions:
            await message.reply(f"heard {len(message.content)} chars", mention_author=False)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


async def test_helper_routes_drive_a_bot_from_another_process() -> None:
    process, values = await _started_cli(
        "--channels", "1", "--messages-per-channel", "2", "--heartbeat-interval", "0.5",
        "--route-limit", "0", "--global-limit", "0",
    )  # fmt: skip
    origin = values["DISCORD_API_BASE"].removesuffix("/api/v10")
    try:
        async with aiohttp.ClientSession(base_url=origin) as http:

            async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
                async with http.request(method, path, **kwargs) as response:
                    body = await response.json() if response.status != 204 else None
                    return response.status, body

            _, info = await call("GET", "/_emulator/info")
            guild_id, channel_id = info["guild_ids"][0], info["channels"][0]["id"]
            bot = MentionBot(int(guild_id))
            with discord_py_pointed_at(
                values["DISCORD_API_BASE"], gateway_url=values["DISCORD_GATEWAY_URL"]
            ):
                task = asyncio.create_task(bot.start(values["DISCORD_TOKEN"]))
                try:
                    status, gateway = await call("GET", "/_emulator/gateway?wait=10&connected=1")
                    assert status == 200 and gateway["identifies"] == 1
                    status, commands_seen = await call("GET", "/_emulator/commands")
                    assert [s["names"] for s in commands_seen["syncs"]] == [
                        ["echo", "later"],
                        ["slow"],
                    ]

                    status, person = await call(
                        "POST", "/_emulator/people", json={"username": "dana"}
                    )
                    assert status == 200 and person["username"] == "dana"
                    typing = {"user": "dana", "channel_id": channel_id}
                    assert (await call("POST", "/_emulator/typing", json=typing))[0] == 204
                    status, asked = await call(
                        "POST",
                        "/_emulator/messages",
                        json={"author": "dana", "channel_id": channel_id, "content": "yo",
                              "mention_bot": True},
                    )  # fmt: skip
                    assert status == 200 and asked["content"].endswith("yo")
                    status, replies = await call(
                        "GET", f"/_emulator/bot-messages?reply_to={asked['id']}&wait=5"
                    )
                    assert status == 200 and len(replies) == 1
                    assert replies[0]["content"] == f"heard {len(asked['content'])} chars"

                    status, invoked = await call(
                        "POST",
                        "/_emulator/interactions",
                        json={"user": "dana", "command": "echo", "channel_id": channel_id,
                              "options": {"text": "hey"}},
                    )  # fmt: skip
                    assert status == 200 and invoked["response"] is None
                    status, answered = await call(
                        "GET", f"/_emulator/interactions/{invoked['id']}?wait=5&followups=1"
                    )
                    assert status == 200 and answered["response"]["content"] == "hey"
                    assert len(answered["followups"]) == 1

                    status, missing = await call(
                        "POST",
                        "/_emulator/interactions",
                        json={"user": "dana", "command": "nope", "channel_id": channel_id},
                    )
                    assert status == 404 and "nope" in missing["message"]

                    status, dropped = await call("POST", "/_emulator/gateway/drop")
                    assert dropped["sockets"] == 1
                    await call(
                        "POST",
                        "/_emulator/messages",
                        json={"author": "dana", "dm": True, "content": "<@x> still?"},
                    )
                    for _ in range(100):
                        _, gateway = await call("GET", "/_emulator/gateway")
                        if gateway["resumes"] == 1 and gateway["sessions"][0]["connected"]:
                            break
                        await asyncio.sleep(0.05)
                    assert gateway["resumes"] == 1 and gateway["identifies"] == 1

                    status, waited = await call(
                        "GET", f"/_emulator/bot-messages?channel_id={channel_id}&count=9&wait=0.2"
                    )
                    assert status == 408 and len(waited["seen"]) == 2
                    _, activity = await call("GET", "/_emulator/activity")
                    assert [a["kind"] for a in activity] == ["message", "response", "followup"]
                finally:
                    await bot.close()
                    await asyncio.wait_for(task, 10)
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0


def test_cli_help_lists_the_gateway_flags_and_helper_routes() -> None:
    text = build_parser().format_help()
    for needle in (
        "--shards",
        "--heartbeat-interval",
        "--granted-intents",
        "/_emulator/messages",
        "/_emulator/interactions",
        "/_emulator/bot-messages",
        "/_emulator/gateway/drop",
    ):
        assert needle in text


# -- the protocol, spoken by hand ---------------------------------------------------------------


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), WAIT)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


async def test_raw_protocol_sessions_and_close_codes(emu: DiscordEmulator) -> None:
    identify = {"token": emu.token, "intents": 1 | 1 << 9, "properties": {}}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{emu.gateway_url}?v=10&encoding=json") as ws:
            hello = await _receive(ws)
            assert hello == {"op": 10, "d": {"heartbeat_interval": 500}}
            await ws.send_json({"op": 1, "d": None})
            assert await _receive(ws) == {"op": 11}
            await ws.send_json({"op": 2, "d": identify})
            ready = await _receive(ws)
            assert (ready["t"], ready["s"]) == ("READY", 1)
            assert ready["d"]["resume_gateway_url"] == emu.gateway_url
            guild = await _receive(ws)
            assert guild["t"] == "GUILD_CREATE" and guild["d"]["member_count"] == len(
                emu.world.users
            )
            session_id = ready["d"]["session_id"]
            await ws.send_json({"op": 2, "d": identify})
            assert (await ws.receive()).data == 4005  # identified twice
        # a dropped socket keeps the session: RESUME from seq 1 replays GUILD_CREATE
        async with http.ws_connect(emu.gateway_url) as ws:
            await _receive(ws)
            resume = {"token": emu.token, "session_id": session_id, "seq": 1}
            await ws.send_json({"op": 6, "d": resume})
            replayed = await _receive(ws)
            assert replayed.get("t") == "GUILD_CREATE", replayed
            resumed = await _receive(ws)
            assert (resumed["t"], resumed["s"], resumed["d"]) == ("RESUMED", 3, {})
            await ws.close(code=1000)  # a clean close ends the session
        await emu.wait_until(lambda: not emu.gateway.sessions(), timeout=WAIT, what="no session")
        async with http.ws_connect(emu.gateway_url) as ws:
            await _receive(ws)
            await ws.send_json({"op": 6, "d": resume})
            assert await _receive(ws) == {"op": 9, "d": False}
            await ws.send_json({"op": 3, "d": {}})
            assert (await ws.receive()).data == 4003  # not identified
        async with http.ws_connect(emu.gateway_url) as ws:
            await _receive(ws)
            await ws.send_json({"op": 2, "d": {**identify, "shard": [2, 2]}})
            assert (await ws.receive()).data == 4010
        async with http.ws_connect(f"{emu.gateway_url}?encoding=etf") as ws:
            assert (await ws.receive()).data == 4002
    assert emu.gateway.closes == [4005, 4003, 4010, 4002]


async def test_rest_reads_are_blanked_when_the_intent_is_not_granted() -> None:
    async with DiscordEmulator(_spec(granted_intents=[])) as emu:
        channel_id = emu.channel_ids()[0]
        alice = emu.person("alice")
        plain = alice.send(channel_id, "words")
        pinged = alice.send(channel_id, "hey", mention_bot=True)
        headers = {"Authorization": f"Bot {emu.token}"}
        async with aiohttp.ClientSession() as http:
            url = f"{emu.base_url}/channels/{channel_id}/messages"
            async with http.get(url, headers=headers) as response:
                page = {int(m["id"]): m["content"] for m in await response.json()}
        assert page[plain.id] == "" and page[pinged.id].endswith("hey")
        with pytest.raises(ValueError, match="another user's DM"):
            emu.person("bob").send(alice.dm_channel.id, "let me in")


class Threader(Recorder):
    async def on_message(self, message: discord.Message) -> None:
        if isinstance(message.channel, discord.TextChannel):
            thread = await message.create_thread(name="about that")
            await thread.send("let's talk here")


async def test_bot_opens_a_thread_on_a_message(emu: DiscordEmulator) -> None:
    channel_id = emu.channel_ids()[0]
    client = Threader()
    async with running_client(emu, client):
        asked = emu.person("alice").send(channel_id, "start a thread")
        (sent,) = await emu.wait_for_bot_messages(asked.id, timeout=WAIT)
        thread = emu.world.channels[asked.id]
        assert thread.parent_id == channel_id and thread.owner_id == emu.bot_user_id
        assert sent.content == "let's talk here"
        assert client.get_channel(asked.id) is not None


async def test_interaction_webhook_routes_over_rest(emu: DiscordEmulator) -> None:
    headers = {"Authorization": f"Bot {emu.token}"}
    app, channel_id = emu.bot_user_id, emu.channel_ids()[0]
    command = {"name": "hi", "description": "say hi", "type": 1}
    async with aiohttp.ClientSession(base_url=emu.origin) as http:
        api = "/api/v10"
        async with http.put(
            f"{api}/applications/{app}/commands", json=[command], headers=headers
        ) as r:
            (registered,) = await r.json()
        assert registered["application_id"] == str(app) and registered["name"] == "hi"
        async with http.put(
            f"{api}/applications/{app}/commands", json=[command], headers=headers
        ) as r:
            assert (await r.json())[0]["id"] == registered["id"]  # same name keeps its id
        assert len(emu.command_syncs) == 2

        interaction = emu.person("alice").invoke("hi", channel_id)
        callback = f"{api}/interactions/{interaction.id}/{interaction.token}/callback"
        answer = {"type": 4, "data": {"content": "hello"}}
        async with http.post(callback, params={"with_response": "1"}, json=answer) as r:
            body = await r.json()
        assert body["interaction"]["response_message_id"] == body["resource"]["message"]["id"]
        async with http.post(callback, json=answer) as r:
            assert r.status == 400 and (await r.json())["code"] == 40060
        original = f"{api}/webhooks/{app}/{interaction.token}/messages/@original"
        async with http.patch(original, json={"content": "hello again"}) as r:
            assert (await r.json())["content"] == "hello again"
        async with http.get(original) as r:
            assert (await r.json())["edited_timestamp"] is not None
        message_id = int(body["resource"]["message"]["id"])
        assert message_id in emu.world.channels[channel_id].messages
        async with http.delete(original) as r:
            assert r.status == 204
        assert interaction.response is None
        assert message_id not in emu.world.channels[channel_id].messages
        async with http.get(original) as r:
            assert r.status == 404
        async with http.post(f"{api}/webhooks/{app}/not-a-token", json={"content": "x"}) as r:
            assert r.status == 404

        late = emu.person("alice").invoke("hi", channel_id)
        emu.configure(interaction_ack_timeout=0.05)
        await asyncio.sleep(0.1)
        late_callback = f"{api}/interactions/{late.id}/{late.token}/callback"
        async with http.post(late_callback, json=answer) as r:
            assert r.status == 404 and (await r.json())["code"] == 10062
        assert not late.answered
        # a button on a bot message, pressed through the helper route, answered with type 7
        button = {"type": 2, "style": 1, "label": "ok", "custom_id": "ok"}
        async with http.post(
            f"{api}/channels/{channel_id}/messages",
            json={"content": "press", "components": [{"type": 1, "components": [button]}]},
            headers=headers,
        ) as r:
            posted = await r.json()
        assert posted["components"][0]["components"][0]["custom_id"] == "ok"
        click = {"user": "alice", "message_id": posted["id"], "custom_id": "ok"}
        async with http.post("/_emulator/clicks", json=click) as r:
            record = await r.json()
        assert (record["type"], record["message_id"]) == (3, posted["id"])
        callback = f"{api}/interactions/{record['id']}/{record['token']}/callback"
        update = {"type": 7, "data": {"content": "pressed", "components": []}}
        async with http.post(callback, json=update) as r:
            assert r.status == 204
        async with http.get(f"/_emulator/interactions/{record['id']}?wait=1") as r:
            assert (await r.json())["response"]["content"] == "pressed"
        async with http.post("/_emulator/clicks", json={**click, "custom_id": "no"}) as r:
            assert r.status == 404
    assert [a.kind for a in emu.activity] == ["response", "edit", "delete", "message", "edit"]


class Confirm(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.pressed: list[str] = []

    @discord.ui.button(label="Forget it", custom_id="confirm", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        self.pressed.append("confirm")
        await interaction.response.edit_message(content="forgotten", view=None)

    @discord.ui.button(label="Keep it", custom_id="cancel")
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        self.pressed.append("cancel")
        await interaction.response.defer()
        await interaction.edit_original_response(content="kept", view=None)


class ConfirmBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=_intents(), guild_ready_timeout=0.1)
        self.views: list[Confirm] = []

        @app_commands.command(description="forget something, after a confirmation")
        async def forget(interaction: discord.Interaction) -> None:
            view = Confirm()
            self.views.append(view)
            await interaction.response.send_message("Forget that?", view=view, ephemeral=True)

        @app_commands.command(description="your data as a file")
        async def export(interaction: discord.Interaction) -> None:
            data = io.BytesIO(b'{"memories": []}')
            file = discord.File(data, filename="export.json")
            await interaction.response.send_message("here", file=file, ephemeral=True)

        self.tree.add_command(forget)
        self.tree.add_command(export)

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def test_buttons_on_an_ephemeral_answer_reach_the_view(emu: DiscordEmulator) -> None:
    channel_id = emu.channel_ids()[0]
    alice = emu.person("alice")
    bot = ConfirmBot()
    async with running_client(emu, bot):
        await emu.wait_for_command_syncs(timeout=WAIT)
        asked = await alice.invoke("forget", channel_id).wait_for_response(timeout=WAIT)
        assert asked.content == "Forget that?" and asked.flags & 64
        labels = [c["custom_id"] for row in asked.components for c in row["components"]]
        assert labels == ["confirm", "cancel"]
        with pytest.raises(LookupError, match="confirm, cancel"):
            alice.click(asked, "nope")

        pressed = alice.click(asked, "confirm")
        updated = await pressed.wait_for_response(timeout=WAIT)
        assert updated is asked and pressed.response_type == 7
        assert asked.content == "forgotten" and asked.components == []

        again = await alice.invoke("forget", channel_id).wait_for_response(timeout=WAIT)
        kept = alice.click(again, "cancel")
        await emu.wait_until(lambda: again.content == "kept", timeout=WAIT, what="kept")
        assert kept.response_type == 6 and again.components == []
        assert [v.pressed for v in bot.views] == [["confirm"], ["cancel"]]

        exported = await alice.invoke("export", channel_id).wait_for_response(timeout=WAIT)
        assert emu.uploads(exported) == [("export.json", b'{"memories": []}')]
        async with aiohttp.ClientSession() as http:
            async with http.get(exported.attachments[0]["url"]) as response:
                assert await response.read() == b'{"memories": []}'
