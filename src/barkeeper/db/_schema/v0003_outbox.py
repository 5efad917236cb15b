"""Schema version 3: the memory outbox, durable memory work.

A message the bot answers gets a ``memory_outbox`` row in the transaction that caches
it, so memory extraction survives a crash or a deploy. Workers in any number of
processes claim rows with ``FOR UPDATE SKIP LOCKED``:

- **ready**: ``state <> 'dead' AND available_at <= now`` and no earlier row of the same
  user that is not dead (a user's items are processed one at a time, in ``id`` order);
- **claiming** sets ``state = 'claimed'``, ``attempts + 1``, a fresh ``claim_token`` and
  ``available_at = now + lease`` in its own committed transaction: a claim by a process
  that died expires with its lease and the row is ready again;
- **done** deletes the row in the transaction that writes the memories (exactly-once
  effect, see ``barkeeper.learning``); a failure sets ``retrying`` with
  ``available_at`` backed off, or ``dead`` with ``last_error`` after the last attempt.

``memory_outbox_ready`` backs the claim's scan, ``memory_outbox_user`` the per-user
"nothing earlier" probe, ``memory_outbox_message`` idempotent enqueueing (the same
message twice is one item). ``user_id`` references ``users`` (``ON DELETE CASCADE``),
so ``privacy forget`` finds and deletes a person's items through the catalog.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES = ("memory_outbox",)

_DDL = """
CREATE TABLE IF NOT EXISTS memory_outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id    bigint,
    channel_id    bigint,
    guild_id      bigint,
    author_name   text,
    content       text NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'claimed', 'retrying', 'dead')),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    available_at  timestamptz NOT NULL DEFAULT now(),
    claim_token   uuid,
    claimed_by    text,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The claim: the oldest ready rows first, dead rows left out of the index.
CREATE INDEX IF NOT EXISTS memory_outbox_ready
    ON memory_outbox (available_at, id) WHERE state <> 'dead';
-- "Has this user an earlier item still to do?" and the per-user deletes.
CREATE INDEX IF NOT EXISTS memory_outbox_user
    ON memory_outbox (user_id, id) WHERE state <> 'dead';
-- One item per message (enqueueing again does nothing); also the release after a reply.
CREATE UNIQUE INDEX IF NOT EXISTS memory_outbox_message
    ON memory_outbox (user_id, message_id) WHERE message_id IS NOT NULL;
-- Dead letters by reason, for status and doctor.
CREATE INDEX IF NOT EXISTS memory_outbox_dead
    ON memory_outbox (id) WHERE state = 'dead';
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Create the outbox table and its indexes."""
    await conn.execute(_DDL)
