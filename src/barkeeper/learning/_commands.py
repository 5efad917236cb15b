"""Explicit memory requests in plain words: "remember that …", "forget that …", "forget everything".

:func:`parse_memory_command` recognises them at the start of a message (after any
mentions of the bot and a "please"), without a model. What it returns says only
*what* was asked; whose memories it concerns is never read from the text: a request
always acts on its author's memories alone (see
:class:`~barkeeper.learning._manager.MemoryManager`). So "forget everything about @B"
is a request about the author's own memories that mention B, and cannot touch B's.

Nothing here performs I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["CommandKind", "MemoryCommand", "parse_memory_command"]

CommandKind = Literal["remember", "forget", "forget_all"]
"""``remember`` a fact, ``forget`` the memories matching a topic, ``forget_all`` of them."""

_LEAD = (
    r"^\s*(?:<@!?\d+>[\s,:]*)*"  # mentions of the bot
    r"(?:(?:hey|hi|ok|okay|so|and)\b[\s,]*)?"
    r"(?:(?:bartender|barkeeper|bot)\b[\s,:]*)?"
    r"(?:please\s+|pls\s+|can\s+you\s+|could\s+you\s+|would\s+you\s+)?"
)
_REMEMBER = re.compile(
    _LEAD + r"(?:remember|don'?t\s+forget|do\s+not\s+forget)(?:\s+this)?\s*(?:\s+that\b|:)"
    r"\s*(?P<what>.+)",
    re.IGNORECASE | re.DOTALL,
)
_FORGET_ALL = re.compile(
    _LEAD + r"forget\s+(?:everything|all(?:\s+of\s+it)?)"
    r"(?:\s+(?:you\s+)?(?:know|remember|have|learnt|learned))?"
    r"(?:\s+(?:about|of|on)\s+me)?"
    r"(?:\s+(?:of\s+)?my\s+(?:memories|data|facts))?"
    r"\s*(?:please)?[\s.!]*$",
    re.IGNORECASE,
)
_FORGET_TOPIC = re.compile(
    _LEAD + r"forget\s+(?:(?:everything|all|anything)\s+)?(?:you\s+know\s+)?"
    r"(?:that\b|about\b|what\b|the\s+(?:fact|thing)\s+(?:that\s+)?|:)\s*(?P<what>.+)",
    re.IGNORECASE | re.DOTALL,
)
_END = re.compile(r"[\s.!?,;:]+$")


@dataclass(frozen=True, slots=True)
class MemoryCommand:
    """An explicit request about the author's memories.

    Attributes:
        kind: What is asked.
        text: The fact to remember, or the topic to forget (empty for ``forget_all``).
    """

    kind: CommandKind
    text: str = ""


def parse_memory_command(text: str) -> MemoryCommand | None:
    """The memory request ``text`` opens with, or ``None``.

    Args:
        text: A user's message.

    Returns:
        ``remember`` with the fact ("remember that I'm vegan", "don't forget: my
        exam is on Monday"), ``forget_all`` ("forget everything", "please forget
        everything you know about me"), ``forget`` with the topic ("forget that I
        live in Paris", "forget everything about my ex"), or ``None``.

    Example:
        >>> parse_memory_command("<@42> please remember that I'm vegan")
        MemoryCommand(kind='remember', text="I'm vegan")
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    if _FORGET_ALL.match(text):
        return MemoryCommand("forget_all")
    for kind, pattern in (("remember", _REMEMBER), ("forget", _FORGET_TOPIC)):
        match = pattern.match(text)
        if match:
            what = _END.sub("", " ".join(match.group("what").split()))
            if what:
                return MemoryCommand(kind, what)  # type: ignore[arg-type]
    return None
