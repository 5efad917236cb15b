"""Fact associations: "you and Ana both play the cello", found without a model call.

Rules (constants in the persona's ``[tuning]``; why in ``docs/companion.md``):

- only between two people of the same guild who both turned ``/connect on`` there,
  only when the guild's ``associations`` switch is on (and ``BARKEEPER_FEATURES`` has it);
- only memories learnt in that guild (``memories.guild_id``), live (active, not
  invalidated, not expired), never of a sensitive type (:data:`SENSITIVE_MEMORY_TYPES`);
- two memories are associated when their full-text lexemes (PostgreSQL's ``english``
  configuration: stemmed, stop words dropped; the ``search`` column) share at least
  ``association_min_shared_words`` and the overlap coefficient
  (shared / the smaller lexeme count) is at least ``association_min_strength``; that
  coefficient is the association's ``strength``;
- discovery runs after a reply, in the background, for the author's
  ``association_recent_memories`` newest memories of the guild changed since their last
  discovery there (all of them after ``/connect on``), against every connected member's
  memories of the guild (each member's read by ``ix_memories_user_live``), keeping each
  of the author's memories' ``association_max_per_memory`` strongest partners;
- the reply's context shows the author's ``association_max_shown`` strongest ones.

Every condition is checked again when associations are read, so ``/connect off``, a
guild switching the feature off, a memory forgotten or turning sensitive, all take
effect at once. Rows go with their memories (``ON DELETE CASCADE``): ``privacy
forget`` and ``/forget`` remove them; ``/connect off`` deletes them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from barkeeper.companion._care import SENSITIVE_MEMORY_TYPES
from barkeeper.companion._persona import Persona
from barkeeper.db import Database
from barkeeper.validation import check_bigint

__all__ = ["ASSOCIATIONS_READ", "Association", "AssociationStore"]

_LIVE = (
    "{m}.is_active AND {m}.invalidated_at IS NULL "
    "AND ({m}.expires_at IS NULL OR {m}.expires_at > now())"
)


def _live(alias: str) -> str:
    return _LIVE.format(m=alias)


# $1 user, $2 guild, $3 sensitive types, $4 how many of the author's newest memories,
# $5 min shared lexemes, $6 min strength, $7 now, $8 most partners per memory.
_DISCOVER = f"""
WITH me AS (
    SELECT discovered_at FROM companion_connections WHERE guild_id = $2 AND user_id = $1
), mine AS (
    SELECT m.id, m.search FROM memories m, me
    WHERE m.user_id = $1 AND m.guild_id = $2 AND {_live("m")} AND m.memory_type <> ALL($3::text[])
      AND (me.discovered_at IS NULL OR m.updated_at > me.discovered_at)
    ORDER BY m.updated_at DESC LIMIT $4
), theirs AS (
    SELECT t.id, t.search FROM companion_connections c
    JOIN memories t ON t.user_id = c.user_id
    WHERE c.guild_id = $2 AND c.user_id <> $1 AND t.guild_id = $2 AND {_live("t")}
      AND t.memory_type <> ALL($3::text[])
), mine_words AS (
    SELECT m.id, w FROM mine m, unnest(tsvector_to_array(m.search)) w
), theirs_words AS (
    SELECT t.id, w FROM theirs t, unnest(tsvector_to_array(t.search)) w
), shared AS (
    -- one hash join on the lexemes, then a count per pair: no per-pair subquery
    SELECT mw.id AS a, tw.id AS b, count(*) AS words
    FROM mine_words mw JOIN theirs_words tw ON tw.w = mw.w
    GROUP BY mw.id, tw.id
    HAVING count(*) >= $5
), pairs AS (
    SELECT s.a, s.b, s.words, least(length(m.search), length(t.search)) AS smaller
    FROM shared s JOIN mine m ON m.id = s.a JOIN theirs t ON t.id = s.b
), ranked AS (
    SELECT a, b, words::real / smaller AS strength,
        row_number() OVER (PARTITION BY a ORDER BY words::real / smaller DESC, b) AS rank
    FROM pairs WHERE words::real / smaller >= $6
), written AS (
    INSERT INTO fact_associations
        (memory_id_1, memory_id_2, association_type, strength, discovered_at)
    SELECT least(a, b), greatest(a, b), 'shared_interest', strength, $7
    FROM ranked WHERE rank <= $8
    ON CONFLICT (memory_id_1, memory_id_2) DO UPDATE SET strength = EXCLUDED.strength
    RETURNING 1
), marked AS (
    -- a margin: a memory committed by another transaction meanwhile is looked at again
    UPDATE companion_connections SET discovered_at = now() - interval '1 minute'
    WHERE guild_id = $2 AND user_id = $1
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) + 0 * (SELECT count(*) FROM marked)
"""  # noqa: S608 - constant fragments; values stay parameters

# The author's associations in a guild, strongest first: $1 user, $2 guild, $3 sensitive
# types, $4 most shown. Empty unless the guild switched associations on and both people
# are connected there. (The global switch is the caller's: it does not run this.)
ASSOCIATIONS_READ = f"""
SELECT coalesce(u.custom_name, u.discord_display_name, u.discord_username, 'someone') AS name,
    mine.content AS mine, theirs.content AS theirs, x.strength
FROM (
    SELECT m.id AS mine_id, fa.memory_id_2 AS theirs_id, fa.strength
    FROM memories m JOIN fact_associations fa ON fa.memory_id_1 = m.id
    WHERE m.user_id = $1 AND m.guild_id = $2
    UNION ALL
    SELECT m.id, fa.memory_id_1, fa.strength
    FROM memories m JOIN fact_associations fa ON fa.memory_id_2 = m.id
    WHERE m.user_id = $1 AND m.guild_id = $2
) x
JOIN memories mine ON mine.id = x.mine_id
JOIN memories theirs ON theirs.id = x.theirs_id
JOIN users u ON u.id = theirs.user_id
WHERE {_live("mine")} AND {_live("theirs")} AND theirs.guild_id = $2 AND theirs.user_id <> $1
  AND mine.memory_type <> ALL($3::text[]) AND theirs.memory_type <> ALL($3::text[])
  AND EXISTS (SELECT 1 FROM companion_connections c WHERE c.guild_id = $2 AND c.user_id = $1)
  AND EXISTS (SELECT 1 FROM companion_connections c
              WHERE c.guild_id = $2 AND c.user_id = theirs.user_id)
  AND coalesce((SELECT (s.features ->> 'associations')::boolean FROM companion_settings s
                WHERE s.guild_id = $2 AND s.channel_id = 0), false)
ORDER BY x.strength DESC, x.theirs_id
LIMIT $4
"""  # noqa: S608 - constant fragments; values stay parameters


@dataclass(frozen=True, slots=True)
class Association:
    """Something the author has in common with another connected member.

    Attributes:
        name: The other person's name.
        mine: The author's memory.
        theirs: The other person's memory.
        strength: How much the two share (the overlap coefficient, 0..1).
    """

    name: str
    mine: str
    theirs: str
    strength: float

    def describe(self) -> str:
        """One line for the context (the memories quoted as data)."""
        return (
            f"with {json.dumps(self.name, ensure_ascii=False)}: "
            f"{json.dumps(self.mine, ensure_ascii=False)} / "
            f"{json.dumps(self.theirs, ensure_ascii=False)}"
        )


class AssociationStore:
    """Finds and reads fact associations (``fact_associations``)."""

    def __init__(self, db: Database, persona: Persona) -> None:
        self._db = db
        self._persona = persona

    async def discover(self, user_id: int, guild_id: int, now: datetime) -> int:
        """Find the author's associations in the guild (see the module's rules).

        Returns how many were written (new or re-scored). Nothing happens unless the
        author is connected there; the guild's switch is the caller's to check.
        """
        t = self._persona.tuning
        async with self._db.acquire() as conn:
            written = await conn.fetchval(
                _DISCOVER,
                check_bigint(user_id, "user_id"),
                check_bigint(guild_id, "guild_id"),
                list(SENSITIVE_MEMORY_TYPES),
                t.association_recent_memories,
                t.association_min_shared_words,
                t.association_min_strength,
                now,
                t.association_max_per_memory,
            )
        return int(written)

    async def for_user(self, user_id: int, guild_id: int) -> list[Association]:
        """The author's strongest associations in the guild (at most ``association_max_shown``)."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                ASSOCIATIONS_READ,
                check_bigint(user_id, "user_id"),
                check_bigint(guild_id, "guild_id"),
                list(SENSITIVE_MEMORY_TYPES),
                self._persona.tuning.association_max_shown,
            )
        return [Association(r["name"], r["mine"], r["theirs"], float(r["strength"])) for r in rows]
