"""The Discord message cache in PostgreSQL: batch upsert, edits, deletes, context windows.

Tables ``discord_messages`` and ``discord_channels`` (schema v1). Every query is served
by an index: the primary key (``message_id``); ``ix_discord_messages_channel_message``
``(channel_id, message_id)`` for everything per channel (snowflakes grow with time, so
it orders a channel by time; "newest N before X" is one backward range scan), reached
through row comparisons so that the planner cannot choose to walk the primary key
instead; ``ix_discord_messages_author`` (privacy deletes); ``discord_channels``' key.
``discord_channels.message_count`` is kept by this store for its inserts (added in the
statement that inserts: an insert trigger's transition table cost 13% of COPY's
speed) and by statement triggers on ``discord_messages`` for every delete and
truncate, whoever makes them (privacy's plain ``DELETE`` too). Rows inserted by other
SQL are counted only after :meth:`MessageStore.recount`.

Writes: a batch of 32 or more rows without attachments is COPied (binary), then one
statement upserts the rest, deletes, moves the channel's cursors and sets the commit
mode, in one transaction; smaller batches (the live bot's messages) are that one
statement alone. Content is never truncated: Discord's limit is Discord's to enforce,
and the cache keeps what it was given.

Messages a forgotten person wrote before ``privacy forget`` are never stored again
(schema v2's tombstones): every write statement filters the batch's authors through
``barkeeper_forgotten`` (see ``docs/schema.md``, "Tombstones"); they count as skipped.

Ingest writes commit asynchronously (``synchronous_commit = off`` for that transaction
only) unless the store is made ``durable=True``: this is a cache of data Discord keeps,
and a batch and its cursor commit together or not at all, so losing the last few
hundred milliseconds of ingest to a server crash only means refetching them. Writes
that delete commit synchronously: content must not survive a Discord or privacy
delete.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any, Unpack

import asyncpg

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, QueryError
from barkeeper.history._model import (
    MAX_SNOWFLAKE,
    Attachment,
    ChannelStatus,
    ChannelStatusUpdate,
    ContextMessage,
    StoredMessage,
    StoreResult,
    _check_id,
    _check_time,
    sanitize_text,
)

__all__ = ["MessageStore"]

_log = logging.getLogger(__name__)

# Batches with at least this many rows without attachments try COPY first; below it,
# COPY's extra round trips cost more than the upsert's per-row work.
_COPY_MIN_ROWS = 32

_UNIQUE_VIOLATION = "23505"

_ROW_COLUMNS = (
    "message_id",
    "channel_id",
    "guild_id",
    "author_id",
    "author_name",
    "author_is_bot",
    "content",
    "reply_to_id",
    "attachments",
    "embeds_count",
    "edited_at",
    "sanitized_chars",
)
_ATTACHMENTS = _ROW_COLUMNS.index("attachments")
# COPY leaves out attachments (asyncpg's pool connections decode jsonb as text, which
# binary COPY cannot encode): rows with attachments go through the upsert instead.
_COPY_COLUMNS = tuple(c for c in _ROW_COLUMNS if c != "attachments")
_NO_ATTACHMENTS = "[]"

# Tombstones (schema v2): the batch's authors who were forgotten, with the instant.
# Their messages created before it are never stored again: filtered out of the insert
# below and, after a COPY, deleted again in the statement that follows it. The check
# (barkeeper_forgotten) is inlined into this statement: one join over the batch's
# distinct authors, nothing at all to hash before anyone was ever forgotten.
# $19 holds the identities ('discord:<author id>'): a plain parameter, because an
# argument with a subquery would keep PostgreSQL from inlining the function.
_REFUSED_CTE = """
refused AS MATERIALIZED (
    SELECT substr(identity, 9)::bigint AS author_id, forgotten_at AS at
    FROM barkeeper_forgotten($19::text[])
    -- the batch's id span (always true): it types $20 and $21, which only the
    -- statement after a COPY uses
    WHERE $20::bigint <= $21::bigint
),"""

_UPSERT_CTE = """
written AS (
    INSERT INTO discord_messages AS d (
        message_id, channel_id, guild_id, author_id, author_name, author_is_bot, content,
        reply_to_id, attachments, embeds_count, edited_at, sanitized_chars)
    SELECT u.message_id, u.channel_id, u.guild_id, u.author_id, u.author_name,
           u.author_is_bot, u.content, u.reply_to_id, u.attachments::jsonb, u.embeds_count,
           u.edited_at, u.sanitized_chars
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                $6::boolean[], $7::text[], $8::bigint[], $9::text[], $10::integer[],
                $11::timestamptz[], $12::integer[])
        AS u(message_id, channel_id, guild_id, author_id, author_name, author_is_bot,
             content, reply_to_id, attachments, embeds_count, edited_at, sanitized_chars)
    WHERE NOT EXISTS (SELECT 1 FROM refused r WHERE r.author_id = u.author_id
                      AND barkeeper_snowflake_time(u.message_id) < r.at)
    ON CONFLICT (message_id) DO UPDATE SET
        guild_id = coalesce(EXCLUDED.guild_id, d.guild_id),
        author_name = EXCLUDED.author_name,
        author_is_bot = EXCLUDED.author_is_bot,
        content = EXCLUDED.content,
        reply_to_id = EXCLUDED.reply_to_id,
        attachments = EXCLUDED.attachments,
        embeds_count = EXCLUDED.embeds_count,
        edited_at = EXCLUDED.edited_at,
        sanitized_chars = EXCLUDED.sanitized_chars
    -- An older copy (no edit, or an earlier edit) never replaces a newer one; an equal
    -- one does when it differs (Discord adds embeds to a message without editing it).
    WHERE (d.edited_at IS NULL OR EXCLUDED.edited_at >= d.edited_at)
      AND (d.author_name, d.author_is_bot, d.content, d.reply_to_id, d.attachments,
           d.embeds_count, d.edited_at, d.guild_id)
          IS DISTINCT FROM
          (EXCLUDED.author_name, EXCLUDED.author_is_bot, EXCLUDED.content,
           EXCLUDED.reply_to_id, EXCLUDED.attachments, EXCLUDED.embeds_count,
           EXCLUDED.edited_at, coalesce(EXCLUDED.guild_id, d.guild_id))
    RETURNING d.channel_id, d.guild_id, d.xmax = 0 AS inserted
),
gone AS (
    DELETE FROM discord_messages
    WHERE channel_id = $14 AND message_id = ANY($15::bigint[])
    RETURNING 1
),
-- New rows per channel: inserted here, plus those COPied just before ($16-$18).
added AS (
    SELECT channel_id, max(guild_id) AS guild_id, count(*) AS n
    FROM written WHERE inserted GROUP BY channel_id
    UNION ALL
    SELECT * FROM unnest($16::bigint[], $17::bigint[], $18::bigint[]) AS k(channel_id, guild_id, n)
)"""

# After a COPY: the COPied rows of forgotten authors go again (the delete trigger
# takes them off the channel counts).
_PURGE_CTE = """,
purged AS (
    DELETE FROM discord_messages d
    USING refused r
    WHERE d.author_id = r.author_id AND d.created_at < r.at
      -- only where the COPY wrote: its channels, its id span (an index range scan)
      AND d.channel_id = ANY($16::bigint[]) AND d.message_id BETWEEN $20 AND $21
    RETURNING 1
)"""

# After a COPY the remaining rows are new too (else the COPY would have failed on the
# same premise): a plain INSERT, cheaper than the upsert's speculative insertion. A
# duplicate fails the transaction, and the batch is redone through the upsert.
_INSERT_CTE = (
    _UPSERT_CTE[: _UPSERT_CTE.index("    ON CONFLICT (message_id)")]
    + _UPSERT_CTE[_UPSERT_CTE.index("    RETURNING d.channel_id") :]
)

# Counts of a multi-channel batch (store_many): one row per channel, locked in order.
_COUNT_CTE = """
counted AS (
    INSERT INTO discord_channels AS c (channel_id, guild_id, message_count)
    SELECT channel_id, max(guild_id), sum(n) FROM added GROUP BY channel_id ORDER BY channel_id
    ON CONFLICT (channel_id) DO UPDATE
        SET message_count = c.message_count + EXCLUDED.message_count,
            guild_id = coalesce(c.guild_id, EXCLUDED.guild_id)
    RETURNING 1
)"""

_WRITE_RESULT = """
SELECT (SELECT count(*) FILTER (WHERE inserted) FROM written) AS inserted,
       (SELECT count(*) FILTER (WHERE NOT inserted) FROM written) AS updated,
       (SELECT count(*) FROM gone) AS deleted,
       __PURGED__ AS purged,
       -- synchronous_commit for this transaction only; NULL keeps the session's
       set_config('synchronous_commit',
                  coalesce($13::text, current_setting('synchronous_commit')), true)
"""

# Per-channel reads compare (channel_id, message_id) as a row: only
# ix_discord_messages_channel_message can serve that (see the schema's note), so the
# planner never walks the primary key filtering on channel_id instead.
_CONTEXT = """
SELECT message_id, author_id, author_name, author_is_bot, content, reply_to_id
FROM discord_messages
WHERE (channel_id, message_id) <= ($1, $2) AND channel_id >= $1
ORDER BY channel_id DESC, message_id DESC
LIMIT $3
"""

_MESSAGE_COLUMNS = (
    "message_id, channel_id, guild_id, author_id, author_name, author_is_bot, content, "
    "reply_to_id, attachments, embeds_count, edited_at, sanitized_chars"
)

_GET = f"SELECT {_MESSAGE_COLUMNS} FROM discord_messages WHERE message_id = $1"  # noqa: S608

_PAGE = f"""
SELECT {_MESSAGE_COLUMNS} FROM discord_messages
WHERE (channel_id, message_id) > ($1, $2) AND (channel_id, message_id) < ($1, $3)
ORDER BY channel_id, message_id
LIMIT $4
"""  # noqa: S608

# Messages a caller's transaction is about to reference (the turn index's foreign
# keys): share-locked on the primary key so they cannot be deleted before it ends; one
# being deleted (locked by its DELETE) is skipped, as good as gone.
_HOLD = """
SELECT message_id FROM discord_messages WHERE message_id = ANY($1::bigint[])
ORDER BY message_id FOR KEY SHARE SKIP LOCKED
"""

_PAGE_AFTER = f"""
SELECT {_MESSAGE_COLUMNS} FROM discord_messages
WHERE (channel_id, message_id) > ($1, $2) AND (channel_id, message_id) <= ($1, 9223372036854775807)
ORDER BY channel_id, message_id
LIMIT $3
"""  # noqa: S608

# No LIMIT here: `channel_id = $1` as well keeps the row estimate small enough that the
# planner reads the range from the index rather than scanning the table.
_IDS_BETWEEN = """
SELECT message_id FROM discord_messages
WHERE channel_id = $1
  AND (channel_id, message_id) >= ($1, $2) AND (channel_id, message_id) <= ($1, $3)
ORDER BY message_id
"""

_NEWEST = """
SELECT message_id FROM discord_messages
WHERE (channel_id, message_id) <= ($1, 9223372036854775807) AND channel_id >= $1
ORDER BY channel_id DESC, message_id DESC
LIMIT 1
"""

_OLDEST = """
SELECT message_id FROM discord_messages
WHERE (channel_id, message_id) >= ($1, 0) AND channel_id <= $1
ORDER BY channel_id, message_id
LIMIT 1
"""

_STATUS_COLUMNS = """
    c.channel_id, c.guild_id, c.name, c.message_count,
    (SELECT m.message_id FROM discord_messages m
     WHERE (m.channel_id, m.message_id) >= (c.channel_id, 0) AND m.channel_id <= c.channel_id
     ORDER BY m.channel_id, m.message_id LIMIT 1) AS oldest_message_id,
    (SELECT m.message_id FROM discord_messages m
     WHERE (m.channel_id, m.message_id) <= (c.channel_id, 9223372036854775807)
       AND m.channel_id >= c.channel_id
     ORDER BY m.channel_id DESC, m.message_id DESC LIMIT 1) AS newest_message_id,
    c.is_fully_backfilled, c.completion_reason, c.no_access, c.backfill_before_id,
    c.backfill_after_id, c.last_synced_at, c.last_updated
"""

_GET_STATUS = f"SELECT {_STATUS_COLUMNS} FROM discord_channels c WHERE c.channel_id = $1"  # noqa: S608

_LIST_STATUS = f"""
SELECT {_STATUS_COLUMNS} FROM discord_channels c
WHERE $1::bigint IS NULL OR c.guild_id = $1
ORDER BY c.channel_id
"""  # noqa: S608

_RECOUNT = """
WITH actual AS (
    SELECT c.channel_id,
           (SELECT count(*) FROM discord_messages m WHERE m.channel_id = c.channel_id) AS n
    FROM discord_channels c
    WHERE $1::bigint IS NULL OR c.channel_id = $1
),
fixed AS (
    UPDATE discord_channels c SET message_count = actual.n
    FROM actual
    WHERE c.channel_id = actual.channel_id AND c.message_count <> actual.n
    RETURNING 1
),
missing AS (
    INSERT INTO discord_channels (channel_id, guild_id, message_count)
    SELECT m.channel_id, max(m.guild_id), count(*)
    FROM discord_messages m
    WHERE ($1::bigint IS NULL OR m.channel_id = $1)
      AND NOT EXISTS (SELECT 1 FROM discord_channels c WHERE c.channel_id = m.channel_id)
    GROUP BY m.channel_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM fixed) + (SELECT count(*) FROM missing)
"""

_STATUS_FIELDS: dict[str, str] = {
    "guild_id": "id",
    "name": "text",
    "is_fully_backfilled": "bool",
    "completion_reason": "text",
    "no_access": "bool",
    "backfill_before_id": "id",
    "backfill_after_id": "id",
    "last_synced_at": "time",
}


@lru_cache(maxsize=64)
def _status_sql(exact: tuple[str, ...], advance: tuple[str, ...]) -> str:
    # Column names come from _STATUS_FIELDS only (checked by the caller), never input.
    columns = ("channel_id", *exact, *advance)
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sets = [f"{c} = EXCLUDED.{c}" for c in exact]
    for c in advance:
        pick = "LEAST" if c == "backfill_before_id" else "GREATEST"
        sets.append(f"{c} = {pick}(c.{c}, EXCLUDED.{c})")
    sets.append("last_updated = now()")
    return (
        f"INSERT INTO discord_channels AS c ({', '.join(columns)}) VALUES ({values}) "  # noqa: S608
        f"ON CONFLICT (channel_id) DO UPDATE SET {', '.join(sets)} "
        f"RETURNING {_STATUS_COLUMNS}"
    )


@lru_cache(maxsize=64)
def _write_sql(
    exact: tuple[str, ...], advance: tuple[str, ...], status: bool, *, new_rows: bool = False
) -> str:
    """One statement: upsert rows ($1-$12) except forgotten authors' earlier ones (the
    batch's authors as identities: $19; the batch's id span: $20, $21), delete ids
    ($15) of channel $14, count the new rows (with the COPied ones, $16-$18) and, with
    ``status``, set channel $14's ``exact`` fields and move its ``advance`` cursors
    ($22 on).

    Column names come from _STATUS_FIELDS only (checked by the caller), never input.
    With ``new_rows`` the rows are inserted without conflict handling.
    """
    rows_cte = _REFUSED_CTE + (_INSERT_CTE + _PURGE_CTE if new_rows else _UPSERT_CTE)
    result = _WRITE_RESULT.replace(
        "__PURGED__", "(SELECT count(*) FROM purged)" if new_rows else "0"
    )
    if not status:
        return "WITH " + rows_cte + "," + _COUNT_CTE + result
    # One channel: its count and its status in one row (a statement may not modify a
    # row twice).
    columns = ["channel_id", "message_count", *exact, *advance]
    values = ["$14", "coalesce((SELECT sum(n) FROM added), 0)"]
    values += [f"${22 + i}" for i in range(len(exact) + len(advance))]
    sets = ["message_count = c.message_count + EXCLUDED.message_count"]
    if "guild_id" not in exact:
        columns.append("guild_id")
        values.append("(SELECT max(guild_id) FROM added)")
        sets.append("guild_id = coalesce(c.guild_id, EXCLUDED.guild_id)")
    sets += [f"{c} = EXCLUDED.{c}" for c in exact]
    for c in advance:
        pick = "LEAST" if c == "backfill_before_id" else "GREATEST"
        sets.append(f"{c} = {pick}(c.{c}, EXCLUDED.{c})")
    sets.append("last_updated = now()")
    status_cte = (
        f"status AS (INSERT INTO discord_channels AS c ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(values)}) "
        f"ON CONFLICT (channel_id) DO UPDATE SET {', '.join(sets)} RETURNING 1)"
    )
    return "WITH " + rows_cte + ",\n" + status_cte + result


def _check_status_fields(fields: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        kind = _STATUS_FIELDS.get(key)
        if kind is None:
            raise InvalidInputError(
                f"unknown channel status field {key!r}; known: {', '.join(_STATUS_FIELDS)}"
            )
        if kind == "id":
            _check_id(key, value, optional=True)
        elif kind == "time":
            _check_time(key, value)
        elif kind == "bool":
            if type(value) is not bool:
                raise InvalidInputError(f"{key} must be a bool, got {value!r}")
        elif value is not None:
            if not isinstance(value, str):
                raise InvalidInputError(f"{key} must be a str or None, got {value!r}")
            value = sanitize_text(value)[0]
        clean[key] = value
    return clean


def _status_from_row(row: asyncpg.Record) -> ChannelStatus:
    return ChannelStatus(**dict(row.items()))


def _message_from_row(row: asyncpg.Record) -> StoredMessage:
    raw = row["attachments"]
    if isinstance(raw, str):  # a connection without barkeeper's jsonb codec
        raw = json.loads(raw)
    return StoredMessage(
        message_id=row["message_id"],
        channel_id=row["channel_id"],
        guild_id=row["guild_id"],
        author_id=row["author_id"],
        author_name=row["author_name"],
        author_is_bot=row["author_is_bot"],
        content=row["content"],
        reply_to_id=row["reply_to_id"],
        attachments=tuple(Attachment.from_json(a) for a in raw or ()),
        embeds_count=row["embeds_count"],
        edited_at=row["edited_at"],
        sanitized_chars=row["sanitized_chars"],
    )


def _is_newer_or_equal(candidate: StoredMessage, current: StoredMessage) -> bool:
    if candidate.edited_at is None:
        return current.edited_at is None
    return current.edited_at is None or candidate.edited_at >= current.edited_at


_PLAIN_ROW = attrgetter(*_COPY_COLUMNS)
_MESSAGE_ID = attrgetter("message_id")
_CHANNEL_ID = attrgetter("channel_id")
_RICH_FIELDS = attrgetter(*_ROW_COLUMNS[:_ATTACHMENTS])
_RICH_TAIL = attrgetter(*_ROW_COLUMNS[_ATTACHMENTS + 1 :])


class _Batch:
    """Messages ready to write: one per id (its newest copy), sorted by id.

    ``plain`` holds rows without attachments in COPY's column order; ``rich`` holds
    rows with attachments (as JSON text) in the upsert's column order. ``copied``
    counts the plain rows per channel (channel ids, guild ids, counts), for the
    per-channel message counts when they are COPied.
    """

    __slots__ = (
        "authors",
        "copied",
        "count",
        "ids",
        "plain",
        "rich",
        "sanitized_chars",
        "sanitized_ids",
        "spans",
    )

    def __init__(self, messages: Iterable[StoredMessage]) -> None:
        given = list(messages)
        if set(map(type, given)) - {StoredMessage}:
            for m in given:
                if not isinstance(m, StoredMessage):
                    raise InvalidInputError(
                        f"store_many takes StoredMessage objects, got {type(m).__name__}"
                    )
        self.count = len(given)
        ids = list(map(_MESSAGE_ID, given))
        if len(set(ids)) != len(ids):
            latest: dict[int, StoredMessage] = {}
            for m in given:
                seen = latest.get(m.message_id)
                if seen is None or _is_newer_or_equal(m, seen):
                    latest[m.message_id] = m
            given = list(latest.values())
        # Sorted: rows are locked in id order (no deadlock between overlapping batches)
        # and index pages are filled in order. (A page of history is sorted already.)
        ordered = sorted(given, key=_MESSAGE_ID)
        self.ids = list(map(_MESSAGE_ID, ordered))
        self.plain = [_PLAIN_ROW(m) for m in ordered if not m.attachments]
        self.rich = [
            (
                *_RICH_FIELDS(m),
                json.dumps([a.to_json() for a in m.attachments]),
                *_RICH_TAIL(m),
            )
            for m in ordered
            if m.attachments
        ]
        channels = set(map(_CHANNEL_ID, ordered))
        if len(channels) == 1:  # a page of one channel's history: the usual case
            channel = next(iter(channels))
            self.spans = {channel: (self.ids[0], self.ids[-1])}
            guild = next((r[2] for r in self.plain if r[2] is not None), None)
            self.copied = ([channel], [guild], [len(self.plain)]) if self.plain else ([], [], [])
        else:
            spans: dict[int, tuple[int, int]] = {}
            for m in ordered:  # ids ascend: a channel's first one is its low end
                span = spans.get(m.channel_id)
                spans[m.channel_id] = (
                    (m.message_id, m.message_id) if span is None else (span[0], m.message_id)
                )
            per_channel: dict[int, list[Any]] = {}
            for row in self.plain:
                entry = per_channel.get(row[1])
                if entry is None:
                    per_channel[row[1]] = [row[2], 1]
                else:
                    entry[1] += 1
                    if entry[0] is None:
                        entry[0] = row[2]
            self.spans = spans
            self.copied = (
                list(per_channel),
                [v[0] for v in per_channel.values()],
                [v[1] for v in per_channel.values()],
            )
        self.authors = [f"discord:{a}" for a in {m.author_id for m in ordered}]
        self.sanitized_ids = [m.message_id for m in ordered if m.sanitized_chars]
        self.sanitized_chars = sum(m.sanitized_chars for m in ordered if m.sanitized_chars)

    def upsert_rows(self, *, include_plain: bool) -> list[tuple[Any, ...]]:
        """Rows in the upsert's column order: the rich ones, and the plain ones if asked."""
        if not include_plain:
            return self.rich
        a = _ATTACHMENTS
        rows = [(*r[:a], _NO_ATTACHMENTS, *r[a:]) for r in self.plain]
        if self.rich:
            rows.extend(self.rich)
            rows.sort(key=lambda r: r[0])
        return rows


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    if not rows:
        return [[] for _ in _ROW_COLUMNS]
    return [list(col) for col in zip(*rows, strict=True)]


class MessageStore:
    """The Discord message cache.

    Args:
        db: an open, migrated :class:`~barkeeper.db.Database`.
        durable: commit ingest writes synchronously too (default: asynchronously;
            see the module docstring).

    Example::

        store = MessageStore(db)
        await store.store(message_from_discord(message))
        window = await store.get_context(message.channel.id, before=message.id, limit=50)
        prompt = "\\n".join(f"[{m.timestamp_str}] {m.author_name}: {m.content}" for m in window)
    """

    def __init__(self, db: Database, *, durable: bool = False) -> None:
        self._db = db
        self._schema = db.schema
        # None keeps the session's synchronous_commit (the server's default).
        self._sync: str | None = None if durable else "off"
        # Per channel, the id range this store has written: a batch inside it is
        # probably cached already (a re-fetch), so it skips the optimistic COPY that
        # would fail on the first duplicate (and log an error on the server).
        self._written: dict[int, tuple[int, int]] = {}

    # --- writing -------------------------------------------------------------------------

    async def store(self, message: StoredMessage) -> StoreResult:
        """Insert or update one message (see :meth:`store_many`)."""
        return await self.store_many((message,))

    async def store_many(
        self,
        messages: Iterable[StoredMessage],
        *,
        also: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> StoreResult:
        """Insert or update messages, all or none, idempotently.

        A message not cached yet is inserted. A cached one is replaced when the new
        copy's ``edited_at`` is not older than the cached one (``None`` counts as
        oldest) and something differs; otherwise it is left as is (``skipped``). When
        the same id appears several times in ``messages``, its newest copy is used.
        Messages may belong to several channels. A message whose author was forgotten
        (``privacy forget``) after writing it is not stored (``skipped``).

        Characters PostgreSQL cannot store were already replaced when the messages
        were built; their count is returned and logged (message ids only).

        Args:
            messages: the messages, in any order.
            also: more writes of the caller, run on the batch's connection inside its
                transaction: they commit with the messages or not at all (the bot's
                memory outbox rows). It may run more than once (a rolled-back fast
                path), so it must only write.

        Returns:
            What was written; ``inserted + updated + skipped`` is the number given.

        Raises:
            InvalidInputError: something other than a :class:`StoredMessage` was given.
            DatabaseError: the database failed; nothing of the batch was written (nor
                ``also``'s writes).
        """
        return await self._write(_Batch(messages), also=also)

    async def store_batch_and_advance(
        self,
        channel_id: int,
        messages: Iterable[StoredMessage],
        *,
        before_id: int | None = None,
        after_id: int | None = None,
        delete_ids: Iterable[int] = (),
        **status: Unpack[ChannelStatusUpdate],
    ) -> StoreResult:
        """Store a page of one channel's history and move its backfill cursors, atomically.

        Everything happens in one transaction: if the process dies at any instant,
        either the messages, the deletes and the new cursors are all there or none is,
        so a backfill that resumes from the stored cursors has no gap and stores no
        duplicate.

        Args:
            channel_id: the channel; every message must belong to it.
            messages: the page (may be empty, e.g. the page that shows the start of
                the channel was reached).
            before_id: move ``backfill_before_id`` down to this id (it never moves up:
                the stored value becomes the smaller of the two).
            after_id: move ``backfill_after_id`` up to this id (never down).
            delete_ids: messages of this channel to delete in the same transaction
                (reconciliation: cached ids Discord no longer returns). Ids that are
                also in ``messages`` are refused.
            **status: other :class:`ChannelStatusUpdate` fields to set exactly, e.g.
                ``is_fully_backfilled=True, completion_reason="start"`` or
                ``last_synced_at=now``.

        Returns:
            What was written and ``deleted``. :meth:`count` and
            :meth:`get_channel_status` give the channel's state afterwards.

        Raises:
            InvalidInputError: a message of another channel, an id both stored and
                deleted, a cursor given both as ``before_id`` and
                ``backfill_before_id`` (or after), or an unknown status field.
            DatabaseError: the database failed; nothing was written or moved.
        """
        _check_id("channel_id", channel_id)
        _check_id("before_id", before_id, optional=True)
        _check_id("after_id", after_id, optional=True)
        fields = _check_status_fields(dict(status))
        if before_id is not None and "backfill_before_id" in fields:
            raise InvalidInputError("give before_id or backfill_before_id, not both")
        if after_id is not None and "backfill_after_id" in fields:
            raise InvalidInputError("give after_id or backfill_after_id, not both")
        batch = _Batch(messages)
        strays = [cid for cid in batch.spans if cid != channel_id]
        if strays:
            raise InvalidInputError(
                f"store_batch_and_advance({channel_id}) got messages of channel(s) {strays}"
            )
        deletes = sorted({int(i) for i in _checked_ids("delete_ids", delete_ids)})
        if deletes:
            overlap = set(batch.ids).intersection(deletes)
            if overlap:
                raise InvalidInputError(
                    f"message(s) {sorted(overlap)[:10]} are both stored and deleted"
                )
        advance: dict[str, int] = {}
        if before_id is not None:
            advance["backfill_before_id"] = before_id
        if after_id is not None:
            advance["backfill_after_id"] = after_id
        return await self._write(
            batch, channel_id=channel_id, delete_ids=deletes, exact=fields, advance=advance
        )

    async def _write(
        self,
        batch: _Batch,
        *,
        channel_id: int | None = None,
        delete_ids: Sequence[int] = (),
        exact: dict[str, Any] | None = None,
        advance: dict[str, int] | None = None,
        also: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> StoreResult:
        if batch.sanitized_ids:
            _log.warning(
                "storing %d message(s) with %d character(s) PostgreSQL cannot hold "
                "(NUL or unpaired surrogate) replaced by U+FFFD: ids %s%s",
                len(batch.sanitized_ids),
                batch.sanitized_chars,
                ", ".join(map(str, batch.sanitized_ids[:20])),
                " …" if len(batch.sanitized_ids) > 20 else "",
            )
        exact = exact or {}
        advance = advance or {}
        status = channel_id is not None
        if not status and not batch.ids:
            if also is not None:
                async with self._db.transaction() as conn:
                    await also(conn)
            return StoreResult(skipped=batch.count)
        sql = _write_sql(tuple(exact), tuple(advance), status)
        sql_after_copy = _write_sql(tuple(exact), tuple(advance), status, new_rows=True)
        # A write that deletes content commits durably, like every delete; so does one
        # carrying the caller's writes (the memory outbox must survive a server crash).
        sync = None if delete_ids or also is not None else self._sync
        head = (sync, channel_id, list(delete_ids))
        status_values = (*exact.values(), *advance.values())
        nothing_copied: tuple[list[int], list[int | None], list[int]] = ([], [], [])
        if len(batch.plain) >= _COPY_MIN_ROWS and not self._seen_before(batch):
            # The rows are usually new (a page of history beyond what is cached): COPY
            # them, then one statement for the rest. If one was cached after all (or is
            # being inserted by someone else), the whole transaction rolls back and the
            # batch goes through the upsert below instead.
            try:
                async with self._db.transaction() as conn:
                    await conn.copy_records_to_table(
                        "discord_messages",
                        records=batch.plain,
                        columns=_COPY_COLUMNS,
                        schema_name=self._schema,
                    )
                    row = await conn.fetchrow(
                        sql_after_copy,
                        *_columns(batch.upsert_rows(include_plain=False)),
                        *head,
                        *batch.copied,
                        batch.authors,
                        batch.ids[0],
                        batch.ids[-1],
                        *status_values,
                    )
                    if also is not None:
                        await also(conn)
                self._remember(batch)
                return self._result(batch, row, copied=len(batch.plain) - int(row["purged"]))
            except QueryError as exc:
                if exc.sqlstate != _UNIQUE_VIOLATION:
                    raise
        # One statement is one transaction: atomic without BEGIN/COMMIT round trips
        # (a real transaction only when the caller's writes must join it).
        async with contextlib.AsyncExitStack() as stack:
            if also is None:
                conn = await stack.enter_async_context(self._db.acquire())
            else:
                conn = await stack.enter_async_context(self._db.transaction())
            row = await conn.fetchrow(
                sql,
                *_columns(batch.upsert_rows(include_plain=True)),
                *head,
                *nothing_copied,
                batch.authors,
                batch.ids[0] if batch.ids else 0,
                batch.ids[-1] if batch.ids else 0,
                *status_values,
            )
            if also is not None:
                await also(conn)
        self._remember(batch)
        return self._result(batch, row)

    def _seen_before(self, batch: _Batch) -> bool:
        for channel, (low, high) in batch.spans.items():
            known = self._written.get(channel)
            if known is not None and low <= known[1] and high >= known[0]:
                return True
        return False

    def _remember(self, batch: _Batch) -> None:
        for channel, (low, high) in batch.spans.items():
            known = self._written.get(channel)
            self._written[channel] = (
                (low, high) if known is None else (min(low, known[0]), max(high, known[1]))
            )

    @staticmethod
    def _result(batch: _Batch, row: asyncpg.Record, *, copied: int = 0) -> StoreResult:
        inserted = copied + int(row["inserted"])
        updated = int(row["updated"])
        return StoreResult(
            inserted=inserted,
            updated=updated,
            skipped=batch.count - inserted - updated,
            deleted=int(row["deleted"]),
            sanitized_chars=batch.sanitized_chars,
            sanitized_message_ids=tuple(batch.sanitized_ids),
        )

    # --- deleting (always durable) -------------------------------------------------------

    async def delete(self, message_id: int) -> bool:
        """Delete one message (Discord deleted it). Returns whether it was cached."""
        return await self.delete_many((message_id,)) == 1

    async def delete_many(self, message_ids: Iterable[int]) -> int:
        """Delete messages by id, in any channels. Returns how many were cached."""
        ids = sorted(set(_checked_ids("message_ids", message_ids)))
        if not ids:
            return 0
        async with self._db.acquire() as conn:
            done = await conn.execute(
                "DELETE FROM discord_messages WHERE message_id = ANY($1::bigint[])", ids
            )
        return int(done.split()[-1])

    async def delete_channel(self, channel_id: int) -> int:
        """Forget a channel: its messages and its status. Returns the messages deleted."""
        _check_id("channel_id", channel_id)
        async with self._db.transaction() as conn:
            done = await conn.execute(
                "DELETE FROM discord_messages WHERE channel_id = $1", channel_id
            )
            await conn.execute("DELETE FROM discord_channels WHERE channel_id = $1", channel_id)
        return int(done.split()[-1])

    async def delete_author(self, author_id: int) -> int:
        """Delete every cached message a Discord user wrote, in every channel.

        Args:
            author_id: the user's Discord id.

        Returns:
            How many messages were deleted.
        """
        _check_id("author_id", author_id)
        async with self._db.acquire() as conn:
            done = await conn.execute(
                "DELETE FROM discord_messages WHERE author_id = $1", author_id
            )
        return int(done.split()[-1])

    # --- reading -------------------------------------------------------------------------

    async def get(self, message_id: int) -> StoredMessage | None:
        """One cached message, or ``None``."""
        _check_id("message_id", message_id)
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_GET, message_id)
        return None if row is None else _message_from_row(row)

    async def get_context(
        self, channel_id: int, *, before: int | None = None, limit: int = 50
    ) -> list[ContextMessage]:
        """The newest ``limit`` messages of a channel strictly before a message, oldest first.

        Never returns the message ``before`` itself or anything after it, even when
        later messages are cached (Junkie's context leaked those). Snowflakes order
        messages by time, so ``before`` may be any id, cached or not.

        Args:
            channel_id: the channel (or thread).
            before: the current message's id; ``None`` means "now" (the newest).
            limit: at most this many messages (0 returns ``[]``).

        Returns:
            :class:`ContextMessage` rows, oldest first, each with ``author_name``,
            ``created_at`` and ``timestamp_str``.
        """
        _check_id("channel_id", channel_id)
        _check_id("before", before, optional=True)
        if type(limit) is not int or limit < 0:
            raise InvalidInputError(f"limit must be an int >= 0, got {limit!r}")
        if limit == 0:
            return []
        async with self._db.acquire() as conn:
            rows: list[ContextMessage] = await conn.fetch(
                _CONTEXT,
                channel_id,
                MAX_SNOWFLAKE if before is None else before - 1,  # inclusive bound
                limit,
                record_class=ContextMessage,
            )
        rows.reverse()
        return rows

    async def iter_channel(
        self,
        channel_id: int,
        *,
        after: int | None = None,
        before: int | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[StoredMessage]:
        """Every cached message of a channel, oldest first, read a page at a time.

        No connection is held between pages, so a slow consumer blocks nobody.

        Args:
            channel_id: the channel.
            after: only messages with a larger id.
            before: only messages with a smaller id.
            page_size: messages per query.

        Yields:
            :class:`StoredMessage` objects in ascending id (time) order.
        """
        _check_id("channel_id", channel_id)
        _check_id("after", after, optional=True)
        _check_id("before", before, optional=True)
        if type(page_size) is not int or page_size < 1:
            raise InvalidInputError(f"page_size must be an int >= 1, got {page_size!r}")
        cursor = 0 if after is None else after
        upper = MAX_SNOWFLAKE if before is None else before
        while True:
            async with self._db.acquire() as conn:
                rows = await conn.fetch(_PAGE, channel_id, cursor, upper, page_size)
            for row in rows:
                yield _message_from_row(row)
            if len(rows) < page_size:
                return
            cursor = rows[-1]["message_id"]

    async def get_page(
        self, channel_id: int, *, after: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        """One page of a channel's cached messages: the first ``limit`` with an id above ``after``.

        Read by ``(channel_id, message_id)``, oldest first: pass the last id of a page
        as the next ``after`` to walk a channel forward one query per page.

        Args:
            channel_id: the channel.
            after: only messages with a larger id (0: from the start).
            limit: at most this many messages (1..10,000).

        Returns:
            :class:`StoredMessage` objects in ascending id (time) order; fewer than
            ``limit`` when the channel has no more.
        """
        _check_id("channel_id", channel_id)
        if type(after) is not int or not 0 <= after <= MAX_SNOWFLAKE:
            raise InvalidInputError(f"after must be an int in 0..{MAX_SNOWFLAKE}, got {after!r}")
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be an int in 1..10000, got {limit!r}")
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_PAGE_AFTER, channel_id, after, limit)
        return [_message_from_row(row) for row in rows]

    async def hold(self, conn: asyncpg.Connection, message_ids: Iterable[int]) -> set[int]:
        """Keep cached messages from being deleted until the caller's transaction ends.

        For a writer whose rows reference or quote these messages: what it writes in
        the transaction cannot outlive them unnoticed (a delete after the commit
        cascades to it). Edits are not blocked.

        Args:
            conn: The caller's connection, inside its transaction.
            message_ids: The messages.

        Returns:
            The ids held: the others are not cached (deleted, or being deleted now).
        """
        ids = sorted(set(_checked_ids("message_ids", message_ids)))
        if not ids:
            return set()
        return {r["message_id"] for r in await conn.fetch(_HOLD, ids)}

    async def get_ids_between(self, channel_id: int, low: int, high: int) -> list[int]:
        """Cached ids of a channel from ``low`` to ``high`` inclusive, ascending.

        For reconciliation: ids cached in a range Discord no longer returns were
        deleted there.
        """
        _check_id("channel_id", channel_id)
        _check_id("low", low)
        _check_id("high", high)
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_IDS_BETWEEN, channel_id, low, high)
        return [r[0] for r in rows]

    async def count(self, channel_id: int) -> int:
        """Messages cached for a channel (a stored counter: constant time)."""
        _check_id("channel_id", channel_id)
        async with self._db.acquire() as conn:
            n = await conn.fetchval(
                "SELECT message_count FROM discord_channels WHERE channel_id = $1", channel_id
            )
        return int(n or 0)

    async def newest_id(self, channel_id: int) -> int | None:
        """The newest cached message of a channel, or ``None``."""
        _check_id("channel_id", channel_id)
        async with self._db.acquire() as conn:
            value: int | None = await conn.fetchval(_NEWEST, channel_id)
        return value

    async def oldest_id(self, channel_id: int) -> int | None:
        """The oldest cached message of a channel, or ``None``."""
        _check_id("channel_id", channel_id)
        async with self._db.acquire() as conn:
            value: int | None = await conn.fetchval(_OLDEST, channel_id)
        return value

    # --- channel status ------------------------------------------------------------------

    async def get_channel_status(self, channel_id: int) -> ChannelStatus | None:
        """A channel's status, or ``None`` if nothing was ever stored for it."""
        _check_id("channel_id", channel_id)
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_GET_STATUS, channel_id)
        return None if row is None else _status_from_row(row)

    async def update_channel_status(
        self, channel_id: int, **fields: Unpack[ChannelStatusUpdate]
    ) -> ChannelStatus:
        """Set some of a channel's status fields (creating its row if needed).

        Only the fields given change; ``last_updated`` becomes now. Cursors are set
        exactly (e.g. ``backfill_before_id=None`` resets one); to move them only
        forward together with a page of messages use :meth:`store_batch_and_advance`.

        Returns:
            The status after the update.

        Raises:
            InvalidInputError: an unknown field or a value of the wrong type.
        """
        _check_id("channel_id", channel_id)
        clean = _check_status_fields(dict(fields))
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_status_sql(tuple(clean), ()), channel_id, *clean.values())
        return _status_from_row(row)

    async def list_channels(self, *, guild_id: int | None = None) -> list[ChannelStatus]:
        """Every channel with a status (optionally of one server), by channel id."""
        _check_id("guild_id", guild_id, optional=True)
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_LIST_STATUS, guild_id)
        return [_status_from_row(r) for r in rows]

    async def recount(self, channel_id: int | None = None) -> int:
        """Recompute ``message_count`` from the messages.

        The repair after rows were inserted by SQL other than this store's (which the
        count does not see) or deleted with the triggers disabled. Returns how many
        channels were corrected."""
        _check_id("channel_id", channel_id, optional=True)
        async with self._db.transaction() as conn:
            # Writers wait while we count, so no increment is lost between count and set.
            await conn.execute("LOCK TABLE discord_messages IN SHARE MODE")
            n = await conn.fetchval(_RECOUNT, channel_id)
        return int(n)


def _checked_ids(name: str, ids: Iterable[int]) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidInputError(f"{name} must be an iterable of ids, got {ids!r}")
    out = list(ids)
    for value in out:
        _check_id(name, value)
    return out
