"""The turn index: hybrid search over raw turns (the Discord cache, transcripts), by scope.

:class:`MessageIndex` keeps a searchable copy of :class:`Turn` values in
``message_index`` and returns :class:`IndexedTurn` hits
(:class:`barkeeper.retrieval.Hit`). A *scope* is what one search may see (a channel,
a user's conversation with the bot, a transcript). Discord channels are indexed from
:class:`barkeeper.history.MessageStore`'s cache under
:func:`discord_channel_scope`; :func:`count_channel_index` counts them.

Example::

    from barkeeper.turns import MessageIndex, Turn

    index = MessageIndex(db, MiniLMEmbedder())
    await index.add_turns("transcript:42", [Turn("1", "Ana", "I adopted a cat")])
    hits = await index.search("transcript:42", "does Ana have pets?", k=5)
"""

from barkeeper.turns._index import (
    MAX_TURN_CHARS,
    ChannelIndexCounts,
    MessageIndex,
    count_channel_index,
    discord_channel_scope,
)
from barkeeper.turns._models import IndexedTurn, Turn

__all__ = [
    "MAX_TURN_CHARS",
    "ChannelIndexCounts",
    "IndexedTurn",
    "MessageIndex",
    "Turn",
    "count_channel_index",
    "discord_channel_scope",
]
