"""A turn's *pieces*: its sentences, each embedded on its own besides the whole turn.

A long turn's vector averages what it says; a question about one of its sentences
("what breed is her dog?") is closer to that sentence alone. A turn's vector signal
is therefore the mean of the whole turn's cosine and the best cosine among the whole
and its pieces (see :mod:`barkeeper.retrieval._search`). A turn of one sentence has
no pieces: its signal is its own cosine.

Sentences end at ``.``, ``!`` or ``?`` followed by white space; fragments of three
characters or fewer ("Oh.", "Ha!") are dropped; more than :data:`MAX_PIECES`
sentences are grouped, in order, into that many runs of consecutive sentences. Each
piece carries the speaker as the whole turn does (``"speaker: sentence"``). The
definition is the one LoCoMo's figures were measured with: changing it changes them.
"""

from __future__ import annotations

import re

__all__ = ["MAX_PIECES", "pieces"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_PIECES = 8
"""Most pieces of one turn: more sentences are grouped into this many runs."""


def pieces(speaker: str, text: str) -> list[str]:
    """The texts to embed for a turn's pieces, or ``[]`` when it has fewer than two.

    Args:
        speaker: Who said it (``""``: no prefix).
        text: What was said.

    Returns:
        Up to :data:`MAX_PIECES` texts, ``"speaker: sentence"`` each, in order.

    Example:
        >>> pieces("Ana", "I adopted a cat. She is grey!")
        ['Ana: I adopted a cat.', 'Ana: She is grey!']
        >>> pieces("Ana", "Oh. I adopted a cat.")
        []
    """
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 3]
    if len(sentences) < 2:
        return []
    if len(sentences) > MAX_PIECES:
        n = len(sentences)
        sentences = [
            " ".join(sentences[i * n // MAX_PIECES : (i + 1) * n // MAX_PIECES])
            for i in range(MAX_PIECES)
        ]
    return [f"{speaker}: {s}" if speaker else s for s in sentences]
