"""Consolidation: duplicates caught without the model, updates and invalidations with history,
the shown-ids guard, a prompt bounded by k, failures that write nothing."""

from __future__ import annotations

import logging

import pytest

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, QueryError
from barkeeper.learning import (
    CandidateFact,
    Consolidator,
    MemoryManager,
    UserMessage,
    duplicate_kind,
)
from barkeeper.learning._consolidation import content_words, word_overlap
from barkeeper.learning._prompts import CONSOLIDATION_SYSTEM
from barkeeper.llm import OpenAIChatModel
from barkeeper.memory import MemoryStore
from barkeeper.testing.llm import Fault, LLMServer
from tests.test_extraction import (  # noqa: F401 - fixtures
    alice_fixture,
    bob_fixture,
    decisions_reply,
    fact,
    facts_reply,
    llm_server_fixture,
    manager_fixture,
    model_fixture,
    prompt_text,
    store_fixture,
)

# --- duplicates by rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "existing", "kind"),
    [
        ("Likes green tea", "likes green tea.", "exact"),
        ("Likes  GREEN tea!", "Likes green tea", "exact"),
        ("likes green tea", "Likes green tea and oolong", "substring"),
        ("Works night shifts", "Works night shifts as a nurse", "substring"),
        ("Works night shift as nurse", "Works night shifts as a nurse", "overlap"),
        ("Has a dog named Rex", "The user has a dog called Rex", "overlap"),
        # the longer candidate adds something: for the model to weigh
        ("Has a dog named Rex and a cat", "Has a dog named Rex", None),
        ("Has a dog allergy", "Has a dog", None),
        ("Lives in Berlin", "Lives in Paris", None),
        ("Is 31 years old", "Is 30 years old", None),
        ("Does not like cats", "Likes cats", None),
        ("Doesn't drink coffee anymore", "Drinks coffee anymore", None),
        ("", "Likes tea", None),
        ("Likes tea", "Plays the cello", None),
    ],
)
def test_duplicate_kind(candidate: str, existing: str, kind: str | None) -> None:
    assert duplicate_kind(candidate, existing) == kind


def test_word_overlap_uses_content_words() -> None:
    assert content_words("The user's dogs are in the garden") == {"dog", "garden"}
    assert word_overlap("Has two dogs", "Has two dogs") == 1.0
    assert word_overlap("Lives in Paris", "Lives in Berlin") == 0.5
    assert word_overlap("the", "a") == 0.0


async def test_duplicates_are_confirmed_without_the_model(
    store: MemoryStore, model: OpenAIChatModel, llm_server: LLMServer, alice: int
) -> None:
    nurse = await store.add(
        alice,
        "Works night shifts as a nurse",
        memory_type="work",
        confidence=0.7,
        importance=0.6,
        source_message_ids=[10],
    )
    consolidator = Consolidator(store, model)
    for n, text in enumerate(
        ["works night shifts as a nurse.", "Works night shifts", "Works night shift as nurse"]
    ):
        changes = await consolidator.consolidate(
            alice, [CandidateFact("work", text, confidence=0.9)], source_message_id=11 + n
        )
        assert [(c.action, c.memory_id, c.changed_by) for c in changes] == [
            ("confirm", nurse.id, "extraction")
        ]
    assert llm_server.requests == []  # not one model call
    (memory,) = await store.list_memories(alice)
    assert memory.content == "Works night shifts as a nurse"
    assert memory.confidence == pytest.approx(0.9)
    assert memory.source_message_ids == (10, 11, 12, 13)
    history = await store.history(alice, nurse.id)
    assert [v.change for v in history] == ["add", "update", "update", "update"]
    assert history[1].changed_by == "extraction"
    assert history[1].reason is not None and "exact" in history[1].reason


async def test_duplicate_from_a_message_costs_only_the_extraction_call(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    await store.add(alice, "Has a greyhound called Pixel", memory_type="family")
    llm_server.script(
        facts_reply(
            fact("has a greyhound called Pixel", "family"),
            fact("Has a greyhound called pixel!", "family"),  # same fact twice in one reply
        )
    )
    outcome = await manager.process(
        UserMessage(alice, "Pixel my greyhound stole a whole baguette today", message_id=40)
    )
    assert [c.action for c in outcome.changes] == ["confirm"]
    assert len(llm_server.chat_requests) == 1
    assert await store.count(alice) == 1


# --- the model decides ---------------------------------------------------------------------


async def test_update_keeps_version_history(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    paris = await store.add(alice, "Lives in Paris", memory_type="location", changed_by="user")
    llm_server.script(
        facts_reply(fact("Lives in Berlin", "location")),
        decisions_reply(
            {
                "fact": 1,
                "action": "update",
                "memory_id": paris.id,
                "content": "Lives in Berlin, having moved from Paris",
                "reason": "moved to Berlin",
            }
        ),
    )
    outcome = await manager.process(
        UserMessage(alice, "Finally unpacked the last boxes in my Berlin flat", message_id=50)
    )
    assert [(c.action, c.memory_id) for c in outcome.changes] == [("update", paris.id)]
    (memory,) = await store.list_memories(alice)
    assert memory.id == paris.id
    assert memory.content == "Lives in Berlin, having moved from Paris"
    assert memory.version == 2
    assert memory.source_message_ids == (50,)
    history = await store.history(alice, paris.id)
    assert [(v.change, v.changed_by, v.reason, v.content) for v in history] == [
        ("add", "user", None, "Lives in Paris"),
        ("update", "llm", "moved to Berlin", "Lives in Berlin, having moved from Paris"),
    ]
    _extraction, consolidation = llm_server.chat_requests
    assert consolidation.messages[0]["content"] == CONSOLIDATION_SYSTEM
    shown = prompt_text(consolidation)
    assert f"[id {paris.id}] (location) Lives in Paris" in shown
    assert "1. (location, present) Lives in Berlin" in shown


async def test_invalidation_closes_the_old_memory_and_adds_the_new(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    dating = await store.add(alice, "Is dating Sam", memory_type="relationship")
    llm_server.script(
        facts_reply(fact("Broke up with Sam", "relationship", temporal_relevance="past")),
        decisions_reply(
            {"fact": 1, "action": "invalidate", "memory_id": dating.id, "reason": "broke up"}
        ),
    )
    outcome = await manager.process(
        UserMessage(alice, "Sam and I broke up on Sunday, it's for the best", message_id=60)
    )
    assert [(c.action, c.changed_by) for c in outcome.changes] == [
        ("invalidate", "llm"),
        ("add", "llm"),
    ]
    live = await store.list_memories(alice)
    assert [m.content for m in live] == ["Broke up with Sam"]
    assert live[0].temporal_relevance == "past"
    closed = await store.get(alice, dating.id)
    assert not closed.is_valid
    assert [(v.change, v.changed_by, v.reason) for v in await store.history(alice, dating.id)] == [
        ("add", "system", None),
        ("invalidate", "llm", "broke up"),
    ]
    assert [h.item.id for h in await store.similar(alice, "dating Sam")] == [live[0].id]


async def test_none_changes_nothing(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    tea = await store.add(alice, "Drinks green tea every morning", memory_type="preference")
    llm_server.script(
        facts_reply(fact("Enjoys tea in the morning", "preference")),
        decisions_reply({"fact": 1, "action": "none", "reason": "already known"}),
    )
    outcome = await manager.process(
        UserMessage(alice, "nothing beats a cup of tea first thing in the morning", message_id=1)
    )
    assert outcome.status == "extracted" and outcome.changes == ()
    assert await store.list_memories(alice) == [await store.get(alice, tea.id)]
    assert (await store.get(alice, tea.id)).version == 1


async def test_several_facts_are_decided_in_one_call(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    paris = await store.add(alice, "Lives in Paris", memory_type="location")
    bakery = await store.add(alice, "Works at a bakery", memory_type="work")
    llm_server.script(
        facts_reply(fact("Lives in Lyon", "location"), fact("Works at a bookshop", "work")),
        decisions_reply(
            {"fact": 1, "action": "invalidate", "memory_id": paris.id, "reason": "moved"},
            {
                "fact": 2,
                "action": "update",
                "memory_id": bakery.id,
                "content": "Works at a bookshop",
            },
        ),
    )
    outcome = await manager.process(
        UserMessage(alice, "new city, new job: Lyon and a little bookshop", message_id=2)
    )
    assert sorted(c.action for c in outcome.changes) == ["add", "invalidate", "update"]
    assert len(llm_server.chat_requests) == 2
    assert sorted(m.content for m in await store.list_memories(alice)) == [
        "Lives in Lyon",
        "Works at a bookshop",
    ]


async def test_ids_the_model_was_not_shown_are_ignored(
    store: MemoryStore,
    model: OpenAIChatModel,
    llm_server: LLMServer,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = MemoryManager(store, model, extraction_rate=1.0, k=1)
    cello = await store.add(alice, "Plays the cello", memory_type="hobby")
    paris = await store.add(alice, "Lives in Paris", memory_type="location")
    llm_server.script(
        facts_reply(fact("Lives in Berlin", "location")),
        decisions_reply(
            {"fact": 1, "action": "update", "memory_id": cello.id, "content": "Plays drums"},
            {"fact": 1, "action": "invalidate", "memory_id": 987654321, "reason": "x"},
            {"fact": 7, "action": "add"},
            {"fact": 1, "action": "update", "memory_id": None, "content": "Lives nowhere"},
        ),
    )
    with caplog.at_level(logging.WARNING, logger="barkeeper.memory"):
        outcome = await manager.process(
            UserMessage(alice, "I live in Berlin now, it's been a wild year", message_id=3)
        )
    assert outcome.changes == ()
    shown = prompt_text(llm_server.chat_requests[1])
    assert f"[id {paris.id}]" in shown and f"[id {cello.id}]" not in shown
    assert "which it was not shown" in caplog.text
    assert str(cello.id) in caplog.text and "987654321" in caplog.text
    assert (await store.get(alice, cello.id)).version == 1
    assert (await store.get(alice, paris.id)).version == 1
    assert await store.count(alice) == 2


async def test_prompt_size_does_not_grow_with_the_memories(
    store: MemoryStore, model: OpenAIChatModel, llm_server: LLMServer, alice: int, bob: int
) -> None:
    manager = MemoryManager(store, model, extraction_rate=1.0, k=10)
    tokens = {}
    for user, count in ((alice, 20), (bob, 200)):
        for n in range(count):
            await store.add(user, f"Likes board game number {n}", memory_type="hobby")
        llm_server.reset()
        llm_server.script(
            facts_reply(fact("Likes cooperative board games", "hobby")),
            decisions_reply({"fact": 1, "action": "none"}),
        )
        await manager.process(
            UserMessage(user, "cooperative board games are my favourite thing", message_id=7)
        )
        consolidation = llm_server.chat_requests[1]
        assert prompt_text(consolidation).count("[id ") == 10
        tokens[count] = consolidation.prompt_tokens
    assert tokens[200] <= tokens[20] * 1.1


async def test_failed_consolidation_writes_nothing(
    manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    paris = await store.add(alice, "Lives in Paris", memory_type="location", confidence=0.5)
    llm_server.script(
        facts_reply(
            fact("Lives in Paris", "location"),  # a duplicate: would be confirmed
            fact("Lives in Berlin", "location"),  # needs the model
        ),
        Fault.malformed_json(),
        Fault.malformed_json(),
    )
    outcome = await manager.process(
        UserMessage(alice, "Paris or Berlin, I can never decide where I live", message_id=4)
    )
    assert outcome.status == "failed" and not outcome.retryable
    assert len(outcome.facts) == 2
    assert await store.list_memories(alice) == [paris]
    assert (await store.get(alice, paris.id)).version == 1


async def test_a_failure_among_the_changes_writes_none_of_them(
    db: Database, manager: MemoryManager, store: MemoryStore, llm_server: LLMServer, alice: int
) -> None:
    tea = await store.add(alice, "Drinks green tea", memory_type="preference", confidence=0.5)
    paris = await store.add(alice, "Lives in Paris", memory_type="location")
    bakery = await store.add(alice, "Works at a bakery", memory_type="work")
    before = {m.id: (m, await store.history(alice, m.id)) for m in (tea, paris, bakery)}
    # A real constraint the last change (the new fact replacing Paris) breaks, after a
    # confirmation, an invalidation and an update have been made in the same message.
    async with db.acquire() as conn:
        await conn.execute(
            "ALTER TABLE memories ADD CONSTRAINT test_no_berlin CHECK (content NOT LIKE '%Berlin%')"
        )
    replies = (
        facts_reply(
            fact("Drinks green tea", "preference"),
            fact("Lives in Berlin", "location"),
            fact("Works at a bookshop", "work"),
        ),
        decisions_reply(
            {"fact": 1, "action": "invalidate", "memory_id": paris.id, "reason": "moved"},
            {
                "fact": 2,
                "action": "update",
                "memory_id": bakery.id,
                "content": "Works at a bookshop",
            },
        ),
    )
    message = UserMessage(alice, "drinking green tea in Berlin after my bookshop shift", 5)
    llm_server.script(*replies)
    with pytest.raises(QueryError) as failed:
        await manager.process(message)
    assert failed.value.sqlstate == "23514"
    for memory, history in before.values():
        assert await store.get(alice, memory.id) == memory
        assert await store.history(alice, memory.id) == history
    assert await store.count(alice, include_invalid=True) == 3

    # the same message once the constraint is gone: every change is made
    async with db.acquire() as conn:
        await conn.execute("ALTER TABLE memories DROP CONSTRAINT test_no_berlin")
    llm_server.script(*replies)
    outcome = await manager.process(message)
    assert sorted(c.action for c in outcome.changes) == ["add", "confirm", "invalidate", "update"]
    assert sorted(m.content for m in await store.list_memories(alice)) == [
        "Drinks green tea",
        "Lives in Berlin",
        "Works at a bookshop",
    ]


async def test_consolidator_limits_are_checked(store: MemoryStore, model: OpenAIChatModel) -> None:
    with pytest.raises(InvalidInputError):
        Consolidator(store, model, k=0)
    with pytest.raises(InvalidInputError):
        Consolidator(store, model, min_similarity=3)
