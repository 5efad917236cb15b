"""The engine on real PostgreSQL: modes, migrations, schema, capabilities, errors."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from barkeeper.config import DatabaseMode, Settings, load_settings
from barkeeper.db import Database, parse_database_url, translate_error
from barkeeper.db import _migrations as mig
from barkeeper.db._schema.v0001_initial import TABLES
from barkeeper.errors import (
    AuthenticationFailedError,
    DatabaseMissingError,
    DatabaseUnreachableError,
    DiskFullError,
    EmbeddedServerError,
    QueryError,
    SchemaTooNewError,
)
from tests.test_url import HARD_PASSWORD, assert_hidden

# Every index the schema promises, by table: the seeds' indexes under our names.
EXPECTED_INDEXES = {
    "discord_messages": {"ix_discord_messages_channel_message", "ix_discord_messages_author"},
    "users": {"ix_users_last_seen_at", "users_discord_id_key"},
    "user_preferences": {"user_preferences_user_id_preference_key_key"},
    "guilds": {"guilds_discord_id_key"},
    "guild_members": {"guild_members_guild_id_user_id_key", "ix_guild_members_user_id"},
    "conversations": {
        "ix_conversations_user_updated",
        "ix_conversations_user_created",
        "ix_conversations_user_title",
        "ix_conversations_resource",
        "ix_conversations_channel_user",
        "ix_conversations_active_last",
    },
    "conversation_messages": {
        "ix_conversation_messages_lookup",
        "ix_conversation_messages_user_id",
    },
    "agent_sessions": {"ux_agent_sessions_agent_user_channel", "ix_agent_sessions_user_id"},
    "agent_runs": {"ix_agent_runs_session", "ix_agent_runs_user_id"},
    "memories": {"ix_memories_user_live", "ix_memories_user_type", "ix_memories_expires"},
    "memory_versions": {"ix_memory_versions_user_id", "memory_versions_memory_id_version_key"},
    "message_index": {
        "message_index_scope_source_id_key",
        "ix_message_index_scope_position",
        "ix_message_index_discord_message",
        "ix_message_index_context_message",
    },
    "fact_associations": {"fact_associations_memory_id_1_memory_id_2_key"},
    "bot_states": {"ux_bot_states_guild"},
    "bot_opinions": {"ux_bot_opinions_guild_topic", "ix_bot_opinions_topic"},
    "mood_history": {"ix_mood_history_guild_recorded", "ix_mood_history_trigger_user_id"},
    "user_relationships": {"ux_user_relationships_user_guild"},
    "user_communication_styles": {"user_communication_styles_user_id_key"},
    "scheduled_events": {"ix_scheduled_events_user_id", "ix_scheduled_events_due"},
}


async def test_every_seed_table_and_index_exists(db: Database) -> None:
    async with db.acquire() as conn:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                db.schema,
            )
        }
        indexes: dict[str, set[str]] = {}
        for r in await conn.fetch(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = $1", db.schema
        ):
            indexes.setdefault(r["tablename"], set()).add(r["indexname"])
        naive = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND data_type = 'timestamp without time zone'",
            db.schema,
        )
    assert set(mig.expected_tables()) | {"schema_migrations"} == tables
    assert set(TABLES) <= tables
    for table, expected in EXPECTED_INDEXES.items():
        assert expected <= indexes.get(table, set()), f"{table}: {expected - indexes[table]}"
    assert not naive, "every timestamp must be timestamptz"


async def test_cascades_on_user_delete(db: Database) -> None:
    async with db.transaction() as conn:
        uid = await conn.fetchval("INSERT INTO users (discord_id) VALUES (42) RETURNING id")
        await conn.execute(
            "INSERT INTO user_preferences (user_id, preference_key, preference_value) "
            "VALUES ($1, 'tone', 'warm')",
            uid,
        )
        cid = await conn.fetchval(
            "INSERT INTO conversations (user_id) VALUES ($1) RETURNING id", uid
        )
        await conn.execute(
            "INSERT INTO conversation_messages (conversation_id, user_id, role, content) "
            "VALUES ($1, $2, 'user', 'hi')",
            cid,
            uid,
        )
        mid = await conn.fetchval(
            "INSERT INTO memories (user_id, content) VALUES ($1, 'likes tea') RETURNING id", uid
        )
        await conn.execute(
            "INSERT INTO memory_versions (memory_id, user_id, version, change, memory_type, "
            "content, confidence, importance, temporal_relevance) "
            "VALUES ($1, $2, 1, 'add', 'general', 'likes tea', 1, 0.5, 'timeless')",
            mid,
            uid,
        )
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM users WHERE id = $1", uid)
        for table in (
            "user_preferences",
            "conversations",
            "conversation_messages",
            "memories",
            "memory_versions",
        ):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608


async def test_capabilities_and_health(db: Database, has_pgvector_server: bool) -> None:
    health = await db.health()
    assert health.ok
    assert health.schema_version == mig.LATEST_VERSION == health.latest_version
    assert health.server_version.split(".")[0].isdigit()
    assert db.capabilities.pgvector is has_pgvector_server
    async with db.acquire() as conn:
        storage = await conn.fetchval(
            "SELECT value FROM barkeeper_meta WHERE key = 'embedding_storage'"
        )
        udt = await conn.fetchval(
            "SELECT udt_name FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = 'memories' AND column_name = 'embedding'",
            db.schema,
        )
    assert storage == ("vector" if has_pgvector_server else "bytea")
    assert udt == ("vector" if has_pgvector_server else "bytea")


async def test_upgrade_is_idempotent(db: Database) -> None:
    assert await db.upgrade() == []
    status = await db.migration_status()
    assert status.up_to_date
    assert [v for v, _, _ in status.applied] == [m.version for m in mig.MIGRATIONS]


async def test_refuses_schema_newer_than_code(
    db: Database, server_url: str, settings: Settings
) -> None:
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            mig.LATEST_VERSION + 1,
        )
    with pytest.raises(SchemaTooNewError, match="newer barkeeper"):
        await Database.open(settings, url=server_url, schema=db.schema, min_size=1)
    with pytest.raises(SchemaTooNewError):
        await db.upgrade()


async def test_concurrent_upgrades_in_one_database(database_url: str, settings: Settings) -> None:
    """Several openers at once: exactly one applies each migration, all end up current."""

    async def opener() -> list[int]:
        db = await Database.open(settings, url=database_url, min_size=1, max_size=1)
        try:
            return await db.upgrade()
        finally:
            await db.close()

    results = await asyncio.gather(*(opener() for _ in range(4)))
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in mig.MIGRATIONS]


async def test_two_schemas_share_one_database(database_url: str, settings: Settings) -> None:
    a = await Database.open(settings, url=database_url, schema="bot_a", min_size=1, upgrade=True)
    b = await Database.open(settings, url=database_url, schema="bot_b", min_size=1, upgrade=True)
    try:
        async with a.acquire() as conn:
            await conn.execute("INSERT INTO users (discord_id) VALUES (1)")
        async with b.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await a.close()
        await b.close()


# --- secrets -------------------------------------------------------------------------------


async def test_no_object_or_log_shows_a_hard_password(
    server_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A role whose password holds / ? # @ % : and non-ASCII, pasted unencoded."""
    caplog.set_level(logging.DEBUG)
    admin = parse_database_url(server_url)
    role = f"t_role_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin.dsn())
    try:
        create = await conn.fetchval(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
            role,
            HARD_PASSWORD,
        )
        await conn.execute(create)
    finally:
        await conn.close()
    where = admin.masked().split("@", 1)[1]  # host part and query, no credentials
    raw = f"postgresql://{role}:{HARD_PASSWORD}@{where}"
    try:
        configured = load_settings(postgres_url=raw)
        assert configured.configured_database_url() == raw
        db = await Database.open(configured, min_size=1, schema=f"t_{uuid.uuid4().hex[:12]}")
        try:
            health = await db.health()
            assert health.ok, health.error
            status = await db.migration_status()
            for obj in (configured, db, db.url, health, db.capabilities, status):
                assert_hidden(repr(obj))
                assert_hidden(str(obj))
        finally:
            await db.close()
        # errors on the same URL: a missing database, an unreachable server
        host, _, rest = where.partition("/")
        _, qmark, query = rest.partition("?")
        missing = f"postgresql://{role}:{HARD_PASSWORD}@{host}/no_such_db_x{qmark}{query}"
        with pytest.raises(DatabaseMissingError) as info:
            await Database.open(settings, url=missing, min_size=1)
        assert_hidden(str(info.value))
        with pytest.raises(DatabaseUnreachableError) as unreachable:
            await Database.open(
                settings, url=f"postgresql://{role}:{HARD_PASSWORD}@127.0.0.1:1/x", min_size=1
            )
        assert_hidden(str(unreachable.value))
        assert_hidden(caplog.text)
    finally:
        conn = await asyncpg.connect(admin.dsn())
        try:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()


# --- errors a user can act on ----------------------------------------------------------------


async def test_unreachable_server_message(settings: Settings) -> None:
    with pytest.raises(DatabaseUnreachableError) as info:
        await Database.open(settings, url="postgresql://u:secret@127.0.0.1:1/x", min_size=1)
    text = str(info.value)
    assert "127.0.0.1:1" in text
    assert "secret" not in text
    assert "***" in text


async def test_missing_database_message(server_url: str, settings: Settings) -> None:
    url = parse_database_url(server_url).with_database("no_such_db_here").dsn()
    with pytest.raises(DatabaseMissingError, match="no_such_db_here"):
        await Database.open(settings, url=url, min_size=1)


async def test_authentication_failed_message(server_url: str, settings: Settings) -> None:
    parsed = parse_database_url(server_url)
    bad = parsed.dsn().replace(f"//{parsed.user}", "//no_such_role_xyz:topsecret", 1)
    with pytest.raises(AuthenticationFailedError) as info:
        await Database.open(settings, url=bad, min_size=1)
    assert "no_such_role_xyz" in str(info.value)
    assert "topsecret" not in str(info.value)


def test_disk_full_and_query_errors_are_translated() -> None:
    url = parse_database_url("postgresql://u:pw@h:5/d")
    full = translate_error(asyncpg.DiskFullError("could not extend file: No space left"), url)
    assert isinstance(full, DiskFullError)
    assert "disk" in str(full)
    other = translate_error(asyncpg.UniqueViolationError("duplicate key"), url)
    assert isinstance(other, QueryError)
    assert other.sqlstate == "23505"


# --- the three modes -----------------------------------------------------------------------


async def test_server_mode(server_url: str, settings: Settings) -> None:
    db = await Database.open(settings, url=server_url, min_size=1, schema="t_server_mode")
    try:
        assert db.mode is DatabaseMode.SERVER
        assert (await db.health()).ok
    finally:
        async with db.acquire() as conn:
            await conn.execute("DROP SCHEMA IF EXISTS t_server_mode CASCADE")
        await db.close()


@pytest.mark.slow
async def test_embedded_mode_persists_and_is_reused(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    assert settings.effective_database_mode() is DatabaseMode.EMBEDDED
    first = await Database.open(settings, min_size=1, upgrade=True)
    try:
        assert first.mode is DatabaseMode.EMBEDDED
        assert first.capabilities.pgvector
        async with first.acquire() as conn:
            await conn.execute("INSERT INTO users (discord_id) VALUES (7)")
        # a second opener in the same process attaches to the running server
        second = await Database.open(settings, min_size=1)
        try:
            async with second.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM users") == 1
        finally:
            await second.close()
    finally:
        await first.close()
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    # stopped and started again: the data is still there
    again = await Database.open(settings, min_size=1)
    try:
        async with again.acquire() as conn:
            assert await conn.fetchval("SELECT discord_id FROM users") == 7
    finally:
        await again.close()


@pytest.mark.slow
async def test_ephemeral_mode_leaves_nothing(data_dir: Path) -> None:
    settings = load_settings(database="ephemeral", data_dir=data_dir)
    db = await Database.open(settings, min_size=1, upgrade=True)
    assert db._server is not None
    pgdata = db._server.pgdata
    # a temporary directory of its own, not the data directory
    home = pgdata.parent
    assert home.name.startswith("barkeeper-")
    assert home.parent == Path(tempfile.gettempdir())
    assert data_dir not in pgdata.parents
    assert (pgdata / "PG_VERSION").exists()
    assert db.mode is DatabaseMode.EPHEMERAL
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM memories") == 0
    await db.close()
    # the whole temporary directory is gone, not only the cluster in it
    assert not home.exists()
    assert not data_dir.exists()  # noqa: ASYNC240 - ephemeral mode never writes there


async def test_embedded_start_failure_shows_log(data_dir: Path) -> None:
    data = data_dir
    pgdata = data / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")  # looks initialised, is not
    settings = load_settings(data_dir=data)
    with pytest.raises(EmbeddedServerError) as info:
        await Database.open(settings, min_size=1)
    assert "did not start" in str(info.value)
    assert "log" in str(info.value)


async def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = load_settings(data_dir=blocker / "data")
    with pytest.raises(EmbeddedServerError, match="BARKEEPER_DATA_DIR"):
        await Database.open(settings, min_size=1)


async def test_v7_admits_health_memories_on_an_upgraded_database(db: Database) -> None:
    from barkeeper.db._schema import v0007_health_memories as v7
    from barkeeper.db._schema.v0001_initial import MEMORY_TYPES as V1_TYPES

    v1_check = ", ".join(f"'{t}'" for t in V1_TYPES)
    async with db.acquire() as conn:
        # Put the database back at version 6: version 1's CHECK, one memory of each kind.
        await conn.execute(
            "ALTER TABLE memories DROP CONSTRAINT memories_memory_type_check, "
            f"ADD CONSTRAINT memories_memory_type_check CHECK (memory_type IN ({v1_check}))"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version >= 7")
        uid = await conn.fetchval("INSERT INTO users (discord_id) VALUES (7007) RETURNING id")
        await conn.execute(
            "INSERT INTO memories (user_id, memory_type, content) VALUES ($1, 'family', 'x')", uid
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO memories (user_id, memory_type, content) VALUES ($1, 'health', 'y')",
                uid,
            )
    assert await db.upgrade() == [7, 8, 9, 10]
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO memories (user_id, memory_type, content) VALUES ($1, 'health', 'y')", uid
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO memories (user_id, memory_type, content) VALUES ($1, 'nope', 'z')",
                uid,
            )
        # Applying it again changes nothing: still one CHECK on memory_type, same name.
        async with conn.transaction():
            await v7.apply(conn, db.capabilities)
        checks = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
            "WHERE conrelid = 'memories'::regclass AND contype = 'c' "
            "AND pg_get_constraintdef(oid) LIKE '%memory_type%'"
        )
        kinds = await conn.fetch("SELECT memory_type FROM memories WHERE user_id = $1", uid)
    assert [c["conname"] for c in checks] == [v7.CONSTRAINT]
    assert "'health'" in checks[0]["def"]
    assert sorted(k["memory_type"] for k in kinds) == ["family", "health"]


async def test_v8_searches_the_extraction_context_of_existing_memories(db: Database) -> None:
    from barkeeper.db._schema import v0008_memory_search_context as v8

    async with db.acquire() as conn:
        # Back at version 7: memories.search from the content alone, one memory in it.
        await conn.execute(
            "ALTER TABLE memories DROP COLUMN search, ADD COLUMN search tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version >= 8")
        uid = await conn.fetchval("INSERT INTO users (discord_id) VALUES (8008) RETURNING id")
        await conn.execute(
            "INSERT INTO memories (user_id, memory_type, content, extraction_context) "
            "VALUES ($1, 'hobby', 'Joined a ceramics course', 'a pottery class!')",
            uid,
        )
    assert await db.upgrade() == [8, 9, 10]  # 9 and 10 again too: they change nothing
    async with db.acquire() as conn:
        search = await conn.fetchval("SELECT search::text FROM memories WHERE user_id = $1", uid)
        async with conn.transaction():
            await v8.apply(conn, db.capabilities)  # again: nothing to do
        again = await conn.fetchval("SELECT search::text FROM memories WHERE user_id = $1", uid)
    assert search == again == "'ceram':6 'class':3B 'cours':7 'join':4 'potteri':2B"


async def test_v9_adds_piece_vectors_and_existing_turns_keep_their_scores(
    db: Database, has_pgvector_server: bool
) -> None:
    from barkeeper.db._schema import v0009_turn_pieces as v9
    from barkeeper.embeddings import HashingEmbedder
    from barkeeper.turns import MessageIndex, Turn

    index = MessageIndex(db, HashingEmbedder())
    turns = [Turn("1", "Ana", "My dog Rex is a beagle. We went hiking."), Turn("2", "Bo", "A dog.")]
    await index.add_turns("s", turns)

    async def column() -> list[str]:
        async with db.acquire() as conn:
            found = await conn.fetch(
                "SELECT udt_name FROM information_schema.columns WHERE table_schema = $1 "
                "AND table_name = 'message_index' AND column_name = 'piece_embeddings'",
                db.schema,
            )
        return [r["udt_name"] for r in found]

    async with db.acquire() as conn:
        # Back at version 8: no piece vectors; the turns have their whole vectors.
        await conn.execute("ALTER TABLE message_index DROP COLUMN piece_embeddings")
        await conn.execute(f"DROP INDEX {v9.INDEX}")
        await conn.execute("DELETE FROM schema_migrations WHERE version >= 9")
        filenode = await conn.fetchval("SELECT pg_relation_filenode('message_index')")
    assert await column() == []
    assert await db.upgrade() == [9, 10]
    assert await column() == ["_vector" if has_pgvector_server else "bytea"]
    async with db.acquire() as conn:
        async with conn.transaction():
            await v9.apply(conn, db.capabilities)  # again: nothing to do
        assert await conn.fetchval("SELECT pg_relation_filenode('message_index')") == filenode
        # the speakers' index, read by a turn search (one probe per speaker)
        assert await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            db.schema,
            v9.INDEX,
        ) == (f"CREATE INDEX {v9.INDEX} ON {db.schema}.message_index USING btree (scope, speaker)")
        assert await conn.fetchval("SELECT count(piece_embeddings) FROM message_index") == 0
    assert await column() == ["_vector" if has_pgvector_server else "bytea"]
    # the existing turns score their whole vector's cosine, as at version 8
    query = "Ana: My dog Rex is a beagle."
    whole = HashingEmbedder().embed_query
    a, b = await whole(query), await whole("Ana: My dog Rex is a beagle. We went hiking.")
    [hit] = await index.search("s", query, k=1, mode="vector", query_embedding=a)
    assert hit.item.source_id == "1"
    assert hit.parts.vector == pytest.approx(
        sum(x * y for x, y in zip(a, b, strict=True)), abs=1e-5
    )
    # indexed again with the same text, a turn keeps its vector and gets no pieces
    await index.add_turns("s", turns)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(piece_embeddings) FROM message_index") == 0


async def test_v10_indexes_the_turns_without_a_vector(db: Database) -> None:
    from barkeeper.db._schema import v0010_turns_without_vectors as v10
    from barkeeper.embeddings import HashingEmbedder
    from barkeeper.testing.embeddings import FailingEmbedder
    from barkeeper.turns import MessageIndex, Turn

    await MessageIndex(db, HashingEmbedder()).add_turns("s", [Turn("1", "Ana", "a vector")])
    await MessageIndex(db, FailingEmbedder(failing=True)).add_turns("s", [Turn("2", "Bo", "none")])

    async def definition() -> str | None:
        async with db.acquire() as conn:
            found: str | None = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
                db.schema,
                v10.INDEX,
            )
        return found

    async with db.acquire() as conn:  # back at version 9
        await conn.execute(f"DROP INDEX {v10.INDEX}")
        await conn.execute("DELETE FROM schema_migrations WHERE version = 10")
    assert await definition() is None
    assert await db.upgrade() == [10]
    assert await definition() == (
        f"CREATE INDEX {v10.INDEX} ON {db.schema}.message_index USING btree (scope, id) "
        "WHERE (embedding IS NULL)"
    )
    async with db.acquire() as conn:
        async with conn.transaction():
            await v10.apply(conn, db.capabilities)  # again: nothing to do
        without = "SELECT count(*) FROM message_index WHERE embedding IS NULL"
        assert await conn.fetchval(without) == 1
