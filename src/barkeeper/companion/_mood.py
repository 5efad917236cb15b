"""The bot's mood, per guild (and one for DMs): classification, bounded moves, decay.

The rules (constants in the persona's ``[tuning]`` and ``BARKEEPER_MOOD_DECAY``; why in
``docs/companion.md``):

- classification as Loyal Companion did: valence > 0.3 → excited if arousal > 0.3 else
  happy; valence < -0.3 → annoyed if arousal > 0.3 else bored; otherwise curious if
  arousal > 0.3, calm if arousal < -0.3, else neutral; intensity = (|v| + |a|) / 2, and
  below ``mood_effect_threshold`` the mood has no effect on behaviour;
- a message pulls the mood toward its sentiment by ``mood_sentiment_weight`` of the
  distance, at most ``mood_step`` per axis;
- the distance to the persona's baseline shrinks by ``BARKEEPER_MOOD_DECAY`` per hour
  (exponentially: after h hours, by the factor (1 - decay)^h).

Every stored change is written to ``mood_history`` with its trigger (``decay`` or
``conversation``). The mood colours the prompt; nothing here touches memories or facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.companion._persona import Persona
from barkeeper.companion._sentiment import Sentiment
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError

__all__ = ["MOOD_READ", "Mood", "MoodStore", "classify_mood", "decayed", "nudged"]

_LABEL_WORDS = {
    "excited": "bright and lively",
    "happy": "content and warm",
    "annoyed": "a bit on edge",
    "bored": "flat and a little weary",
    "curious": "alert and curious",
    "calm": "calm and unhurried",
    "neutral": "even",
}


@dataclass(frozen=True, slots=True)
class Mood:
    """A mood: valence and arousal in [-1, 1], as of ``updated_at``."""

    valence: float
    arousal: float
    updated_at: datetime | None = None

    @property
    def label(self) -> str:
        """Its name: excited, happy, annoyed, bored, curious, calm or neutral."""
        return classify_mood(self.valence, self.arousal)[0]

    @property
    def intensity(self) -> float:
        """(|valence| + |arousal|) / 2, in [0, 1]."""
        return classify_mood(self.valence, self.arousal)[1]

    def describe(self) -> str:
        """The mood in words (what ``/mood`` would say)."""
        return f"{_LABEL_WORDS[self.label]} ({self.label}, intensity {self.intensity:.2f})"


def classify_mood(valence: float, arousal: float) -> tuple[str, float]:
    """Loyal Companion's classification: (label, intensity)."""
    if valence > 0.3:
        label = "excited" if arousal > 0.3 else "happy"
    elif valence < -0.3:
        label = "annoyed" if arousal > 0.3 else "bored"
    elif arousal > 0.3:
        label = "curious"
    elif arousal < -0.3:
        label = "calm"
    else:
        label = "neutral"
    return label, (abs(valence) + abs(arousal)) / 2


def _clamp(value: float, bound: float = 1.0) -> float:
    return max(-bound, min(bound, value))


def decayed(mood: Mood, persona: Persona, decay_per_hour: float, now: datetime) -> Mood:
    """``mood`` at ``now``: its distance to the baseline shrunk by the hours passed."""
    if mood.updated_at is None or now <= mood.updated_at:
        return mood
    hours = (now - mood.updated_at).total_seconds() / 3600
    factor = (1.0 - decay_per_hour) ** hours
    v0, a0 = persona.baseline_valence, persona.baseline_arousal
    return Mood(v0 + (mood.valence - v0) * factor, a0 + (mood.arousal - a0) * factor, now)


def nudged(mood: Mood, sentiment: Sentiment, persona: Persona, now: datetime) -> Mood:
    """``mood`` pulled toward a message's sentiment, bounded by ``mood_step`` per axis."""
    tuning = persona.tuning
    step, weight = tuning.mood_step, tuning.mood_sentiment_weight
    dv = _clamp(weight * (sentiment.valence - mood.valence), step)
    da = _clamp(weight * (sentiment.arousal - mood.arousal), step)
    return Mood(_clamp(mood.valence + dv), _clamp(mood.arousal + da), now)


MOOD_READ = """
SELECT mood_valence, mood_arousal, mood_updated_at FROM bot_states
WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0)
"""
_ENSURE = """
INSERT INTO bot_states (guild_id, mood_valence, mood_arousal, mood_updated_at, first_activated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT ((coalesce(guild_id, 0))) DO NOTHING
"""
_READ = MOOD_READ
_LOCK = _READ + " FOR UPDATE"
_WRITE = """
UPDATE bot_states SET mood_valence = $2, mood_arousal = $3, mood_updated_at = $4,
    updated_at = now()
WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0)
"""
_HISTORY = """
INSERT INTO mood_history (guild_id, valence, arousal, trigger_type, trigger_user_id,
    trigger_description, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


class MoodStore:
    """The mood of each guild (``guild_id`` = the Discord guild id; ``None``: DMs).

    Args:
        db: The database.
        persona: Whose baseline and tuning apply.
        decay_per_hour: ``BARKEEPER_MOOD_DECAY``.
    """

    def __init__(self, db: Database, persona: Persona, *, decay_per_hour: float) -> None:
        if not 0.0 <= decay_per_hour <= 1.0:
            raise InvalidInputError("BARKEEPER_MOOD_DECAY must be between 0 and 1")
        self._db = db
        self._persona = persona
        self._decay = decay_per_hour

    def baseline(self) -> Mood:
        """The persona's resting mood."""
        return Mood(self._persona.baseline_valence, self._persona.baseline_arousal)

    async def get_mood(self, guild_id: int | None, now: datetime) -> Mood:
        """The mood at ``now`` (decayed since it was stored; nothing is written)."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_READ, guild_id)
        return self.from_row(row, now)

    def from_row(self, row: Any, now: datetime) -> Mood:
        """The mood at ``now`` from its stored row (``None``: the baseline)."""
        if row is None:
            return Mood(self._persona.baseline_valence, self._persona.baseline_arousal, now)
        stored = Mood(
            float(row["mood_valence"]), float(row["mood_arousal"]), row["mood_updated_at"]
        )
        return decayed(stored, self._persona, self._decay, now)

    async def record(
        self,
        guild_id: int | None,
        sentiment: Sentiment,
        now: datetime,
        *,
        user_id: int | None = None,
        description: str | None = None,
    ) -> Mood:
        """Move the mood by one message's sentiment; store it and its history.

        The decay since the last change is stored first (trigger ``decay``), then the
        message's pull (trigger ``conversation``); a change smaller than
        ``mood_history_min_change`` on both axes is stored without a history row.
        """
        minimum = self._persona.tuning.mood_history_min_change
        async with self._db.transaction() as conn:
            base = self.baseline()
            await conn.execute(_ENSURE, guild_id, base.valence, base.arousal, now)
            row = await conn.fetchrow(_LOCK, guild_id)
            assert row is not None  # ensured above, in this transaction
            stored = Mood(row["mood_valence"], row["mood_arousal"], row["mood_updated_at"])
            rested = decayed(stored, self._persona, self._decay, now)
            after = nudged(rested, sentiment, self._persona, now)
            for before, mood, trigger, who, what in (
                (stored, rested, "decay", None, None),
                (rested, after, "conversation", user_id, description),
            ):
                moved = max(abs(mood.valence - before.valence), abs(mood.arousal - before.arousal))
                if moved >= minimum:
                    await conn.execute(
                        _HISTORY, guild_id, mood.valence, mood.arousal, trigger, who, what, now
                    )
            await conn.execute(
                _WRITE, guild_id, after.valence, after.arousal, max(now, stored.updated_at or now)
            )
        return after

    async def history(self, guild_id: int | None, *, limit: int = 50) -> list[dict[str, object]]:
        """The newest ``limit`` mood changes of the guild, newest first."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT valence, arousal, trigger_type, trigger_user_id, trigger_description, "
                "recorded_at FROM mood_history "
                "WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0) "
                "ORDER BY recorded_at DESC, id DESC LIMIT $2",
                guild_id,
                limit,
            )
        return [dict(r) for r in rows]
