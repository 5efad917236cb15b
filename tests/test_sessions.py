"""Conformance tests of barkeeper.conversations.SessionStore: sessions and append-only runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from barkeeper.companion import UserStore
from barkeeper.config import Settings
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError


@pytest.fixture
async def alice(db: Database) -> int:
    return (await UserStore(db).get_or_create_discord_user(201, username="alice")).id


@pytest.fixture
async def bob(db: Database) -> int:
    return (await UserStore(db).get_or_create_discord_user(202, username="bob")).id


async def _run_rows(db: Database, session_id: str) -> list[dict[str, Any]]:
    """Each run row with its xmin: the transaction that last wrote it."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT xmin::text AS xmin, ctid::text AS ctid, * FROM agent_runs "
            "WHERE session_id = $1 ORDER BY id",
            session_id,
        )
    return [dict(r) for r in rows]


async def test_one_session_per_agent_user_and_channel(db: Database, alice: int, bob: int) -> None:
    store = SessionStore(db)
    base = await store.get_or_create_session("hero-team", alice, channel_id=42)
    assert (base.agent_id, base.user_id, base.channel_id, base.state) == (
        "hero-team",
        alice,
        42,
        {},
    )
    assert (await store.get_or_create_session("hero-team", alice, channel_id=42)).id == base.id
    others = [
        await store.get_or_create_session("hero-team", alice, channel_id=43),
        await store.get_or_create_session("hero-team", alice),
        await store.get_or_create_session("other-agent", alice, channel_id=42),
        await store.get_or_create_session("hero-team", bob, channel_id=42),
    ]
    assert len({base.id, *(s.id for s in others)}) == 5
    no_channel = await store.get_or_create_session("hero-team", alice, None)
    assert no_channel.id == others[1].id and no_channel.channel_id is None
    assert await store.get_session(base.id) == base
    assert await store.get_session("missing") is None


async def test_concurrent_get_or_create_makes_one_session(db: Database, alice: int) -> None:
    store = SessionStore(db)
    got = await asyncio.gather(
        *(store.get_or_create_session("a", alice, channel_id=1) for _ in range(20))
    )
    assert len({s.id for s in got}) == 1
    assert await store.count_user_sessions(alice) == 1


async def test_session_errors(db: Database, alice: int) -> None:
    store = SessionStore(db)
    with pytest.raises(NotFoundError):
        await store.get_or_create_session("a", alice + 99)
    for agent in ("", "a\x00", "x" * 256):
        with pytest.raises(InvalidInputError):
            await store.get_or_create_session(agent, alice)
    with pytest.raises(InvalidInputError):
        await store.get_or_create_session("a", alice, channel_id=0)
    assert await store.count_user_sessions(alice) == 0


async def test_state_replace_and_merge(db: Database, alice: int) -> None:
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    state = {"topic": "tea", "nested": {"list": [1, "ü", None]}, "emoji": "🫖"}
    replaced = await store.update_state(session.id, state)
    assert replaced.state == state
    assert replaced.updated_at > session.updated_at
    merged = await store.merge_state(session.id, {"topic": "coffee", "mood": "calm"})
    assert merged.state == {**state, "topic": "coffee", "mood": "calm"}
    again = await store.update_state(session.id, {"only": 1})
    assert again.state == {"only": 1}, "update_state replaces the whole state"
    assert (await store.get_session(session.id)).state == {"only": 1}  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [{"a": "\x00"}, {"a": float("nan")}, {2: "x"}, ["list"], "str"])
async def test_bad_state_is_refused_and_kept(db: Database, alice: int, bad: Any) -> None:
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    await store.update_state(session.id, {"kept": True})
    with pytest.raises(InvalidInputError):
        await store.update_state(session.id, bad)
    with pytest.raises(InvalidInputError):
        await store.merge_state(session.id, bad)
    assert (await store.get_session(session.id)).state == {"kept": True}  # type: ignore[union-attr]


async def test_state_of_missing_session(db: Database) -> None:
    store = SessionStore(db)
    with pytest.raises(NotFoundError):
        await store.update_state("missing", {})
    with pytest.raises(NotFoundError):
        await store.merge_state("missing", {})


async def test_runs_are_stored_and_read_newest_n_oldest_first(db: Database, alice: int) -> None:
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    other = await store.get_or_create_session("b", alice)
    await store.add_run(other.id, input="elsewhere")
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function"}]},
    ]
    first = await store.add_run(
        session.id,
        input="hi",
        output="hello!",
        messages=messages,
        metrics={"input_tokens": 3, "time": 0.25},
        status="completed",
    )
    assert (first.session_id, first.user_id, first.input, first.output) == (
        session.id,
        alice,
        "hi",
        "hello!",
    )
    assert (first.messages, first.metrics, first.status) == (
        messages,
        {"input_tokens": 3, "time": 0.25},
        "completed",
    )
    assert len(first.run_id) == 36
    runs = [first] + [await store.add_run(session.id, input=f"q{i}") for i in range(1, 15)]
    recent = await store.get_recent_runs(session.id)
    assert recent == runs[-10:], "AGENT_HISTORY_RUNS defaults to 10, returned oldest first"
    assert await store.get_recent_runs(session.id, 3) == runs[-3:]
    assert await store.get_recent_runs(session.id, 0) == []
    assert await store.get_recent_runs(session.id, 100) == runs
    assert await store.get_recent_runs("missing") == []
    assert [r async for r in store.iter_runs(session.id, page_size=4)] == runs
    assert [r async for r in store.iter_runs(session.id, page_size=5)] == runs
    assert await store.count_runs(session.id) == 15
    assert (await store.get_session(session.id)).updated_at >= runs[-1].created_at  # type: ignore[union-attr]


async def test_history_runs_is_configurable(db: Database, settings: Settings, alice: int) -> None:
    store = SessionStore.from_settings(db, settings.model_copy(update={"agent_history_runs": 2}))
    session = await store.get_or_create_session("a", alice)
    runs = [await store.add_run(session.id, input=str(i)) for i in range(5)]
    assert await store.get_recent_runs(session.id) == runs[-2:]
    assert await SessionStore(db, history_runs=0).get_recent_runs(session.id) == []


async def test_runs_are_append_only(db: Database, alice: int) -> None:
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    for i in range(3):
        await store.add_run(session.id, input=f"q{i}", messages=[{"role": "user", "content": i}])
    before = await _run_rows(db, session.id)
    assert len({r["xmin"] for r in before}) == 3, "one transaction per run"
    for i in range(3, 8):
        await store.add_run(session.id, input=f"q{i}")
        await store.update_state(session.id, {"turn": i})
        await store.merge_state(session.id, {"seen": i})
    await store.get_recent_runs(session.id)
    after = await _run_rows(db, session.id)
    assert after[:3] == before, "older runs are never rewritten (same xmin, ctid, contents)"
    assert len(after) == 8


async def test_run_text_is_cleaned_and_json_checked(db: Database, alice: int) -> None:
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    run = await store.add_run(
        session.id,
        input="in\x00put",
        output="out\udc80put",
        messages=[{"role": "tool", "content": "binary\x00output", "na\x00me": "k"}],
    )
    assert (run.input, run.output) == ("in\ufffdput", "out\ufffdput")
    assert run.messages == [{"role": "tool", "content": "binary\ufffdoutput", "na\ufffdme": "k"}]
    bad_calls: list[dict[str, Any]] = [
        {"status": "finished"},
        {"metrics": {"a": "\x00"}},
        {"metrics": ["x"]},
        {"messages": "not a list"},
        {"messages": [{"a": float("inf")}]},
        {"input": 5},
    ]
    for kwargs in bad_calls:
        with pytest.raises(InvalidInputError):
            await store.add_run(session.id, **kwargs)
    with pytest.raises(InvalidInputError):
        await SessionStore(db, max_text_chars=3).add_run(session.id, input="long")
    with pytest.raises(NotFoundError):
        await store.add_run("missing", input="x")
    assert await store.count_runs(session.id) == 1


async def test_user_sessions_listing_and_deletion(db: Database, alice: int, bob: int) -> None:
    store = SessionStore(db)
    a1 = await store.get_or_create_session("a", alice, channel_id=1)
    a2 = await store.get_or_create_session("b", alice)
    b1 = await store.get_or_create_session("a", bob, channel_id=1)
    for session in (a1, a2, a2, b1):
        await store.add_run(session.id, input="x")
    assert [s.id for s in await store.list_user_sessions(alice)] == [a1.id, a2.id]
    assert await store.count_user_sessions(alice) == 2
    assert await store.count_user_runs(alice) == 3
    assert await store.delete_session(a1.id) is True
    assert await store.delete_session(a1.id) is False
    assert await store.count_user_runs(alice) == 2, "runs go with their session"
    assert await store.delete_user_sessions(alice) == 1
    assert await store.list_user_sessions(alice) == []
    assert await store.count_user_runs(alice) == 0
    assert await store.count_user_runs(bob) == 1
    assert await store.get_recent_runs(b1.id) != []


async def test_recent_runs_plan_uses_the_session_index(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT * FROM agent_runs WHERE session_id = $1 ORDER BY id DESC LIMIT 10",
                "s",
            )
        )
    assert "ix_agent_runs_session" in plan
    assert "Sort" not in plan


async def test_add_run_never_deadlocks_with_forget(db: Database, alice: int) -> None:
    """Privacy's forget locks the user, deletes runs, then sessions; add_run must not
    take the session first and then wait for the user."""
    store = SessionStore(db)
    session = await store.get_or_create_session("a", alice)
    await store.add_run(session.id, input="before")
    async with db.transaction() as conn:
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", alice)
        await conn.execute("DELETE FROM agent_runs WHERE user_id = $1", alice)
        task = asyncio.ensure_future(store.add_run(session.id, input="during"))
        await asyncio.sleep(0.3)
        await conn.execute("DELETE FROM agent_sessions WHERE user_id = $1", alice)
        await conn.execute("DELETE FROM users WHERE id = $1", alice)
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(outcome, NotFoundError), outcome
    assert await store.count_user_runs(alice) == 0


async def test_recent_runs_by_the_sessions_key_without_creating_it(
    db: Database, alice: int, bob: int
) -> None:
    store = SessionStore(db)
    assert await store.get_recent_runs_for("hero-team", alice, 42, 5) == []
    async with db.acquire() as conn:  # reading by key made no session
        assert await conn.fetchval("SELECT count(*) FROM agent_sessions") == 0
    here = await store.get_or_create_session("hero-team", alice, channel_id=42)
    elsewhere = await store.get_or_create_session("hero-team", alice)
    bobs = await store.get_or_create_session("hero-team", bob, channel_id=42)
    for i in range(4):
        await store.add_run(here.id, input=f"here {i}", output="ok")
        await store.add_run(elsewhere.id, input=f"elsewhere {i}", output="ok")
        await store.add_run(bobs.id, input=f"bob {i}", output="ok")
    runs = await store.get_recent_runs_for("hero-team", alice, 42, 3)
    assert runs == await store.get_recent_runs(here.id, 3)
    assert [r.input for r in runs] == ["here 1", "here 2", "here 3"]
    no_channel = await store.get_recent_runs_for("hero-team", alice, None, 10)
    assert [r.input for r in no_channel] == [f"elsewhere {i}" for i in range(4)]
    assert await store.get_recent_runs_for("other-agent", alice, 42, 3) == []
    assert await store.get_recent_runs_for("hero-team", alice, 42, 0) == []
