"""barkeeper on Discord: the bot, its commands, and how it starts and stops.

- :class:`Barkeeper`: a ``commands.Bot`` answering @mentions, replies to it, DMs and
  ``BARKEEPER_PREFIX`` with the agent (typing, streamed by edits at most every
  ``BARKEEPER_STREAM_INTERVAL`` s, split at 2000 characters, pinging nobody but the
  author), caching every message it sees, with allow/block lists, per-user limits
  and the slash commands of ``docs/users.md``.
- :class:`FollowupsCog`, :class:`FollowupSink`, :func:`build_followups`: follow-ups,
  reminders and birthdays delivered exactly once, and ``/followups``.
- :func:`run_bot`: what ``barkeeper run`` does.
- :func:`split_message`, :class:`UserLimits`, :class:`LiveCache`, :class:`ReplyWriter`,
  :class:`ChannelIndexer` (keeps the cached channels indexed for the history search):
  the parts, usable alone; :func:`read_cache_journal` reads what the live cache of the
  last bot run went through (``BARKEEPER_DATA_DIR/``:data:`CACHE_JOURNAL`).

Example::

    settings = load_settings()
    asyncio.run(run_bot(settings))
"""

from barkeeper.bot._bot import BROKEN, OUT_OF_TOKENS, RATE_LIMITED, Barkeeper
from barkeeper.bot._cache import CACHE_JOURNAL, LiveCache, read_cache_journal
from barkeeper.bot._followups import RECOVERY_SCAN, FollowupsCog, FollowupSink, build_followups
from barkeeper.bot._indexer import ChannelIndexer
from barkeeper.bot._limits import LimitVerdict, UserLimits
from barkeeper.bot._reply import NO_MENTIONS, REPLY_MENTIONS, ReplyWriter
from barkeeper.bot._run import missing_for_bot, point_discord, run_bot
from barkeeper.bot._split import DISCORD_LIMIT, split_message

__all__ = [
    "BROKEN",
    "CACHE_JOURNAL",
    "DISCORD_LIMIT",
    "NO_MENTIONS",
    "OUT_OF_TOKENS",
    "RATE_LIMITED",
    "RECOVERY_SCAN",
    "REPLY_MENTIONS",
    "Barkeeper",
    "ChannelIndexer",
    "FollowupSink",
    "FollowupsCog",
    "LimitVerdict",
    "LiveCache",
    "ReplyWriter",
    "UserLimits",
    "build_followups",
    "missing_for_bot",
    "point_discord",
    "read_cache_journal",
    "run_bot",
    "split_message",
]
