"""The background worker: submit never waits, the queue is bounded, shutdown drains,
outages are retried a bounded number of times, and no failure stops it."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from barkeeper.errors import InvalidInputError
from barkeeper.learning import MemoryManager, MemoryWorker, UserMessage
from barkeeper.memory import MemoryStore
from barkeeper.testing.llm import Fault, LLMServer, ReplyLike
from tests.test_extraction import (  # noqa: F401 - fixtures
    alice_fixture,
    bob_fixture,
    decisions_reply,
    fact,
    facts_reply,
    llm_server_fixture,
    manager_fixture,
    model_fixture,
    store_fixture,
)


def _gated(gate: asyncio.Event, arrived: asyncio.Semaphore | None = None) -> Any:
    """A responder that holds every chat request until ``gate`` is set: a slow model.

    Each request releases ``arrived`` when it comes in.
    """

    async def respond(body: dict[str, Any]) -> ReplyLike:
        if arrived is not None:
            arrived.release()
        await gate.wait()
        text = body["messages"][-1]["content"]
        if "<facts>" in text:  # consolidation: keep the new fact
            return decisions_reply({"fact": 1, "action": "add"})
        said = text.split("<message>\n", 1)[1].split("\n</message>", 1)[0]
        return facts_reply(fact(f"Said: {said}", "general"))

    return respond


def _message(user: int, n: int) -> UserMessage:
    return UserMessage(user, f"message number {n} with enough characters", message_id=n)


async def test_submit_returns_while_the_model_is_still_thinking(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int, bob: int
) -> None:
    assert not inspect.iscoroutinefunction(MemoryWorker.submit)
    gate, arrived = asyncio.Event(), asyncio.Semaphore(0)
    llm_server.responder = _gated(gate, arrived)
    async with MemoryWorker(manager, concurrency=2) as worker:
        assert worker.submit(_message(alice, 1))
        assert worker.submit(_message(bob, 2))
        for _ in range(2):  # both users' requests are in flight
            await arrived.acquire()
        assert worker.pending == 2
        assert await store.count(alice) == 0  # the model has not answered...
        assert worker.submit(_message(alice, 3))  # ...and submitting still does not wait
        gate.set()
        await worker.drain()
        assert worker.pending == 0
        assert sorted(m.content for m in await store.list_memories(alice)) == [
            "Said: message number 1 with enough characters",
            "Said: message number 3 with enough characters",
        ]
        assert await store.count(bob) == 1
    assert worker.stats.submitted == 3
    assert worker.stats.processed == 3


async def test_the_queue_is_bounded(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    gate = asyncio.Event()
    llm_server.responder = _gated(gate)
    async with MemoryWorker(manager, concurrency=1, max_pending=2) as worker:
        assert [worker.submit(_message(alice, n)) for n in range(1, 5)] == [
            True,
            True,
            False,
            False,
        ]
        assert worker.stats.rejected == 2
        gate.set()
    assert await store.count(alice) == 2


async def test_close_drains_then_refuses(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    llm_server.script(facts_reply(fact("Keeps bees on the roof", "hobby")))
    worker = MemoryWorker(manager)
    assert not worker.submit(_message(alice, 1))  # not started
    worker.start()
    assert worker.submit(UserMessage(alice, "my bees survived the winter on the roof", 2))
    await worker.aclose()
    assert [m.content for m in await store.list_memories(alice)] == ["Keeps bees on the roof"]
    assert not worker.submit(_message(alice, 3))
    assert worker.stats.rejected == 2
    with pytest.raises(RuntimeError):
        worker.start()


async def test_a_users_messages_are_processed_in_order(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    llm_server.script(*[facts_reply() for _ in range(5)])
    async with MemoryWorker(manager, concurrency=3) as worker:
        for n in range(1, 6):
            worker.submit(_message(alice, n))
    said = [r.messages[-1]["content"] for r in llm_server.chat_requests]
    assert [next(n for n in range(1, 6) if f"number {n} " in s) for s in said] == [1, 2, 3, 4, 5]


async def test_outages_are_retried_a_bounded_number_of_times(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    async with MemoryWorker(manager, retry_delay=0.01, max_attempts=2) as worker:
        # the client's 3 attempts all fail; the worker's second attempt succeeds
        llm_server.inject(Fault.server_error(502), times=3, endpoint="chat")
        llm_server.script(facts_reply(fact("Restores old bicycles", "hobby")))
        worker.submit(UserMessage(alice, "spent the weekend restoring an old bicycle", 1))
        await worker.drain()
        assert [m.content for m in await store.list_memories(alice)] == ["Restores old bicycles"]
        assert (worker.stats.retried, worker.stats.processed) == (1, 1)

        # both attempts fail: dropped, logged, nothing stored
        llm_server.inject(Fault.rate_limit(retry_after=0.01), times=6, endpoint="chat")
        worker.submit(UserMessage(alice, "I also collect vintage bicycle bells", 2))
        await worker.drain()
        assert (worker.stats.retried, worker.stats.failed) == (2, 1)
        assert await store.count(alice) == 1


async def test_an_unexpected_error_does_not_stop_the_worker(
    manager: MemoryManager,
    store: MemoryStore,
    llm_server: LLMServer,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm_server.script(
        facts_reply(fact("Belongs to nobody", "general")),
        facts_reply(fact("Sings in a choir", "hobby")),
    )
    async with MemoryWorker(manager, concurrency=1) as worker:
        worker.submit(UserMessage(987654, "a message from a user who does not exist", 1))
        worker.submit(UserMessage(alice, "I sing tenor in the community choir", 2))
    assert worker.stats.errors == 1
    assert "memory extraction of message 1 failed" in caplog.text
    assert [m.content for m in await store.list_memories(alice)] == ["Sings in a choir"]


def _outage_for(user: str, failures: list[int], heard: list[str]) -> Any:
    """A model that answers every message, except ``user``'s with HTTP 503 while
    ``failures[0]`` requests are left to fail. ``heard`` records each extraction
    request's message, in arrival order."""

    def respond(body: dict[str, Any]) -> ReplyLike:
        text = body["messages"][-1]["content"]
        if user in text and failures[0] > 0:
            failures[0] -= 1
            if "<message>" in text:
                heard.append(text.split("<message>\n", 1)[1].split("\n</message>", 1)[0])
            return Fault.server_error(503)
        if "<facts>" in text:  # consolidation: keep the new fact
            return decisions_reply({"fact": 1, "action": "add"})
        said = text.split("<message>\n", 1)[1].split("\n</message>", 1)[0]
        heard.append(said)
        return facts_reply(fact(f"Said: {said}", "general"))

    return respond


def _said(user: str, n: int) -> str:
    return f"{user} writes message number {n} of the day"


async def _wait_for(count: Any, expected: int) -> None:
    async with asyncio.timeout(30):
        while await count() != expected:  # noqa: ASYNC110 - the database has no event to wait on
            await asyncio.sleep(0.02)


async def test_a_retry_waits_without_holding_up_other_users(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int, bob: int
) -> None:
    # One task, as in the bot's smallest setting: before, alice's retry delay slept in
    # it and bob waited the whole delay (here a minute) behind her.
    heard: list[str] = []
    llm_server.responder = _outage_for("alice", [10**6], heard)
    worker = MemoryWorker(manager, concurrency=1, retry_delay=60, max_attempts=2)
    worker.start()
    for user, name in ((alice, "alice"), (bob, "bob")):
        for n in (1, 2):
            assert worker.submit(UserMessage(user, _said(name, n), message_id=user * 10 + n))
    await _wait_for(lambda: store.count(bob), 2)
    assert [m.content for m in reversed(await store.list_memories(bob))] == [
        f"Said: {_said('bob', 1)}",
        f"Said: {_said('bob', 2)}",
    ]
    # alice's first message failed (the client's 3 tries) and waits for its retry;
    # her second waits behind it, never tried before it.
    assert heard.count(_said("alice", 1)) == 3
    assert _said("alice", 2) not in heard
    assert await store.count(alice) == 0
    assert worker.pending == 2
    assert (worker.stats.retried, worker.stats.processed) == (1, 2)
    await worker.aclose(grace_period=0)  # the pending retry's timer is cancelled
    assert worker.pending == 2


async def test_after_an_outage_a_users_messages_are_stored_in_order(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int, bob: int
) -> None:
    heard: list[str] = []
    llm_server.responder = _outage_for("alice", [3], heard)  # her first attempt fails
    async with MemoryWorker(manager, concurrency=1, retry_delay=0.3, max_attempts=2) as worker:
        for n in (1, 2, 3):
            worker.submit(UserMessage(alice, _said("alice", n), message_id=n))
        worker.submit(UserMessage(bob, _said("bob", 1), message_id=9))
    assert heard.index(_said("bob", 1)) < heard.index(_said("alice", 2))
    assert [h for h in heard if "alice" in h] == [_said("alice", 1)] * 4 + [
        _said("alice", 2),
        _said("alice", 3),
    ]
    assert [m.content for m in reversed(await store.list_memories(alice))] == [
        f"Said: {_said('alice', n)}" for n in (1, 2, 3)
    ]
    assert (worker.stats.retried, worker.stats.processed, worker.stats.failed) == (1, 4, 0)


def test_worker_limits_are_checked(manager: MemoryManager) -> None:
    for bad in (
        {"concurrency": 0},
        {"max_pending": 1, "concurrency": 2},
        {"retry_delay": -1},
        {"max_attempts": 0},
    ):
        with pytest.raises(InvalidInputError):
            MemoryWorker(manager, **bad)
