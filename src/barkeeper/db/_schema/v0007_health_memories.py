"""Schema version 7: the ``health`` memory type.

Issue 10 names four sensitive memory types: Bartender's three (``grief_context``,
``attachment_pattern``, ``coping_mechanism``) and ``health`` (physical or mental
health conditions, diagnoses, treatment, medication). Version 1's CHECK on
``memories.memory_type`` lists the first eleven types only; this migration replaces it
with one that also admits ``health``. ``memory_versions.memory_type`` has no CHECK (a
version copies its memory's row) and needs no change.

The new list is a superset of the old, so every existing row satisfies it; adding it
still reads ``memories`` once to validate it, under the migration's lock. Idempotent:
every CHECK on ``memories`` that involves ``memory_type`` alone is dropped (version 1's
is named ``memories_memory_type_check`` by PostgreSQL) and the new one is added under
that same name.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities
from barkeeper.db._schema.v0001_initial import MEMORY_TYPES as V1_MEMORY_TYPES

TABLES: tuple[str, ...] = ()

#: Every memory type the schema admits from this version on.
MEMORY_TYPES = (*V1_MEMORY_TYPES, "health")

#: The CHECK constraint's name (PostgreSQL's default for version 1's column CHECK).
CONSTRAINT = "memories_memory_type_check"

_FIND = """
SELECT c.conname
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
WHERE c.conrelid = 'memories'::regclass AND c.contype = 'c'
  AND a.attname = 'memory_type' AND cardinality(c.conkey) = 1
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Replace the CHECK on ``memories.memory_type`` with one that admits ``health``."""
    for row in await conn.fetch(_FIND):
        name = row["conname"].replace('"', '""')
        await conn.execute(f'ALTER TABLE memories DROP CONSTRAINT "{name}"')
    types = ", ".join(f"'{name}'" for name in MEMORY_TYPES)
    await conn.execute(
        f"ALTER TABLE memories ADD CONSTRAINT {CONSTRAINT} CHECK (memory_type IN ({types}))"
    )
