"""The backfill: fetch every channel's history into the message cache, resumably and safely.

:class:`Backfill` runs catch-up, initial fetch, deepening to a target and the
reconciliation of offline edits and deletes, per channel under a PostgreSQL advisory
lock (:class:`ChannelLocks`), each page committed together with its cursor. It reads
history from a :class:`HistorySource`; :class:`DiscordHistorySource` is the one on
discord.py (honouring ``DISCORD_API_BASE``). See :mod:`barkeeper.backfill._engine`
for the algorithm and its guarantees.

Example::

    from barkeeper.backfill import Backfill, DiscordHistorySource

    async with DiscordHistorySource.connect(token, api_base=settings.discord_api_base) as src:
        result = await Backfill.from_settings(db, src, settings).run()
    print(f"{result.successes}/{len(result.channels)} channels")
"""

from barkeeper.backfill._discord import DiscordHistorySource, normalize_api_base
from barkeeper.backfill._engine import (
    Backfill,
    BackfillResult,
    ChannelResult,
    Completion,
    ProgressEvent,
)
from barkeeper.backfill._locks import ChannelLocks, LockLostError
from barkeeper.backfill._source import (
    Access,
    ChannelInfo,
    HistorySource,
    MalformedMessage,
    MessageLookup,
    Page,
)

__all__ = [
    "Access",
    "Backfill",
    "BackfillResult",
    "ChannelInfo",
    "ChannelLocks",
    "ChannelResult",
    "Completion",
    "DiscordHistorySource",
    "HistorySource",
    "LockLostError",
    "MalformedMessage",
    "MessageLookup",
    "Page",
    "ProgressEvent",
    "normalize_api_base",
]
