"""Where each person stands with the bot, per guild (``None``: DMs): score 0–100 and level.

Rules (constants in the persona's ``[tuning]``; why in ``docs/companion.md``):

- an exchange earns ``base_gain`` + ``depth_bonus`` × depth (words /
  ``depth_words``, at most 1) + ``return_bonus`` when the person comes back after
  ``return_after_hours``; a clearly negative message (sentiment ≤
  -``negative_below``) instead loses ``negative_loss``;
- gains have diminishing returns: they are multiplied by (1 - score / 100);
- after ``grace_days`` without a word, the score loses ``decay_per_day`` a day, but
  absence alone never takes it below ``decay_floor`` (a friend who was away is not a
  stranger);
- levels: New Face up to the first bound of ``relationship_levels`` (20), then
  Acquaintance (40), Friend (60), Good Friend (80), Close Friend above; each level's tone
  is the persona's ``[tones]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from barkeeper.companion._persona import LEVEL_NAMES, Persona
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError
from barkeeper.validation import check_bigint

__all__ = [
    "LEVEL_TITLES",
    "RELATIONSHIP_READ",
    "Relationship",
    "RelationshipStore",
    "absent",
    "level_of",
    "relationship_row",
]

LEVEL_TITLES = {
    "new_face": "New Face",
    "acquaintance": "Acquaintance",
    "friend": "Friend",
    "good_friend": "Good Friend",
    "close_friend": "Close Friend",
}
_REFERENCE_KINDS = ("nicknames", "inside_jokes")
_MAX_REFERENCE = 100
_MAX_REFERENCES = 10


def level_of(score: float, persona: Persona) -> str:
    """The level (a key of :data:`LEVEL_NAMES`) of ``score``."""
    for name, bound in zip(LEVEL_NAMES, persona.tuning.relationship_levels, strict=False):
        if score <= bound:
            return name
    return LEVEL_NAMES[-1]


@dataclass(frozen=True, slots=True)
class Relationship:
    """One person's standing in one guild (``guild_id`` None: DMs)."""

    user_id: int
    guild_id: int | None
    score: float = 0.0
    total_interactions: int = 0
    positive_interactions: int = 0
    negative_interactions: int = 0
    avg_message_length: float = 0.0
    conversation_depth_avg: float = 0.0
    shared_references: dict[str, list[str]] = field(default_factory=dict)
    last_interaction_at: datetime | None = None

    def level(self, persona: Persona) -> str:
        """Its level's key (``new_face`` … ``close_friend``)."""
        return level_of(self.score, persona)

    def describe(self, persona: Persona) -> str:
        """Where the person stands, in words (what ``/relationship`` would say)."""
        return f"{LEVEL_TITLES[self.level(persona)]} ({self.score:.0f}/100)"


def absent(rel: Relationship, persona: Persona, now: datetime) -> Relationship:
    """``rel`` at ``now``, after the decay of a long absence."""
    if rel.last_interaction_at is None or now <= rel.last_interaction_at:
        return rel
    t = persona.tuning
    days = (now - rel.last_interaction_at).total_seconds() / 86400 - t.relationship_grace_days
    if days <= 0 or rel.score <= t.relationship_decay_floor:
        return rel
    score = max(t.relationship_decay_floor, rel.score - t.relationship_decay_per_day * days)
    return replace(rel, score=score)


def interacted(
    rel: Relationship, persona: Persona, *, sentiment: float, words: int, now: datetime
) -> Relationship:
    """``rel`` after one exchange (the absence decay applied first)."""
    t = persona.tuning
    returning = rel.last_interaction_at is not None and (
        (now - rel.last_interaction_at).total_seconds() / 3600 >= t.relationship_return_after_hours
    )
    rel = absent(rel, persona, now)
    depth = min(1.0, words / t.relationship_depth_words)
    bound = t.relationship_negative_below
    if sentiment <= -bound:
        score = max(0.0, rel.score - t.relationship_negative_loss)
    else:
        gain = t.relationship_base_gain + t.relationship_depth_bonus * depth
        gain += t.relationship_return_bonus if returning else 0.0
        score = min(100.0, rel.score + gain * (1 - rel.score / 100))
    n = rel.total_interactions + 1
    return replace(
        rel,
        score=score,
        total_interactions=n,
        positive_interactions=rel.positive_interactions + (sentiment >= bound),
        negative_interactions=rel.negative_interactions + (sentiment <= -bound),
        avg_message_length=rel.avg_message_length + (words - rel.avg_message_length) / n,
        conversation_depth_avg=rel.conversation_depth_avg
        + (depth - rel.conversation_depth_avg) / n,
        last_interaction_at=max(now, rel.last_interaction_at or now),
    )


_COLUMNS = (
    "relationship_score, total_interactions, positive_interactions, negative_interactions, "
    "avg_message_length, conversation_depth_avg, shared_references, last_interaction_at"
)
RELATIONSHIP_READ = f"""
SELECT {_COLUMNS} FROM user_relationships
WHERE user_id = $1 AND coalesce(guild_id, 0) = coalesce($2::bigint, 0)
"""  # noqa: S608 - a constant column list
_READ = RELATIONSHIP_READ
_ENSURE = """
INSERT INTO user_relationships (user_id, guild_id, first_interaction_at, last_interaction_at)
VALUES ($1, $2, $3, $3)
ON CONFLICT (user_id, (coalesce(guild_id, 0))) DO NOTHING
RETURNING id
"""
_WRITE = """
UPDATE user_relationships SET relationship_score = $3, total_interactions = $4,
    positive_interactions = $5, negative_interactions = $6, avg_message_length = $7,
    conversation_depth_avg = $8, shared_references = $9::jsonb, last_interaction_at = $10,
    updated_at = now()
WHERE user_id = $1 AND coalesce(guild_id, 0) = coalesce($2::bigint, 0)
"""


def relationship_row(user_id: int, guild_id: int | None, row: Any) -> Relationship:
    refs = row["shared_references"]
    refs = dict(refs)
    return Relationship(
        user_id,
        guild_id,
        float(row["relationship_score"]),
        row["total_interactions"],
        row["positive_interactions"],
        row["negative_interactions"],
        float(row["avg_message_length"]),
        float(row["conversation_depth_avg"]),
        {k: list(v) for k, v in refs.items()},
        row["last_interaction_at"],
    )


class RelationshipStore:
    """Relationships per (user, guild); ``user_id`` is ``users.id`` (forgotten with the user)."""

    def __init__(self, db: Database, persona: Persona) -> None:
        self._db = db
        self._persona = persona

    async def get_relationship(
        self, user_id: int, guild_id: int | None, now: datetime
    ) -> Relationship:
        """The relationship at ``now`` (absence decay applied; nothing written)."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_READ, user_id, guild_id)
        if row is None:
            return Relationship(user_id, guild_id)
        return absent(relationship_row(user_id, guild_id, row), self._persona, now)

    async def _update(
        self, user_id: int, guild_id: int | None, now: datetime, change: Any
    ) -> Relationship:
        user_id = check_bigint(user_id, "user_id")
        try:
            async with self._db.transaction() as conn:
                await conn.execute(_ENSURE, user_id, guild_id, now)
                row = await conn.fetchrow(_READ + " FOR UPDATE", user_id, guild_id)
                assert row is not None
                rel = change(relationship_row(user_id, guild_id, row))
                await conn.execute(
                    _WRITE,
                    user_id,
                    guild_id,
                    rel.score,
                    rel.total_interactions,
                    rel.positive_interactions,
                    rel.negative_interactions,
                    rel.avg_message_length,
                    rel.conversation_depth_avg,
                    rel.shared_references,
                    rel.last_interaction_at,
                )
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        return rel  # type: ignore[no-any-return]

    async def record_interaction(
        self, user_id: int, guild_id: int | None, *, sentiment: float, words: int, now: datetime
    ) -> Relationship:
        """Count one exchange: the score moves by the rules above.

        Raises:
            NotFoundError: no such user.
        """
        return await self._update(
            user_id,
            guild_id,
            now,
            lambda rel: interacted(rel, self._persona, sentiment=sentiment, words=words, now=now),
        )

    async def add_shared_reference(
        self, user_id: int, guild_id: int | None, kind: str, text: str, now: datetime
    ) -> Relationship:
        """Remember a nickname or an inside joke (``kind``: ``nicknames``/``inside_jokes``).

        The newest ten of each kind are kept, each at most 100 characters.

        Raises:
            InvalidInputError: an unknown kind, or an empty, too long or NUL text.
            NotFoundError: no such user.
        """
        if kind not in _REFERENCE_KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(_REFERENCE_KINDS)}")
        text = " ".join(str(text).split())
        if not text or len(text) > _MAX_REFERENCE or "\x00" in text:
            raise InvalidInputError(
                f"a shared reference is 1 to {_MAX_REFERENCE} characters, without NUL"
            )

        def add(rel: Relationship) -> Relationship:
            refs = {k: list(v) for k, v in rel.shared_references.items()}
            items = [t for t in refs.get(kind, []) if t != text] + [text]
            refs[kind] = items[-_MAX_REFERENCES:]
            return replace(rel, shared_references=refs)

        return await self._update(user_id, guild_id, now, add)
