"""Schema version 8: a memory's extraction context is searched, at a lower weight.

A memory is a short statement ("Joined a pottery class"); the message it was learnt
from (``memories.extraction_context``, kept until now for audit only) holds the words
a later question is likely to use ("I signed up for a pottery class at the community
centre last week!"). As for a turn and its neighbouring turns in ``message_index``,
``memories.search`` now holds the context's lexemes weighted ``B`` before the
content's: a search's BM25 counts a word of the context as ``Weights.context_weight``
(half) of a word of the content. The shown text (``content``) does not change.

A generated column's expression cannot be altered before PostgreSQL 17, so the column
is dropped and added again; adding it rewrites ``memories`` once under the migration's
lock and recomputes every existing row (no separate re-indexing). Forgetting a memory
already clears ``extraction_context``, so its words leave the tsvector with it.
Idempotent: the column is rebuilt only when its expression lacks the context.
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES: tuple[str, ...] = ()

_CURRENT = """
SELECT pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = 'memories'::regclass AND a.attname = 'search'
"""

_REBUILD = """
ALTER TABLE memories DROP COLUMN IF EXISTS search;
ALTER TABLE memories ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(extraction_context, '')), 'B')
    || to_tsvector('english', content)
) STORED;
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Make ``memories.search`` hold the extraction context at weight ``B``."""
    current = await conn.fetchval(_CURRENT)
    if current is not None and "extraction_context" in current:
        return
    await conn.execute(_REBUILD)
