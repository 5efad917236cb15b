"""The memory outbox: claims by several workers, order per user, retries with backoff,
dead letters, leases, its transaction with the cache, privacy, status and doctor."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.learning import MemoryManager, OutboxEntry, OutboxStore, OutboxWorker
from barkeeper.memory import MemoryStore
from barkeeper.privacy import Privacy, UserRef
from barkeeper.testing.llm import Fault, LLMServer, ReplyLike
from tests._bot import bot_rig
from tests.test_bot_commands import _ask
from tests.test_extraction import (  # noqa: F401 - fixtures
    alice_fixture,
    bob_fixture,
    decisions_reply,
    fact,
    facts_reply,
    llm_server_fixture,
    manager_fixture,
    model_fixture,
    new_user,
    store_fixture,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _said(body: dict[str, Any]) -> str:
    text = str(body["messages"][-1]["content"])
    return text.split("<message>\n", 1)[1].split("\n</message>", 1)[0]


def _recording(seen: list[str], fail: str | None = None, pause: float = 0.0) -> Any:
    """A model that notes each message it is asked about and remembers it as a fact.

    A message containing ``fail`` gets HTTP 503 (after the client's retries: an outage).
    """

    async def respond(body: dict[str, Any]) -> ReplyLike:
        text = str(body["messages"][-1]["content"])
        if "<facts>" in text:  # consolidation: keep the new fact
            return decisions_reply({"fact": 1, "action": "add"})
        said = _said(body)
        if fail is not None and fail in said:
            return Fault.server_error(503)
        seen.append(said)
        if pause:
            await asyncio.sleep(pause)  # lets other workers' items interleave
        return facts_reply(fact(f"Said: {said}", "general"))

    return respond


def _entry(user: int, n: int, text: str | None = None) -> OutboxEntry:
    return OutboxEntry(
        user_id=user, content=text or f"u{user} message number {n:02d} is long enough", message_id=n
    )


async def _states(db: Database) -> dict[int, tuple[str, int]]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT message_id, state, attempts FROM memory_outbox")
    return {r["message_id"]: (r["state"], r["attempts"]) for r in rows}


async def test_entries_are_validated_and_queued_once(db: Database, alice: int) -> None:
    outbox = OutboxStore(db)
    with pytest.raises(InvalidInputError):
        OutboxEntry(user_id=alice, content="  ")
    with pytest.raises(InvalidInputError):
        OutboxStore(db, max_attempts=0)
    assert await outbox.enqueue([_entry(alice, 1), _entry(alice, 2)]) == 2
    # The same message again, and a user who does not exist: nothing added, no error.
    assert await outbox.enqueue([_entry(alice, 1), _entry(alice + 1000, 3)]) == 0
    counts = await outbox.counts()
    assert (counts.pending, counts.dead, counts.unfinished) == (2, 0, 2)


async def test_two_workers_process_every_item_once_in_order_per_user(
    db: Database, manager: MemoryManager, store: MemoryStore, llm_server: LLMServer
) -> None:
    users = [await new_user(db, 500 + n) for n in range(3)]
    outbox = OutboxStore(db)
    entries = [_entry(u, 1000 + 100 * i + n) for n in range(5) for i, u in enumerate(users)]
    await outbox.enqueue(entries)
    seen: list[str] = []
    llm_server.responder = _recording(seen, pause=0.02)
    first = OutboxWorker(manager, outbox, concurrency=2, name="first")
    second = OutboxWorker(manager, outbox, concurrency=2, name="second")
    await asyncio.gather(first.drain(), second.drain())

    assert sorted(seen) == sorted(e.content for e in entries)  # each exactly once
    assert Counter(seen).most_common(1)[0][1] == 1
    for user in users:  # each user's items in the order they were queued
        mine = [s for s in seen if s.startswith(f"u{user} ")]
        assert mine == [e.content for e in entries if e.user_id == user]
        assert await store.count(user) == 5
    assert first.stats.done + second.stats.done == len(entries)
    assert first.stats.done and second.stats.done  # both took part
    assert (await outbox.counts()).unfinished == 0


async def test_a_failing_item_backs_off_then_dies_and_never_stalls_others(
    db: Database,
    manager: MemoryManager,
    store: MemoryStore,
    llm_server: LLMServer,
    alice: int,
    bob: int,
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, max_attempts=3, backoff=10, backoff_max=15, clock=clock)
    seen: list[str] = []
    llm_server.responder = _recording(seen, fail="poison")
    await outbox.enqueue(
        [_entry(alice, 1, "poison: this one always fails"), _entry(alice, 2), _entry(bob, 3)]
    )
    worker = OutboxWorker(manager, outbox, concurrency=4)

    # Attempt 1 fails; Bob goes on; Alice's second message waits behind her first.
    assert await worker.run_once(4) == 2
    assert await _states(db) == {1: ("retrying", 1), 2: ("pending", 0)}
    assert await store.count(bob) == 1 and await store.count(alice) == 0
    assert await worker.run_once(4) == 0  # backing off: 10 s
    clock.advance(9.9)
    assert await worker.run_once(4) == 0
    clock.advance(0.1)
    assert await worker.run_once(4) == 1  # attempt 2
    assert (await _states(db))[1] == ("retrying", 2)
    clock.advance(14.9)  # 20 s, capped at backoff_max = 15 s
    assert await worker.run_once(4) == 0
    clock.advance(0.1)
    assert await worker.run_once(4) == 1  # attempt 3: the last
    assert (await _states(db))[1] == ("dead", 3)
    counts = await outbox.counts()
    assert counts.dead == 1 and "LLMUnavailableError" in counts.dead_reasons[0][0]
    assert "1 dead" in counts.summary() and "LLMUnavailableError" in counts.summary()

    # Dead, it no longer holds Alice's next message back.
    assert await worker.run_once(4) == 1
    assert [s for s in seen if "poison" not in s] == [
        _entry(bob, 3).content,
        _entry(alice, 2).content,
    ]
    assert await store.count(alice) == 1
    assert worker.stats.retried == 2 and worker.stats.dead == 1 and worker.stats.done == 2

    # Requeued after the cause is fixed, it is processed.
    llm_server.responder = _recording(seen)
    assert await outbox.requeue_dead() == 1
    await worker.drain()
    assert await store.count(alice) == 2 and await _states(db) == {}


async def test_a_lapsed_lease_is_taken_over_and_a_live_holder_keeps_its_item(
    db: Database, manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, lease=60, clock=clock)
    seen: list[str] = []
    llm_server.responder = _recording(seen)
    await outbox.enqueue([_entry(alice, 1)])
    # A worker claims it and dies before locking it (nothing else of it remains).
    [dead_claim] = await outbox.claim(worker="died")
    worker = OutboxWorker(manager, outbox)
    assert await worker.run_once() == 0  # the lease holds
    clock.advance(60)
    assert await worker.run_once() == 1  # taken over, attempt 2
    assert seen == [_entry(alice, 1).content] and await store.count(alice) == 1
    # The first claim's holder, back, can neither lock nor finish nor fail it.
    async with store.transaction() as conn:
        assert not await outbox.lock(conn, dead_claim)
        assert not await outbox.finish(conn, dead_claim)
    assert await outbox.fail(dead_claim, "late") == "lost"

    # A live holder keeps its item past the lease: nobody else can claim it.
    await outbox.enqueue([_entry(alice, 2)])
    [item] = await outbox.claim(worker="slow")
    async with store.transaction() as conn:
        assert await outbox.lock(conn, item)
        clock.advance(3600)
        assert await outbox.claim(worker="other") == []
        assert (await outbox.counts()).abandoned == 1
        assert await outbox.finish(conn, item)
    assert await outbox.claim(worker="other") == []
    assert await _states(db) == {}


async def test_an_item_whose_process_keeps_dying_ends_dead(
    db: Database, manager: MemoryManager, llm_server: LLMServer, alice: int
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, max_attempts=2, lease=60, clock=clock)
    seen: list[str] = []
    llm_server.responder = _recording(seen)
    await outbox.enqueue([_entry(alice, 1)])
    for _ in range(2):  # claimed, then its process dies: twice
        assert len(await outbox.claim(worker="doomed")) == 1
        clock.advance(60)
    worker = OutboxWorker(manager, outbox)
    assert await worker.run_once() == 1
    assert seen == []  # not tried a third time
    counts = await outbox.counts()
    assert counts.dead == 1 and "no outcome after 2 attempts" in counts.dead_reasons[0][0]


async def test_shutdown_gives_back_an_item_in_progress(
    db: Database, manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def slow(body: dict[str, Any]) -> ReplyLike:
        arrived.set()
        await gate.wait()
        return facts_reply(fact("never stored"))

    llm_server.responder = slow
    outbox = OutboxStore(db)
    await outbox.enqueue([_entry(alice, 1)])
    worker = OutboxWorker(manager, outbox, poll_interval=0.05)
    worker.start()
    await arrived.wait()
    await worker.aclose(grace_period=0)
    gate.set()
    assert await _states(db) == {1: ("pending", 0)}  # ready again, attempt uncounted
    assert await store.count(alice) == 0


async def test_the_cache_write_and_the_outbox_row_commit_together(db: Database, alice: int) -> None:
    messages, outbox = MessageStore(db), OutboxStore(db)
    message = StoredMessage(1001, 100, 7, "alice", "I adopted a cat called Miso")
    entry = OutboxEntry(user_id=alice, content=message.content, message_id=1001, channel_id=100)

    async def refused(conn: Any) -> None:
        await outbox.enqueue([entry], connection=conn)
        raise RuntimeError("the outbox write failed")

    with pytest.raises(RuntimeError):
        await messages.store_many([message], also=refused)
    assert await messages.get(1001) is None and await _states(db) == {}

    async def queued(conn: Any) -> None:
        await outbox.enqueue([entry], connection=conn, held=True)

    await messages.store_many([message], also=queued)
    assert await messages.get(1001) is not None
    assert await _states(db) == {1001: ("pending", 0)}
    assert not await outbox.has_ready()  # held until its reply is sent
    assert await outbox.release(alice, 1001)
    assert await outbox.has_ready()


async def test_forgetting_a_person_deletes_their_outbox_items(
    db: Database, alice: int, bob: int
) -> None:
    outbox = OutboxStore(db, max_attempts=1)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2), _entry(bob, 3)])
    [item] = await outbox.claim()
    assert await outbox.fail(item, "boom") == "dead"  # a dead letter of hers too
    report = await Privacy(db).forget(UserRef(user_id=alice))
    assert report.rows.get("memory_outbox") == 2
    assert await _states(db) == {3: ("pending", 0)}


async def test_the_bot_queues_answered_messages_and_status_shows_the_outbox(
    db: Database,
) -> None:
    async with bot_rig(db, learn=True) as rig:
        assert rig.bot.worker is not None and rig.bot.outbox is not None
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("Cats are grand.", facts_reply(fact("Has a cat called Miso", "pet")))
        said = alice.send(channel, "I adopted a cat called Miso", mention_bot=True)
        await rig.emu.wait_for_reply(said, timeout=10)
        await rig.bot.wait_idle()
        await rig.bot.worker.drain()
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None
        assert [m.content for m in await rig.memories.list_memories(user.id)] == [
            "Has a cat called Miso"
        ]
        # A dead letter shows, with its reason, in /barkeeper status.
        await rig.bot.outbox.enqueue([OutboxEntry(user.id, "something else", message_id=5)])
        [item] = await rig.bot.outbox.claim()
        await rig.bot.outbox.fail(item, RuntimeError("the model is gone"), final=True)
        rig.bot.admin_ids = frozenset({alice.id})
        _, status = await _ask(rig, "alice", "barkeeper status")
        assert "Memory outbox: 0 pending, 0 retrying, 0 in progress, 1 dead" in status
        assert "RuntimeError: the model is gone" in status
        assert "`barkeeper outbox retry --all` requeues them" in status


async def test_doctor_shows_the_outbox_counts(database_url: str, tmp_path: Path) -> None:
    async with Database.connect(url=database_url, upgrade=True, min_size=1, max_size=2) as db:
        alice = await new_user(db, 111)
        outbox = OutboxStore(db)
        await outbox.enqueue([_entry(alice, 1), _entry(alice, 2)])
        [item] = await outbox.claim()
        await outbox.fail(item, ValueError("unusable"), final=True)
    code, text = await _barkeeper(database_url, tmp_path, "doctor")
    assert code == 0 and "memory outbox" in text, text
    assert "1 pending, 0 retrying, 0 in progress, 1 dead: 1× ValueError: unusable" in text
    assert "barkeeper outbox retry --all" in text  # the way out, where the count is


async def _barkeeper(database_url: str, cwd: Path, *args: str, answer: str = "") -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "DATABASE_"))}
    env.update(BARKEEPER_DATABASE_URL=database_url, COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(answer.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_outbox_command_lists_requeues_and_purges_dead_letters(
    database_url: str, tmp_path: Path
) -> None:
    async with Database.connect(url=database_url, upgrade=True, min_size=1, max_size=2) as db:
        alice, bob = await new_user(db, 111), await new_user(db, 222)
        outbox = OutboxStore(db)
        await outbox.enqueue([_entry(alice, 1), _entry(bob, 2)])
        await _kill(outbox, "LLMUnavailableError: the model is down")
        await _kill(outbox, "ValueError: unusable")

        code, out = await _barkeeper(database_url, tmp_path, "outbox", "list")
        assert code == 0, out
        assert "111" in out and "LLMUnavailableError: the model is down" in out
        assert "222" in out and "ValueError: unusable" in out and "2 shown of 2 dead" in out
        assert "message number" not in out  # never the messages' text
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "list", "--reason", "value")
        assert code == 0 and "222" in out and "111" not in out, out
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "list", "--user", "999")
        assert code == 1 and "no user with Discord id 999" in out, out

        # retry and purge say whose: nothing changes by accident.
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "retry")
        assert code == 2 and "--user ID, or --all" in out, out
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "retry", "--user", "111")
        assert code == 0 and "Requeued 1 dead letter." in out, out
        assert await _states(db) == {1: ("pending", 0), 2: ("dead", 1)}

        code, out = await _barkeeper(
            database_url, tmp_path, "outbox", "purge", "--all", answer="n\n"
        )
        assert code == 1 and "Nothing deleted." in out, out
        assert (await outbox.counts()).dead == 1
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "purge", "--all", "--yes")
        assert code == 0 and "Purged 1 dead letter." in out, out
        assert await _states(db) == {1: ("pending", 0)}
        code, out = await _barkeeper(database_url, tmp_path, "outbox", "list")
        assert code == 0 and "No dead letters." in out, out


async def test_ready_items_group_per_user_in_claims(db: Database, alice: int, bob: int) -> None:
    outbox = OutboxStore(db)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2), _entry(bob, 3), _entry(bob, 4)])
    claimed = await outbox.claim(10)
    assert [i.message_id for i in claimed] == [1, 3]  # one per user, each their oldest
    by_user: dict[int, list[int]] = defaultdict(list)
    for i in claimed:
        by_user[i.user_id].append(i.attempts)
    assert by_user == {alice: [1], bob: [1]}


async def test_a_forget_during_extraction_waits_for_it_and_leaves_nothing(
    db: Database, manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def slow(body: dict[str, Any]) -> ReplyLike:
        arrived.set()
        await gate.wait()
        return facts_reply(fact("Keeps bees on the roof"))

    llm_server.responder = slow
    outbox = OutboxStore(db)
    await outbox.enqueue([_entry(alice, 1)])
    worker = OutboxWorker(manager, outbox)
    working = asyncio.create_task(worker.run_once())
    await arrived.wait()  # the item is locked, the model is thinking
    forgetting = asyncio.create_task(Privacy(db).forget(UserRef(user_id=alice)))
    async with db.acquire() as conn:  # until the forget waits on a lock the worker holds
        for _ in range(600):
            if await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ):
                break
            await asyncio.sleep(0.05)
    gate.set()
    assert await working == 1
    report = await forgetting  # no deadlock on either side
    assert worker.stats.done == 1 and worker.stats.errors == 0
    assert report.rows.get("memories") == 1  # what the extraction wrote went with her
    assert await _states(db) == {}
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM memories") == 0


async def _kill(outbox: OutboxStore, reason: str) -> None:
    """Claim the next ready item and give it up for good with ``reason``."""
    [item] = await outbox.claim()
    assert await outbox.fail(item, reason, final=True) == "dead"


async def test_dead_letters_are_listed_requeued_in_order_and_purged_by_user_and_reason(
    db: Database, alice: int, bob: int
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, clock=clock)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2), _entry(bob, 3)])
    await _kill(outbox, "LLMUnavailableError: down")  # alice 1 (the oldest ready)
    await _kill(outbox, "LLMUnavailableError: down")  # alice 2
    await _kill(outbox, "ValueError: unusable")  # bob 3
    await outbox.enqueue([_entry(alice, 4)])  # she writes again: waiting
    assert await _states(db) == {
        1: ("dead", 1),
        2: ("dead", 1),
        3: ("dead", 1),
        4: ("pending", 0),
    }

    letters = await outbox.list_dead()
    assert [(d.message_id, d.discord_id) for d in letters] == [(1, 111), (2, 111), (3, 222)]
    assert letters[0].reason == "LLMUnavailableError: down" and letters[0].attempts == 1
    assert letters[0].dead_at == clock.now
    assert [d.message_id for d in await outbox.list_dead(user_id=bob)] == [3]
    assert [d.message_id for d in await outbox.list_dead(reason="llmunavailable")] == [1, 2]
    assert [d.message_id for d in await outbox.list_dead(limit=1)] == [1]
    with pytest.raises(InvalidInputError):
        await outbox.list_dead(user_id=0)

    # Alice's requeued letters keep their place: 1, then 2, then her waiting 4.
    assert await outbox.requeue_dead(user_id=alice) == 2
    assert (await _states(db))[3] == ("dead", 1)  # Bob's untouched
    order = []
    for _ in range(3):
        [item] = await outbox.claim(10)
        order.append(item.message_id)
        async with db.transaction() as conn:
            assert await outbox.finish(conn, item)
    assert order == [1, 2, 4]

    # By reason: only the matching ones; purge deletes for good.
    await outbox.enqueue([_entry(bob, 5)])
    await _kill(outbox, "LLMOutputError: unusable JSON")  # bob 5 (3 is dead: 5 is ready)
    assert await outbox.requeue_dead(reason="nothing like this") == 0
    assert await outbox.purge_dead(reason="valueerror") == 1
    assert [d.message_id for d in await outbox.list_dead()] == [5]
    assert await outbox.purge_dead(user_id=alice) == 0
    assert await outbox.purge_dead() == 1
    assert await _states(db) == {} and (await outbox.counts()).dead == 0


async def test_a_reason_with_no_text_in_it_is_refused_not_matched_to_everything(
    db: Database, alice: int
) -> None:
    """A NUL in the reason filter matches nothing (PostgreSQL refused the statement: a
    QueryError); blanks or more than a reason's 300 characters are refused by name."""
    outbox = OutboxStore(db)
    await outbox.enqueue([_entry(alice, 1)])
    await _kill(outbox, "ValueError: unusable")
    for reason in ("   ", "x" * 301):
        with pytest.raises(InvalidInputError, match="reason"):
            await outbox.purge_dead(reason=reason)
        with pytest.raises(InvalidInputError, match="reason"):
            await outbox.list_dead(reason=reason)
    assert await outbox.list_dead(reason="\x00") == []
    assert await outbox.purge_dead(reason="value\x00error") == 0
    assert await outbox.requeue_dead(reason="valueerror") == 1
    assert (await outbox.counts()).dead == 0


async def test_a_requeued_letter_waits_while_a_later_item_of_its_user_is_in_flight(
    db: Database, alice: int, bob: int
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, lease=60, clock=clock)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2), _entry(bob, 3)])
    await _kill(outbox, "LLMUnavailableError: down")  # alice 1 dead: her 2 goes on
    [second] = await outbox.claim()
    assert second.message_id == 2
    # Requeued while her 2 is in flight: 1 keeps its place but does not run beside 2.
    assert await outbox.requeue_dead(user_id=alice) == 1
    assert [i.message_id for i in await outbox.claim(10)] == [3]  # Bob's goes on
    assert not await outbox.has_ready() and await outbox.claim(10) == []
    # Her 2 done: her requeued 1 is next (it runs before anything she wrote later).
    await outbox.enqueue([_entry(alice, 4)])
    async with db.transaction() as conn:
        assert await outbox.finish(conn, second)
    assert [i.message_id for i in await outbox.claim(10)] == [1]
    assert await outbox.claim(10) == []


async def test_a_requeued_letter_takes_over_when_the_later_items_lease_lapsed(
    db: Database, alice: int
) -> None:
    clock = Clock()
    outbox = OutboxStore(db, lease=60, clock=clock)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2)])
    await _kill(outbox, "LLMUnavailableError: down")
    [second] = await outbox.claim(worker="died")  # and its process dies
    assert await outbox.requeue_dead() == 1
    assert await outbox.claim(10) == []  # 2's lease holds
    clock.advance(60)
    # The lease lapsed: the user's oldest item not dead, the requeued 1, goes first.
    assert [i.message_id for i in await outbox.claim(10)] == [1]
    assert await outbox.claim(10) == []
    assert await outbox.fail(second, "late") == "retrying"  # 2 still waits its turn
    assert await outbox.claim(10) == []


async def _waiting_on_the_outbox(db: Database) -> int:
    """Sessions waiting for a lock on ``memory_outbox`` (the table or one of its rows)."""
    async with db.acquire() as conn:
        found = await conn.fetchval(
            "SELECT count(DISTINCT pid) FROM pg_locks "
            "WHERE NOT granted AND relation = 'memory_outbox'::regclass"
        )
    return int(found)


async def _until(done: Any) -> None:
    """Yield to the event loop until ``done()`` (an awaitable condition) holds."""
    while not await done():  # noqa: ASYNC110 - lock waits in PostgreSQL have no event
        await asyncio.sleep(0.01)


async def test_a_requeue_during_a_claim_statement_never_puts_two_of_a_user_in_flight(
    db: Database, alice: int
) -> None:
    """A claim of Alice's 2 not yet committed (another process's claim statement,
    between its row lock and its commit) when her dead 1 is requeued: a claim starting
    just after the requeue must see 2 as claimed, not as it was before."""
    clock = Clock()
    outbox = OutboxStore(db, lease=60, clock=clock)
    await outbox.enqueue([_entry(alice, 1), _entry(alice, 2)])
    await _kill(outbox, "LLMUnavailableError: down")
    async with db.acquire() as other:
        claiming = other.transaction()
        await claiming.start()
        await other.execute(
            "UPDATE memory_outbox SET state = 'claimed', attempts = attempts + 1, "
            "available_at = $1, claim_token = gen_random_uuid(), claimed_by = 'other' "
            "WHERE message_id = 2",
            clock.now + timedelta(seconds=60),
        )
        requeue = asyncio.ensure_future(outbox.requeue_dead())
        await _until(lambda: _settled(requeue, db, 1))
        claim = asyncio.ensure_future(outbox.claim(10))
        await _until(lambda: _settled(claim, db, 1 + (not requeue.done())))
        await claiming.commit()
    assert await requeue == 1
    assert await claim == []  # her 2 is in flight: her 1 waits for it
    assert await _states(db) == {1: ("pending", 0), 2: ("claimed", 1)}


async def _settled(task: asyncio.Future[Any], db: Database, waiting: int) -> bool:
    """Whether ``task`` finished or ``waiting`` sessions wait for the outbox's locks."""
    return task.done() or await _waiting_on_the_outbox(db) >= waiting


async def test_an_earlier_message_committed_after_a_later_one_waits_for_it(
    db: Database, alice: int
) -> None:
    """Two cache transactions of Alice's messages: the first (lower id) commits after the
    second was claimed. The first is hers to run next, but not beside the second."""
    outbox = OutboxStore(db)
    async with db.transaction() as conn:
        await outbox.enqueue([_entry(alice, 1)], connection=conn)
        await outbox.enqueue([_entry(alice, 2)])  # another transaction, committed first
        [second] = await outbox.claim(10)
        assert second.message_id == 2
    assert await outbox.claim(10) == [] and not await outbox.has_ready()
    async with db.transaction() as conn:
        assert await outbox.finish(conn, second)
    assert [i.message_id for i in await outbox.claim(10)] == [1]
