"""Privacy: two users' data through every store, forget one, scan every table for them.

The scan reads the table list from the catalog, so a table added by a later migration
is scanned too; a new table that keeps a user's data without a foreign key path from
``users`` (or ``discord_messages.author_id``) makes this test fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from barkeeper.companion import (
    GuildStore,
    MoodStore,
    PreferenceStore,
    RelationshipStore,
    Sentiment,
    StyleStore,
    UserStore,
    default_persona,
)
from barkeeper.conversations import ConversationStore, SessionStore
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.errors import InvalidInputError, NotFoundError
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.memory import MemoryStore
from barkeeper.privacy import DERIVED_TABLES, Privacy
from barkeeper.turns import MessageIndex

CHANNEL = 700_000_000_000_000_001
GUILD = 800_000_000_000_000_001
_EPOCH_MS = 1_420_070_400_000
PERSONA = default_persona()


def snowflake(when: datetime, seq: int) -> int:
    return ((int(when.timestamp() * 1000) - _EPOCH_MS) << 22) | seq


@dataclass
class Person:
    discord_id: int
    username: str
    user_id: int = 0


async def _populate(db: Database, person: Person, seq: int) -> None:
    """Everything barkeeper can keep about one person, through the stores' public APIs."""
    users = UserStore(db)
    user = await users.get_or_create_discord_user(
        person.discord_id, username=person.username, display_name=person.username.title()
    )
    person.user_id = user.id
    await PreferenceStore(db).set_preference(user.id, "tone", f"gentle-{person.username}")
    guilds = GuildStore(db)
    guild = await guilds.upsert_guild(GUILD, "The Bar")
    await guilds.upsert_member(
        guild.id, user.id, nickname=f"{person.username}-nick", roles=["regular"]
    )

    conversations = ConversationStore(db, storage_limit=10)
    conv = await conversations.create_conversation(
        user.id,
        title=f"talk with {person.username}",
        metadata={"who": person.username},
        channel_id=CHANNEL,
        guild_id=GUILD,
    )
    await conversations.add_message(conv.id, "user", f"I am {person.username}", user_id=user.id)
    await conversations.add_message_unchecked(conv.id, "assistant", f"Hello {person.username}")

    sessions = SessionStore(db)
    session = await sessions.get_or_create_session("bartender", user.id, CHANNEL)
    await sessions.update_state(session.id, {"last_topic": f"{person.username}'s garden"})
    await sessions.add_run(session.id, input="hi", output=f"hi {person.username}")

    history = MessageStore(db)
    base = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=seq)
    await history.store_many(
        [
            StoredMessage(
                message_id=snowflake(base + timedelta(seconds=i), seq * 10 + i),
                channel_id=CHANNEL,
                guild_id=GUILD,
                author_id=person.discord_id,
                author_name=person.username,
                content=f"{person.username} says my cat is called Whiskers {i}",
            )
            for i in range(3)
        ]
    )
    memories = MemoryStore(db, HashingEmbedder())
    tea = await memories.add(
        user.id, f"{person.username} loves green tea", memory_type="preference"
    )
    await memories.update(
        user.id, tea.id, content=f"{person.username} loves oolong tea", reason="corrected"
    )
    await memories.add(
        user.id, f"{person.username} lost a parent last year", memory_type="grief_context"
    )

    # Companion state, through its stores (scheduled events have no store yet).
    now = datetime(2025, 1, 2, tzinfo=UTC) + timedelta(minutes=seq)
    rels = RelationshipStore(db, PERSONA)
    await rels.record_interaction(user.id, GUILD, sentiment=0.5, words=12, now=now)
    await rels.add_shared_reference(
        user.id, GUILD, "nicknames", f"{person.username}-the-regular", now
    )
    await StyleStore(db, PERSONA).learn(user.id, f"lol {person.username} here 😂")
    await MoodStore(db, PERSONA, decay_per_hour=0.05).record(
        GUILD,
        Sentiment(0.9, 0.9),
        now,
        user_id=user.id,
        description=f"kind words from {person.username}",
    )
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO scheduled_events (user_id, channel_id, event_type, trigger_at, title) "
            "VALUES ($1, $2, 'follow_up', now() + interval '1 day', $3)",
            user.id,
            CHANNEL,
            f"ask {person.username} about the interview",
        )


async def _scan(db: Database, needles: list[str]) -> dict[str, int]:
    """Rows of every table (from the catalog) whose text form contains any needle."""
    found: dict[str, int] = {}
    async with db.acquire() as conn:
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            db.schema,
        )
        assert len(tables) >= 20
        for (table,) in tables:
            n = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE ANY($1::text[])',  # noqa: S608 - catalog name
                [f"%{needle}%" for needle in needles],
            )
            if n:
                found[table] = n
    return found


async def _user_id_columns(db: Database, user_id: int) -> dict[str, int]:
    """Rows whose user-id columns (``*user_id``, or ``users.id``) hold the internal id."""
    found: dict[str, int] = {}
    async with db.acquire() as conn:
        cols = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND (column_name LIKE '%user_id' "
            "OR (table_name = 'users' AND column_name = 'id'))",
            db.schema,
        )
        for table, column in cols:
            n = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE "{column}"::text = $1',  # noqa: S608
                str(user_id),
            )
            if n:
                found[f"{table}.{column}"] = n
    return found


async def test_forget_leaves_no_trace_and_spares_the_other_user(db: Database) -> None:
    alice = Person(discord_id=111_222_333_444_555_001, username="alicezqx")
    bob = Person(discord_id=111_222_333_444_555_002, username="bobyqw")
    await _populate(db, alice, 1)
    await _populate(db, bob, 2)
    await MessageIndex(db, HashingEmbedder()).sync_discord_channel(CHANNEL)

    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=alice.discord_id)
    assert who.user_id == alice.user_id
    before_bob = await _scan(db, [bob.username, str(bob.discord_id)])
    shown = await privacy.show(who)
    for table in (
        "users",
        "user_preferences",
        "guild_members",
        "conversations",
        "conversation_messages",
        "agent_sessions",
        "agent_runs",
        "discord_messages",
        "memories",
        "memory_versions",
        "message_index",
        "user_relationships",
        "user_communication_styles",
        "scheduled_events",
        "mood_history",
    ):
        assert shown.rows.get(table, 0) > 0, f"show() misses {table}"
    assert shown.rows["discord_messages"] == 3
    assert shown.rows["conversation_messages"] == 2  # the bot's reply in her conversation too

    exported = await privacy.export(who)
    assert exported["counts"] == {t: n for t, n in shown.rows.items() if t not in DERIVED_TABLES}
    contents = {m["content"] for m in exported["tables"]["memories"]}
    assert contents == {"alicezqx loves oolong tea", "alicezqx lost a parent last year"}
    assert {v["content"] for v in exported["tables"]["memory_versions"]} >= {
        "alicezqx loves green tea"
    }
    assert [t for t, rows in exported["tables"].items() if bob.username in str(rows)] == []

    forgotten = await privacy.forget(who)
    assert forgotten.rows == shown.rows

    assert await _scan(db, [alice.username, str(alice.discord_id)]) == {}
    assert await _user_id_columns(db, alice.user_id) == {}
    # Bob's first message was indexed with Alice's last one as context: that row went
    # with her words; re-syncing the index rebuilds it without them. Alice's last row
    # quoted Bob's first message (the one after it): it went with her, for good.
    after_bob = await _scan(db, [bob.username, str(bob.discord_id)])
    assert after_bob["message_index"] == before_bob["message_index"] - 2
    assert {t: n for t, n in after_bob.items() if t != "message_index"} == {
        t: n for t, n in before_bob.items() if t != "message_index"
    }
    await MessageIndex(db, HashingEmbedder()).sync_discord_channel(CHANNEL)
    assert await _scan(db, [bob.username, str(bob.discord_id)]) == before_bob | {
        "message_index": before_bob["message_index"] - 1
    }
    assert await _scan(db, [alice.username, str(alice.discord_id)]) == {}
    assert (await privacy.show(await privacy.find_user(discord_id=bob.discord_id))).total > 0
    assert (await privacy.show(await privacy.find_user(discord_id=alice.discord_id))).total == 0
    # the other stores agree
    assert await UserStore(db).get_by_discord_id(alice.discord_id) is None
    assert await MessageStore(db).count(CHANNEL) == 3


async def test_messages_of_someone_never_registered_are_theirs(db: Database) -> None:
    stranger = 999_888_777_666_555_444
    await MessageStore(db).store_many(
        [
            StoredMessage(
                message_id=snowflake(datetime(2025, 2, 1, tzinfo=UTC), 1),
                channel_id=CHANNEL,
                author_id=stranger,
                author_name="passerby",
                content="just passing through",
            )
        ]
    )
    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=stranger)
    assert who.user_id is None
    assert (await privacy.show(who)).rows == {"discord_messages": 1}
    assert (await privacy.forget(who)).rows == {"discord_messages": 1}
    assert await MessageStore(db).count(CHANNEL) == 0


async def test_find_user_errors(db: Database) -> None:
    privacy = Privacy(db)
    with pytest.raises(InvalidInputError):
        await privacy.find_user()
    with pytest.raises(InvalidInputError):
        await privacy.find_user(discord_id=1, user_id=1)
    with pytest.raises(NotFoundError):
        await privacy.find_user(user_id=123456)
    with pytest.raises(NotFoundError):
        await privacy.find_user(external_id="nobody")
    user = await UserStore(db).get_or_create_external_user("agent-user-7")
    who = await privacy.find_user(external_id="agent-user-7")
    assert who.user_id == user.id
    assert (await privacy.forget(who)).rows == {"users": 1}


async def test_export_streams_table_by_table_and_quotes_catalog_names(db: Database) -> None:
    """A later table with awkward names (a quote, upper case, a generated column) exports."""
    import io
    import json

    users = UserStore(db)
    user = await users.get_or_create_discord_user(31337, username="quoter")
    async with db.transaction() as conn:
        await conn.execute(
            'CREATE TABLE "Odd ""Notes""" (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY '
            "KEY, user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, "
            '"it\'s" text NOT NULL, "Gen\'"" x" text GENERATED ALWAYS AS (upper("it\'s")) STORED)'
        )
        await conn.execute(
            'INSERT INTO "Odd ""Notes""" (user_id, "it\'s") '
            "SELECT $1, 'note ' || g FROM generate_series(1, 1203) g",
            user.id,
        )
    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=31337)
    batches = [(t, len(rows)) async for t, rows in privacy.iter_export(who, batch_size=500)]
    odd = [n for t, n in batches if t == 'Odd "Notes"']
    assert odd == [500, 500, 203]  # rows in batches, never the whole table at once
    runs = [t for i, (t, _) in enumerate(batches) if i == 0 or batches[i - 1][0] != t]
    assert len(runs) == len(set(runs))  # one table at a time
    out = io.StringIO()
    assert await privacy.write_export(who, out, batch_size=100) == sum(n for _, n in batches)
    document = json.loads(out.getvalue())
    assert document == {**await privacy.export(who), "exported_at": document["exported_at"]}
    notes = document["tables"]['Odd "Notes"']
    assert len(notes) == 1203 and notes[0]["it's"] == "note 1"
    assert "Gen'\" x" not in notes[0]  # the generated column is left out
    with pytest.raises(InvalidInputError):
        [_ async for _ in privacy.iter_export(who, batch_size=0)]


async def test_export_of_transcript_turns_carries_none_of_the_other_speakers_words(
    db: Database,
) -> None:
    """Her transcript turns are exported as the only copy of her words; their searched
    context (the turns around them: other people's words) is not hers to take."""
    from barkeeper.companion import UserStore
    from barkeeper.turns import Turn

    users = UserStore(db)
    ana = await users.get_or_create_discord_user(6161, username="anaexp")
    ben = await users.get_or_create_discord_user(6262, username="benexp")
    turns = [
        Turn("e1", "benexp", "my passport number is zz123", user_id=ben.id),
        Turn("e2", "anaexp", "ok noted", user_id=ana.id),
        Turn("e3", "benexp", "and my pin is qq987", user_id=ben.id),
    ]
    await MessageIndex(db, HashingEmbedder()).add_turns("transcript:exp", turns)
    privacy = Privacy(db)
    exported = await privacy.export(await privacy.find_user(discord_id=6161))
    [turn] = exported["tables"]["message_index"]
    assert turn["content"] == "anaexp: ok noted"
    text = json.dumps(exported)
    assert "zz123" not in text and "qq987" not in text and "benexp" not in text
