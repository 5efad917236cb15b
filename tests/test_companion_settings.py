"""Per-place companion settings on real PostgreSQL: feature switches (global and per
guild), personas per guild and channel, ``/connect`` opt-ins, fact associations (who,
what, never sensitive, removed by ``/connect off`` and ``privacy forget``), and the
facts-learnt counter fed by the memory worker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from barkeeper.companion import (
    FEATURES,
    Companion,
    CompanionSettings,
    PersonaCatalog,
    UserStore,
    default_persona,
    load_catalog,
)
from barkeeper.db import Database
from barkeeper.errors import ConfigError, InvalidInputError
from barkeeper.learning import MemoryManager, MemoryWorker, UserMessage
from barkeeper.memory import MemoryStore
from barkeeper.privacy import Privacy
from barkeeper.testing.llm import LLMServer
from tests.test_extraction import (  # noqa: F401 - fixtures
    decisions_reply,
    fact,
    facts_reply,
    llm_server_fixture,
    manager_fixture,
    model_fixture,
    store_fixture,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD = 800_000_000_000_000_001
OTHER_GUILD = 800_000_000_000_000_002
CHANNEL = 900_000_000_000_000_001
OTHER_CHANNEL = 900_000_000_000_000_002

OWL = """
name = "Owl"
description = "a quiet night host."
voice = "Soft and brief."
"""


async def _users(db: Database, *names: str) -> list[int]:
    users = UserStore(db)
    return [
        (await users.get_or_create_discord_user(1000 + i, username=n, global_name=n.title())).id
        for i, n in enumerate(names)
    ]


async def test_features_combine_the_global_setting_and_the_guild_switches(db: Database) -> None:
    settings = CompanionSettings(db)
    # A guild's defaults: everything on but associations, which its admins must turn on.
    assert await settings.features(GUILD) == set(FEATURES) - {"associations"}
    assert not await settings.feature_on(GUILD, "associations")
    switches = await settings.set_feature(GUILD, "mood", False)
    assert switches["mood"] is False and switches["opinions"] is True
    await settings.set_feature(GUILD, "associations", True)
    assert await settings.features(GUILD) == set(FEATURES) - {"mood"}
    # Another guild and DMs are untouched; DMs never have associations.
    assert await settings.feature_on(OTHER_GUILD, "mood")
    assert await settings.features(None) == set(FEATURES) - {"associations"}
    # A feature off in BARKEEPER_FEATURES is off everywhere, whatever a guild says.
    narrow = CompanionSettings(db, {"mood", "associations", "followups"})
    assert await narrow.features(GUILD) == {"associations", "followups"}
    assert not await narrow.feature_on(GUILD, "opinions")
    assert await narrow.feature_on(None, "followups")
    with pytest.raises(InvalidInputError, match="unknown feature"):
        await settings.feature_on(GUILD, "telepathy")
    with pytest.raises(InvalidInputError, match="unknown feature"):
        await settings.set_feature(GUILD, "telepathy", True)


async def test_a_channel_persona_wins_over_the_guilds_which_wins_over_the_default(
    db: Database, tmp_path: Path
) -> None:
    (tmp_path / "owl.toml").write_text(OWL)
    catalog = load_catalog(default_persona(), tmp_path)
    assert catalog.names() == ["Bartender", "Night Owl", "Owl"]
    assert catalog.get("  owl ") is not None and catalog.get("nobody") is None
    companion = Companion(db, personas=catalog, clock=lambda: T0)
    [alice] = await _users(db, "alice")

    async def persona_in(channel: int | None, guild: int | None = GUILD) -> str:
        ctx = await companion.before_reply(alice, guild, "hello", channel_id=channel)
        assert ctx.persona is not None
        return ctx.persona.name

    assert await persona_in(CHANNEL) == "Bartender"
    await companion.settings.set_persona(GUILD, None, "Night Owl")
    assert await persona_in(CHANNEL) == "Night Owl"
    await companion.settings.set_persona(GUILD, CHANNEL, "Owl")
    assert await persona_in(CHANNEL) == "Owl"
    assert await persona_in(OTHER_CHANNEL) == "Night Owl"
    assert await persona_in(CHANNEL, OTHER_GUILD) == "Bartender"
    assert await persona_in(None, None) == "Bartender"
    await companion.settings.set_persona(GUILD, CHANNEL, None)  # reset: the guild's again
    assert await persona_in(CHANNEL) == "Night Owl"
    await companion.settings.set_persona(GUILD, None, None)
    assert await persona_in(CHANNEL) == "Bartender"
    # A persona removed from the catalogue since it was chosen: the default.
    await companion.settings.set_persona(GUILD, None, "Gone")
    assert await persona_in(CHANNEL) == "Bartender"


def test_the_catalog_refuses_two_personas_of_one_name(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(OWL)
    (tmp_path / "b.toml").write_text(OWL.replace("Soft", "Very soft"))
    with pytest.raises(ConfigError, match="two personas are called 'Owl'"):
        load_catalog(default_persona(), tmp_path)
    with pytest.raises(ConfigError, match="BARKEEPER_PERSONAS_DIR"):
        load_catalog(default_persona(), tmp_path / "missing")
    assert PersonaCatalog(default_persona()).names() == ["Bartender"]
    # A tuned Bartender as BARKEEPER_PERSONA_FILE replaces the shipped one, no clash.
    tuned = replace(default_persona(), voice="Gruffer.")
    catalog = load_catalog(tuned)
    assert catalog.names() == ["Bartender", "Night Owl"] and catalog.get("bartender") is tuned


async def _memories(store: MemoryStore, user: int, guild: int | None, *items: Any) -> list[int]:
    ids = []
    for item in items:
        content, kind = item if isinstance(item, tuple) else (item, "hobby")
        ids.append((await store.add(user, content, memory_type=kind, guild_id=guild)).id)
    return ids


async def _pairs(db: Database) -> set[tuple[int, int]]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT memory_id_1, memory_id_2 FROM fact_associations")
    return {(r["memory_id_1"], r["memory_id_2"]) for r in rows}


async def test_associations_only_between_connected_members_never_sensitive(
    db: Database, store: MemoryStore
) -> None:
    companion = Companion(db, clock=lambda: T0)
    settings = companion.settings
    alice, bob, carol = await _users(db, "alice", "bob", "carol")
    [a_cello, a_grief, a_health, a_elsewhere] = await _memories(
        store,
        alice,
        GUILD,
        "Alice plays the cello in an orchestra",
        ("Alice plays the cello at her late father's grave", "grief_context"),
        ("Alice plays the cello less since her arthritis diagnosis", "health"),
        "Alice likes hiking",
    )
    [b_cello, b_grief] = await _memories(
        store,
        bob,
        GUILD,
        "Bob plays the cello every Sunday",
        ("Bob lost his father; he plays cello to cope", "coping_mechanism"),
    )
    [c_cello] = await _memories(store, carol, GUILD, "Carol plays the cello too")
    [b_other_guild] = await _memories(store, bob, OTHER_GUILD, "Bob likes hiking in the Alps")

    async def shown(user: int, guild: int = GUILD) -> list[tuple[str, str, str]]:
        ctx = await companion.before_reply(user, guild, "what's new?")
        return [(a.name, a.mine, a.theirs) for a in ctx.associations]

    # Nobody connected: nothing is discovered, even with the feature on.
    await settings.set_feature(GUILD, "associations", True)
    await companion.after_reply(alice, GUILD, "hello")
    assert await _pairs(db) == set()
    # Alice and Bob connect, Carol does not: only Alice and Bob's cello are linked.
    await settings.set_connected(alice, GUILD, True)
    await settings.set_connected(bob, GUILD, True)
    await companion.after_reply(alice, GUILD, "hello")
    assert await _pairs(db) == {(min(a_cello, b_cello), max(a_cello, b_cello))}
    never_linked = (a_grief, a_health, b_grief, c_cello, a_elsewhere, b_other_guild)
    assert all(never_linked)
    assert await shown(alice) == [
        ("Bob", "Alice plays the cello in an orchestra", "Bob plays the cello every Sunday")
    ]
    assert [n for n, _, _ in await shown(bob)] == ["Alice"]
    assert await shown(carol) == [] and await shown(alice, OTHER_GUILD) == []

    # The guild's admins switch it off: nothing is shown (nor discovered).
    await settings.set_feature(GUILD, "associations", False)
    assert await shown(alice) == []
    await settings.set_feature(GUILD, "associations", True)
    # A global switch off hides them too.
    narrow = Companion(db, features=set(FEATURES) - {"associations"}, clock=lambda: T0)
    assert (await narrow.before_reply(alice, GUILD, "hi")).associations == ()

    # Bob turns /connect off: his links go, and nothing is shown to Alice.
    assert await settings.set_connected(bob, GUILD, False) == 1
    assert await _pairs(db) == set() and await shown(alice) == []
    await settings.set_connected(bob, GUILD, True)
    await companion.after_reply(bob, GUILD, "hello again")
    assert len(await _pairs(db)) == 1

    # privacy forget removes them (with the person's memories).
    privacy = Privacy(db)
    await privacy.forget(await privacy.find_user(user_id=bob))
    assert await _pairs(db) == set() and await shown(alice) == []


async def test_new_facts_learnt_by_the_worker_count_in_bot_states(
    db: Database, manager: MemoryManager, llm_server: LLMServer
) -> None:
    companion = Companion(db, clock=lambda: T0)
    [alice] = await _users(db, "alice")
    llm_server.script(
        facts_reply(fact("Has a dog called Rex", "hobby"), fact("Lives in Porto", "location"))
    )
    async with MemoryWorker(manager, on_learned=companion.count_learned) as worker:
        worker.submit(
            UserMessage(alice, "my dog Rex and I just moved to Porto", message_id=1, guild_id=GUILD)
        )
        await worker.drain()
    state = await companion.state.get_state(GUILD)
    assert state.facts_learned == 2 and state.first_activated_at == T0
    assert (await companion.state.get_state(None)).facts_learned == 0


async def test_discovery_looks_only_at_what_changed_and_keeps_the_strongest(
    db: Database, store: MemoryStore
) -> None:
    tuning = replace(default_persona().tuning, association_max_per_memory=1)
    companion = Companion(db, replace(default_persona(), tuning=tuning), clock=lambda: T0)
    settings = companion.settings
    alice, bob, carol = await _users(db, "alice", "bob", "carol")
    await _memories(store, alice, GUILD, "Alice plays the cello in an orchestra")
    [b_cello] = await _memories(store, bob, GUILD, "Bob plays the cello in an orchestra")
    await _memories(store, carol, GUILD, "Carol plays the cello")
    await settings.set_feature(GUILD, "associations", True)
    for who in (alice, bob, carol):
        await settings.set_connected(who, GUILD, True)
    async with db.acquire() as conn:  # written long ago: older than the discovery's margin
        await conn.execute("UPDATE memories SET updated_at = now() - interval '1 hour'")
    # Two partners qualify; one is kept per memory: the strongest (Bob's, 4 of 4 words).
    assert await companion.associations.discover(alice, GUILD, T0) == 1
    [(one, two)] = await _pairs(db)
    assert b_cello in (one, two)
    # Nothing changed since: nothing is looked at again.
    assert await companion.associations.discover(alice, GUILD, T0) == 0
    # A new memory is.
    await _memories(store, alice, GUILD, "Alice plays the cello at weddings")
    assert await companion.associations.discover(alice, GUILD, T0) == 1
    assert len(await _pairs(db)) == 2
