"""Splitting a reply into Discord messages (2000 characters) without breaking code or words."""

from __future__ import annotations

__all__ = ["DISCORD_LIMIT", "split_message"]

DISCORD_LIMIT = 2000
_CLOSE = "\n```"


def _open_fence(text: str) -> str | None:
    """The fence line (```` ```python ````) of a code block left open at the end of ``text``."""
    fence: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped
    return fence


def _cut(text: str, budget: int) -> int:
    """Where to cut ``text`` to keep at most ``budget`` characters: a line end, else a space."""
    newline = text.rfind("\n", 0, budget + 1)
    if newline > budget // 2:
        return newline
    space = text.rfind(" ", 0, budget + 1)
    if space > 0:
        return space
    return max(newline, budget) if newline > 0 else budget


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """``text`` as messages of at most ``limit`` characters.

    Cuts at a line end (else a space, else anywhere in a word longer than a message);
    a code block cut in two is closed at the end of one message and reopened, with
    its language, at the start of the next.

    Example:
        >>> [len(m) for m in split_message("word " * 1000)]
        [1994, 1994, 1010]

    Args:
        text: The reply.
        limit: Characters per message (at least 100).

    Returns:
        The messages, none empty; ``[]`` for empty or blank text.
    """
    if limit < 100:
        raise ValueError("limit must be at least 100")
    chunks: list[str] = []
    carried: str | None = None  # a code fence reopened at the top of the next message
    rest = text.strip("\n")
    while rest.strip():
        prefix = carried + "\n" if carried else ""
        room = limit - len(prefix)
        if len(rest) <= room:
            chunks.append(prefix + rest)
            break
        cut = _cut(rest, room - len(_CLOSE))
        piece, rest = rest[:cut], rest[cut:]
        if rest[:1] in ("\n", " "):
            rest = rest[1:]
        carried = _open_fence(prefix + piece)
        if carried is not None:
            piece += _CLOSE
        if (prefix + piece).strip():
            chunks.append(prefix + piece)
    return chunks
