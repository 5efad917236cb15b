"""Care in hard moments: spotting a risk of self-harm or suicide in a message, locally.

Deliberately simple and over-inclusive: a set of phrases (English) that people use when
they are at risk. A false alarm costs a gentle, serious answer with resources; a miss
could cost far more, so this errs toward flagging. It is a safety net under the model's
own judgement (the persona also tells it what to do), not a classifier to trust alone.
Nothing here logs or stores the message.
"""

from __future__ import annotations

import re

__all__ = [
    "CARE_INSTRUCTION",
    "DEFAULT_CRISIS_RESOURCES",
    "SENSITIVE_MEMORY_TYPES",
    "memory_types_for",
    "shows_risk",
]

#: Memory types about someone's inner life: used only in a DM with that person, never in
#: a guild channel, where others read the replies.
SENSITIVE_MEMORY_TYPES = ("grief_context", "attachment_pattern", "coping_mechanism", "health")

#: ``BARKEEPER_CRISIS_RESOURCES``'s default: international, with the one number people
#: most need to know (their local emergency number) first.
DEFAULT_CRISIS_RESOURCES = (
    "If you are in danger right now, please call your local emergency number "
    "(112 in Europe, 911 in North America, 999 in the UK, 000 in Australia). "
    "You can also reach a crisis line: 988 (call or text, US and Canada), "
    "116 123 (Samaritans, UK and Ireland), or find one for your country at "
    "https://findahelpline.com."
)

#: What the model is told, out of persona, when a message shows risk.
CARE_INSTRUCTION = (
    "IMPORTANT: the current message may show a risk of self-harm or suicide. Step out of "
    "the banter and any mood: answer plainly and gently, take it seriously, say that you "
    "care and that they deserve support now, encourage them to reach a person today, and "
    "give these resources word for word: {resources} Never be upbeat or change the "
    "subject, never minimise, never lecture."
)

_RISK = re.compile(
    r"(?ix)\b("
    r"kill(ing)?\s+my\s*self|end(ing)?\s+(my|it)\s+(life|all)|take\s+my\s+(own\s+)?life"
    r"|suicid(e|al)|self[-\s]?harm(ing)?|hurt(ing)?\s+my\s*self|cut(ting)?\s+my\s*self"
    r"|(want|wanna|going)\s+to\s+die|wish\s+i\s+(was|were)\s+dead|better\s+off\s+dead"
    r"|don'?t\s+want\s+to\s+(live|be\s+alive|wake\s+up)|no\s+reason\s+to\s+live"
    r"|overdos(e|ing)|can'?t\s+go\s+on(\s+anymore)?"
    r")\b"
)


def shows_risk(text: str) -> bool:
    """Whether ``text`` uses words of someone at risk of self-harm or suicide."""
    return bool(_RISK.search(text))


def memory_types_for(place_kind: str, all_types: tuple[str, ...]) -> list[str] | None:
    """The memory types a reply in a place of ``place_kind`` may read (``None``: all).

    In a guild channel, every type but :data:`SENSITIVE_MEMORY_TYPES`.
    """
    if place_kind != "guild":
        return None
    return [t for t in all_types if t not in SENSITIVE_MEMORY_TYPES]
