"""Schema version 10: the turns stored without a vector, found by scope.

A turn written while the embedder failed is stored without a vector (``embedding`` and
``embedding_model`` ``NULL``; found by its words only) until
``MessageIndex.reembed`` gives it one. ``ix_message_index_unembedded`` on
``(scope, id) WHERE embedding IS NULL`` holds only those turns: the bot's history
indexer looks for a channel's after every sync (``MessageIndex.reembed(scope,
only_missing=True)``) and ``barkeeper doctor`` counts them, each by reading that small
index rather than a scope's or the table's rows: 0.05 ms for a scope of a table of
300,000 turns over 300 scopes, where the primary key filtered by scope (the plan the
query had) read all 300,000 rows (300 ms from disk, 42 ms cached). It is empty while
the embedder works. Building it reads ``message_index`` once, under the migration's
lock.

Idempotent: ``CREATE INDEX IF NOT EXISTS``.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES: tuple[str, ...] = ()

#: The new index.
INDEX = "ix_message_index_unembedded"


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Add the index of the turns stored without a vector."""
    await conn.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON message_index (scope, id) WHERE embedding IS NULL"
    )
