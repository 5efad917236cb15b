"""Schema version 9: the vectors of a turn's pieces (its sentences); a scope's speakers.

``message_index`` gains ``piece_embeddings``: the unit vectors of a turn's sentences
(see :mod:`barkeeper.turns._pieces`), by the same embedder as ``embedding``
(``embedding_model`` names both). A search's vector signal for a turn is then the mean
of its whole vector's cosine and the best cosine among the whole and its pieces: a
question about one sentence of a long turn finds it. ``NULL``: no pieces (a turn of
one sentence, a turn indexed before this version or without vectors); its signal is
its whole vector's cosine, as before.

The column is ``vector[]`` when the schema stores vectors as pgvector ``vector``
(``barkeeper_meta.embedding_storage``), else ``bytea`` holding the pieces'
little-endian float32 vectors one after another (pieces x dimension x 4 bytes).

Adding a nullable column without a default changes the catalog only (no table
rewrite). Existing rows keep ``NULL`` until indexed again with another text,
re-embedded by another embedder, or given their pieces by ``MessageIndex.add_pieces``.

``ix_message_index_scope_speaker`` on ``(scope, speaker)``: a turn search embeds its
query without the names of the scope's speakers it gives, and reads those speakers by
a loose index scan, one probe per speaker (about 1 ms for 300 speakers in a scope of
100,000 turns, against 38 ms for a ``DISTINCT`` over the rows). Building it reads
``message_index`` once, under the migration's lock.

Idempotent: ``ADD COLUMN IF NOT EXISTS``, ``CREATE INDEX IF NOT EXISTS``.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES: tuple[str, ...] = ()

#: The new column.
COLUMN = "piece_embeddings"
#: The new index.
INDEX = "ix_message_index_scope_speaker"


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Add ``message_index.piece_embeddings`` as the schema stores vectors, and the
    index of a scope's speakers."""
    storage = await conn.fetchval(
        "SELECT value #>> '{}' FROM barkeeper_meta WHERE key = 'embedding_storage'"
    )
    kind = "vector[]" if storage == "vector" else "bytea"
    await conn.execute(f"ALTER TABLE message_index ADD COLUMN IF NOT EXISTS {COLUMN} {kind}")
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON message_index (scope, speaker)")
