"""Versioned, append-only migrations, applied under a PostgreSQL advisory lock.

Versions are recorded in ``schema_migrations`` inside barkeeper's schema. Several
processes may start at once: the first takes the lock and migrates, the others wait
for it and then find nothing left to do. Code refuses to run against a schema whose
version is newer than the newest migration it knows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from barkeeper.db._capabilities import Capabilities, ensure_pgvector
from barkeeper.db._schema import (
    v0001_initial,
    v0002_tombstones,
    v0003_outbox,
    v0004_followups,
    v0005_companion_settings,
    v0006_citus_ready,
    v0007_health_memories,
    v0008_memory_search_context,
    v0009_turn_pieces,
    v0010_turns_without_vectors,
)
from barkeeper.errors import SchemaTooNewError

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "MigrationStatus",
    "expected_tables",
    "migration_status",
    "upgrade",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema change.

    Attributes:
        version: its position, 1-based; versions are never reused.
        name: a short description.
        apply: coroutine applying the change on a connection inside a transaction.
        tables: tables this migration creates (checked by ``db check``).
    """

    version: int
    name: str
    apply: Callable[[asyncpg.Connection, Capabilities], Awaitable[None]]
    tables: Sequence[str] = ()


MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema: every seed table", v0001_initial.apply, v0001_initial.TABLES),
    Migration(
        2,
        "tombstones of forgotten people; transcript turns with an owner",
        v0002_tombstones.apply,
        v0002_tombstones.TABLES,
    ),
    Migration(
        3,
        "memory outbox: durable memory work, claimed with SKIP LOCKED",
        v0003_outbox.apply,
        v0003_outbox.TABLES,
    ),
    Migration(
        4,
        "follow-ups and reminders: claims, sent state, recurrence, dedupe",
        v0004_followups.apply,
        v0004_followups.TABLES,
    ),
    Migration(
        5,
        "companion settings per guild and channel; connection opt-ins",
        v0005_companion_settings.apply,
        v0005_companion_settings.TABLES,
    ),
    Migration(
        6,
        "primary keys that include the distribution column (Citus-ready)",
        v0006_citus_ready.apply,
        v0006_citus_ready.TABLES,
    ),
    Migration(
        7,
        "the health memory type (a sensitive type, DMs only)",
        v0007_health_memories.apply,
        v0007_health_memories.TABLES,
    ),
    Migration(
        8,
        "a memory's extraction context in its full-text vector, at weight B",
        v0008_memory_search_context.apply,
        v0008_memory_search_context.TABLES,
    ),
    Migration(
        9,
        "the vectors of a turn's sentences (message_index.piece_embeddings)",
        v0009_turn_pieces.apply,
        v0009_turn_pieces.TABLES,
    ),
    Migration(
        10,
        "an index of the turns stored without a vector, by scope",
        v0010_turns_without_vectors.apply,
        v0010_turns_without_vectors.TABLES,
    ),
]
LATEST_VERSION = MIGRATIONS[-1].version


@dataclass
class MigrationStatus:
    """Where a database stands against this code's migrations."""

    schema: str
    current_version: int
    latest_version: int
    applied: list[tuple[int, str, datetime]] = field(default_factory=list)

    @property
    def pending(self) -> list[Migration]:
        """Migrations this code has and the database has not."""
        return [m for m in MIGRATIONS if m.version > self.current_version]

    @property
    def up_to_date(self) -> bool:
        """The database is at exactly this code's latest version."""
        return self.current_version == self.latest_version

    @property
    def too_new(self) -> bool:
        """The database was migrated by newer code."""
        return self.current_version > self.latest_version


def expected_tables() -> list[str]:
    """Every table the migrations create, in order."""
    return [table for migration in MIGRATIONS for table in migration.tables]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def _read_applied(conn: asyncpg.Connection, schema: str) -> list[tuple[int, str, datetime]]:
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{_quote_ident(schema)}.schema_migrations"
    )
    if not exists:
        return []
    rows = await conn.fetch(
        f"SELECT version, name, applied_at FROM {_quote_ident(schema)}.schema_migrations "  # noqa: S608 - identifier quoted
        "ORDER BY version"
    )
    return [(r["version"], r["name"], r["applied_at"]) for r in rows]


async def migration_status(conn: asyncpg.Connection, schema: str) -> MigrationStatus:
    """Read which migrations the database has (no lock, no change)."""
    applied = await _read_applied(conn, schema)
    current = max((v for v, _, _ in applied), default=0)
    return MigrationStatus(schema, current, LATEST_VERSION, applied)


def check_not_too_new(status: MigrationStatus) -> None:
    """Raise :class:`SchemaTooNewError` when the database is ahead of this code."""
    if status.too_new:
        raise SchemaTooNewError(
            f"schema {status.schema!r} is at version {status.current_version}, but this "
            f"barkeeper only knows up to version {status.latest_version}: it was migrated by "
            "a newer barkeeper. Upgrade barkeeper (pip install -U barkeeper) instead of "
            "running old code against it."
        )


async def upgrade(conn: asyncpg.Connection, schema: str) -> tuple[MigrationStatus, list[int]]:
    """Apply every pending migration, each in its own transaction, under an advisory lock.

    Args:
        conn: a connection (not in a transaction).
        schema: barkeeper's schema; created if missing.

    Returns:
        The status after upgrading and the versions applied by this call (empty when
        another process had already done the work).

    Raises:
        SchemaTooNewError: the database is ahead of this code; nothing is changed.
    """
    key = f"barkeeper.migrate:{schema}"
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    try:
        status = await migration_status(conn, schema)
        check_not_too_new(status)
        applied_now: list[int] = []
        if status.pending:
            quoted = _quote_ident(schema)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
            await conn.execute(_CREATE_TABLE.format(schema=quoted))
            caps = await ensure_pgvector(conn)
            for migration in status.pending:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {quoted}, public")
                    await migration.apply(conn, caps)
                    await conn.execute(
                        f"INSERT INTO {quoted}.schema_migrations (version, name) VALUES ($1, $2)",  # noqa: S608
                        migration.version,
                        migration.name,
                    )
                applied_now.append(migration.version)
                _log.info(
                    "applied migration %d (%s) to schema %s",
                    migration.version,
                    migration.name,
                    schema,
                )
            status = await migration_status(conn, schema)
        return status, applied_now
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
