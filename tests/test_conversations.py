"""Conformance tests of barkeeper.conversations.ConversationStore, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barkeeper.companion import UserStore
from barkeeper.config import Settings
from barkeeper.conversations import (
    DEFAULT_RESOURCE_ID,
    MAX_CONTENT_CHARS,
    Conversation,
    ConversationMessage,
    ConversationStore,
)
from barkeeper.conversations._store import _START_LOCK
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError

T0 = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
async def alice(db: Database) -> int:
    return (await UserStore(db).get_or_create_discord_user(101, username="alice")).id


@pytest.fixture
async def bob(db: Database) -> int:
    return (await UserStore(db).get_or_create_discord_user(102, username="bob")).id


async def _rows(db: Database, conversation_id: str) -> list[Any]:
    async with db.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT * FROM conversation_messages WHERE conversation_id = $1 "
                "ORDER BY created_at, id",
                conversation_id,
            )
        )


async def _set_times(db: Database, conversation_id: str, **times: datetime) -> None:
    """Move a conversation's timestamps (tests of ordering need distinct, known times)."""
    async with db.acquire() as conn:
        for column, value in times.items():
            assert column in {"created_at", "updated_at", "last_message_at"}
            await conn.execute(
                f"UPDATE conversations SET {column} = $2 WHERE id = $1",  # noqa: S608 - test constant
                conversation_id,
                value,
            )


# --- conversations -------------------------------------------------------------------------


async def test_create_get_update_delete(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(
        alice, resource_id="helper", title="Tea", guild_id=5, channel_id=6
    )
    assert len(conv.id) == 36, "a UUID when no id is given"
    assert (conv.user_id, conv.resource_id, conv.title) == (alice, "helper", "Tea")
    assert (conv.guild_id, conv.channel_id, conv.metadata) == (5, 6, {})
    assert (conv.message_count, conv.is_active) == (0, True)
    assert await store.get_conversation(conv.id) == conv
    named = await store.create_conversation(alice, conversation_id="conversation-456")
    assert named.id == "conversation-456"
    assert named.resource_id == "barkeeper"

    retitled = await store.update_conversation(conv.id, title="Herbal tea", user_id=alice)
    assert (retitled.title, retitled.metadata) == ("Herbal tea", {})
    assert retitled.updated_at > conv.updated_at
    meta = await store.update_conversation(conv.id, metadata={"preview": "rooibos"}, user_id=alice)
    assert (meta.title, meta.metadata) == ("Herbal tea", {"preview": "rooibos"})
    cleared = await store.update_conversation(conv.id, title=None, metadata={}, user_id=alice)
    assert (cleared.title, cleared.metadata) == (None, {})
    with pytest.raises(InvalidInputError):
        await store.update_conversation(conv.id, user_id=alice)
    with pytest.raises(NotFoundError):
        await store.update_conversation("missing", title="x", user_id=alice)

    await store.add_message(conv.id, "user", "hi", user_id=alice)
    assert await store.delete_conversation(conv.id, user_id=alice) is True
    assert await store.delete_conversation(conv.id, user_id=alice) is False
    assert await store.get_conversation(conv.id) is None
    assert await _rows(db, conv.id) == [], "messages go with their conversation"
    assert await store.get_conversation("conversation-456") == named


async def test_create_errors_keep_nothing(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    first = await store.create_conversation(alice, conversation_id="c1", title="kept")
    with pytest.raises(InvalidInputError, match="already taken"):
        await store.create_conversation(alice, conversation_id="c1", title="other")
    assert await store.get_conversation("c1") == first
    with pytest.raises(NotFoundError):
        await store.create_conversation(alice + 1000)
    for bad in ("", "a\x00b", "x" * 256):
        with pytest.raises(InvalidInputError):
            await store.create_conversation(alice, conversation_id=bad)
    with pytest.raises(InvalidInputError):
        await store.create_conversation(alice, resource_id="")
    with pytest.raises(InvalidInputError):
        await store.create_conversation(alice, channel_id=0)
    assert await store.count_user_conversations(alice) == 1


@pytest.mark.parametrize(
    "metadata",
    [
        {"emoji": "🍺", "rtl": "مرحبا", "zwj": "👩\u200d👩\u200d👧", "nul_escape": "\\u0000"},
        {"nested": {"deep": [1, 2.5, None, True, {"k": ["v", {"x": "ÿ"}]}]}, "n": -(2**53)},
        {"": "empty key", "quote'\"": "sql'; DROP TABLE users; --"},
    ],
)
async def test_metadata_round_trips(db: Database, alice: int, metadata: dict[str, Any]) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice, metadata=metadata)
    assert conv.metadata == metadata
    assert (await store.get_conversation(conv.id)).metadata == metadata  # type: ignore[union-attr]
    updated = await store.update_conversation(conv.id, metadata={"again": metadata}, user_id=alice)
    assert updated.metadata == {"again": metadata}


@pytest.mark.parametrize(
    "bad",
    [
        {"a": "x\x00y"},
        {"a\x00": 1},
        {"a": "\udc80"},
        {"a": float("inf")},
        {"a": float("nan")},
        {1: "int key"},
        {"a": datetime.now(UTC)},
        {"a": b"bytes"},
        ["not", "an", "object"],
    ],
)
async def test_bad_metadata_is_refused_and_nothing_changes(
    db: Database, alice: int, bad: Any
) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice, metadata={"kept": 1})
    with pytest.raises(InvalidInputError):
        await store.create_conversation(alice, metadata=bad)
    with pytest.raises(InvalidInputError):
        await store.update_conversation(conv.id, title="new", metadata=bad, user_id=alice)
    assert await store.get_conversation(conv.id) == conv
    assert await store.count_user_conversations(alice) == 1


async def test_too_deep_metadata_is_refused(db: Database, alice: int) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidInputError, match="deeper"):
        await ConversationStore(db).create_conversation(alice, metadata=deep)


async def test_title_is_free_text(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice, title="a\x00b")
    assert conv.title == "a\ufffdb"
    with pytest.raises(InvalidInputError):
        await store.create_conversation(alice, title="x" * 1001)


# --- messages ------------------------------------------------------------------------------


async def test_add_message_stores_every_field(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    msg = await store.add_message(
        conv.id,
        "user",
        "look at this",
        type="text",
        message_id="m-1",
        user_id=alice,
        discord_message_id=1234567890123,
        token_count=4,
        image_urls=["https://cdn.example/cat.png"],
    )
    assert (msg.conversation_id, msg.message_id, msg.user_id) == (conv.id, "m-1", alice)
    assert (msg.role, msg.type, msg.content) == ("user", "text", "look at this")
    assert (msg.discord_message_id, msg.token_count) == (1234567890123, 4)
    assert (msg.has_images, msg.image_urls) == (True, ["https://cdn.example/cat.png"])
    tool = await store.add_message_unchecked(conv.id, "tool", "", type="tool-result")
    assert (tool.user_id, tool.has_images, tool.image_urls, tool.content) == (None, False, [], "")
    assert len(tool.message_id) == 36
    assert await store.get_messages(conv.id, user_id=alice) == [msg, tool]
    after = await store.get_conversation(conv.id)
    assert after is not None
    assert after.message_count == 2
    assert after.last_message_at == tool.created_at == after.updated_at


async def test_bad_messages_are_refused_and_nothing_is_stored(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    await store.add_message(conv.id, "user", "first", message_id="dup", user_id=alice)
    calls: list[dict[str, Any]] = [
        {"role": "moderator"},
        {"role": "USER"},
        {"role": "user", "message_id": "dup"},
        {"role": "user", "type": ""},
        {"role": "user", "message_id": "a\x00"},
        {"role": "user", "token_count": -1},
        {"role": "user", "discord_message_id": 0},
        {"role": "user", "image_urls": "https://one.string"},
        {"role": "user", "image_urls": ["ok", "bad\x00"]},
    ]
    for kwargs in calls:
        role = kwargs.pop("role")
        with pytest.raises(InvalidInputError):
            await store.add_message(conv.id, role, "x", **kwargs, user_id=alice)
    with pytest.raises(InvalidInputError):
        await store.add_message(conv.id, "user", 42, user_id=alice)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await store.add_message("missing", "user", "x", user_id=alice)
    assert [r["content"] for r in await _rows(db, conv.id)] == ["first"]
    assert (await store.get_conversation(conv.id)).message_count == 1  # type: ignore[union-attr]


async def test_nul_bytes_and_lone_surrogates_in_content_are_replaced(
    db: Database, alice: int
) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    msg = await store.add_message(conv.id, "user", "a\x00b\x00\udc80c", user_id=alice)
    assert msg.content == "a\ufffdb\ufffd\ufffdc"
    assert (await store.get_messages(conv.id, user_id=alice))[0].content == "a\ufffdb\ufffd\ufffdc"


async def test_unicode_content_round_trips(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    text = "Zoë 🍺 — 名前 \u200d\U0001f469\u200d\U0001f467 e\u0301 \t\r\n '; DROP TABLE x; --"
    await store.add_message(conv.id, "user", text, user_id=alice)
    assert (await store.get_messages(conv.id, user_id=alice))[0].content == text


async def test_huge_content(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    big = "é" * MAX_CONTENT_CHARS
    await store.add_message(conv.id, "assistant", big, user_id=alice)
    assert (await store.get_messages(conv.id, user_id=alice))[0].content == big
    with pytest.raises(InvalidInputError, match="at most"):
        await store.add_message(conv.id, "assistant", big + "!", user_id=alice)
    assert await store.count_messages(conv.id, user_id=alice) == 1
    small = ConversationStore(db, max_content_chars=10)
    with pytest.raises(InvalidInputError):
        await small.add_message(conv.id, "user", "x" * 11, user_id=alice)


# --- the storage limit ---------------------------------------------------------------------


async def test_storage_limit_keeps_the_newest(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=5)
    conv = await store.create_conversation(alice)
    other = await store.create_conversation(alice)
    await store.add_message(other.id, "user", "untouched", user_id=alice)
    added = [await store.add_message(conv.id, "user", f"m{i}", user_id=alice) for i in range(12)]
    kept = await store.get_messages(conv.id, user_id=alice)
    assert kept == added[-5:]
    current = await store.get_conversation(conv.id)
    assert current is not None
    assert current.message_count == 5 == await store.count_messages(conv.id, user_id=alice)
    assert current.last_message_at == added[-1].created_at
    assert [m.content for m in await store.get_messages(other.id, user_id=alice)] == ["untouched"]


async def test_storage_limit_of_one(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=1)
    conv = await store.create_conversation(alice)
    for i in range(3):
        last = await store.add_message(conv.id, "user", f"m{i}", user_id=alice)
    assert await store.get_messages(conv.id, user_id=alice) == [last]


async def test_zero_storage_limit_keeps_everything(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=0)
    conv = await store.create_conversation(alice)
    for i in range(150):
        await store.add_message(conv.id, "user", f"m{i}", user_id=alice)
    assert await store.count_messages(conv.id, user_id=alice) == 150
    assert (await store.get_conversation(conv.id)).message_count == 150  # type: ignore[union-attr]


async def test_concurrent_adds_never_exceed_the_limit(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=10)
    conv = await store.create_conversation(alice)
    added = await asyncio.gather(
        *(store.add_message(conv.id, "user", f"m{i}", user_id=alice) for i in range(50))
    )
    assert len({m.id for m in added}) == 50
    newest = sorted(added, key=lambda m: (m.created_at, m.id))[-10:]
    assert await store.get_messages(conv.id, user_id=alice) == newest
    assert await store.count_messages(conv.id, user_id=alice) == 10
    assert (await store.get_conversation(conv.id)).message_count == 10  # type: ignore[union-attr]
    # Insertion order under the lock is also time order: ids grow with created_at.
    assert [m.id for m in newest] == sorted(m.id for m in newest)


async def test_concurrent_adds_from_two_pools(db: Database, settings: Settings, alice: int) -> None:
    """Two processes' worth of connections adding to one conversation at once."""
    other = await Database.open(
        settings, url=db.url.dsn(), schema=db.schema, min_size=1, max_size=8
    )
    try:
        first, second = (
            ConversationStore(db, storage_limit=7),
            ConversationStore(other, storage_limit=7),
        )
        conv = await first.create_conversation(alice)
        added = await asyncio.gather(
            *(
                (first if i % 2 else second).add_message(conv.id, "user", f"m{i}", user_id=alice)
                for i in range(60)
            )
        )
    finally:
        await other.close()
    newest = sorted(added, key=lambda m: (m.created_at, m.id))[-7:]
    assert await first.get_messages(conv.id, user_id=alice) == newest
    assert (await first.get_conversation(conv.id)).message_count == 7  # type: ignore[union-attr]


async def test_delete_message_and_clear_keep_the_count(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=3)
    conv = await store.create_conversation(alice)
    for i in range(3):
        await store.add_message(conv.id, "user", f"m{i}", message_id=f"id{i}", user_id=alice)
    assert await store.delete_message(conv.id, "id1", user_id=alice) is True
    assert await store.delete_message(conv.id, "id1", user_id=alice) is False
    assert (await store.get_conversation(conv.id)).message_count == 2  # type: ignore[union-attr]
    await store.add_message(conv.id, "user", "m3", message_id="id3", user_id=alice)
    assert [m.content for m in await store.get_messages(conv.id, user_id=alice)] == [
        "m0",
        "m2",
        "m3",
    ], "after a delete the limit is not reached yet: nothing is trimmed"
    assert await store.clear_messages(conv.id, user_id=alice) == 3
    assert await store.get_messages(conv.id, user_id=alice) == []
    assert (await store.get_conversation(conv.id)).message_count == 0  # type: ignore[union-attr]
    await store.add_message(conv.id, "user", "fresh", user_id=alice)
    assert await store.count_messages(conv.id, user_id=alice) == 1


# --- reading messages ----------------------------------------------------------------------


async def test_get_messages_filters(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=0)
    conv = await store.create_conversation(alice)
    roles = ["system", "user", "assistant", "tool"] * 3
    added = [
        await store.add_message(conv.id, r, f"m{i}", user_id=alice) for i, r in enumerate(roles)
    ]
    assert await store.get_messages(conv.id, user_id=alice) == added
    assert await store.get_messages(conv.id, limit=3, user_id=alice) == added[:3]
    assert await store.get_messages(conv.id, limit=3, offset=10, user_id=alice) == added[10:]
    assert await store.get_messages(conv.id, offset=12, user_id=alice) == []
    assert await store.get_messages(conv.id, before=added[4].created_at, user_id=alice) == added[:4]
    assert await store.get_messages(conv.id, after=added[9].created_at, user_id=alice) == added[10:]
    assert (
        await store.get_messages(
            conv.id,
            user_id=alice,
            after=added[2].created_at,
            before=added[7].created_at,
            limit=2,
            offset=1,
        )
        == added[4:6]
    )
    assert await store.get_messages(conv.id, roles=["user", "tool"], user_id=alice) == [
        m for m in added if m.role in ("user", "tool")
    ]
    assert await store.get_messages(conv.id, roles=[], user_id=alice) == []
    assert await store.get_messages("missing", user_id=alice) == []
    assert await store.get_recent_messages(conv.id, 3, user_id=alice) == added[-3:]
    assert (
        await store.get_recent_messages(conv.id, 2, before=added[5].created_at, user_id=alice)
        == added[3:5]
    )
    assert await store.get_recent_messages(conv.id, 0, user_id=alice) == []
    assert await store.get_recent_messages(conv.id, 100, user_id=alice) == added


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 10_001},
        {"offset": -1},
        {"limit": True},
        {"roles": ["owner"]},
        {"before": datetime(2025, 1, 1)},
        {"after": "2025-01-01"},
    ],
)
async def test_get_messages_refuses_bad_arguments(
    db: Database, alice: int, kwargs: dict[str, Any]
) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    with pytest.raises(InvalidInputError):
        await store.get_messages(conv.id, **kwargs, user_id=alice)


@pytest.mark.parametrize(("count", "page_size"), [(0, 3), (9, 3), (10, 3), (2, 100)])
async def test_iter_messages_pages_through_all(
    db: Database, alice: int, count: int, page_size: int
) -> None:
    store = ConversationStore(db, storage_limit=0)
    conv = await store.create_conversation(alice)
    added = [await store.add_message(conv.id, "user", f"m{i}", user_id=alice) for i in range(count)]
    seen = [m async for m in store.iter_messages(conv.id, page_size=page_size, user_id=alice)]
    assert seen == added


async def test_iter_messages_is_stable_while_the_limit_trims(db: Database, alice: int) -> None:
    store = ConversationStore(db, storage_limit=6)
    conv = await store.create_conversation(alice)
    for i in range(6):
        await store.add_message(conv.id, "user", f"m{i}", user_id=alice)
    seen: list[ConversationMessage] = []
    async for message in store.iter_messages(conv.id, page_size=2, user_id=alice):
        seen.append(message)
        if len(seen) == 2:  # two new messages trim m0 and m1, already read
            await store.add_message(conv.id, "user", "m6", user_id=alice)
            await store.add_message(conv.id, "user", "m7", user_id=alice)
    contents = [m.content for m in seen]
    # Offset paging would have jumped to offset 2 = m4, skipping m2 and m3.
    assert contents == [f"m{i}" for i in range(8)], "no message seen twice or skipped"


# --- user-centric queries ------------------------------------------------------------------


async def _three_conversations(store: ConversationStore, db: Database, user: int) -> list[str]:
    """Conversations whose created/updated/title orders all differ."""
    a = await store.create_conversation(user, conversation_id="a", title="Banana")
    b = await store.create_conversation(user, conversation_id="b", title="apple")
    c = await store.create_conversation(user, conversation_id="c", title=None)
    await _set_times(db, a.id, created_at=T0, updated_at=T0 + timedelta(hours=2))
    await _set_times(db, b.id, created_at=T0 + timedelta(hours=1), updated_at=T0)
    await _set_times(
        db, c.id, created_at=T0 + timedelta(hours=2), updated_at=T0 + timedelta(hours=1)
    )
    return ["a", "b", "c"]


@pytest.mark.parametrize(
    ("order_by", "direction", "expected"),
    [
        ("created_at", "asc", ["a", "b", "c"]),
        ("created_at", "desc", ["c", "b", "a"]),
        ("updated_at", "asc", ["b", "c", "a"]),
        ("updated_at", "desc", ["a", "c", "b"]),
        ("title", "asc", []),  # computed in the test: the collation decides
        ("title", "desc", []),
        ("updated_at", "DESC", ["a", "c", "b"]),
    ],
)
async def test_list_user_conversations_orders(
    db: Database, alice: int, bob: int, order_by: str, direction: str, expected: list[str]
) -> None:
    store = ConversationStore(db)
    await _three_conversations(store, db, alice)
    await store.create_conversation(bob, conversation_id="bob's", title="aaa")
    if order_by == "title":
        async with db.acquire() as conn:
            titles = [
                r[0]
                for r in await conn.fetch(
                    "SELECT title FROM conversations WHERE user_id = $1 ORDER BY title NULLS LAST",
                    alice,
                )
            ]
        # The server's collation decides between "apple" and "Banana"; NULL is last asc.
        by_title = {"Banana": "a", "apple": "b", None: "c"}
        ascending = [by_title[t] for t in titles]
        expected = ascending if direction == "asc" else ascending[::-1]
    got = await store.list_user_conversations(alice, order_by=order_by, direction=direction)  # type: ignore[arg-type]
    assert [c.id for c in got] == expected


async def test_list_user_conversations_ties_are_broken_by_id(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    for cid in ("x2", "x1", "x3"):
        await store.create_conversation(alice, conversation_id=cid)
        await _set_times(db, cid, created_at=T0, updated_at=T0)
    asc = await store.list_user_conversations(alice, order_by="created_at", direction="asc")
    desc = await store.list_user_conversations(alice, order_by="updated_at", direction="desc")
    assert [c.id for c in asc] == ["x1", "x2", "x3"]
    assert [c.id for c in desc] == ["x3", "x2", "x1"]


@pytest.mark.parametrize(
    ("order_by", "direction"),
    [
        ("title; DROP TABLE users; --", "asc"),
        ("created_at", "asc; DELETE FROM conversations"),
        ("id", "asc"),
        ("user_id", "desc"),
        ("created_at", "sideways"),
        ("(SELECT 1)", "asc"),
        (None, "asc"),
        ("created_at", 1),
    ],
)
async def test_order_by_injection_is_refused(
    db: Database, alice: int, order_by: Any, direction: Any
) -> None:
    store = ConversationStore(db)
    await store.create_conversation(alice)
    with pytest.raises(InvalidInputError, match="cannot order"):
        await store.list_user_conversations(alice, order_by=order_by, direction=direction)
    with pytest.raises(InvalidInputError, match="cannot order"):
        await store.query_conversations(order_by=order_by, direction=direction)
    with pytest.raises(InvalidInputError, match="cannot order"):
        await store.get_user_conversations_page(alice, order_by=order_by, direction=direction)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users") == 1
        assert await conn.fetchval("SELECT count(*) FROM conversations") == 1


async def test_list_filters_limit_offset(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    for i in range(5):
        conv = await store.create_conversation(
            alice, conversation_id=f"w{i}", resource_id="work-agent"
        )
        await _set_times(db, conv.id, updated_at=T0 + timedelta(minutes=i))
    await store.create_conversation(alice, conversation_id="home", resource_id="home-agent")
    await _set_times(db, "home", updated_at=T0 - timedelta(days=1))
    await store.create_conversation(bob, conversation_id="bob", resource_id="work-agent")
    work = await store.list_user_conversations(alice, resource_id="work-agent")
    assert [c.id for c in work] == ["w4", "w3", "w2", "w1", "w0"]
    mine = await store.list_user_conversations(alice, limit=2, offset=4)
    assert [c.id for c in mine] == ["w0", "home"]
    assert await store.list_user_conversations(alice, offset=6) == []
    assert await store.list_user_conversations(alice, resource_id="nobody") == []
    assert all(c.user_id == alice for c in await store.list_user_conversations(alice))
    assert await store.count_user_conversations(alice) == 6
    assert await store.count_user_conversations(alice, "work-agent") == 5
    assert await store.count_user_conversations(bob) == 1
    with pytest.raises(InvalidInputError):
        await store.list_user_conversations(alice, limit=0)
    with pytest.raises(InvalidInputError):
        await store.list_user_conversations(alice, offset=-1)


async def test_query_conversations_admin_view(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    await store.create_conversation(alice, conversation_id="a1", resource_id="work")
    await store.create_conversation(alice, conversation_id="a2", resource_id="chat")
    await store.create_conversation(bob, conversation_id="b1", resource_id="work")
    for i, cid in enumerate(["a1", "a2", "b1"]):
        await _set_times(db, cid, created_at=T0 + timedelta(minutes=i))
    everything = await store.query_conversations(order_by="created_at", direction="asc")
    assert [c.id for c in everything] == ["a1", "a2", "b1"]
    work = await store.query_conversations(resource_id="work", order_by="created_at")
    assert [c.id for c in work] == ["b1", "a1"]
    alices_work = await store.query_conversations(user_id=alice, resource_id="work")
    assert [c.id for c in alices_work] == ["a1"]
    assert [c.id for c in await store.query_conversations(user_id=bob)] == ["b1"]
    third = await store.query_conversations(
        limit=1, offset=2, order_by="created_at", direction="asc"
    )
    assert [c.id for c in third] == ["b1"]


async def test_pages(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    empty = await store.get_user_conversations_page(alice, 1, 3)
    assert (empty.items, empty.has_more, empty.page, empty.page_size) == ([], False, 1, 3)
    for i in range(6):
        await store.create_conversation(alice, conversation_id=f"c{i}")
        await _set_times(db, f"c{i}", updated_at=T0 + timedelta(minutes=i))
    await store.create_conversation(bob)
    one = await store.get_user_conversations_page(alice, 1, 3)
    two = await store.get_user_conversations_page(alice, 2, 3)
    three = await store.get_user_conversations_page(alice, 3, 3)
    assert ([c.id for c in one.items], one.has_more) == (["c5", "c4", "c3"], True)
    assert ([c.id for c in two.items], two.has_more) == (["c2", "c1", "c0"], False), (
        "an exact multiple of the page size: the last full page has no more"
    )
    assert (three.items, three.has_more) == ([], False)
    uneven = await store.get_user_conversations_page(alice, 2, 4)
    assert ([c.id for c in uneven.items], uneven.has_more) == (["c1", "c0"], False)
    whole = await store.get_user_conversations_page(alice, 1, 6)
    assert (len(whole.items), whole.has_more) == (6, False)
    almost = await store.get_user_conversations_page(alice, 1, 5)
    assert (len(almost.items), almost.has_more) == (5, True)
    for page, size in ((0, 3), (1, 0), (-1, 3)):
        with pytest.raises(InvalidInputError):
            await store.get_user_conversations_page(alice, page, size)


async def test_iter_user_conversations(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    made = []
    for i in range(7):
        conv = await store.create_conversation(alice, conversation_id=f"c{i}")
        made.append(conv.id)
    await _set_times(db, "c3", created_at=T0)
    await store.create_conversation(bob)
    seen = [c.id async for c in store.iter_user_conversations(alice, page_size=2)]
    assert seen == ["c3", "c0", "c1", "c2", "c4", "c5", "c6"]
    assert [c async for c in store.iter_user_conversations(alice + bob + 1)] == []


# --- ownership -----------------------------------------------------------------------------


async def test_another_user_cannot_reach_a_conversation(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice, title="private")
    await store.add_message(conv.id, "user", "secret", user_id=alice, message_id="m1")
    assert await store.get_user_conversation(conv.id, alice) is not None
    assert await store.get_user_conversation(conv.id, bob) is None
    assert await store.get_user_conversation("missing", bob) is None

    with pytest.raises(NotFoundError) as wrong_owner:
        await store.update_conversation(conv.id, title="mine now", user_id=bob)
    with pytest.raises(NotFoundError) as missing:
        await store.update_conversation("missing", title="x", user_id=bob)
    assert str(wrong_owner.value).replace(conv.id, "?") == str(missing.value).replace(
        "missing", "?"
    ), "the error does not tell 'someone else's' from 'does not exist'"
    assert await store.delete_conversation(conv.id, user_id=bob) is False
    with pytest.raises(NotFoundError):
        await store.add_message(conv.id, "user", "injected", user_id=bob)
    assert await store.get_messages(conv.id, user_id=bob) == []
    assert await store.get_recent_messages(conv.id, 5, user_id=bob) == []
    assert [m async for m in store.iter_messages(conv.id, user_id=bob)] == []
    assert await store.count_messages(conv.id, user_id=bob) == 0
    assert await store.delete_message(conv.id, "m1", user_id=bob) is False
    assert await store.clear_messages(conv.id, user_id=bob) == 0
    assert await store.list_user_conversations(bob) == []
    assert await store.count_user_conversations(bob) == 0

    after = await store.get_conversation(conv.id)
    assert after is not None
    assert (after.title, after.message_count) == ("private", 1)
    assert [m.content for m in await store.get_messages(conv.id, user_id=alice)] == ["secret"]
    updated = await store.update_conversation(conv.id, title="still mine", user_id=alice)
    assert updated.title == "still mine"
    assert await store.delete_conversation(conv.id, user_id=alice) is True


@pytest.mark.parametrize(
    "method",
    [
        "update_conversation",
        "delete_conversation",
        "add_message",
        "get_messages",
        "get_recent_messages",
        "iter_messages",
        "count_messages",
        "delete_message",
        "clear_messages",
    ],
)
def test_the_owner_check_cannot_be_left_out(method: str) -> None:
    """``user_id`` is keyword-only and required: forgetting it is a TypeError, not a bypass."""
    parameter = inspect.signature(getattr(ConversationStore, method)).parameters["user_id"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty
    assert parameter.annotation in ("int", int)


async def test_the_unchecked_add_is_for_what_the_system_writes(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.create_conversation(alice)
    asked = await store.add_message(conv.id, "user", "which tea?", user_id=alice)
    reply = await store.add_message_unchecked(conv.id, "assistant", "Rooibos.")
    assert (asked.user_id, reply.user_id) == (alice, None)
    with pytest.raises(InvalidInputError, match="add_message"):
        await store.add_message_unchecked(conv.id, "user", "not mine")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await store.add_message_unchecked("missing", "assistant", "x")
    messages = await store.get_messages(conv.id, user_id=alice)
    assert [m.content for m in messages] == ["which tea?", "Rooibos."]


async def test_user_counts_and_deletion(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    for _ in range(3):
        conv = await store.create_conversation(alice)
        await store.add_message(conv.id, "user", "x", user_id=alice)
        await store.add_message_unchecked(conv.id, "assistant", "y")
    kept = await store.create_conversation(bob)
    await store.add_message(kept.id, "user", "z", user_id=bob)
    assert await store.count_user_messages(alice) == 6
    assert await store.delete_user_conversations(alice) == 3
    assert await store.count_user_conversations(alice) == 0
    assert await store.count_user_messages(alice) == 0
    assert await store.count_user_messages(bob) == 1


# --- Loyal Companion's timeout rule --------------------------------------------------------


async def test_timeout_rule_with_injected_time(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    first = await store.get_or_start_conversation(alice, channel_id=7, guild_id=8, now=T0)
    assert (first.started_at, first.last_message_at, first.channel_id, first.guild_id) == (
        T0,
        T0,
        7,
        8,
    )
    same = await store.get_or_start_conversation(
        alice, channel_id=7, now=T0 + timedelta(minutes=60)
    )
    assert same.id == first.id, "exactly at the timeout it is still the same conversation"
    later = await store.get_or_start_conversation(
        alice, channel_id=7, now=T0 + timedelta(minutes=60, seconds=1)
    )
    assert later.id != first.id
    assert later.is_active and later.started_at == T0 + timedelta(minutes=60, seconds=1)
    old = await store.get_conversation(first.id)
    assert old is not None
    assert old.is_active is False
    assert old.updated_at == first.updated_at, "closing a conversation is not activity"
    async with db.acquire() as conn:
        active = await conn.fetchval(
            "SELECT count(*) FROM conversations WHERE user_id = $1 AND is_active", alice
        )
    assert active == 1


async def test_timeout_counts_from_the_last_message(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    conv = await store.get_or_start_conversation(alice, channel_id=7)
    message = await store.add_message(conv.id, "user", "still here", user_id=alice)
    soon = message.created_at + timedelta(minutes=59)
    assert (await store.get_or_start_conversation(alice, channel_id=7, now=soon)).id == conv.id
    late = message.created_at + timedelta(minutes=61)
    assert (await store.get_or_start_conversation(alice, channel_id=7, now=late)).id != conv.id


async def test_timeout_is_configurable(db: Database, settings: Settings, alice: int) -> None:
    quick = ConversationStore(db, timeout=timedelta(minutes=5))
    first = await quick.get_or_start_conversation(alice, channel_id=7, now=T0)
    again = await quick.get_or_start_conversation(
        alice, channel_id=7, now=T0 + timedelta(minutes=6)
    )
    assert again.id != first.id
    configured = ConversationStore.from_settings(
        db, settings.model_copy(update={"conversation_timeout_minutes": 90.0, "storage_limit": 3})
    )
    assert (configured.timeout, configured.storage_limit) == (timedelta(minutes=90), 3)
    with pytest.raises(InvalidInputError):
        ConversationStore(db, timeout=timedelta(0))
    with pytest.raises(InvalidInputError):
        ConversationStore(db, storage_limit=-1)


async def test_conversations_are_per_channel_user_and_agent(
    db: Database, alice: int, bob: int
) -> None:
    store = ConversationStore(db)
    base = await store.get_or_start_conversation(alice, channel_id=7, now=T0)
    others = [
        await store.get_or_start_conversation(alice, channel_id=8, now=T0),
        await store.get_or_start_conversation(bob, channel_id=7, now=T0),
        await store.get_or_start_conversation(alice, channel_id=7, resource_id="other", now=T0),
    ]
    assert len({base.id, *(c.id for c in others)}) == 4
    assert (await store.get_or_start_conversation(alice, channel_id=7, now=T0)).id == base.id


async def test_concurrent_starts_make_one_conversation(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    started = await asyncio.gather(
        *(store.get_or_start_conversation(alice, channel_id=7) for _ in range(20))
    )
    assert len({c.id for c in started}) == 1
    assert await store.count_user_conversations(alice) == 1


async def test_concurrent_restarts_after_the_timeout(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    old = await store.get_or_start_conversation(alice, channel_id=7, now=T0)
    later = T0 + timedelta(hours=3)
    started = await asyncio.gather(
        *(store.get_or_start_conversation(alice, channel_id=7, now=later) for _ in range(20))
    )
    assert len({c.id for c in started}) == 1
    assert started[0].id != old.id
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT id, is_active FROM conversations WHERE user_id = $1", alice)
    assert sorted((r["id"] == old.id, r["is_active"]) for r in rows) == [
        (False, True),
        (True, False),
    ]


async def test_get_or_start_errors(db: Database, alice: int) -> None:
    store = ConversationStore(db)
    with pytest.raises(NotFoundError):
        await store.get_or_start_conversation(alice + 99, channel_id=7)
    with pytest.raises(InvalidInputError):
        await store.get_or_start_conversation(alice, channel_id=7, now=datetime(2025, 1, 1))
    with pytest.raises(InvalidInputError):
        await store.get_or_start_conversation(alice, channel_id=-7)
    assert await store.count_user_conversations(alice) == 0


async def test_deactivate_stale_conversations(db: Database, alice: int, bob: int) -> None:
    store = ConversationStore(db)
    stale = await store.get_or_start_conversation(alice, channel_id=1, now=T0)
    fresh = await store.get_or_start_conversation(bob, channel_id=1, now=T0 + timedelta(hours=2))
    closed = await store.deactivate_stale_conversations(now=T0 + timedelta(hours=2, minutes=30))
    assert closed == 1
    assert (await store.get_conversation(stale.id)).is_active is False  # type: ignore[union-attr]
    assert (await store.get_conversation(fresh.id)).is_active is True  # type: ignore[union-attr]


# --- indexes -------------------------------------------------------------------------------


async def _plan(db: Database, sql: str, *args: Any) -> str:
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        rows = await conn.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(
    ("order_by", "index"),
    [
        ("created_at", "ix_conversations_user_created"),
        ("updated_at", "ix_conversations_user_updated"),
        ("title", "ix_conversations_user_title"),
    ],
)
@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_user_lists_read_an_index_without_sorting(
    db: Database, alice: int, order_by: str, direction: str, index: str
) -> None:
    from barkeeper.conversations._store import _ORDER_SQL

    sql = (
        "SELECT * FROM conversations WHERE user_id = $1 "  # noqa: S608 - the store's own fragment
        f"ORDER BY {_ORDER_SQL[(order_by, direction)]} LIMIT 20"
    )
    plan = await _plan(db, sql, alice)
    assert index in plan
    assert "Sort" not in plan


async def test_hot_paths_use_their_indexes(db: Database) -> None:
    trim = await _plan(
        db,
        "SELECT id FROM conversation_messages WHERE conversation_id = $1 "
        "ORDER BY created_at, id LIMIT 1",
        "c",
    )
    assert "ix_conversation_messages_lookup" in trim
    assert "Sort" not in trim
    recent = await _plan(
        db,
        "SELECT * FROM conversation_messages WHERE conversation_id = $1 "
        "ORDER BY created_at DESC, id DESC LIMIT 20",
        "c",
    )
    assert "ix_conversation_messages_lookup" in recent
    assert "Sort" not in recent
    active = await _plan(
        db,
        "SELECT * FROM conversations WHERE channel_id = $1 AND user_id = $2 "
        "AND resource_id = $3 AND is_active ORDER BY last_message_at DESC LIMIT 1",
        1,
        2,
        "r",
    )
    assert "ix_conversations_channel_user" in active


def test_conversation_is_plain_data() -> None:
    conv = Conversation("c", "r", 1, None, {}, None, None, T0, T0, 0, True, T0, T0)
    with pytest.raises(AttributeError):
        conv.title = "x"  # type: ignore[misc]


# --- lock order with privacy's forget ------------------------------------------------------


async def _forget_like(db: Database, user_id: int, during: Any) -> Any:
    """Delete a user the way privacy's forget does (user row locked first, children before
    parents), running ``during`` while the user's messages are already deleted."""
    async with db.transaction() as conn:
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
        await conn.execute(
            "DELETE FROM conversation_messages WHERE conversation_id IN "
            "(SELECT id FROM conversations WHERE user_id = $1)",
            user_id,
        )
        task = asyncio.ensure_future(during())
        await asyncio.sleep(0.3)  # let the concurrent call take whatever locks it takes
        await conn.execute("DELETE FROM conversations WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    return await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("call", ["add_user", "add_assistant", "clear", "delete", "start"])
async def test_store_writes_never_deadlock_with_forget(db: Database, alice: int, call: str) -> None:
    store = ConversationStore(db)
    conv = await store.get_or_start_conversation(alice, channel_id=7)
    await store.add_message(conv.id, "user", "hello", user_id=alice, message_id="m1")
    calls = {
        "add_user": lambda: store.add_message(conv.id, "user", "more", user_id=alice),
        "add_assistant": lambda: store.add_message_unchecked(conv.id, "assistant", "reply"),
        "clear": lambda: store.clear_messages(conv.id, user_id=alice),
        "delete": lambda: store.delete_message(conv.id, "m1", user_id=alice),
        "start": lambda: store.get_or_start_conversation(  # closes conv: a row lock
            alice, channel_id=7, now=datetime.now(UTC) + timedelta(days=1)
        ),
    }
    [outcome] = await _forget_like(db, alice, calls[call])
    assert not (isinstance(outcome, QueryError) and outcome.sqlstate == "40P01"), outcome
    assert outcome in (0, False) or isinstance(outcome, NotFoundError), outcome
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM conversations") == 0
        assert await conn.fetchval("SELECT count(*) FROM conversation_messages") == 0


async def test_start_lock_is_per_schema(
    db: Database, settings: Settings, server_url: str, alice: int
) -> None:
    """Bots sharing a database in two schemas never wait on each other's start lock."""
    other = await Database.open(
        settings,
        url=server_url,
        schema=f"t_{uuid.uuid4().hex[:12]}",
        min_size=1,
        max_size=2,
        upgrade=True,
    )
    try:
        async with other.acquire() as conn:  # the same users.id there
            await conn.execute("INSERT INTO users (id, discord_id) VALUES ($1, 101)", alice)
        async with db.transaction() as conn:
            # What get_or_start_conversation(alice, channel_id=7) locks, in db's schema.
            await conn.execute(_START_LOCK, db.schema, alice, 7, DEFAULT_RESOURCE_ID)
            there = ConversationStore(other).get_or_start_conversation(alice, channel_id=7)
            assert (await asyncio.wait_for(there, timeout=10)).user_id == alice
            here = asyncio.ensure_future(
                ConversationStore(db).get_or_start_conversation(alice, channel_id=7)
            )
            await asyncio.sleep(0.5)
            assert not here.done(), "in its own schema the call waits for the lock"
        assert (await asyncio.wait_for(here, timeout=10)).user_id == alice
    finally:
        try:
            async with other.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{other.schema}" CASCADE')
        finally:
            await other.close()
