"""Schema version 4: follow-ups and reminders that are sent exactly once.

``scheduled_events`` (created by version 1, unused until now) gains what delivery by
several bot processes needs (``docs/companion.md``, "Follow-ups and reminders"):

- ``status`` also takes ``sending`` (claimed by a process, lease running), ``sent``
  and ``failed``; ``triggered`` stays allowed for rows written before.
- ``claimed_by`` / ``claimed_at`` / ``attempts``: which process claimed the row, when
  (the lease and the per-day cap count from it), how many claims it had.
- ``body``: the exact text sent, written in the claiming transaction, so that a
  process taking over an expired claim can tell whether it was sent already.
- ``sent_message_id``: the Discord message that delivered it.
- ``recurrence``: ``none``, ``weekly``, ``monthly`` or ``yearly``.
- ``dedupe_key``: one live event per key and person (a message processed twice, a
  birthday learnt again), enforced by a partial unique index.

Indexes: stale claims (``claimed_at`` of ``sending`` rows), the per-day cap (a
person's claims by time) and the dedupe key.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES: tuple[str, ...] = ()

_DDL = """
ALTER TABLE scheduled_events DROP CONSTRAINT IF EXISTS scheduled_events_status_check;
ALTER TABLE scheduled_events ADD CONSTRAINT scheduled_events_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'triggered', 'cancelled', 'failed'));
ALTER TABLE scheduled_events
    ADD COLUMN IF NOT EXISTS claimed_by       varchar(100),
    ADD COLUMN IF NOT EXISTS claimed_at       timestamptz,
    ADD COLUMN IF NOT EXISTS attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS body             text,
    ADD COLUMN IF NOT EXISTS sent_message_id  bigint,
    ADD COLUMN IF NOT EXISTS recurrence       varchar(10) NOT NULL DEFAULT 'none'
        CHECK (recurrence IN ('none', 'weekly', 'monthly', 'yearly')),
    ADD COLUMN IF NOT EXISTS dedupe_key       varchar(300);
CREATE INDEX IF NOT EXISTS ix_scheduled_events_stale
    ON scheduled_events (claimed_at) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS ix_scheduled_events_user_claimed
    ON scheduled_events (user_id, claimed_at) WHERE status IN ('sending', 'sent');
CREATE UNIQUE INDEX IF NOT EXISTS ux_scheduled_events_dedupe
    ON scheduled_events (user_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'sending');
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Extend ``scheduled_events`` for exactly-once delivery."""
    await conn.execute(_DDL)
