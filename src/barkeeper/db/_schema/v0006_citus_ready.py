"""Schema version 6: primary keys that include the distribution column (the path to Citus).

A distributed PostgreSQL (Citus) only enforces a primary key or a unique index that
includes the table's distribution column (``docs/scaling.md``). Six per-person tables
had a primary key on ``id`` alone; it becomes ``(user_id, id)``:

- ``user_preferences``, ``user_relationships``, ``user_communication_styles``,
  ``guild_members``, ``agent_runs``, ``scheduled_events``.

No foreign key points at their ``id`` and every query of them names the person,
except ``scheduled_events``' delivery (claims by ``id``), which keeps a plain index
on ``id``. The constraint names stay the same. No row changes; each table's key is
rebuilt once (they are small: a few rows per person).

The other violations (``users``' unique Discord id, ``memories`` and the tables that
reference its ``id``, the message cache's key, the text-keyed conversation tables)
need code changes and are planned work, listed in ``docs/scaling.md``.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES: tuple[str, ...] = ()

#: Tables whose primary key becomes ``(user_id, id)``.
REKEYED = (
    "user_preferences",
    "user_relationships",
    "user_communication_styles",
    "guild_members",
    "agent_runs",
    "scheduled_events",
)

_REKEY = """
ALTER TABLE {table} DROP CONSTRAINT {table}_pkey,
    ADD CONSTRAINT {table}_pkey PRIMARY KEY (user_id, id);
"""

_DDL = (
    "".join(_REKEY.format(table=t) for t in REKEYED)
    + """
CREATE INDEX IF NOT EXISTS ix_scheduled_events_id ON scheduled_events (id);
"""
)


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Rebuild the six primary keys on ``(user_id, id)``."""
    await conn.execute(_DDL)
