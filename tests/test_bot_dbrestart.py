"""The database going away under the running bot: a real PostgreSQL killed and restarted.

Each test starts its OWN PostgreSQL (an ephemeral embedded server, in both CI legs),
kills it the way a crash does (``pg_ctl stop -m immediate``) and starts it again on the
same data directory and socket. The shared test server is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest_asyncio

from barkeeper.bot import CACHE_JOURNAL, LiveCache, read_cache_journal
from barkeeper.config import Settings
from barkeeper.db import Database, EmbeddedServer, start_embedded_server
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.testing.discord import EmulatedMessage as Message
from barkeeper.testing.discord import Person
from tests._bot import WAIT, bot_rig
from tests.test_cli import barkeeper


@pytest_asyncio.fixture
async def own_server() -> AsyncIterator[EmbeddedServer]:
    """A PostgreSQL of this test's own, that it may kill."""
    server = await start_embedded_server(None, ephemeral=True)
    try:
        # The WAL writer waits its longest (10 s), so a crash loses every commit that
        # was acknowledged but not flushed (synchronous_commit = off): the window in
        # which a write that is not durable is lost is wide, not a matter of luck.
        conn = await asyncpg.connect(server.uri)
        try:
            await conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        yield server
    finally:
        await server.restart()  # running again (a no-op if it is), so it stops cleanly
        await server.aclose()


async def until(check: Callable[[], object], *, within: float, what: str) -> None:
    """Poll ``check`` (the bot's state, which has no event to wait on) until it holds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - the cache's state has no event to wait on
                await asyncio.sleep(0.05)
    assert check(), f"not reached within {within} s: {what}"


async def _rows(db: Database, channel_id: int) -> list[tuple[int, str, int]]:
    """(message id, content, id of the transaction that wrote it) of a channel's cache."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message_id, content, xmin::text::bigint AS tx FROM discord_messages "
            "WHERE channel_id = $1 ORDER BY message_id",
            channel_id,
        )
    return [(r["message_id"], r["content"], r["tx"]) for r in rows]


async def test_a_database_restart_loses_no_message_and_replies_go_on(
    own_server: EmbeddedServer, settings: Settings
) -> None:
    db = await Database.open(settings, url=own_server.uri, min_size=1, max_size=4, upgrade=True)
    try:
        async with bot_rig(db, stream_replies=False, user_rate=0) as rig:
            cache = rig.bot.cache
            alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
            channel = rig.emu.channel_ids()[0]
            sent: list[Message] = []
            asked: list[Message] = []

            async def talk(phase: str, count: int) -> None:
                for i in range(count):
                    person = alice if i % 2 else bob
                    sent.append(person.send(channel, f"{phase} chatter {i}"))
                    await asyncio.sleep(0.02)

            async def ask(text: str, answer: str) -> Message:
                rig.llm.script(answer)
                message = alice.send(channel, text, mention_bot=True)
                asked.append(message)
                reply = await rig.emu.wait_for_reply(message, timeout=WAIT)
                assert reply.content == answer
                return reply

            async def status_of(person: Person) -> str:
                interaction = person.invoke("barkeeper status", channel)
                return (await interaction.wait_for_response(timeout=WAIT)).content

            # Up: messages are cached as they come.
            await talk("before", 10)
            await ask("evening, first round please", "one ale coming up")
            await rig.bot.wait_idle()
            await until(  # the 10 messages, the question and its reply: written, acknowledged
                lambda: cache.pending == 0 and cache.flushed >= 12, within=WAIT, what="flush"
            )

            # Down, at once (a crash right after a commit: the write must survive it). The
            # bot keeps ingesting and answering, without memory or history.
            await own_server.kill()
            await talk("during", 15)
            await ask("still pouring?", "always, friend")
            await until(lambda: cache.database_down, within=WAIT, what="outage")
            edited, deleted = sent[-3], sent[-2]  # bob's, then alice's
            bob.edit(edited, "during chatter, edited while down")
            alice.delete(deleted)
            await ask("and another?", "coming right up")
            outage_request = str(rig.llm.chat_requests[-1].messages)
            assert "before chatter" not in outage_request  # no history while down
            during = [m for m in sent if "during" in m.content]
            await until(
                lambda: cache.pending >= len(during) + 2 * 2,  # + the asks and their replies
                within=WAIT,
                what="the outage's messages in the buffer",
            )
            assert cache.database_down and cache.dropped == 0
            rig.bot.admin_ids = frozenset({alice.id})
            status = await status_of(alice)
            assert "Database: unreachable" in status
            assert "buffered, database down for" in status and "0 dropped since start" in status

            # Back: the buffer is written, oldest first; replies see the history again.
            await own_server.restart()
            await until(
                lambda: not cache.database_down and cache.pending == 0,
                within=WAIT * 2,
                what="the buffer flushed",
            )
            assert "0 dropped since start, 1 outage(s)" in await status_of(alice)
            await talk("after", 5)
            await ask("what did I miss?", "nothing much")
            assert "during chatter 0" in str(rig.llm.chat_requests[-1].messages)
            await rig.bot.wait_idle()
            bot_replies = [m for m in rig.emu.bot_messages(channel) if m.reply_to is not None]
            expected = {m.id for m in sent + asked + bot_replies} - {deleted.id}
            with contextlib.suppress(TimeoutError):  # the last reply reaches the cache
                async with asyncio.timeout(WAIT):
                    while {r[0] for r in await _rows(db, channel)} != expected:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)

        rows = await _rows(db, channel)
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids))  # no duplicate
        assert set(ids) == expected  # nothing lost, the deleted one gone
        assert dict((r[0], r[1]) for r in rows)[edited.id] == "during chatter, edited while down"
        for question in asked:  # every question answered exactly once
            assert len([m for m in bot_replies if m.reply_to == question.id]) == 1
        # In order: no message was committed before one sent earlier.
        txs = [r[2] for r in rows]
        assert txs == sorted(txs)
        assert cache.dropped == 0 and cache.outages == 1
        noted = read_cache_journal(rig.settings.data_dir / CACHE_JOURNAL)
        assert noted is not None and noted["closed"]
        assert (noted["dropped"], noted["outages"]) == (0, 1)
    finally:
        await db.close()


def _message(message_id: int, text: str) -> StoredMessage:
    return StoredMessage(message_id, 100, 7, "someone", text, guild_id=1)


async def test_the_buffer_is_bounded_counts_what_it_drops_and_flushes_in_order(
    own_server: EmbeddedServer, settings: Settings, tmp_path: Path
) -> None:
    db = await Database.open(settings, url=own_server.uri, min_size=1, max_size=2, upgrade=True)
    try:
        store = MessageStore(db, durable=True)
        journal = settings.data_dir / CACHE_JOURNAL
        cache = LiveCache(store, limit=5, batch=2, journal=journal)
        cache.put(_message(1_000, "kept before"))
        assert await cache.flush()
        await own_server.kill()
        for n in range(1, 9):
            cache.put(_message(1_000 + n, f"message {n}"))
        cache.put(_message(1_002, "message 2, edited"))  # replaces the waiting copy
        cache.delete(1_000)  # deletes are kept even beyond the limit
        assert not await cache.flush()
        assert cache.database_down
        assert cache.dropped == 3 and cache.pending == 6  # 1..5 and the delete
        await own_server.restart()
        assert await cache.flush()
        assert not cache.database_down and cache.pending == 0
        rows = await _rows(db, 100)
        assert [(r[0], r[1]) for r in rows] == [
            (1_001, "message 1"),
            (1_002, "message 2, edited"),
            (1_003, "message 3"),
            (1_004, "message 4"),
            (1_005, "message 5"),
        ]
        txs = [r[2] for r in rows]
        assert txs == sorted(txs) and len(set(txs)) == 3  # in order, two per statement
        assert cache.dropped == 3 and cache.outages == 1
        await cache.aclose()
        noted = read_cache_journal(journal)
        assert noted is not None and noted["closed"] and noted["pid"] == os.getpid()
        assert (noted["dropped"], noted["outages"], noted["pending"]) == (3, 1, 0)
        # barkeeper doctor, another process, says so.
        doctor = await asyncio.to_thread(barkeeper, tmp_path, "doctor", POSTGRES_URL=own_server.uri)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "message cache" in doctor.stdout and "3 dropped" in doctor.stdout
        assert "1 database outage(s)" in doctor.stdout
    finally:
        await db.close()
