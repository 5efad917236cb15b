"""What a question asks, apart from whom it is about: the speakers it names, taken out.

A turn's vector is of ``"speaker: text"``, and a question naming a speaker ("What does
Ana do to relax?") is, to a small sentence embedding, mostly about that name: every
turn of Ana's and every turn addressed to her looks close. Who is the speaker bonus's
job (:attr:`barkeeper.retrieval.Weights.speaker`); the query's vector is made of what
is left ("What does do to relax?"). Measured on LoCoMo, with the speaker bonus raised
to match: see ``bench/README.md`` (locomo.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["without_speakers"]

_WORDS = re.compile(r"\w+")


def without_speakers(query: str, speakers: Iterable[str]) -> str:
    """``query`` without the names of the speakers it names, for its embedding.

    A speaker is named when every word of their name is among the query's words (the
    speaker bonus's rule); those words go, with a possessive ``'s``. Words of one
    letter stay (a speaker called "a" must not take the article with them). A query
    that would be left without a word is returned as it is.

    Args:
        query: The search text.
        speakers: The speakers of the scope searched.

    Returns:
        The text to embed.
    """
    words = set(_WORDS.findall(query.lower()))
    drop: set[str] = set()
    for speaker in speakers:
        name = _WORDS.findall(speaker.lower())
        if name and all(word in words for word in name):
            drop.update(word for word in name if len(word) > 1)
    if not drop:
        return query
    names = "|".join(re.escape(word) for word in sorted(drop, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{names})(?:['’]s)?(?!\w)", re.IGNORECASE)
    stripped = " ".join(pattern.sub(" ", query).split())
    return stripped if _WORDS.search(stripped) else query
