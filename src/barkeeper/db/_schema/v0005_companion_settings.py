"""Schema version 5: the companion's per-place settings and who opted into connections.

- ``companion_settings``: one row per guild (``channel_id`` 0) and per channel that an
  admin configured with ``/persona`` or ``/features``: the chosen persona's name (one of
  the persona catalogue's; ``NULL``: inherit) and the guild's feature switches (a JSON
  object of booleans; a missing key is the feature's default). Keyed by Discord ids, as
  the companion's other tables (``bot_states``, ``user_relationships``) are. Who
  changed a setting is not kept (it would be a person's data outside ``privacy``'s reach).
- ``companion_connections``: who turned ``/connect on`` in which guild (fact
  associations are only ever made between two such people of the same guild). The
  foreign key to ``users`` makes ``privacy forget`` delete a person's rows.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES = ("companion_settings", "companion_connections")

_DDL = """
CREATE TABLE IF NOT EXISTS companion_settings (
    guild_id    bigint NOT NULL,
    channel_id  bigint NOT NULL DEFAULT 0,
    persona     varchar(80),
    features    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(features) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, channel_id)
);

CREATE TABLE IF NOT EXISTS companion_connections (
    guild_id    bigint NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- the last association discovery for this person here (minus a margin): the next
    -- one only looks at their memories changed since
    discovered_at  timestamptz,
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX IF NOT EXISTS ix_companion_connections_user_id
    ON companion_connections (user_id);
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Create the companion's settings and connection tables."""
    await conn.execute(_DDL)
