"""Local sentiment: VADER's valence, and an arousal estimate from how a message is written.

No model call and no download: VADER (``vaderSentiment``, MIT) ships its lexicon in
the wheel and was built for short social-media text, emoji and slang included, which
is what Discord messages are. VADER has no arousal, so arousal is estimated from the
signs of energy a reader sees (the strength of the sentiment, exclamation marks,
shouted words); the constants are in ``docs/companion.md``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["Sentiment", "score_sentiment"]

_lock = threading.Lock()
_analyzer: Any = None
_WORD = re.compile(r"[A-Za-z]{3,}")

#: Arousal = clamp(-0.3 + 0.6·|compound| + 0.15·min(!, 3) + 0.5·shouted share).
_AROUSAL_BASE = -0.3
_AROUSAL_STRENGTH = 0.6
_AROUSAL_BANG = 0.15
_AROUSAL_BANGS_MAX = 3
_AROUSAL_CAPS = 0.5


@dataclass(frozen=True, slots=True)
class Sentiment:
    """A message's feeling: valence (unpleasant → pleasant) and arousal (calm → excited).

    Both are in [-1, 1].
    """

    valence: float
    arousal: float


def _vader() -> Any:
    global _analyzer
    with _lock:  # the lexicon loads once (tens of milliseconds), then scoring is cheap
        if _analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _analyzer = SentimentIntensityAnalyzer()
        return _analyzer


def _clamp(value: float) -> float:
    return max(-1.0, min(1.0, value))


def score_sentiment(text: str) -> Sentiment:
    """Score ``text`` locally (blocking the first time, while the lexicon loads)."""
    if not text.strip():
        return Sentiment(0.0, 0.0)
    compound = float(_vader().polarity_scores(text)["compound"])
    words = _WORD.findall(text)
    shouted = sum(1 for w in words if w.isupper()) / len(words) if words else 0.0
    bangs = min(text.count("!"), _AROUSAL_BANGS_MAX)
    arousal = (
        _AROUSAL_BASE
        + _AROUSAL_STRENGTH * abs(compound)
        + _AROUSAL_BANG * bangs
        + _AROUSAL_CAPS * shouted
    )
    return Sentiment(round(_clamp(compound), 4), round(_clamp(arousal), 4))
