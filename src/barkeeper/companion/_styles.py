"""How each person writes, learnt message by message without a model call.

Each message gives five signals in [0, 1] (length, formality, emoji, humour, detail);
each preference moves toward its signal by ``style_learning_rate`` (an exponential
moving average), ``samples_collected`` counts the messages, and the confidence is
samples / ``style_confidence_samples`` (at most 1). The style is applied to replies
only at ``style_confidence_threshold`` or above. Constants: the persona's ``[tuning]``;
the signals' rules: ``docs/companion.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from barkeeper.companion._persona import Persona
from barkeeper.db import Database
from barkeeper.errors import NotFoundError, QueryError
from barkeeper.validation import check_bigint

__all__ = [
    "STYLE_READ",
    "CommunicationStyle",
    "StyleSignals",
    "StyleStore",
    "style_row",
    "style_signals",
]

_WORDS = re.compile(r"\b[\w']+\b")
_EMOJI = re.compile(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]|<a?:\w+:\d+>|(?<!\w)[:;]-?[)(DPp](?!\w)")
_HUMOUR = re.compile(r"(?i)\b(lol|lmao|rofl|haha\w*|hehe\w*|xd)\b|😂|🤣|😆|😹")
_CASUAL = re.compile(
    r"(?i)\b(u|ur|ya|yeah|yep|nah|gonna|wanna|gotta|kinda|lol|omg|btw|idk|tbh|pls|thx)\b"
)
_SHORT_WORDS = 8
_LONG_WORDS = 40
_DETAIL_WORDS = 60


@dataclass(frozen=True, slots=True)
class StyleSignals:
    """One message's signals, each in [0, 1]."""

    length: float
    formality: float
    emoji: float
    humour: float
    detail: float


def style_signals(text: str) -> StyleSignals:
    """The signals of one message (rules in ``docs/companion.md``)."""
    words = _WORDS.findall(text)
    n = len(words)
    length = 0.0 if n <= _SHORT_WORDS else 1.0 if n > _LONG_WORDS else 0.5
    stripped = text.strip()
    formality = 0.5
    if stripped[:1].isupper():
        formality += 0.2
    if stripped[-1:] in ".?!":
        formality += 0.1
    if stripped == stripped.lower() and any(c.isalpha() for c in stripped):
        formality -= 0.2
    if _CASUAL.search(text):
        formality -= 0.3
    if "'" in text or "’" in text:
        formality -= 0.1
    return StyleSignals(
        length=length,
        formality=max(0.0, min(1.0, formality)),
        emoji=1.0 if _EMOJI.search(text) else 0.0,
        humour=1.0 if _HUMOUR.search(text) else 0.0,
        detail=min(1.0, n / _DETAIL_WORDS),
    )


@dataclass(frozen=True, slots=True)
class CommunicationStyle:
    """A person's learnt style (defaults: 0.5, medium, no samples)."""

    user_id: int
    preferred_length: str = "medium"
    formality: float = 0.5
    emoji: float = 0.5
    humour: float = 0.5
    detail: float = 0.5
    length: float = 0.5
    samples: int = 0
    confidence: float = 0.0

    def hints(self, persona: Persona) -> list[str]:
        """How to write to this person; empty below the confidence threshold."""
        if self.confidence < persona.tuning.style_confidence_threshold:
            return []
        hints = {
            "short": "keep replies short",
            "medium": "keep replies to a few sentences",
            "long": "they like fuller replies",
        }
        out = [hints[self.preferred_length]]
        if self.formality < 0.35:
            out.append("casual, relaxed wording")
        elif self.formality > 0.65:
            out.append("tidy, more formal wording")
        if self.emoji > 0.6:
            out.append("an emoji now and then is welcome")
        elif self.emoji < 0.2:
            out.append("no emoji")
        if self.humour > 0.6:
            out.append("they enjoy a joke")
        if self.detail > 0.65:
            out.append("they like details")
        elif self.detail < 0.2:
            out.append("skip the details unless asked")
        return out


def _length_name(value: float) -> str:
    return "short" if value < 1 / 3 else "long" if value > 2 / 3 else "medium"


def learnt(
    style: CommunicationStyle, signals: StyleSignals, persona: Persona
) -> CommunicationStyle:
    """``style`` after one more message."""
    t = persona.tuning
    rate = t.style_learning_rate
    samples = style.samples + 1

    def move(old: float, new: float) -> float:
        return old + rate * (new - old)

    length = move(style.length, signals.length)
    return CommunicationStyle(
        user_id=style.user_id,
        preferred_length=_length_name(length),
        formality=move(style.formality, signals.formality),
        emoji=move(style.emoji, signals.emoji),
        humour=move(style.humour, signals.humour),
        detail=move(style.detail, signals.detail),
        length=length,
        samples=samples,
        confidence=min(1.0, samples / t.style_confidence_samples),
    )


STYLE_READ = """
SELECT preferred_length, preferred_formality, emoji_affinity, humor_affinity,
    detail_preference, engagement_signals, samples_collected, confidence
FROM user_communication_styles WHERE user_id = $1::bigint
"""
_READ = STYLE_READ
_ENSURE = """
INSERT INTO user_communication_styles (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING
"""
_WRITE = """
UPDATE user_communication_styles SET preferred_length = $2, preferred_formality = $3,
    emoji_affinity = $4, humor_affinity = $5, detail_preference = $6,
    engagement_signals = engagement_signals || $7::jsonb, samples_collected = $8,
    confidence = $9, updated_at = now()
WHERE user_id = $1
"""


def style_row(user_id: int, row: Any) -> CommunicationStyle:
    signals = row["engagement_signals"]
    signals = dict(signals)
    return CommunicationStyle(
        user_id,
        row["preferred_length"],
        float(row["preferred_formality"]),
        float(row["emoji_affinity"]),
        float(row["humor_affinity"]),
        float(row["detail_preference"]),
        float(signals.get("length", 0.5)),
        row["samples_collected"],
        float(row["confidence"]),
    )


class StyleStore:
    """Communication styles per user (``users.id``; forgotten with the user)."""

    def __init__(self, db: Database, persona: Persona) -> None:
        self._db = db
        self._persona = persona

    async def get_style(self, user_id: int) -> CommunicationStyle:
        """The user's style (the defaults, with no confidence, if nothing is learnt)."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_READ, user_id)
        return CommunicationStyle(user_id) if row is None else style_row(user_id, row)

    async def learn(self, user_id: int, text: str) -> CommunicationStyle:
        """Learn from one message of the user.

        Raises:
            NotFoundError: no such user.
        """
        user_id = check_bigint(user_id, "user_id")
        signals = style_signals(text)
        try:
            async with self._db.transaction() as conn:
                await conn.execute(_ENSURE, user_id)
                row = await conn.fetchrow(_READ + " FOR UPDATE", user_id)
                assert row is not None
                style = learnt(style_row(user_id, row), signals, self._persona)
                await conn.execute(
                    _WRITE,
                    user_id,
                    style.preferred_length,
                    style.formality,
                    style.emoji,
                    style.humour,
                    style.detail,
                    {"length": style.length},
                    style.samples,
                    style.confidence,
                )
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        return style
