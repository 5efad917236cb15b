"""The bot's knowledge of itself per guild (``bot_states``): counters it can speak about truthfully.

``messages_sent`` counts replies; ``users_known`` is the number of people with a
relationship in that guild (counted at each reply, so it is never stale by more than a
reply); ``facts_learned`` is moved by whoever stores memories
(:meth:`BotStateStore.add_facts_learned`); ``first_activated_at`` is when the guild's
state was first written. The row is shared with the mood (:mod:`._mood`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.companion._persona import Persona
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError

__all__ = ["BotState", "BotStateStore"]

_ENSURE = """
INSERT INTO bot_states (guild_id, mood_valence, mood_arousal, mood_updated_at, first_activated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT ((coalesce(guild_id, 0))) DO NOTHING
"""
_REPLY = """
UPDATE bot_states SET total_messages_sent = total_messages_sent + 1,
    total_users_known = (SELECT count(*) FROM user_relationships r
                         WHERE coalesce(r.guild_id, 0) = coalesce($1::bigint, 0)),
    updated_at = now()
WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0)
"""
_FACTS = """
UPDATE bot_states SET total_facts_learned = total_facts_learned + $2, updated_at = now()
WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0)
"""
_READ = """
SELECT total_messages_sent, total_facts_learned, total_users_known, first_activated_at
FROM bot_states WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0)
"""


@dataclass(frozen=True, slots=True)
class BotState:
    """What the bot knows about itself in one guild (``guild_id`` None: DMs)."""

    guild_id: int | None
    messages_sent: int = 0
    facts_learned: int = 0
    users_known: int = 0
    first_activated_at: datetime | None = None

    def describe(self) -> str:
        """The counters in words, for the bot to speak about itself truthfully."""
        since = f" since {self.first_activated_at:%Y-%m-%d}" if self.first_activated_at else ""
        return (
            f"{self.messages_sent} replies sent, {self.facts_learned} facts learnt and "
            f"{self.users_known} people known here{since}"
        )


class BotStateStore:
    """The ``bot_states`` counters per guild."""

    def __init__(self, db: Database, persona: Persona) -> None:
        self._db = db
        self._persona = persona

    async def _ensure(self, conn: Any, guild_id: int | None, now: datetime) -> None:
        p = self._persona
        await conn.execute(_ENSURE, guild_id, p.baseline_valence, p.baseline_arousal, now)

    async def record_reply(self, guild_id: int | None, now: datetime) -> None:
        """Count one reply sent in the guild (and refresh the people known)."""
        async with self._db.transaction() as conn:
            await self._ensure(conn, guild_id, now)
            await conn.execute(_REPLY, guild_id)

    async def add_facts_learned(self, guild_id: int | None, count: int, now: datetime) -> None:
        """Count ``count`` new facts (memories) learnt in the guild.

        Raises:
            InvalidInputError: ``count`` is negative or not a whole number.
        """
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidInputError("count must be a whole number of at least 0")
        async with self._db.transaction() as conn:
            await self._ensure(conn, guild_id, now)
            await conn.execute(_FACTS, guild_id, count)

    async def get_state(self, guild_id: int | None) -> BotState:
        """The counters of the guild (zeros before its first reply)."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_READ, guild_id)
        if row is None:
            return BotState(guild_id)
        return BotState(
            guild_id,
            row["total_messages_sent"],
            row["total_facts_learned"],
            row["total_users_known"],
            row["first_activated_at"],
        )
