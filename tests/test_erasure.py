"""Erasure lasts: after ``privacy forget`` no ingest path brings a person's earlier words back.

Real PostgreSQL, the real discord.py against the Discord emulator, the real backfill
engine. What a forgotten person wrote before the forget is never stored again; what
they write after it is a new relationship and is stored.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from barkeeper.backfill import Backfill, BackfillResult, DiscordHistorySource
from barkeeper.companion import UserStore
from barkeeper.conversations import ConversationStore
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.errors import ForgottenContentError
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.learning import MemoryManager, UserMessage
from barkeeper.memory import MemoryStore
from barkeeper.privacy import Privacy, UserRef
from barkeeper.testing.discord import DiscordEmulator
from barkeeper.testing.llm import LLMServer
from barkeeper.turns import MessageIndex, Turn, discord_channel_scope
from tests._backfill import compare_with_truth, spec
from tests.test_extraction import (  # noqa: F401 - fixtures
    decisions_reply,
    fact,
    facts_reply,
    llm_server_fixture,
    model_fixture,
)

CHANNEL = 700_000_000_000_000_009
_SRC = str(Path(__file__).resolve().parents[1] / "src")
_EPOCH_MS = 1_420_070_400_000


def snowflake(when: datetime, seq: int = 0) -> int:
    return ((int(when.timestamp() * 1000) - _EPOCH_MS) << 22) | seq


async def backfill(db: Database, emu: DiscordEmulator, **options: Any) -> BackfillResult:
    async with DiscordHistorySource.connect(emu.token, api_base=emu.base_url) as source:
        engine = Backfill(db, source, backoff=0.05, backoff_max=0.3, **options)
        return await engine.run()


async def scan(db: Database, needles: list[str]) -> dict[str, int]:
    """Rows of every table (from the catalog) whose text form contains any needle."""
    found: dict[str, int] = {}
    async with db.acquire() as conn:
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            db.schema,
        )
        for (table,) in tables:
            n = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE ANY($1::text[])',  # noqa: S608 - catalog name
                [f"%{needle}%" for needle in needles],
            )
            if n:
                found[table] = n
    return found


async def traces(db: Database, who: UserRef) -> dict[str, int]:
    """What the catalog walk (``privacy show``) finds, and a text scan for their id."""
    shown = (await Privacy(db).show(who)).rows
    assert who.discord_id is not None
    return {**shown, **{f"text:{k}": v for k, v in (await scan(db, [str(who.discord_id)])).items()}}


async def test_forget_then_backfill_again_catch_up_deepen_and_sync(db: Database) -> None:
    async with DiscordEmulator(spec(channels=2, messages_per_channel=450)) as emu:
        channels = emu.channel_ids()
        first = await backfill(db, emu, target=150)
        assert first.ok
        truth = emu.truth()
        now = datetime.now(UTC)
        assert all(snowflake(now) > r["id"] for c in channels for r in truth[c])
        # the most prolific human author of the cached part: messages everywhere
        async with db.acquire() as conn:
            top = await conn.fetch(
                "SELECT author_id, count(*) FROM discord_messages WHERE NOT author_is_bot "
                "GROUP BY author_id ORDER BY count(*) DESC LIMIT 1"
            )
        author = top[0]["author_id"]
        everywhere = Counter(r["author_id"] for c in channels for r in truth[c])[author]
        assert everywhere > top[0]["count"] > 10  # more of theirs beyond the cached part
        index = MessageIndex(db, HashingEmbedder())
        for cid in channels:
            await index.sync_discord_channel(cid)

        privacy = Privacy(db)
        who = await privacy.find_user(discord_id=author)
        report = await privacy.forget(who)
        assert report.rows["discord_messages"] == top[0]["count"]
        assert report.tombstones == 1 and report.forgotten_at is not None
        assert await traces(db, who) == {}

        # Others keep talking: catch-up (new messages, COPied), then the sync of the
        # newest 200 (re-fetched: the upsert path) and the index again.
        emu.apply_offline_changes(new_messages=60, seed=5, channel_ids=channels)
        theirs_new = [
            r["id"]
            for c in channels
            for r in emu.truth()[c]
            if r["author_id"] == author and r["id"] > truth[c][-1]["id"]
        ]
        again = await backfill(db, emu, target=150)
        assert again.ok and all(c.synced for c in again.channels)
        assert sum(c.stored for c in again.channels) > 0
        for cid in channels:
            await index.sync_discord_channel(cid)
        # The emulator dates offline messages after each channel's newest, still before
        # the forget: written before it, delivered after it, and refused.
        assert theirs_new and max(theirs_new) < snowflake(report.forgotten_at)
        assert await traces(db, who) == {}

        # Deepen (COPY of pages never cached: theirs are purged in the same statement),
        # then to the start of each channel.
        deeper = await backfill(db, emu, target=320, sync=False)
        assert deeper.ok and sum(c.stored for c in deeper.channels) > 0
        assert await traces(db, who) == {}
        full = await backfill(db, emu)
        assert full.ok
        for cid in channels:
            await index.sync_discord_channel(cid)
        assert await traces(db, who) == {}

        # Everybody else is there, exactly, and the per-channel counts are right.
        comparison = await compare_with_truth(db, emu, channels)
        truth = emu.truth()
        theirs = {r["id"] for c in channels for r in truth[c] if r["author_id"] == author}
        assert set(comparison.gaps) == theirs
        assert len(theirs) == everywhere + len(theirs_new)
        assert not (comparison.extra or comparison.different or comparison.count_mismatch)

        # What they write after the forget is a new relationship: stored and indexed.
        new = emu.world.add_message(channels[0], "hello again, new start", author_id=author)
        after = await backfill(db, emu)
        assert after.ok and after.channels[0].stored == 1
        assert await index.sync_discord_channel(channels[0]) >= 1
        rows = await privacy.show(who)
        assert rows.rows == {"discord_messages": 1, "message_index": 1}
        assert await MessageStore(db).get(new.id) is not None


def _message(message_id: int, author: int, text: str, *, files: bool = False) -> StoredMessage:
    from barkeeper.history import Attachment

    attachments = (
        (Attachment(filename="a.png", url="https://cdn.example/a.png", size=10),) if files else ()
    )
    return StoredMessage(
        message_id=message_id,
        channel_id=CHANNEL,
        author_id=author,
        author_name=f"user{author}",
        content=text,
        attachments=attachments,
    )


async def test_live_store_refuses_their_old_messages_and_keeps_new_ones(db: Database) -> None:
    store = MessageStore(db)
    gone, other = 4242, 4343
    base = datetime.now(UTC) - timedelta(days=3)
    await store.store(_message(snowflake(base), gone, "first words"))
    privacy = Privacy(db)
    assert (await privacy.forget(await privacy.find_user(discord_id=gone))).rows == {
        "discord_messages": 1
    }

    # one message (the live bot's path), an old one of theirs: refused
    old = _message(snowflake(base, 1), gone, "old words, delivered late")
    result = await store.store(old)
    assert (result.inserted, result.skipped) == (0, 1)
    assert await store.get(old.message_id) is None
    # a page big enough to be COPied, theirs and someone else's mixed, one with a file
    page = [
        _message(snowflake(base + timedelta(seconds=i), 2), gone if i % 3 == 0 else other, f"m{i}")
        for i in range(60)
    ]
    page[3] = _message(page[3].message_id, gone, "with a file", files=True)
    result = await store.store_batch_and_advance(CHANNEL, page, before_id=page[0].message_id)
    kept = [m for m in page if m.author_id == other]
    assert result.inserted == len(kept) and result.skipped == 60 - len(kept)
    assert await store.count(CHANNEL) == len(kept)
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM discord_messages WHERE author_id = $1", gone)
            == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM discord_messages") == len(kept)
    # the same page again (now through the upsert: its range is known)
    again = await store.store_many(page)
    assert again.inserted == 0 and await store.count(CHANNEL) == len(kept)

    # written after the forget: stored
    new = _message(snowflake(datetime.now(UTC) + timedelta(seconds=1)), gone, "hi again")
    assert (await store.store(new)).inserted == 1
    assert await store.get(new.message_id) is not None
    assert await store.count(CHANNEL) == len(kept) + 1


async def test_no_tombstone_costs_no_hash(db: Database) -> None:
    store = MessageStore(db)
    await store.store(_message(snowflake(datetime(2025, 1, 1, tzinfo=UTC)), 1, "hello"))
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM privacy_key") == 0
        assert await conn.fetchval("SELECT barkeeper_forgotten_at('discord:1')") is None


async def test_index_conversations_and_memories_do_not_bring_them_back(
    db: Database, llm_server: LLMServer, model: Any
) -> None:
    users = UserStore(db)
    ana = await users.get_or_create_discord_user(5151, username="anaqz")
    ben = await users.get_or_create_discord_user(5252, username="benqz")
    index = MessageIndex(db, HashingEmbedder())
    long_ago = datetime(2025, 3, 1, tzinfo=UTC)
    turns = [
        Turn("t1", "anaqz", "my sister is called Ofelia", occurred_at=long_ago, user_id=ana.id),
        Turn("t2", "benqz", "nice name", occurred_at=long_ago, user_id=ben.id),
        Turn("t3", "benqz", "mine is Tom", occurred_at=long_ago, user_id=ben.id),
        Turn("t4", "benqz", "we met in Porto", occurred_at=long_ago, user_id=ben.id),
        Turn("t5", "benqz", "long ago now", occurred_at=long_ago, user_id=ben.id),
    ]
    assert await index.add_turns("transcript:1", turns, context_turns=5) == 5
    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=5151)
    assert (await privacy.show(who)).rows["message_index"] == 1  # her turn is hers
    exported = (await privacy.export(who))["tables"]["message_index"]
    assert [t["content"] for t in exported] == ["anaqz: my sister is called Ofelia"]

    store = MemoryStore(db, HashingEmbedder())
    await store.add(ana.id, "Has a sister called Ofelia", source_message_ids=[snowflake(long_ago)])
    conversations = ConversationStore(db)
    conv = await conversations.create_conversation(ana.id)
    await conversations.add_message(
        conv.id, "user", "Ofelia visits", user_id=ana.id, discord_message_id=snowflake(long_ago)
    )
    await privacy.forget(who)

    # Her words left every row that quoted them (t5 quoted t1, four turns back).
    assert await scan(db, ["Ofelia", "anaqz"]) == {}
    assert await index.count("transcript:1") == 4
    hits = await index.search("transcript:1", "Ofelia sister", mode="fulltext")
    assert hits == []

    # She comes back (a new users row). Her old turn, memories and messages are refused;
    # what she says now is kept.
    ana2 = await users.get_or_create_discord_user(5151, username="anaqz")
    old_turn = Turn(
        "t1", "anaqz", "my sister is called Ofelia", occurred_at=long_ago, user_id=ana2.id
    )
    await index.add_turns("transcript:1", [old_turn])
    assert await scan(db, ["Ofelia"]) == {}
    with pytest.raises(ForgottenContentError):
        await store.add(ana2.id, "Has a sister", source_message_ids=[snowflake(long_ago)])
    conv2 = await conversations.create_conversation(ana2.id)
    with pytest.raises(ForgottenContentError):
        await conversations.add_message(
            conv2.id, "user", "Ofelia", user_id=ana2.id, discord_message_id=snowflake(long_ago)
        )
    # memory extraction of a message queued before the forget: nothing is learnt
    llm_server.script(
        facts_reply(fact("Has a sister called Ofelia", "family")),
        decisions_reply({"fact": 1, "action": "add"}),
    )
    manager = MemoryManager(store, model, extraction_rate=1.0)
    outcome = await manager.process(
        UserMessage(
            ana2.id, "my sister Ofelia is visiting next week", message_id=snowflake(long_ago)
        )
    )
    assert outcome.changes == ()
    assert await store.count(ana2.id) == 0
    assert await scan(db, ["Ofelia"]) == {}

    now = datetime.now(UTC) + timedelta(seconds=1)
    new_turn = Turn("t6", "anaqz", "I moved to Lisbon", occurred_at=now, user_id=ana2.id)
    assert await index.add_turns("transcript:1", [new_turn]) == 1
    await store.add(ana2.id, "Lives in Lisbon", source_message_ids=[snowflake(now)])
    await conversations.add_message(
        conv2.id, "user", "Lisbon", user_id=ana2.id, discord_message_id=snowflake(now)
    )
    assert (await privacy.show(await privacy.find_user(discord_id=5151))).rows == {
        "users": 1,
        "conversations": 1,
        "conversation_messages": 1,
        "memories": 1,
        "memory_versions": 1,
        "message_index": 1,
    }


async def test_deleting_an_older_quoted_message_removes_its_words_everywhere(
    db: Database,
) -> None:
    store = MessageStore(db)
    base = datetime(2025, 5, 1, tzinfo=UTC)
    words = ["alpha zebra", "bravo", "charlie", "delta", "echo", "foxtrot"]
    messages = [_message(snowflake(base, i), 10 + i, w) for i, w in enumerate(words)]
    await store.store_many(messages)
    index = MessageIndex(db, HashingEmbedder())
    scope = discord_channel_scope(CHANNEL)
    turns = [
        Turn(str(m.message_id), m.author_name, m.content, discord_message_id=m.message_id)
        for m in messages
    ]
    await index.add_turns(scope, turns, context_turns=5)
    assert await scan(db, ["zebra"]) == {"discord_messages": 1, "message_index": 6}
    assert await store.delete(messages[0].message_id)
    assert await scan(db, ["zebra"]) == {}
    # the turn right after it went with it (its context link); the others remain
    assert await index.count(scope) == 4
    # a channel sync re-indexes what lost its context, with what the cache holds now
    await index.sync_discord_channel(CHANNEL)
    assert await index.count(scope) == 5
    assert await scan(db, ["zebra"]) == {}


_KEY_RACE = textwrap.dedent(
    """
    import asyncio, sys
    from barkeeper.config import load_settings
    from barkeeper.db import Database
    from barkeeper.privacy._tombstones import ensure_key

    async def main():
        settings = load_settings()
        async with Database.connect(settings, min_size=1, max_size=1) as db:
            async with db.transaction() as conn:
                await ensure_key(conn)
                print("inserted", flush=True)
                sys.stdin.readline()  # hold the transaction open until told
    asyncio.run(main())
    """
)


async def test_two_processes_creating_the_key_at_once_get_one_key(
    db: Database, server_url: str, tmp_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": _SRC,
        "BARKEEPER_DATABASE": "server",
        "BARKEEPER_DATABASE_URL": server_url,
        "BARKEEPER_DB_SCHEMA": db.schema,
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _KEY_RACE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    try:
        # Both are started; the first to insert holds its transaction open, and the
        # other's insert waits on it (it cannot print before the first one commits).
        reads = [asyncio.ensure_future(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
        done, waiting = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED, timeout=60)
        assert [f.result().strip() for f in done] == [b"inserted"]
        async with db.acquire() as conn:  # the other one is waiting on the first's key
            for _ in range(400):
                blocked = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity w JOIN pg_stat_activity h "
                    "ON h.pid = ANY(pg_blocking_pids(w.pid)) "
                    "WHERE w.query LIKE 'INSERT INTO privacy_key%' "
                    "AND h.query LIKE 'INSERT INTO privacy_key%'"
                )
                if blocked:
                    break
                await asyncio.sleep(0.05)
            assert blocked == 1
        (second,) = waiting
        assert not second.done()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"\n")
            await p.stdin.drain()
        assert (await asyncio.wait_for(second, 60)).strip() == b"inserted"
        for p in procs:
            _, err = await asyncio.wait_for(p.communicate(), 60)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    async with db.acquire() as conn:
        keys = await conn.fetch("SELECT inner_pad, outer_pad FROM privacy_key")
        assert len(keys) == 1
        # the key is the one PostgreSQL hashes with, and it is an HMAC-SHA256
        import hashlib
        import hmac

        key = bytes(b ^ 0x36 for b in bytes(keys[0]["inner_pad"]))  # zero-padded to 64
        assert bytes(b ^ 0x5C for b in key) == bytes(keys[0]["outer_pad"])
        ours = hmac.new(key, b"discord:123", hashlib.sha256).digest()
        assert bytes(await conn.fetchval("SELECT barkeeper_identity_hash('discord:123')")) == ours


async def test_every_table_with_dated_personal_rows_has_the_guard(db: Database) -> None:
    """A table with a person (``user_id``) and a creation time must refuse forgotten rows."""
    async with db.acquire() as conn:
        dated = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = $1 "
                "AND column_name IN ('discord_message_id', 'source_message_ids', 'occurred_at') "
                "AND table_name IN (SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND column_name = 'user_id')",
                db.schema,
            )
        }
        guarded = {
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND t.tgname = 'barkeeper_refuse_forgotten'",
                db.schema,
            )
        }
    assert {"conversation_messages", "memories", "memory_versions", "message_index"} <= dated
    assert dated <= guarded, f"no barkeeper_refuse_forgotten trigger on {dated - guarded}"


async def test_a_forgotten_persons_old_turn_indexed_again_is_quoted_by_no_neighbour(
    db: Database,
) -> None:
    """Indexing a transcript again after a forget: the guard drops her old turn, and the
    turns around it (the one before quotes the turn after it, the one after quotes the
    turns before it) must not carry her words in their context either."""
    users = UserStore(db)
    await users.get_or_create_discord_user(5353, username="anaxq")
    ben = await users.get_or_create_discord_user(5454, username="benxq")
    privacy = Privacy(db)
    await privacy.forget(await privacy.find_user(discord_id=5353))
    ana2 = await users.get_or_create_discord_user(5353, username="anaxq")
    index = MessageIndex(db, HashingEmbedder())
    long_ago = datetime(2025, 3, 1, tzinfo=UTC)
    turns = [
        Turn("u1", "benxq", "how is your family", occurred_at=long_ago, user_id=ben.id),
        Turn("u2", "anaxq", "my sister Yolanda moved", occurred_at=long_ago, user_id=ana2.id),
        Turn("u3", "benxq", "oh where to", occurred_at=long_ago, user_id=ben.id),
    ]
    await index.add_turns("transcript:2", turns)
    assert await index.count("transcript:2") == 2  # her old turn is refused
    assert await scan(db, ["Yolanda"]) == {}
    assert await index.search("transcript:2", "Yolanda sister", mode="fulltext") == []
    # what is not hers keeps a context: the neighbours that were stored, the month
    async with db.acquire() as conn:
        contexts = dict(
            await conn.fetch(
                "SELECT source_id, context FROM message_index WHERE scope = 'transcript:2'"
            )
        )
    assert contexts == {
        "u1": "benxq: oh where to\nMarch 2025",
        "u3": "benxq: how is your family\nMarch 2025",
    }


async def test_forgetting_someone_in_the_middle_of_a_synced_channel_leaves_none_of_their_words(
    db: Database,
) -> None:
    """A channel synced with the wider context (two messages before, one after): her
    message is quoted by the two after it and by the one before it. Forget her: her
    words are in no row of any table, and a later sync brings none back."""
    store = MessageStore(db)
    base = datetime(2025, 6, 1, tzinfo=UTC)
    said = [(61, "morning all"), (62, "who saw the match"), (63, "quokkas are my secret")]
    said += [(64, "nice one"), (65, "anyway"), (66, "bye")]
    await store.store_many(
        [_message(snowflake(base, i), who, text) for i, (who, text) in enumerate(said)]
    )
    index = MessageIndex(db, HashingEmbedder())
    assert await index.sync_discord_channel(CHANNEL) == 6
    assert await scan(db, ["quokkas"]) == {"discord_messages": 1, "message_index": 4}
    privacy = Privacy(db)
    await privacy.forget(await privacy.find_user(discord_id=63))
    assert await scan(db, ["quokkas", "user63"]) == {}
    await index.sync_discord_channel(CHANNEL)
    assert await scan(db, ["quokkas", "user63"]) == {}
    assert await index.count(discord_channel_scope(CHANNEL)) == 5


class _DeletingOnEmbed(HashingEmbedder):
    """The hashing embedder, which also deletes one cached message at its ``at``-th call:
    a Discord delete (or a forget) landing while a channel sync is under way."""

    def __init__(self, store: MessageStore, message_id: int, *, at: int = 1) -> None:
        super().__init__()
        self._store, self._doomed, self._at = store, message_id, at
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls == self._at:
            await self._store.delete(self._doomed)
        return await super().embed(texts)


async def test_a_message_deleted_during_a_sync_is_quoted_by_no_row(db: Database) -> None:
    """A page's last message, deleted while its page is being written: the sync goes on
    without it. It is indexed by no row and quoted by none (it stayed in the row
    before it when it was deleted between the two pages' writes), and the sync says
    what it stored: the other eleven, just as a sync after the delete would have."""
    store = MessageStore(db)
    base = datetime(2025, 7, 1, tzinfo=UTC)
    messages = [_message(snowflake(base, i), 70 + i, f"plain words {i}") for i in range(12)]
    messages[9] = _message(snowflake(base, 9), 79, "my wombat password")  # page 1's last
    await store.store_many(messages)
    index = MessageIndex(db, _DeletingOnEmbed(store, messages[9].message_id))
    assert await index.sync_discord_channel(CHANNEL, page_size=10) == 11
    assert await scan(db, ["wombat"]) == {}
    assert await index.count(discord_channel_scope(CHANNEL)) == 11
    assert await index.sync_discord_channel(CHANNEL, page_size=10) == 0  # nothing stale


async def test_a_message_deleted_between_two_pages_of_a_sync_is_quoted_by_no_row(
    db: Database,
) -> None:
    """Page 1 written (its last message, 9, with it), then 9 deleted before page 2 is
    written (page 2 walks 9 again, to quote 10 in its context): the sync goes on
    without it, and no row keeps its words."""
    store = MessageStore(db)
    base = datetime(2025, 7, 1, tzinfo=UTC)
    messages = [_message(snowflake(base, i), 70 + i, f"plain words {i}") for i in range(12)]
    messages[9] = _message(snowflake(base, 9), 79, "my wombat password")  # page 1's last
    await store.store_many(messages)
    embedder = _DeletingOnEmbed(store, messages[9].message_id, at=2)  # page 2's write
    index = MessageIndex(db, embedder)
    assert await index.sync_discord_channel(CHANNEL, page_size=10) == 11
    assert embedder.calls >= 2  # the delete did land between the pages
    assert await scan(db, ["wombat"]) == {}
    scope = discord_channel_scope(CHANNEL)
    assert await index.count(scope) == 11
    async with db.acquire() as conn:
        quoting = await conn.fetch(
            "SELECT source_id FROM message_index WHERE scope = $1 AND $2 = ANY(context_source_ids)",
            scope,
            str(messages[9].message_id),
        )
    assert quoting == []
    # The next sync gives 8 (its context cleared by the delete) its new neighbours.
    assert await index.sync_discord_channel(CHANNEL, page_size=10) == 1
    assert await index.sync_discord_channel(CHANNEL, page_size=10) == 0
