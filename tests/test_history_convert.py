"""Converters into :class:`StoredMessage`: Discord JSON payloads and real discord.py objects.

discord.py messages are built by discord.py's own constructors from payloads (with a
``ConnectionState``), and fetched for real from ``barkeeper.testing.discord``'s
emulator, whose generated history includes attachments, embeds, edits, replies, 4000-
character messages and hostile text (NUL, lone surrogates).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord.http import HTTPClient
from discord.state import ConnectionState

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError
from barkeeper.history import (
    Attachment,
    MessageStore,
    message_from_discord,
    message_from_payload,
    sanitize_text,
    summarize_content,
)
from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec, logged_in_client

MID = 1174109840998400001
REPLIED = 1174109840998400000


def payload(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(MID),
        "type": 0,
        "channel_id": "20",
        "content": "hello",
        "author": {
            "id": "30",
            "username": "ann_user",
            "global_name": "Ann",
            "discriminator": "0",
            "avatar": None,
            "bot": False,
        },
        "attachments": [],
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": "2023-11-14T22:13:20.000000+00:00",
        "edited_timestamp": None,
        "flags": 0,
        "components": [],
    }
    data.update(overrides)
    return data


ATTACHMENT = {
    "id": "1",
    "filename": "cat.png",
    "size": 2048,
    "url": "https://cdn.example/cat.png",
    "proxy_url": "https://media.example/cat.png",
    "content_type": "image/png",
}
REPLY_REF = {"type": 0, "message_id": str(REPLIED), "channel_id": "20", "guild_id": "10"}


# --- raw payloads ------------------------------------------------------------------------


def test_payload_basic_fields() -> None:
    m = message_from_payload(payload(), guild_id=10)
    assert (m.message_id, m.channel_id, m.guild_id, m.author_id) == (MID, 20, 10, 30)
    assert (m.author_name, m.author_is_bot, m.content) == ("Ann", False, "hello")
    assert m.created_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert m.edited_at is None and m.reply_to_id is None and m.attachments == ()
    assert message_from_payload(payload(guild_id="11"), guild_id=10).guild_id == 11


def test_payload_author_name_precedence() -> None:
    nick = payload(member={"nick": "Annie", "roles": []})
    assert message_from_payload(nick).author_name == "Annie"
    assert message_from_payload(payload()).author_name == "Ann"
    bare = payload(author={"id": "30", "username": "ann_user", "global_name": None, "bot": True})
    m = message_from_payload(bare)
    assert (m.author_name, m.author_is_bot) == ("ann_user", True)


def test_payload_summary_matches_junkie_and_keeps_attachments() -> None:
    m = message_from_payload(
        payload(
            content="look",
            attachments=[ATTACHMENT, {**ATTACHMENT, "url": "https://cdn.example/b.txt"}],
            embeds=[{"type": "rich"}, {"type": "link"}],
            sticker_items=[{"id": "5", "name": "wave", "format_type": 1}],
        )
    )
    assert m.content == (
        "look\n[Attachment: https://cdn.example/cat.png]\n[Attachment: https://cdn.example/b.txt]"
        "\n[Sticker: wave]\n[Embed: 2 embed(s)]"
    )
    assert m.embeds_count == 2
    assert m.attachments[0] == Attachment(
        "https://cdn.example/cat.png", "cat.png", "image/png", 2048
    )


def test_payload_attachment_only_message_keeps_a_content_line() -> None:
    m = message_from_payload(payload(content="", attachments=[ATTACHMENT]))
    assert m.content == "[Attachment: https://cdn.example/cat.png]"


def test_payload_reply_forward_and_poll() -> None:
    reply = message_from_payload(payload(type=19, message_reference=REPLY_REF))
    assert reply.reply_to_id == REPLIED
    pin_notice = message_from_payload(payload(type=6, message_reference=REPLY_REF))
    assert pin_notice.reply_to_id is None, "only replies (type 19) reply"
    forward = message_from_payload(
        payload(
            content="",
            message_reference={**REPLY_REF, "type": 1},
            message_snapshots=[
                {"message": {"content": "original words", "attachments": [ATTACHMENT]}}
            ],
        )
    )
    assert forward.reply_to_id is None
    assert forward.content == (
        "[Forwarded message]\noriginal words\n[Attachment: https://cdn.example/cat.png]"
    )
    poll = message_from_payload(payload(content="", poll={"question": {"text": "Tea?"}}))
    assert poll.content == "[Poll: Tea?]"


def test_payload_edit_time_is_parsed() -> None:
    m = message_from_payload(payload(edited_timestamp="2024-01-02T03:04:05.678000+00:00"))
    assert m.edited_at == dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "bad",
    [
        {"id": None},
        {"id": "not-a-number"},
        {"id": "0"},
        {"id": str(2**64)},
        {"channel_id": None},
        {"author": None},
        {"author": {"username": "no id"}},
        {"attachments": "nope"},
        {"attachments": ["nope"]},
        {"edited_timestamp": "yesterday"},
        {"edited_timestamp": 5},
    ],
)
def test_malformed_payloads_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        message_from_payload(payload(**bad))


def test_not_a_payload_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        message_from_payload(["not", "a", "dict"])  # type: ignore[arg-type]


def test_summarize_content_without_text() -> None:
    assert summarize_content("") == ""
    assert summarize_content("", embeds_count=1) == "[Embed: 1 embed(s)]"


# --- real discord.py objects -------------------------------------------------------------


@pytest_asyncio.fixture
async def state() -> AsyncIterator[ConnectionState]:
    http = HTTPClient(asyncio.get_running_loop())
    try:
        yield ConnectionState(dispatch=lambda *a, **k: None, handlers={}, hooks={}, http=http)
    finally:
        await http.close()


def guild_and_channel(state: ConnectionState) -> tuple[discord.Guild, discord.TextChannel]:
    guild = discord.Guild(
        data={"id": "10", "name": "g", "roles": [], "emojis": [], "stickers": [], "features": []},  # type: ignore[typeddict-item]
        state=state,
    )
    channel = discord.TextChannel(
        state=state,
        guild=guild,
        data={
            "id": "20",
            "type": 0,
            "name": "general",
            "position": 0,
            "guild_id": "10",
            "permission_overwrites": [],
        },  # type: ignore[typeddict-item]
    )
    return guild, channel


async def test_discord_message_in_a_guild(state: ConnectionState) -> None:
    _, channel = guild_and_channel(state)
    data = payload(
        type=19,
        message_reference=REPLY_REF,
        attachments=[ATTACHMENT],
        embeds=[{"type": "rich", "title": "t"}],
        sticker_items=[{"id": "5", "name": "wave", "format_type": 1}],
        edited_timestamp="2024-01-02T03:04:05+00:00",
    )
    m = message_from_discord(discord.Message(state=state, channel=channel, data=data))  # type: ignore[arg-type]
    assert (m.message_id, m.channel_id, m.guild_id, m.author_id) == (MID, 20, 10, 30)
    assert m.author_name == "Ann" and m.reply_to_id == REPLIED and m.embeds_count == 1
    assert m.edited_at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert m.content == (
        "hello\n[Attachment: https://cdn.example/cat.png]\n[Sticker: wave]\n[Embed: 1 embed(s)]"
    )
    assert m == message_from_payload(data, guild_id=10), "both converters agree"


async def test_discord_member_nickname_is_the_author_name(state: ConnectionState) -> None:
    guild, channel = guild_and_channel(state)
    member = discord.Member(
        data={  # type: ignore[typeddict-item]
            "user": payload()["author"],
            "nick": "Annie",
            "roles": [],
            "joined_at": "2020-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
        },
        guild=guild,
        state=state,
    )
    guild._add_member(member)
    m = message_from_discord(discord.Message(state=state, channel=channel, data=payload()))  # type: ignore[arg-type]
    assert m.author_name == "Annie"


async def test_discord_dm_has_no_guild(state: ConnectionState) -> None:
    me = discord.ClientUser(state=state, data={**payload()["author"], "id": "99", "verified": True})  # type: ignore[typeddict-item]
    state.user = me
    dm = discord.DMChannel(
        me=me, state=state, data={"id": "20", "type": 1, "recipients": [payload()["author"]]}
    )  # type: ignore[typeddict-item]
    data = payload(content="", attachments=[ATTACHMENT])
    m = message_from_discord(discord.Message(state=state, channel=dm, data=data))  # type: ignore[arg-type]
    assert m.guild_id is None and m.channel_id == 20
    assert m.content == "[Attachment: https://cdn.example/cat.png]"


async def test_discord_forward_and_poll(state: ConnectionState) -> None:
    _, channel = guild_and_channel(state)
    data = payload(
        content="",
        message_reference={**REPLY_REF, "type": 1},
        message_snapshots=[{"message": {**payload(content="fwd"), "attachments": [ATTACHMENT]}}],
    )
    m = message_from_discord(discord.Message(state=state, channel=channel, data=data))  # type: ignore[arg-type]
    assert m.content == "[Forwarded message]\nfwd\n[Attachment: https://cdn.example/cat.png]"
    assert m.reply_to_id is None


# --- the emulator's history through the real discord.py ----------------------------------


async def test_emulated_history_is_stored_as_discord_has_it(db: Database) -> None:
    spec = EmulatorSpec(
        seed=11,
        channels=2,
        messages_per_channel=300,
        hostile_text=True,
        hostile_rate=0.05,
        rate_limits=False,
    )
    store = MessageStore(db)
    async with DiscordEmulator(spec) as emu:
        truth = emu.truth()
        async with logged_in_client(emu.base_url, emu.token) as client:
            for channel_id in emu.channel_ids():
                channel = await client.fetch_channel(channel_id)
                assert isinstance(channel, discord.TextChannel)
                page: list[discord.Message] = []
                async for message in channel.history(limit=None):  # newest first
                    page.append(message)
                    if len(page) == 100:
                        stored = [message_from_discord(m) for m in page]
                        await store.store_batch_and_advance(
                            channel_id, stored, before_id=min(s.message_id for s in stored)
                        )
                        page = []
                if page:
                    stored = [message_from_discord(m) for m in page]
                    await store.store_batch_and_advance(channel_id, stored)
    sanitized = 0
    for channel_id, records in truth.items():
        assert await store.count(channel_id) == len(records)
        cached = {m.message_id: m async for m in store.iter_channel(channel_id)}
        assert list(cached) == [r["id"] for r in records]
        for r in records:
            got = cached[r["id"]]
            expected = summarize_content(
                r["content"],
                attachment_urls=[a["url"] for a in r["attachments"]],
                embeds_count=len(r["embeds"]),
            )
            clean, replaced = sanitize_text(expected)
            assert got.content == clean
            sanitized += replaced > 0
            assert got.reply_to_id == r["reply_to"]
            assert got.author_is_bot == r["author_bot"]
            assert got.created_at == dt.datetime.fromisoformat(r["timestamp"])
            edited = r["edited_timestamp"]
            assert got.edited_at == (None if edited is None else dt.datetime.fromisoformat(edited))
    assert sanitized > 0, "the emulator's hostile text reached the store"
