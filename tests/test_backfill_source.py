"""DiscordHistorySource: the real discord.py against the Discord emulator.

Paging semantics, access signals, channel listing, login errors and the translation
of every injected fault into a retryable error. No database is involved.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import discord.http
import pytest

from barkeeper.backfill import (
    Access,
    DiscordHistorySource,
    HistorySource,
    Page,
    normalize_api_base,
)
from barkeeper.errors import (
    DiscordAuthenticationError,
    DiscordUnavailableError,
    InvalidInputError,
    NotFoundError,
)
from barkeeper.testing.discord import (
    DiscordEmulator,
    ExplicitChannel,
    ExplicitContent,
    ExplicitGuild,
    ExplicitMessage,
    ExplicitUser,
)
from tests._backfill import MESSAGES_ROUTE, expected_row, spec


def _ids(page: Page) -> list[int]:
    return [m.message_id for m in page.messages]


async def test_pages_follow_discord_cursor_semantics() -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=250)) as emu:
        cid = emu.channel_ids()[0]
        truth = emu.truth()[cid]
        ids = [r["id"] for r in truth]
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            assert isinstance(source, HistorySource)
            assert discord.http.Route.BASE == emu.base_url
            newest = await source.fetch_page(cid, limit=100)
            assert _ids(newest) == ids[-100:][::-1]
            assert newest.newest_id == ids[-1] and newest.oldest_id == ids[-100]
            before = await source.fetch_page(cid, before=ids[120], limit=100)
            assert _ids(before) == ids[20:120][::-1]
            # after= gives the *oldest* messages after the cursor, newest first
            after = await source.fetch_page(cid, after=ids[9], limit=30)
            assert _ids(after) == ids[10:40][::-1]
            start = await source.fetch_page(cid, before=ids[5], limit=100)
            assert _ids(start) == ids[:5][::-1]
            assert _ids(await source.fetch_page(cid, before=ids[0])) == []
            assert _ids(await source.fetch_page(cid, after=ids[-1])) == []
            assert _ids(await source.fetch_page(cid, after=0, limit=3)) == ids[:3][::-1]
            # every field the cache keeps, as the truth has it
            for message, record in zip(newest.messages, reversed(truth[-100:]), strict=False):
                want = expected_row(emu, record)
                assert message.content == want["content"]
                assert message.author_name == want["author_name"]
                assert message.edited_at == want["edited_at"]
                assert message.reply_to_id == want["reply_to_id"]
            with pytest.raises(InvalidInputError):
                await source.fetch_page(cid, limit=101)
            with pytest.raises(InvalidInputError):
                await source.fetch_page(cid, before=ids[3], after=ids[1])
        assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_access_signals() -> None:
    async with DiscordEmulator(spec(channels=3, empty_channels=1, forbidden_channels=1)) as emu:
        readable = emu.channel_ids(access="ok")[0]
        empty = emu.channel_ids(access="empty")[0]
        forbidden = emu.channel_ids(access="forbidden")[0]
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            assert (await source.fetch_page(forbidden)).access is Access.NO_ACCESS
            info = await source.fetch_channel(forbidden)
            assert info.channel_id == forbidden and info.name is None
            # Discord answers an empty list when Read Message History is missing …
            page = await source.fetch_page(empty)
            assert page.access is Access.OK and page.messages == ()
            info = await source.fetch_channel(empty)
            assert info.last_message_id == emu.truth()[empty][-1]["id"]
            # … and 403 for the message itself, which tells it from an empty channel
            lookup = await source.fetch_message(empty, info.last_message_id)
            assert lookup.access is Access.NO_ACCESS
            last = emu.truth()[readable][-1]["id"]
            found = await source.fetch_message(readable, last)
            assert found.access is Access.OK and found.message is not None
            assert found.message.message_id == last
            emu.world.delete_message(readable, last)
            assert (await source.fetch_message(readable, last)).access is Access.MISSING
            with pytest.raises(NotFoundError):
                await source.fetch_page(123456789)
            with pytest.raises(NotFoundError):
                await source.fetch_channel(123456789)
            with pytest.raises(NotFoundError):
                await source.fetch_message(123456789, last)


async def test_a_message_that_cannot_be_read_is_reported_not_raised() -> None:
    overrides: dict[int, dict[str, Any]] = {
        1: {"author": None},
        3: {"id": None, "author": {"username": "no id"}},
        4: {"embeds": 7},
    }
    messages = [
        ExplicitMessage(author_id=5, content=f"m{i}", payload_overrides=overrides.get(i, {}))
        for i in range(6)
    ]
    world = ExplicitContent(
        users=[ExplicitUser(id=5, username="five")],
        guilds=[ExplicitGuild(name="g", channels=[ExplicitChannel(name="c", messages=messages)])],
    )
    async with DiscordEmulator(spec(explicit=world)) as emu:
        cid = emu.channel_ids()[0]
        ids = [r["id"] for r in emu.truth()[cid]]
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            page = await source.fetch_page(cid, limit=6)
            assert page.access is Access.OK and page.size == 6
            assert _ids(page) == [ids[5], ids[2], ids[0]]
            assert sorted((m.message_id or 0) for m in page.malformed) == [0, ids[1], ids[4]]
            reasons = {m.message_id: m.reason for m in page.malformed}
            assert "'author'" in reasons[ids[1]] and "'embeds'" in reasons[ids[4]]
            # the cursors cover the unreadable messages with an id; the id-less one is
            # only counted
            assert page.newest_id == ids[5] and page.oldest_id == ids[0]
            assert page.ids == frozenset(ids) - {ids[3]}
            lookup = await source.fetch_message(cid, ids[1])
            assert lookup.access is Access.OK and lookup.message is None
            assert lookup.malformed is not None and lookup.malformed.message_id == ids[1]
            # Asking again brings the same answer: it is not a transient failure.
            again = await source.fetch_page(cid, before=ids[5], limit=2)
            assert [m.message_id for m in again.malformed] == [ids[4], None]
            assert _ids(again) == [] and again.oldest_id == ids[4]


async def test_lists_every_text_channel_of_every_guild() -> None:
    async with DiscordEmulator(spec(guilds=3, channels=7, forbidden_channels=1)) as emu:
        async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
            channels = [c async for c in source.fetch_text_channels()]
        assert sorted(c.channel_id for c in channels) == sorted(emu.channel_ids())
        by_id = {c.channel_id: c for c in channels}
        for channel in emu.world.channels.values():
            info = by_id[channel.id]
            assert info.guild_id == channel.guild_id
            assert info.name == channel.name
            assert info.last_message_id == channel.ids[-1]


async def test_login_errors_are_one_clear_error() -> None:
    async with DiscordEmulator(spec(channels=1, messages_per_channel=1)) as emu:
        with pytest.raises(DiscordAuthenticationError, match="DISCORD_TOKEN"):
            async with DiscordHistorySource.connect(emu.token + "x", api_base=emu.base_url):
                pass
        assert discord.http.Route.BASE == "https://discord.com/api/v10"
        with pytest.raises(InvalidInputError, match="DISCORD_TOKEN"):
            await DiscordHistorySource.open("  ", api_base=emu.base_url)
        with pytest.raises(InvalidInputError, match="DISCORD_API_BASE"):
            await DiscordHistorySource.open(emu.token, api_base="127.0.0.1:1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DiscordUnavailableError, match="cannot log in"):
        await DiscordHistorySource.open(
            "token", api_base=f"http://127.0.0.1:{port}", login_attempts=1
        )
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


def test_normalize_api_base() -> None:
    assert normalize_api_base("http://127.0.0.1:8080") == "http://127.0.0.1:8080/api/v10"
    assert normalize_api_base("https://d.example/api/v9/") == "https://d.example/api/v9"
    with pytest.raises(InvalidInputError):
        normalize_api_base("ftp://x")


@pytest.mark.parametrize(
    "changes",
    [
        {"fault_kinds": ["server_error"], "fault_statuses": [503]},
        {"fault_kinds": ["drop"]},
        {"fault_kinds": ["truncate"]},
        {"fault_kinds": ["bad_json"]},
        {"fault_kinds": ["slow"], "fault_slow_seconds": 2.0},
    ],
    ids=["503", "drop", "truncate", "bad_json", "slow"],
)
async def test_every_fault_is_a_retryable_error(changes: dict[str, Any]) -> None:
    faults = {"fault_rate": 1.0, "fault_routes": [MESSAGES_ROUTE], **changes}
    async with DiscordEmulator(spec(channels=1, messages_per_channel=20, **faults)) as emu:
        cid = emu.channel_ids()[0]
        async with DiscordHistorySource.connect(
            emu.token, api_base=emu.base_url, request_timeout=0.5
        ) as source:
            with pytest.raises(DiscordUnavailableError):
                await source.fetch_page(cid, limit=10)
            emu.configure(fault_rate=0.0)
            page = await source.fetch_page(cid, limit=10)
        assert _ids(page) == [r["id"] for r in emu.truth()[cid]][-10:][::-1]
        assert emu.stats.total_faults >= 1


async def test_global_pacing_avoids_global_429s() -> None:
    """30 concurrent requests under a global limit of 20/s: no 429 with pacing, some without."""
    limits = {"route_limit": 10_000, "global_limit": 20, "global_window": 1.0}
    for rate, expect_429 in ((20, False), (None, True)):
        async with DiscordEmulator(spec(channels=6, messages_per_channel=10, **limits)) as emu:
            async with DiscordHistorySource.connect(
                emu.token, api_base=emu.base_url, global_rate=rate
            ) as source:
                emu.reset_stats()
                channels = emu.channel_ids()
                pages = await asyncio.gather(
                    *(source.fetch_page(channels[i % 6], limit=5) for i in range(30))
                )
            assert all(len(p.messages) == 5 for p in pages)
            assert (emu.stats.rate_limited["global"] > 0) is expect_429


async def test_sources_share_the_process_wide_api_base() -> None:
    async with (
        DiscordEmulator(spec(channels=1, messages_per_channel=3)) as emu,
        DiscordEmulator(spec(channels=1, messages_per_channel=3, seed=2)) as other,
    ):
        first = await DiscordHistorySource.open(emu.token, api_base=emu.base_url)
        second = await DiscordHistorySource.open(emu.token, api_base=emu.origin)
        with pytest.raises(InvalidInputError, match="another history source"):
            await DiscordHistorySource.open(other.token, api_base=other.base_url)
        with pytest.raises(InvalidInputError, match="another history source"):
            await DiscordHistorySource.open(other.token)
        await first.close()
        # still in use by the second source: discord.py keeps pointing at the emulator
        assert discord.http.Route.BASE == emu.base_url
        assert len((await second.fetch_page(emu.channel_ids()[0])).messages) == 3
        await second.close()
        await second.close()
        assert discord.http.Route.BASE == "https://discord.com/api/v10"


async def test_a_source_on_the_bots_own_client_leaves_it_open() -> None:
    from barkeeper.testing.discord import logged_in_client

    async with DiscordEmulator(spec(channels=1, messages_per_channel=5)) as emu:
        cid = emu.channel_ids()[0]
        async with logged_in_client(emu.base_url, emu.token) as client:
            async with DiscordHistorySource(client) as source:
                assert len((await source.fetch_page(cid)).messages) == 5
            assert not client.is_closed()
            assert (await client.fetch_channel(cid)).id == cid
