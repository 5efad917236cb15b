"""The Discord message cache: what the bot has seen in each channel, and where the backfill is.

:class:`MessageStore` keeps messages in PostgreSQL (``discord_messages``) with batch
upserts that are idempotent and edit-aware, deletes, strictly-before context windows
and per-channel status and backfill cursors (``discord_channels``). Messages are
:class:`StoredMessage` values built from discord.py (:func:`message_from_discord`) or
from Discord's JSON (:func:`message_from_payload`). This package never calls Discord.

Example::

    from barkeeper.history import MessageStore, message_from_discord

    store = MessageStore(db)
    await store.store(message_from_discord(message))
    window = await store.get_context(message.channel.id, before=message.id, limit=50)
    for m in window:  # oldest first, all strictly before `message`
        print(m.timestamp_str, m.author_name, m.content)
"""

from barkeeper.history._convert import (
    message_from_discord,
    message_from_payload,
    summarize_content,
)
from barkeeper.history._model import (
    DISCORD_EPOCH_MS,
    MAX_SNOWFLAKE,
    Attachment,
    ChannelStatus,
    ChannelStatusUpdate,
    ContextMessage,
    StoredMessage,
    StoreResult,
    sanitize_text,
    snowflake_time,
)
from barkeeper.history._store import MessageStore

__all__ = [
    "DISCORD_EPOCH_MS",
    "MAX_SNOWFLAKE",
    "Attachment",
    "ChannelStatus",
    "ChannelStatusUpdate",
    "ContextMessage",
    "MessageStore",
    "StoreResult",
    "StoredMessage",
    "message_from_discord",
    "message_from_payload",
    "sanitize_text",
    "snowflake_time",
    "summarize_content",
]
