"""The Discord emulator, exercised through the real discord.py and raw HTTP.

Everything runs against 127.0.0.1; nothing talks to the real Discord.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.http
import pytest
import pytest_asyncio

import barkeeper.testing.discord as emulator_module
from barkeeper.testing.discord import (
    DiscordEmulator,
    EmulatorSpec,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitMessage,
    ExplicitUser,
    World,
    api_base,
    discord_py_pointed_at,
    logged_in_client,
    make_snowflake,
    point_discord_py_at,
    snowflake_ms,
)
from barkeeper.testing.discord._faults import FaultInjector
from barkeeper.testing.discord._ratelimit import RateLimiter

MESSAGES = "GET /channels/{channel_id}/messages"
FAST = {"route_limit": 10_000, "global_limit": 0}


def _spec(**changes: Any) -> EmulatorSpec:
    base: dict[str, Any] = {"seed": 11, "channels": 3, "messages_per_channel": 350, **FAST}
    base.update(changes)
    return EmulatorSpec(**base)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    """An emulator with 3 channels of 350 messages, the last one 'empty', no rate limits."""
    async with DiscordEmulator(_spec(empty_channels=1)) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(emu: DiscordEmulator) -> dict[str, str]:
    return {"Authorization": f"Bot {emu.token}"}


def _ids(emu: DiscordEmulator, channel_id: int) -> list[int]:
    return [record["id"] for record in emu.truth()[channel_id]]


def _expected(
    ids: list[int],
    *,
    limit: int | None,
    before: int | None = None,
    after: int | None = None,
    oldest_first: bool | None = None,
) -> list[int]:
    """What discord.py's history() should yield, computed from the truth alone."""
    selected = [i for i in ids if (before is None or i < before) and (after is None or i > after)]
    reverse = oldest_first if oldest_first is not None else after is not None
    ordered = selected if reverse else selected[::-1]
    return ordered if limit is None else ordered[:limit]


# -- login ------------------------------------------------------------------------------


async def test_login_and_bad_token(emu: DiscordEmulator) -> None:
    async with logged_in_client(emu.base_url, emu.token) as client:
        assert client.user is not None
        assert client.user.id == emu.bot_user_id
        assert client.user.bot
        assert client.application_id == emu.bot_user_id
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    with pytest.raises(discord.LoginFailure):
        async with logged_in_client(emu.base_url, emu.token + "x"):
            pass


async def test_point_discord_py_at_normalises_and_restores() -> None:
    original = discord.http.Route.BASE
    assert api_base("http://127.0.0.1:1234") == "http://127.0.0.1:1234/api/v10"
    assert api_base("http://127.0.0.1:1234/api/v10/") == "http://127.0.0.1:1234/api/v10"
    with pytest.raises(ValueError, match="absolute"):
        api_base("127.0.0.1:1234")
    previous = point_discord_py_at("http://127.0.0.1:1234")
    try:
        assert previous == original
        assert (
            discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:1234/api/v10/users/@me"
        )
    finally:
        point_discord_py_at(previous)
    with discord_py_pointed_at("http://127.0.0.1:9/api/v9") as base:
        assert base == discord.http.Route.BASE == "http://127.0.0.1:9/api/v9"
    assert discord.http.Route.BASE == original


# -- paging through discord.py ------------------------------------------------------------


async def test_full_history_matches_truth(emu: DiscordEmulator) -> None:
    channel_id = emu.channel_ids()[0]
    truth = emu.truth()[channel_id]
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        newest_first = [m async for m in channel.history(limit=None)]
        oldest_first = [m async for m in channel.history(limit=None, after=discord.Object(0))]
        flagged = [m async for m in channel.history(limit=None, oldest_first=True)]
    assert [m.id for m in newest_first] == [r["id"] for r in reversed(truth)]
    assert [m.id for m in oldest_first] == [r["id"] for r in truth]
    assert [m.id for m in flagged] == [r["id"] for r in truth]
    for message, record in zip(oldest_first, truth, strict=True):
        assert message.content == record["content"]
        assert message.author.id == record["author_id"]
        assert message.created_at == dt.datetime.fromisoformat(record["timestamp"])
        edited = record["edited_timestamp"]
        assert message.edited_at == (dt.datetime.fromisoformat(edited) if edited else None)
        assert [a.id for a in message.attachments] == [int(a["id"]) for a in record["attachments"]]
        assert len(message.embeds) == len(record["embeds"])
        assert message.guild is not None and message.guild.id == record["guild_id"]
        if record["reply_to"] is not None:
            assert message.reference is not None
            assert message.reference.message_id == record["reply_to"]


@pytest.mark.parametrize(
    ("limit", "cursor", "position", "oldest_first"),
    [
        (50, None, None, None),
        (100, None, None, None),
        (101, None, None, None),
        (250, "before", 300, None),
        (7, "before", 5, None),
        (30, "before", 200, True),
        (120, "after", 10, None),
        (None, "after", 340, None),
        (40, "after", 100, False),
        (100, "after", 349, None),
        (None, "before", 0, None),
    ],
)
async def test_history_cursors_match_truth(
    emu: DiscordEmulator,
    limit: int | None,
    cursor: str | None,
    position: int | None,
    oldest_first: bool | None,
) -> None:
    channel_id = emu.channel_ids()[0]
    ids = _ids(emu, channel_id)
    kwargs: dict[str, Any] = {"limit": limit, "oldest_first": oldest_first}
    expect_kwargs: dict[str, Any] = {"limit": limit, "oldest_first": oldest_first}
    if cursor is not None and position is not None:
        kwargs[cursor] = discord.Object(ids[position])
        expect_kwargs[cursor] = ids[position]
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        got = [m.id async for m in channel.history(**kwargs)]
    assert got == _expected(ids, **expect_kwargs)
    assert len(got) == len(set(got))


async def test_history_before_and_after_together(emu: DiscordEmulator) -> None:
    channel_id = emu.channel_ids()[0]
    ids = _ids(emu, channel_id)
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        window = [
            m.id
            async for m in channel.history(
                limit=None, after=discord.Object(ids[20]), before=discord.Object(ids[260])
            )
        ]
    assert window == ids[21:260]


@pytest.mark.parametrize(
    ("limit", "position", "count"), [(11, 100, 11), (10, 100, 11), (101, 200, 101), (9, 0, 5)]
)
async def test_history_around(emu: DiscordEmulator, limit: int, position: int, count: int) -> None:
    channel_id = emu.channel_ids()[0]
    ids = _ids(emu, channel_id)
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        got = [
            m.id async for m in channel.history(limit=limit, around=discord.Object(ids[position]))
        ]
    half = min(limit, 100) // 2
    expected = ids[max(0, position - half) : position + half + 1][::-1]
    assert got == expected
    assert len(got) == count


async def test_fetch_send_edit_delete(emu: DiscordEmulator) -> None:
    channel_id = emu.channel_ids()[1]
    truth = emu.truth()[channel_id]
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        fetched = await channel.fetch_message(truth[10]["id"])
        assert fetched.content == truth[10]["content"]
        with pytest.raises(discord.NotFound):
            await channel.fetch_message(truth[10]["id"] + 1)
        sent = await channel.send("on the house 🍺", reference=fetched)
        assert sent.author.id == emu.bot_user_id
        assert sent.reference is not None and sent.reference.message_id == fetched.id
        assert sent.id > truth[-1]["id"]
        edited = await sent.edit(content="on the house (edited)")
        assert edited.edited_at is not None
        newest = [m async for m in channel.history(limit=1)]
        assert newest[0].id == sent.id and newest[0].content == "on the house (edited)"
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035
        await sent.delete()
    after = emu.truth()[channel_id]
    assert [r["id"] for r in after] == [r["id"] for r in truth]
    assert emu.stats.requests["POST /channels/{channel_id}/messages"] == 2


async def test_guild_routes(emu: DiscordEmulator) -> None:
    async with logged_in_client(emu.base_url, emu.token) as client:
        guild = await client.fetch_guild(emu.guild_ids()[0])
        assert guild.approximate_member_count
        channels = await guild.fetch_channels()
        assert sorted(c.id for c in channels) == sorted(emu.channel_ids())
        guilds = [g async for g in client.fetch_guilds()]
        assert [g.id for g in guilds] == emu.guild_ids()
        with pytest.raises(discord.NotFound):
            await client.fetch_guild(1)


# -- raw HTTP -------------------------------------------------------------------------------


async def test_raw_errors_and_headers(emu: DiscordEmulator, http: aiohttp.ClientSession) -> None:
    channel_id = emu.channel_ids()[0]
    url = f"{emu.base_url}/channels/{channel_id}/messages"
    async with http.get(url, headers=_auth(emu)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
            assert f"X-RateLimit-{name}" in response.headers
        float(response.headers["X-RateLimit-Reset"])
        float(response.headers["X-RateLimit-Reset-After"])
        page = await response.json()
        assert len(page) == 50  # the default limit
        assert [int(m["id"]) for m in page] == _ids(emu, channel_id)[-50:][::-1]
        assert page[0]["timestamp"].endswith("+00:00")
        assert page[0]["author"]["discriminator"] == "0"
    for params in ({"limit": "101"}, {"limit": "0"}, {"limit": "x"}, {"before": "1", "after": "2"}):
        async with http.get(url, params=params, headers=_auth(emu)) as response:
            assert response.status == 400, params
            body = await response.json()
            assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
            assert body["errors"]
    async with http.get(url, params={"after": "0", "limit": "100"}, headers=_auth(emu)) as response:
        page = await response.json()
        assert [int(m["id"]) for m in page] == _ids(emu, channel_id)[:100][::-1]
    async with http.get(f"{emu.base_url}/nope/nothing", headers=_auth(emu)) as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"message": "404: Not Found", "code": 0}
    async with http.get(url) as response:
        assert response.status == 401
        assert await response.json() == {"message": "401: Unauthorized", "code": 0}
    async with http.get(f"{emu.base_url}/channels/123/messages", headers=_auth(emu)) as response:
        assert response.status == 404
        assert await response.json() == {"message": "Unknown Channel", "code": 10003}
    async with http.put(url, headers=_auth(emu)) as response:
        assert response.status == 405


async def test_rate_limit_429s(http: aiohttp.ClientSession) -> None:
    spec = _spec(
        channels=2, messages_per_channel=5, route_limit=2, route_window=5.0, global_limit=0
    )
    async with DiscordEmulator(spec) as emu:
        first, second = emu.channel_ids()
        url = f"{emu.base_url}/channels/{first}/messages"
        remaining = []
        for _ in range(2):
            async with http.get(url, headers=_auth(emu)) as response:
                assert response.status == 200
                remaining.append(response.headers["X-RateLimit-Remaining"])
        assert remaining == ["1", "0"]
        async with http.get(url, headers=_auth(emu)) as response:
            assert response.status == 429
            body = await response.json()
            assert body["message"] == "You are being rate limited."
            assert isinstance(body["retry_after"], float) and 0 < body["retry_after"] <= 5.0
            assert body["global"] is False
            assert response.headers["X-RateLimit-Scope"] == "user"
            assert response.headers["Via"] == "1.1 google"
            assert int(response.headers["Retry-After"]) >= 1
        # another channel is another bucket with the same hash
        async with http.get(
            f"{emu.base_url}/channels/{second}/messages", headers=_auth(emu)
        ) as response:
            assert response.status == 200
            bucket = response.headers["X-RateLimit-Bucket"]
        async with http.get(url, params={"limit": "1"}, headers=_auth(emu)) as response:
            assert response.headers["X-RateLimit-Bucket"] == bucket
        assert emu.stats.rate_limited["user"] == 2

        emu.configure(route_limit=100, global_limit=2, global_window=5.0)
        statuses = []
        for channel_id in (first, second, first):
            async with http.get(
                f"{emu.base_url}/channels/{channel_id}", headers=_auth(emu)
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    body = await response.json()
                    assert body["global"] is True
                    assert response.headers["X-RateLimit-Scope"] == "global"
                    assert response.headers["X-RateLimit-Global"] == "true"
        assert statuses == [200, 200, 429]

        emu.configure(global_limit=0, shared_429_rate=1.0, shared_retry_after=0.5)
        async with http.get(url, headers=_auth(emu)) as response:
            assert response.status == 429
            assert response.headers["X-RateLimit-Scope"] == "shared"
            assert int(response.headers["X-RateLimit-Remaining"]) > 0
            assert (await response.json())["retry_after"] == 0.5


async def test_discord_py_survives_429s() -> None:
    spec = _spec(
        channels=3,
        messages_per_channel=420,
        route_limit=2,
        route_window=0.2,
        global_limit=8,
        global_window=0.2,
        shared_429_rate=0.15,
        shared_retry_after=0.05,
    )
    async with DiscordEmulator(spec) as emu:
        async with logged_in_client(emu.base_url, emu.token) as client:

            async def backfill(channel_id: int) -> list[int]:
                channel = client.get_partial_messageable(channel_id)
                return [m.id async for m in channel.history(limit=None, after=discord.Object(0))]

            results = await asyncio.gather(*(backfill(c) for c in emu.channel_ids()))
        for channel_id, got in zip(emu.channel_ids(), results, strict=True):
            assert got == _ids(emu, channel_id)
        assert emu.stats.rate_limited["shared"] > 0
        assert emu.stats.total_429s > 0


# -- faults -----------------------------------------------------------------------------------


async def test_discord_py_retries_500_and_502() -> None:
    spec = _spec(
        channels=1,
        messages_per_channel=320,
        fault_rate=0.5,
        fault_kinds=["server_error"],
        fault_statuses=[500, 502],
        fault_routes=[MESSAGES],
        fault_max=2,
        seed=5,
    )
    async with DiscordEmulator(spec) as emu:
        channel_id = emu.channel_ids()[0]
        async with logged_in_client(emu.base_url, emu.token) as client:
            channel = await client.fetch_channel(channel_id)
            assert isinstance(channel, discord.TextChannel)
            got = [m.id async for m in channel.history(limit=None)]
        assert got == _ids(emu, channel_id)[::-1]
        assert emu.stats.faults["server_error"] == 2


async def test_faults_discord_py_does_not_retry() -> None:
    """503, dropped connections, truncated bodies and broken JSON reach the caller."""
    spec = _spec(channels=1, messages_per_channel=20, fault_rate=1.0, fault_routes=[MESSAGES])
    async with DiscordEmulator(spec) as emu:
        channel_id = emu.channel_ids()[0]
        async with logged_in_client(emu.base_url, emu.token) as client:
            channel = client.get_partial_messageable(channel_id)
            expected: list[tuple[dict[str, Any], type[BaseException]]] = [
                (
                    {"fault_kinds": ["server_error"], "fault_statuses": [503]},
                    discord.DiscordServerError,
                ),
                ({"fault_kinds": ["drop"]}, aiohttp.ServerDisconnectedError),
                ({"fault_kinds": ["truncate"]}, aiohttp.ClientPayloadError),
                ({"fault_kinds": ["bad_json"]}, json.JSONDecodeError),
            ]
            for changes, error in expected:
                emu.configure(**changes)
                with pytest.raises(error):
                    [m async for m in channel.history(limit=5)]
            # faults never hit routes outside fault_routes
            assert (await client.fetch_channel(channel_id)).id == channel_id
            emu.configure(fault_kinds=["slow"], fault_slow_seconds=0.3)
            started = time.perf_counter()
            got = [m.id async for m in channel.history(limit=5)]
            assert time.perf_counter() - started >= 0.3
            assert got == _ids(emu, channel_id)[-5:][::-1]
        # aiohttp itself retries a GET once when a reused connection is dropped
        assert emu.stats.faults["drop"] in (1, 2)
        del emu.stats.faults["drop"]
        assert emu.stats.faults == {"server_error": 1, "truncate": 1, "bad_json": 1, "slow": 1}


async def test_truncated_body_is_short_of_content_length(http: aiohttp.ClientSession) -> None:
    spec = _spec(channels=1, messages_per_channel=20, fault_rate=1.0, fault_kinds=["truncate"])
    async with DiscordEmulator(spec) as emu:
        url = f"{emu.base_url}/channels/{emu.channel_ids()[0]}/messages"
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(url, headers=_auth(emu)) as response:
                await response.read()


async def test_login_is_exempt_from_faults_unless_asked() -> None:
    spec = _spec(channels=1, messages_per_channel=5, fault_rate=1.0, fault_kinds=["drop"])
    async with DiscordEmulator(spec) as emu:
        async with logged_in_client(emu.base_url, emu.token) as client:
            with pytest.raises(aiohttp.ClientError):
                await client.fetch_channel(emu.channel_ids()[0])
        emu.configure(fault_login=True)
        with pytest.raises(aiohttp.ClientError):
            async with logged_in_client(emu.base_url, emu.token):
                pass


def test_faults_are_seeded() -> None:
    def draws(seed: int) -> list[Any]:
        injector = FaultInjector(
            rate=0.3, kinds={"server_error": 1, "drop": 2}, statuses=[500, 502], seed=seed
        )
        return [injector.draw(MESSAGES) for _ in range(200)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 30 < sum(d is not None for d in draws(1)) < 90
    login_only = FaultInjector(rate=1, kinds={"drop": 1}, statuses=[500])
    assert [login_only.draw("GET /users/@me") for _ in range(3)] == [None, None, None]
    assert login_only.draw(MESSAGES) is not None


def test_rate_limiter_windows() -> None:
    now = [100.0]
    limiter = RateLimiter(
        route_limit=2,
        route_window=1.0,
        global_limit=3,
        clock=lambda: now[0],
        wall_clock=lambda: 0.0,
    )
    assert limiter.check("GET /a", "1").scope is None
    second = limiter.check("GET /a", "1")
    assert second.scope is None and second.headers["X-RateLimit-Remaining"] == "0"
    third = limiter.check("GET /a", "1")
    assert third.scope == "user" and third.retry_after == 1.0
    assert limiter.check("GET /a", "2").scope is None
    assert limiter.check("GET /a", "3").scope == "global"
    now[0] += 1.0
    assert limiter.check("GET /a", "1").scope is None


# -- access ----------------------------------------------------------------------------------


async def test_channels_without_permission(
    emu: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    empty = emu.channel_ids(access="empty")[0]
    assert emu.truth()[empty]  # the messages exist, the bot just cannot see them
    readable = emu.channel_ids(access="ok")[0]
    emu.set_channel_access(readable, "forbidden")
    async with logged_in_client(emu.base_url, emu.token) as client:
        channel = await client.fetch_channel(empty)
        assert isinstance(channel, discord.TextChannel)
        assert [m async for m in channel.history(limit=None)] == []
        with pytest.raises(discord.Forbidden):
            await channel.fetch_message(emu.truth()[empty][0]["id"])
        with pytest.raises(discord.Forbidden):
            await client.fetch_channel(readable)
        with pytest.raises(discord.Forbidden) as forbidden:
            [m async for m in client.get_partial_messageable(readable).history(limit=10)]
        assert forbidden.value.code == 50001
    async with http.get(
        f"{emu.base_url}/channels/{readable}/messages", headers=_auth(emu)
    ) as response:
        assert response.status == 403
        assert await response.json() == {"message": "Missing Access", "code": 50001}


# -- content --------------------------------------------------------------------------------


def test_same_seed_same_truth() -> None:
    spec = EmulatorSpec(seed=42, channels=4, messages_per_channel=300, guilds=2)
    first, second = World.from_spec(spec), World.from_spec(spec)
    assert first.truth() == second.truth()
    assert first.truth() != World.from_spec(spec.model_copy(update={"seed": 43})).truth()


def test_generated_content_has_the_awkward_cases() -> None:
    spec = EmulatorSpec(seed=3, channels=2, messages_per_channel=3000, hostile_text=False)
    world = World.from_spec(spec)
    records = [r for channel in world.truth().values() for r in channel]
    contents = "".join(r["content"] for r in records)
    assert any(r["edited_timestamp"] for r in records)
    assert any(r["attachments"] and r["content"] for r in records)
    assert any(r["attachments"] and not r["content"] for r in records)
    assert any(r["embeds"] for r in records)
    assert any(len(r["content"]) == 4000 for r in records)
    assert max(len(r["content"]) for r in records) == 4000
    assert any(r["reply_to"] for r in records)
    assert any(r["author_bot"] for r in records)
    assert any(r["author_id"] == world.bot.id for r in records)
    for oddity in ("\u200b", "\u0301", "שלום", "👨‍👩‍👧‍👦"):
        assert oddity in contents
    assert "\x00" not in contents
    assert not any("\ud800" <= ch <= "\udfff" for ch in contents)
    for channel in world.truth().values():
        ids = [r["id"] for r in channel]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        stamps = [r["timestamp"] for r in channel]
        assert stamps == sorted(stamps)
        for record in channel:
            assert record["timestamp"].endswith("+00:00")
            if record["edited_timestamp"]:
                assert record["edited_timestamp"] > record["timestamp"]
    hostile = World.from_spec(spec.model_copy(update={"hostile_text": True}))
    hostile_text = "".join(r["content"] for c in hostile.truth().values() for r in c)
    assert "\x00" in hostile_text and "\ud800" in hostile_text


async def test_hostile_text_survives_json_and_discord_py() -> None:
    spec = _spec(channels=1, messages_per_channel=300, hostile_text=True, hostile_rate=0.2)
    async with DiscordEmulator(spec) as emu:
        channel_id = emu.channel_ids()[0]
        truth = emu.truth()[channel_id]
        async with logged_in_client(emu.base_url, emu.token) as client:
            channel = client.get_partial_messageable(channel_id)
            got = [m async for m in channel.history(limit=None, oldest_first=True)]
    assert [m.content for m in got] == [r["content"] for r in truth]
    assert any("\x00" in m.content for m in got)
    assert any("\ud800" in m.content for m in got)


def test_a_large_world_pages_correctly() -> None:
    # No time limit here (timings belong in bench/): 100k messages, paged exactly.
    world = World.from_spec(EmulatorSpec(seed=1, channels=20, messages_per_channel=5000))
    assert world.message_count() == 100_000
    channel = next(iter(world.channels.values()))
    page = channel.page(100, after=channel.ids[2500])
    assert [m.id for m in page] == channel.ids[2501:2601][::-1]


def test_explicit_content() -> None:
    alice = ExplicitUser(id=make_snowflake(1_600_000_000_000, increment=1), username="alice")
    first_id = make_snowflake(1_700_000_000_000, increment=2)
    spec = EmulatorSpec(
        explicit=ExplicitContent(
            users=[alice],
            guilds=[
                ExplicitGuild(
                    name="Bar",
                    channels=[
                        ExplicitChannel(
                            name="general",
                            messages=[
                                ExplicitMessage(id=first_id, author_id=alice.id, content="hi"),
                                ExplicitMessage(
                                    author_id=alice.id, content="reply", reply_to=first_id
                                ),
                            ],
                        )
                    ],
                )
            ],
        )
    )
    world = World.from_spec(spec)
    ((channel_id, records),) = world.truth().items()
    assert [r["content"] for r in records] == ["hi", "reply"]
    assert records[0]["id"] == first_id
    assert records[1]["reply_to"] == first_id and records[1]["type"] == 19
    assert snowflake_ms(records[1]["id"]) > snowflake_ms(first_id)
    assert world.channels[channel_id].name == "general"
    with pytest.raises(ValueError, match="not a user"):
        World.from_spec(
            EmulatorSpec(
                explicit=ExplicitContent(
                    guilds=[
                        ExplicitGuild(
                            name="g",
                            channels=[
                                ExplicitChannel(
                                    name="c", messages=[ExplicitMessage(author_id=5, content="x")]
                                )
                            ],
                        )
                    ]
                )
            )
        )


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        EmulatorSpec(fault_rate=1.5)
    with pytest.raises(ValueError):
        EmulatorSpec(fault_statuses=[404])
    with pytest.raises(ValueError):
        EmulatorSpec(channels=2, empty_channels=2, forbidden_channels=1)
    with pytest.raises(ValueError):
        EmulatorSpec(unknown_knob=1)  # type: ignore[call-arg]
    assert EmulatorSpec(fault_kinds="drop,slow").fault_kinds == {"drop": 1.0, "slow": 1.0}


# -- offline changes and truth -------------------------------------------------------------


async def test_offline_changes_are_seen_by_discord_py(emu: DiscordEmulator) -> None:
    before = emu.truth()
    changes = emu.apply_offline_changes(edits=5, deletes=4, new_messages=3, seed=9)
    assert (len(changes.edited), len(changes.deleted), len(changes.created)) == (5, 4, 3)
    after = emu.truth()
    assert sum(map(len, after.values())) == sum(map(len, before.values())) - 4 + 3
    by_id = {r["id"]: r for channel in after.values() for r in channel}
    async with logged_in_client(emu.base_url, emu.token) as client:
        for channel_id, message_id in changes.edited:
            record = by_id[message_id]
            assert record["edited_timestamp"] is not None
            message = await client.get_partial_messageable(channel_id).fetch_message(message_id)
            assert message.content == record["content"]
            assert message.edited_at is not None
            assert message.edited_at == dt.datetime.fromisoformat(record["edited_timestamp"])
        for channel_id, message_id in changes.deleted:
            assert message_id not in by_id
            with pytest.raises(discord.NotFound):
                await client.get_partial_messageable(channel_id).fetch_message(message_id)
        for channel_id, message_id in changes.created:
            assert message_id in by_id
            assert message_id > max(r["id"] for r in before[channel_id])
            newest = [m async for m in client.get_partial_messageable(channel_id).history(limit=1)]
            assert newest[0].id == after[channel_id][-1]["id"]
    again = World.from_spec(emu.spec)
    assert again.apply_offline_changes(edits=5, deletes=4, new_messages=3, seed=9) == changes
    assert again.truth() == after


async def test_truth_json_and_file(emu: DiscordEmulator, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    emu.write_truth(path)
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(loaded) == sorted(str(c) for c in emu.channel_ids())
    first = loaded[str(emu.channel_ids()[0])][0]
    record = emu.truth()[emu.channel_ids()[0]][0]
    assert first["id"] == str(record["id"]) and first["content"] == record["content"]


async def test_helper_routes(emu: DiscordEmulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{emu.origin}/_emulator/info") as response:
        info = await response.json()
    assert info["api_base"] == emu.base_url
    assert [c["id"] for c in info["channels"]] == [str(c) for c in emu.channel_ids()]
    assert info["channels"][-1]["access"] == "empty"
    async with http.post(
        f"{emu.origin}/_emulator/offline-changes", params={"edits": "2", "deletes": "1"}
    ) as response:
        changed = await response.json()
    assert (len(changed["edited"]), len(changed["deleted"])) == (2, 1)
    async with http.get(f"{emu.origin}/_emulator/truth") as response:
        assert await response.json() == emu.truth_json()
    async with http.get(f"{emu.origin}/_emulator/stats") as response:
        assert (await response.json())["total_requests"] == 0  # helper routes are not counted


async def test_addresses_need_a_running_emulator() -> None:
    emulator = DiscordEmulator(_spec(channels=1, messages_per_channel=1))
    with pytest.raises(RuntimeError, match="not been started"):
        _ = emulator.base_url
    async with emulator:
        assert emulator.port > 0
        with pytest.raises(RuntimeError, match="already running"):
            await emulator.start()
    await emulator.stop()


def test_public_names() -> None:
    assert sorted(emulator_module.__all__) == sorted(
        name
        for name in dir(emulator_module)
        if not name.startswith("_") and name not in {"annotations"}
    )


# -- CLI ------------------------------------------------------------------------------------------


async def test_cli_help() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper.testing.discord",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    text = out.decode()
    for flag in (
        "--port",
        "--host",
        "--seed",
        "--channels",
        "--messages-per-channel",
        "--guilds",
        "--route-limit",
        "--route-window",
        "--global-limit",
        "--fault-rate",
        "--token",
        "--spec",
        "--truth",
    ):
        assert flag in text


async def test_cli_serves(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"guilds": 2, "channels": 4, "seed": 3}))
    truth_file = tmp_path / "truth.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper.testing.discord",
        "--spec",
        str(spec_file),
        "--messages-per-channel",
        "25",
        "--token",
        "secret-token",
        "--truth",
        str(truth_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        values: dict[str, str] = {}
        while "DISCORD_TOKEN" not in values:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "the emulator exited before printing its address"
            if "=" in line:
                name, _, value = line.strip().partition("=")
                values[name] = value
        assert values["DISCORD_TOKEN"] == "secret-token"
        base = values["DISCORD_API_BASE"]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/api/v10")
        async with http.get(
            f"{base}/users/@me", headers={"Authorization": "Bot secret-token"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["bot"] is True
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
        assert len(truth) == 4 and all(len(v) == 25 for v in truth.values())
        assert (
            truth
            == World.from_spec(
                EmulatorSpec(guilds=2, channels=4, seed=3, messages_per_channel=25)
            ).truth_json()
        )
    finally:
        process.terminate()
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert '"GET /users/@me": 1' in out.decode()
