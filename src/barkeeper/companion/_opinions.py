"""The bot's own opinions per guild: topics it has discussed, with sentiment and interest.

Topics are found without a model call: the content words of a message (lower-case,
4–30 letters, not a stop word, never capitalised mid-sentence so that names of people
are not topics), up to three per message, most frequent first. Each time a topic comes
up, its sentiment moves toward the message's by ``opinion_learning_rate``, its interest
rises by ``opinion_interest_gain`` (at most 1), and its count by one. An opinion is
offered only once it was discussed ``opinion_min_discussions`` times. Opinions hold no
user id: they are the bot's views on topics, never facts about people.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.companion._persona import Persona
from barkeeper.db import Database

__all__ = ["OPINIONS_READ", "Opinion", "OpinionStore", "opinion_row", "topics_of"]

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*|[.!?]")
_MAX_TOPICS = 3
_STOP = frozenset(
    """about above after again against all also although always among another anyone
    anything around away back because been before being below between both but came
    cannot could does doing done down during each either else enough even ever every
    from further gets getting give goes going gone gonna good great have having hello
    here hers herself himself into itself just know last least less like little lots
    made make many maybe mine more most much must myself need never next nice none
    nothing okay once only other ought ours ourselves over really right said same
    says should since some something still such sure take tell than thank thanks that
    their theirs them themselves then there these they thing things think this those
    though through today told tomorrow took very want wants week well went were what
    when where which while will with without would yeah year years yesterday your
    yours yourself yourselves also from feel feels felt time times keep kept look
    looks looking come comes coming work works working pretty quite anyway whatever
    sorry please hey haha lol lmao yeah yes nope""".split()
)


def topics_of(text: str) -> list[str]:
    """The topics of ``text`` (at most three), most frequent first."""
    counts: Counter[str] = Counter()
    sentence_start = True
    for token in _TOKEN.findall(text):
        if token in ".!?":
            sentence_start = True
            continue
        word = token.strip("'’-")
        lower = word.lower()
        proper = word[:1].isupper() and not sentence_start
        sentence_start = False
        if proper or not 4 <= len(lower) <= 30 or not lower.isalpha() or lower in _STOP:
            continue
        counts[lower] += 1
    return [word for word, _ in counts.most_common(_MAX_TOPICS)]


@dataclass(frozen=True, slots=True)
class Opinion:
    """The bot's view on a topic in one guild."""

    topic: str
    sentiment: float
    interest: float
    count: int
    last_reinforced_at: datetime

    def describe(self) -> str:
        """The view in words."""
        if self.sentiment > 0.25:
            view = "you rather like it"
        elif self.sentiment < -0.25:
            view = "you are not keen on it"
        else:
            view = "you have mixed feelings about it"
        return f"{self.topic}: {view} (it has come up {self.count} times here)"


_REINFORCE = """
INSERT INTO bot_opinions (guild_id, topic, sentiment, interest_level, discussion_count,
    formed_at, last_reinforced_at)
VALUES ($1, $2, $3::real * $4::real, least(1.0, 0.5 + $5::real), 1, $6, $6)
ON CONFLICT ((coalesce(guild_id, 0)), topic) DO UPDATE SET
    sentiment = greatest(-1.0, least(1.0,
        bot_opinions.sentiment + $4 * ($3 - bot_opinions.sentiment))),
    interest_level = least(1.0, bot_opinions.interest_level + $5),
    discussion_count = bot_opinions.discussion_count + 1,
    last_reinforced_at = greatest(bot_opinions.last_reinforced_at, $6),
    updated_at = now()
"""
OPINIONS_READ = """
SELECT topic, sentiment, interest_level, discussion_count, last_reinforced_at
FROM bot_opinions
WHERE coalesce(guild_id, 0) = coalesce($1::bigint, 0) AND topic = ANY($2::text[])
    AND discussion_count >= $3::int
ORDER BY interest_level DESC, discussion_count DESC, topic
LIMIT $4::int
"""
_READ = OPINIONS_READ


class OpinionStore:
    """Opinions per guild (the Discord guild id; ``None``: DMs)."""

    def __init__(self, db: Database, persona: Persona) -> None:
        self._db = db
        self._persona = persona

    async def reinforce(
        self, guild_id: int | None, topics: list[str], sentiment: float, now: datetime
    ) -> None:
        """Count one more discussion of each topic, pulled toward ``sentiment``."""
        t = self._persona.tuning
        if not topics:
            return
        async with self._db.transaction() as conn:
            for topic in sorted(set(topics)):  # one order: no deadlock between processes
                await conn.execute(
                    _REINFORCE,
                    guild_id,
                    topic,
                    max(-1.0, min(1.0, sentiment)),
                    t.opinion_learning_rate,
                    t.opinion_interest_gain,
                    now,
                )

    async def get_opinions(self, guild_id: int | None, topics: list[str]) -> list[Opinion]:
        """The formed opinions (discussed often enough) on ``topics``, most interesting first."""
        t = self._persona.tuning
        if not topics:
            return []
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                _READ, guild_id, topics, t.opinion_min_discussions, t.opinion_max_shown
            )
        return [opinion_row(r) for r in rows]


def opinion_row(r: Any) -> Opinion:
    """An :class:`Opinion` from its row."""
    return Opinion(
        r["topic"],
        float(r["sentiment"]),
        float(r["interest_level"]),
        r["discussion_count"],
        r["last_reinforced_at"],
    )
