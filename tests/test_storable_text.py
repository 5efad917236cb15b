"""One rule for free text in every store: NUL and lone surrogates become U+FFFD.

The rule lives in ``barkeeper.validation.sanitize_text``; each store writes what it
returns, so the same input reads back the same from the message cache, conversations,
agent sessions, memories and the turn index. A split surrogate pair is joined back
into its character (nothing lost, nothing counted).
"""

from __future__ import annotations

from barkeeper.companion import UserStore
from barkeeper.conversations import ConversationStore, SessionStore
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.memory import MemoryStore
from barkeeper.turns import MessageIndex, Turn
from barkeeper.validation import sanitize_text

RAW = "tea\x00time \ud800 lone, pair \ud83d\ude00 joined"
CLEAN = "tea\ufffdtime \ufffd lone, pair \U0001f600 joined"


def test_the_rule() -> None:
    assert sanitize_text(RAW) == (CLEAN, 2)
    assert sanitize_text("\udc00\ud800") == ("\ufffd\ufffd", 2)  # reversed: two lone ones
    plain = "Zoë 🐕‍🦺 שלום\u200b"
    assert sanitize_text(plain)[0] is plain


async def test_every_store_keeps_the_same_text(db: Database) -> None:
    user = await UserStore(db).get_or_create_discord_user(4242, username="ana")

    cache = MessageStore(db)
    message_id = (1_700_000_000_000 - 1_420_070_400_000) << 22
    result = await cache.store(
        StoredMessage(
            message_id=message_id,
            channel_id=77,
            author_id=4242,
            author_name="ana",
            content=RAW,
        )
    )
    assert result.sanitized_chars == 2  # the cache reports what it replaced
    cached = await cache.get(message_id)
    assert cached is not None and cached.content == CLEAN

    conversations = ConversationStore(db)
    conv = await conversations.create_conversation(user.id, title=RAW)
    await conversations.add_message(conv.id, "user", RAW, user_id=user.id)
    stored_conv = await conversations.get_conversation(conv.id)
    assert stored_conv is not None and stored_conv.title == CLEAN
    assert [m.content for m in await conversations.get_messages(conv.id, user_id=user.id)] == [
        CLEAN
    ]

    sessions = SessionStore(db)
    session = await sessions.get_or_create_session("agent", user.id)
    await sessions.add_run(session.id, input=RAW, output=RAW)
    [run] = await sessions.get_recent_runs(session.id)
    assert (run.input, run.output) == (CLEAN, CLEAN)

    memories = MemoryStore(db, HashingEmbedder())
    memory = await memories.add(user.id, RAW, extraction_context=RAW)
    assert memory.content == CLEAN and memory.extraction_context == CLEAN
    assert (await memories.get(user.id, memory.id)).content == CLEAN

    index = MessageIndex(db, HashingEmbedder())
    await index.add_turns("transcript:1", [Turn("1", "Ana", RAW)])
    [hit] = await index.search("transcript:1", "tea time", k=1)
    assert hit.item.content == f"Ana: {CLEAN}"
