"""The conversation store: conversations, their messages, storage limits, user-centric queries.

One store for Loyal Companion's conversations (per user and channel, a new one after
60 minutes of silence) and VoltAgent's (per user and agent, listed, paged and
ownership-checked like ChatGPT's sidebar). Every statement is parametrised; the only
SQL assembled at run time is chosen from fixed fragments in this module, never from
input. Each query names the index serving it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from barkeeper.config import Settings
from barkeeper.conversations._models import (
    ROLES,
    Conversation,
    ConversationMessage,
    ConversationPage,
    Direction,
    MessageRole,
    OrderBy,
)
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError
from barkeeper.validation import (
    check_aware,
    check_bigint,
    check_count,
    check_json,
    check_name,
    clean_text,
)

__all__ = ["DEFAULT_RESOURCE_ID", "MAX_CONTENT_CHARS", "ConversationStore"]

DEFAULT_RESOURCE_ID: Final = "barkeeper"
MAX_CONTENT_CHARS: Final = 1_000_000
_MAX_TITLE_CHARS: Final = 1_000
_MAX_PAGE: Final = 10_000
_UNSET: Any = object()

# get_or_start_conversation's transaction lock on (schema, user, channel, resource): a
# 64-bit hash with a purpose prefix, as the migrations' and the backfill's locks, so
# bots sharing a database in different schemas never wait for each other.
_START_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended(
    'barkeeper.conversation:' || $1::text || ':' || $2::bigint::text || ':'
    || $3::bigint::text || ':' || $4::text, 0))
"""


# The only ORDER BY clauses that exist. Served by ix_conversations_user_created,
# ix_conversations_user_updated and ix_conversations_user_title (all (user_id, x, id)),
# read forwards or backwards; NULL titles come last ascending, first descending.
_ORDER_SQL: Final[dict[tuple[str, str], str]] = {
    ("created_at", "asc"): "created_at ASC, id ASC",
    ("created_at", "desc"): "created_at DESC, id DESC",
    ("updated_at", "asc"): "updated_at ASC, id ASC",
    ("updated_at", "desc"): "updated_at DESC, id DESC",
    ("title", "asc"): "title ASC, id ASC",
    ("title", "desc"): "title DESC, id DESC",
}

_INSERT_CONVERSATION = """
INSERT INTO conversations (id, resource_id, user_id, title, metadata, guild_id, channel_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *
"""

# Writers lock the owner's users row (KEY SHARE: only deleting the user conflicts), then
# the conversation: the order privacy's forget takes them in, so the two never deadlock.
_LOCK_OWNER = """
SELECT 1 FROM users u JOIN conversations c ON c.user_id = u.id
WHERE c.id = $1 FOR KEY SHARE OF u
"""
_LOCK_CONVERSATION = """
SELECT user_id, message_count FROM conversations WHERE id = $1 FOR NO KEY UPDATE
"""
_LOCK_USER = "SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE"

# The lock, insert, trim and counter update run in the schema's plpgsql function
# add_conversation_message (schema v1): one round trip, one implicit transaction.
_ADD_MESSAGE = "SELECT * FROM add_conversation_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"

_UPDATE_CONVERSATION = """
UPDATE conversations
SET title = CASE WHEN $2 THEN $3 ELSE title END,
    metadata = CASE WHEN $4 THEN $5::jsonb ELSE metadata END,
    updated_at = now()
WHERE id = $1 AND user_id = $6
RETURNING *
"""

# ix_conversations_channel_user (channel_id, user_id, last_message_at DESC).
_ACTIVE_IN_CHANNEL = """
SELECT *,
       last_message_at >= coalesce($4::timestamptz, now()) - $5::interval AS fresh
FROM conversations
WHERE channel_id = $1 AND user_id = $2 AND resource_id = $3 AND is_active
ORDER BY last_message_at DESC
LIMIT 1
"""

_START_IN_CHANNEL = """
WITH closed AS (
    UPDATE conversations SET is_active = false
    WHERE channel_id = $1 AND user_id = $2 AND resource_id = $3 AND is_active
    RETURNING 1
),
at AS (SELECT coalesce($4::timestamptz, now()) AS ts)
INSERT INTO conversations (
    id, resource_id, user_id, guild_id, channel_id,
    started_at, last_message_at, created_at, updated_at)
SELECT $5, $3, $2, $6, $1, at.ts, at.ts, at.ts, at.ts FROM at
RETURNING *
"""


def _check_order(order_by: object, direction: object) -> str:
    key = (
        order_by.lower() if isinstance(order_by, str) else order_by,
        direction.lower() if isinstance(direction, str) else direction,
    )
    try:
        return _ORDER_SQL[key]  # type: ignore[index]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"cannot order conversations by {order_by!r} {direction!r}: order_by must be "
            "'created_at', 'updated_at' or 'title' and direction 'asc' or 'desc'"
        ) from None


def _check_roles(roles: Sequence[str] | None) -> list[str] | None:
    if roles is None:
        return None
    if isinstance(roles, str):
        roles = [roles]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InvalidInputError(
            f"unknown role(s) {bad!r}: a role is 'user', 'assistant', 'system' or 'tool'"
        )
    return list(roles)


def _conversation_id(value: object) -> str:
    return check_name(value, "conversation_id", max_length=255)


def _not_found(conversation_id: str) -> NotFoundError:
    return NotFoundError(f"conversation {conversation_id!r} not found")


class ConversationStore:
    """Conversations and their messages, in PostgreSQL.

    A conversation belongs to one user (``users.id``). Every method that reads or
    changes one conversation takes the caller's ``user_id`` (keyword-only, required)
    and checks it: another user's conversation behaves exactly as if it did not exist
    (``None``, ``[]``, ``0``, ``False`` or :class:`NotFoundError`), so its existence
    never leaks. The unchecked paths are few and named so: :meth:`add_message_unchecked`
    (what the system itself writes: the assistant's reply, a system prompt, a tool
    result) and :meth:`get_conversation` (administration).

    Each conversation keeps at most ``storage_limit`` messages: adding one more deletes
    the oldest in the same transaction. ``message_count`` is the number stored; it is
    kept by this store, so delete messages through it (or delete whole conversations).

    Example::

        store = ConversationStore(db, storage_limit=100)
        conv = await store.create_conversation(user.id, resource_id="helper", title="Tea")
        await store.add_message(conv.id, "user", "Which tea for the evening?", user_id=user.id)
        await store.add_message_unchecked(conv.id, "assistant", "Rooibos: no caffeine.")
        for message in await store.get_messages(conv.id, user_id=user.id):
            print(message.role, message.content)

    Args:
        db: the database.
        storage_limit: messages kept per conversation; 0 keeps all.
        timeout: silence after which :meth:`get_or_start_conversation` starts a new
            conversation (Loyal Companion: 60 minutes).
        max_content_chars: longest message content accepted.
    """

    def __init__(
        self,
        db: Database,
        *,
        storage_limit: int = 100,
        timeout: timedelta = timedelta(minutes=60),
        max_content_chars: int = MAX_CONTENT_CHARS,
    ) -> None:
        self._db = db
        self.storage_limit = check_count(storage_limit, "storage_limit", maximum=10_000_000)
        if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
            raise InvalidInputError(f"timeout must be a positive timedelta, not {timeout!r}")
        self.timeout = timeout
        self.max_content_chars = check_count(
            max_content_chars, "max_content_chars", minimum=1, maximum=100_000_000
        )

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> ConversationStore:
        """A store using ``BARKEEPER_STORAGE_LIMIT`` and the conversation timeout setting."""
        return cls(
            db,
            storage_limit=settings.storage_limit,
            timeout=timedelta(minutes=settings.conversation_timeout_minutes),
        )

    # --- conversations -------------------------------------------------------------------

    async def create_conversation(
        self,
        user_id: int,
        *,
        conversation_id: str | None = None,
        resource_id: str = DEFAULT_RESOURCE_ID,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> Conversation:
        """Create a conversation.

        Args:
            user_id: the owner (``users.id``).
            conversation_id: the id to use; a UUID when None.
            resource_id: the agent it belongs to.
            title: a title (free text: NUL becomes U+FFFD).
            metadata: a JSON object.
            guild_id: the Discord guild, if any.
            channel_id: the Discord channel, if any.

        Raises:
            InvalidInputError: an argument is malformed, or the id is already taken.
            NotFoundError: no user ``user_id``.
        """
        user_id = check_bigint(user_id, "user_id")
        cid = str(uuid.uuid4()) if conversation_id is None else _conversation_id(conversation_id)
        resource_id = check_name(resource_id, "resource_id")
        title = (
            None
            if title is None
            else clean_text(
                title, "title", max_chars=_MAX_TITLE_CHARS, allow_empty=True, strip=False
            )
        )
        meta = self._metadata({} if metadata is None else metadata)
        if guild_id is not None:
            guild_id = check_bigint(guild_id, "guild_id")
        if channel_id is not None:
            channel_id = check_bigint(channel_id, "channel_id")
        try:
            async with self._db.acquire() as conn:
                row = await conn.fetchrow(
                    _INSERT_CONVERSATION,
                    cid,
                    resource_id,
                    user_id,
                    title,
                    meta,
                    guild_id,
                    channel_id,
                )
        except QueryError as exc:
            if exc.sqlstate == "23505":
                raise InvalidInputError(f"conversation id {cid!r} is already taken") from exc
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        assert row is not None
        return Conversation.from_row(row)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation with this id, whoever owns it (administration; users get
        :meth:`get_user_conversation`)."""
        cid = _conversation_id(conversation_id)
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1", cid)
        return None if row is None else Conversation.from_row(row)

    async def get_user_conversation(
        self, conversation_id: str, user_id: int
    ) -> Conversation | None:
        """The conversation if ``user_id`` owns it, else None (also when it does not exist)."""
        cid = _conversation_id(conversation_id)
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM conversations WHERE id = $1 AND user_id = $2",
                cid,
                user_id,
            )
        return None if row is None else Conversation.from_row(row)

    async def update_conversation(
        self,
        conversation_id: str,
        *,
        user_id: int,
        title: str | None = _UNSET,
        metadata: Mapping[str, Any] = _UNSET,
    ) -> Conversation:
        """Change a conversation's title and/or metadata (metadata is replaced, not merged).

        Args:
            conversation_id: the conversation.
            user_id: the caller: only their own conversation can be changed.
            title: the new title; None clears it; omitted leaves it.
            metadata: the new metadata object; omitted leaves it.

        Raises:
            InvalidInputError: nothing to change, or a malformed argument.
            NotFoundError: no such conversation (or not ``user_id``'s).
        """
        cid = _conversation_id(conversation_id)
        set_title = title is not _UNSET
        set_meta = metadata is not _UNSET
        if not (set_title or set_meta):
            raise InvalidInputError("update_conversation needs a title or metadata to change")
        if set_title and title is not None:
            title = clean_text(
                title, "title", max_chars=_MAX_TITLE_CHARS, allow_empty=True, strip=False
            )
        meta = self._metadata(metadata) if set_meta else None
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                _UPDATE_CONVERSATION,
                cid,
                set_title,
                title if set_title else None,
                set_meta,
                meta,
                user_id,
            )
        if row is None:
            raise _not_found(cid)
        return Conversation.from_row(row)

    async def delete_conversation(self, conversation_id: str, *, user_id: int) -> bool:
        """Delete a conversation with its messages; False if none (or not ``user_id``'s)."""
        cid = _conversation_id(conversation_id)
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM conversations WHERE id = $1 AND user_id = $2",
                cid,
                user_id,
            )
        return bool(status != "DELETE 0")

    # --- messages ------------------------------------------------------------------------

    async def add_message(
        self,
        conversation_id: str,
        role: MessageRole,
        content: str,
        *,
        user_id: int,
        type: str = "text",
        message_id: str | None = None,
        discord_message_id: int | None = None,
        token_count: int | None = None,
        image_urls: Sequence[str] = (),
    ) -> ConversationMessage:
        """Append a message to ``user_id``'s conversation, trimming it to the storage limit.

        One round trip to the schema's ``add_conversation_message`` function, which
        runs as one transaction: it locks the conversation row first (``FOR NO KEY
        UPDATE``, the lock an UPDATE takes), so concurrent adds to one conversation
        queue up, never deadlock, and never leave more than ``storage_limit``
        messages; checks the owner under that lock; inserts; deletes the oldest
        messages beyond the limit (reading a few entries of
        ix_conversation_messages_lookup, no ``count(*)``: ``message_count`` is the
        stored count); and updates ``message_count``, ``last_message_at`` and
        ``updated_at``.

        ``content`` is free text: PostgreSQL text cannot hold NUL, so NUL characters
        (and lone surrogates) are replaced by U+FFFD; empty content is allowed (tool
        calls); longer than ``max_content_chars`` is refused.

        Args:
            conversation_id: the conversation.
            role: ``user``, ``assistant``, ``system`` or ``tool``.
            content: the text.
            user_id: the caller, who must own the conversation (another user gets
                :class:`NotFoundError`, as for a conversation that does not exist);
                stored as the message's ``user_id``.
            type: VoltAgent's message type (``text``, ``tool-call`` …).
            message_id: VoltAgent's message id, unique within the conversation; a UUID
                when None.
            discord_message_id: the Discord message it came from.
            token_count: its tokens, if counted.
            image_urls: attached image URLs.

        Raises:
            InvalidInputError: a malformed argument, or ``message_id`` already used here.
            NotFoundError: no such conversation (or not ``user_id``'s).
        """
        return await self._add(
            conversation_id,
            role,
            content,
            check_bigint(user_id, "user_id"),
            type=type,
            message_id=message_id,
            discord_message_id=discord_message_id,
            token_count=token_count,
            image_urls=image_urls,
        )

    async def add_message_unchecked(
        self,
        conversation_id: str,
        role: Literal["assistant", "system", "tool"],
        content: str,
        *,
        type: str = "text",
        message_id: str | None = None,
        discord_message_id: int | None = None,
        token_count: int | None = None,
        image_urls: Sequence[str] = (),
    ) -> ConversationMessage:
        """Append what the system itself writes, with no owner check.

        For the assistant's reply, a system prompt or a tool result in a conversation
        the caller already holds (from :meth:`get_or_start_conversation` or an
        owner-checked read); the message's ``user_id`` stays None. A user's words go
        through :meth:`add_message`, which checks that they own the conversation.
        Otherwise as :meth:`add_message`.

        Raises:
            InvalidInputError: ``role`` is ``user``, or a malformed argument.
            NotFoundError: no such conversation.
        """
        if str(role) == "user":  # callers without a type checker
            raise InvalidInputError(
                "a user's message is added with add_message(..., user_id=...), which "
                "checks that they own the conversation"
            )
        return await self._add(
            conversation_id,
            role,
            content,
            None,
            type=type,
            message_id=message_id,
            discord_message_id=discord_message_id,
            token_count=token_count,
            image_urls=image_urls,
        )

    async def _add(
        self,
        conversation_id: str,
        role: str,
        content: str,
        user_id: int | None,
        *,
        type: str,
        message_id: str | None,
        discord_message_id: int | None,
        token_count: int | None,
        image_urls: Sequence[str],
    ) -> ConversationMessage:
        cid = _conversation_id(conversation_id)
        if role not in ROLES:
            raise InvalidInputError(
                f"role must be 'user', 'assistant', 'system' or 'tool', not {role!r}"
            )
        text = clean_text(
            content, "content", max_chars=self.max_content_chars, allow_empty=True, strip=False
        )
        type = check_name(type, "type", max_length=100)
        mid = str(uuid.uuid4()) if message_id is None else check_name(message_id, "message_id")
        if discord_message_id is not None:
            discord_message_id = check_bigint(discord_message_id, "discord_message_id")
        if token_count is not None:
            token_count = check_count(token_count, "token_count", maximum=2**31 - 1)
        if isinstance(image_urls, str):
            raise InvalidInputError("image_urls must be a list of URLs, not one string")
        urls = [check_name(u, "image_urls[]", max_length=4096) for u in image_urls]
        try:
            async with self._db.acquire() as conn:
                # user_id is the owner check (under the conversation's lock) and the
                # stored author in one: NULL skips the check.
                row = await conn.fetchrow(
                    _ADD_MESSAGE,
                    cid,
                    mid,
                    user_id,
                    discord_message_id,
                    role,
                    type,
                    text,
                    urls,
                    token_count,
                    self.storage_limit,
                )
        except QueryError as exc:
            if exc.sqlstate == "23505":
                raise InvalidInputError(
                    f"message id {mid!r} is already used in conversation {cid!r}"
                ) from exc
            raise
        if row is None:
            raise _not_found(cid)
        return ConversationMessage.from_row(row)

    async def get_messages(
        self,
        conversation_id: str,
        *,
        user_id: int,
        limit: int = 100,
        offset: int = 0,
        before: datetime | None = None,
        after: datetime | None = None,
        roles: Sequence[MessageRole] | None = None,
    ) -> list[ConversationMessage]:
        """Messages of a conversation, oldest first (VoltAgent's ``getConversationMessages``).

        Args:
            conversation_id: the conversation.
            user_id: the caller: ``[]`` unless they own the conversation.
            limit: at most this many (1 … 10,000).
            offset: skip this many first.
            before: only messages created strictly before this (timezone-aware).
            after: only messages created strictly after this.
            roles: only these roles.

        Served by ix_conversation_messages_lookup (conversation_id, created_at, id).
        """
        cid = _conversation_id(conversation_id)
        limit = check_count(limit, "limit", minimum=1)
        offset = check_count(offset, "offset", maximum=10_000_000)
        where, args = self._message_filters(cid, before, after, roles, user_id)
        args += [limit, offset]
        sql = (
            f"SELECT * FROM conversation_messages WHERE {where} "  # noqa: S608 - fixed fragments
            f"ORDER BY created_at, id LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        )
        async with self._db.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [ConversationMessage.from_row(r) for r in rows]

    async def get_recent_messages(
        self,
        conversation_id: str,
        n: int = 20,
        *,
        user_id: int,
        before: datetime | None = None,
    ) -> list[ConversationMessage]:
        """The newest ``n`` messages (before ``before`` if given), returned oldest first.

        ``[]`` unless ``user_id`` owns the conversation.

        The context window of a reply; one backward scan of
        ix_conversation_messages_lookup.
        """
        cid = _conversation_id(conversation_id)
        n = check_count(n, "n")
        if n == 0:
            return []
        where, args = self._message_filters(cid, before, None, None, user_id)
        args.append(n)
        sql = (
            "SELECT * FROM (SELECT * FROM conversation_messages "  # noqa: S608 - fixed fragments
            f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ${len(args)}) newest "
            "ORDER BY created_at, id"
        )
        async with self._db.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [ConversationMessage.from_row(r) for r in rows]

    async def iter_messages(
        self,
        conversation_id: str,
        *,
        user_id: int,
        page_size: int = 100,
        roles: Sequence[MessageRole] | None = None,
    ) -> AsyncIterator[ConversationMessage]:
        """Every message of a conversation, oldest first, fetched ``page_size`` at a time.

        Nothing unless ``user_id`` owns the conversation.

        Pages move a (created_at, id) cursor, so messages trimmed by the storage limit
        while iterating never shift a page.
        """
        cid = _conversation_id(conversation_id)
        page_size = check_count(page_size, "page_size", minimum=1)
        where, base = self._message_filters(cid, None, None, roles, user_id)
        cursor: tuple[datetime, int] | None = None
        while True:
            args = list(base)
            clause = where
            if cursor is not None:
                args += [cursor[0], cursor[1]]
                clause += f" AND (created_at, id) > (${len(args) - 1}, ${len(args)})"
            args.append(page_size)
            sql = (
                f"SELECT * FROM conversation_messages WHERE {clause} "  # noqa: S608 - fixed fragments
                f"ORDER BY created_at, id LIMIT ${len(args)}"
            )
            async with self._db.acquire() as conn:
                rows = await conn.fetch(sql, *args)
            for row in rows:
                yield ConversationMessage.from_row(row)
            if len(rows) < page_size:
                return
            cursor = (rows[-1]["created_at"], rows[-1]["id"])

    async def count_messages(self, conversation_id: str, *, user_id: int) -> int:
        """How many messages the conversation holds (0 if none, or not ``user_id``'s)."""
        cid = _conversation_id(conversation_id)
        where, args = self._message_filters(cid, None, None, None, user_id)
        async with self._db.acquire() as conn:
            n = await conn.fetchval(
                f"SELECT count(*) FROM conversation_messages WHERE {where}",  # noqa: S608 - fixed fragments
                *args,
            )
        return int(n)

    async def delete_message(self, conversation_id: str, message_id: str, *, user_id: int) -> bool:
        """Delete one message by its ``message_id``; False if none (or not ``user_id``'s)."""
        cid = _conversation_id(conversation_id)
        mid = check_name(message_id, "message_id")
        user_id = check_bigint(user_id, "user_id")
        async with self._db.transaction() as conn:
            await conn.execute(_LOCK_OWNER, cid)
            owner = await conn.fetchrow(_LOCK_CONVERSATION, cid)
            if owner is None or owner["user_id"] != user_id:
                return False
            status = await conn.execute(
                "WITH gone AS (DELETE FROM conversation_messages "
                "WHERE conversation_id = $1 AND message_id = $2 RETURNING 1) "
                "UPDATE conversations SET message_count = message_count - "
                "(SELECT count(*) FROM gone), updated_at = now() "
                "WHERE id = $1 AND EXISTS (SELECT 1 FROM gone)",
                cid,
                mid,
            )
        return bool(status != "UPDATE 0")

    async def clear_messages(self, conversation_id: str, *, user_id: int) -> int:
        """Delete every message of ``user_id``'s conversation, keeping it; returns how many."""
        cid = _conversation_id(conversation_id)
        user_id = check_bigint(user_id, "user_id")
        async with self._db.transaction() as conn:
            await conn.execute(_LOCK_OWNER, cid)
            owner = await conn.fetchrow(_LOCK_CONVERSATION, cid)
            if owner is None or owner["user_id"] != user_id:
                return 0
            status = await conn.execute(
                "DELETE FROM conversation_messages WHERE conversation_id = $1", cid
            )
            await conn.execute(
                "UPDATE conversations SET message_count = 0, updated_at = now() WHERE id = $1",
                cid,
            )
        return int(status.rsplit(" ", 1)[-1])

    # --- user-centric queries ------------------------------------------------------------

    async def list_user_conversations(
        self,
        user_id: int,
        *,
        resource_id: str | None = None,
        order_by: OrderBy = "updated_at",
        direction: Direction = "desc",
        limit: int = 50,
        offset: int = 0,
    ) -> list[Conversation]:
        """A user's conversations (VoltAgent's ``getConversationsByUserId``).

        Args:
            user_id: the owner.
            resource_id: only this agent's.
            order_by: ``created_at``, ``updated_at`` or ``title`` — looked up in a fixed
                table of ORDER BY clauses; anything else is refused.
            direction: ``asc`` or ``desc``.
            limit: at most this many (1 … 10,000).
            offset: skip this many first.

        Raises:
            InvalidInputError: an unknown ``order_by``/``direction`` or a bad number.
        """
        user_id = check_bigint(user_id, "user_id")
        return await self._query(user_id, resource_id, order_by, direction, limit, offset)

    async def query_conversations(
        self,
        *,
        user_id: int | None = None,
        resource_id: str | None = None,
        order_by: OrderBy = "updated_at",
        direction: Direction = "desc",
        limit: int = 50,
        offset: int = 0,
    ) -> list[Conversation]:
        """Conversations filtered by user and/or agent (VoltAgent's ``queryConversations``).

        The administrators' view: with ``user_id`` it is :meth:`list_user_conversations`;
        with only ``resource_id`` and ``updated_at`` order it reads
        ix_conversations_resource; otherwise (other orders, or no filter at all) it sorts
        the matching conversations — fine for administration, not for a request path.
        """
        if user_id is not None:
            user_id = check_bigint(user_id, "user_id")
        return await self._query(user_id, resource_id, order_by, direction, limit, offset)

    async def get_user_conversations_page(
        self,
        user_id: int,
        page: int = 1,
        page_size: int = 20,
        *,
        resource_id: str | None = None,
        order_by: OrderBy = "updated_at",
        direction: Direction = "desc",
    ) -> ConversationPage:
        """Page ``page`` (1-based) of a user's conversations, with ``has_more``.

        One query fetching ``page_size + 1`` rows: the extra row only says whether a
        later page exists.
        """
        user_id = check_bigint(user_id, "user_id")
        page = check_count(page, "page", minimum=1, maximum=10_000_000)
        page_size = check_count(page_size, "page_size", minimum=1, maximum=_MAX_PAGE - 1)
        rows = await self._query(
            user_id, resource_id, order_by, direction, page_size + 1, (page - 1) * page_size
        )
        return ConversationPage(
            items=rows[:page_size], page=page, page_size=page_size, has_more=len(rows) > page_size
        )

    async def iter_user_conversations(
        self, user_id: int, *, page_size: int = 100
    ) -> AsyncIterator[Conversation]:
        """Every conversation of a user, oldest first (for export), ``page_size`` at a time.

        A (created_at, id) cursor over ix_conversations_user_created.
        """
        user_id = check_bigint(user_id, "user_id")
        page_size = check_count(page_size, "page_size", minimum=1)
        cursor: tuple[datetime, str] | None = None
        while True:
            async with self._db.acquire() as conn:
                if cursor is None:
                    rows = await conn.fetch(
                        "SELECT * FROM conversations WHERE user_id = $1 "
                        "ORDER BY created_at, id LIMIT $2",
                        user_id,
                        page_size,
                    )
                else:
                    rows = await conn.fetch(
                        "SELECT * FROM conversations WHERE user_id = $1 "
                        "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4",
                        user_id,
                        cursor[0],
                        cursor[1],
                        page_size,
                    )
            for row in rows:
                yield Conversation.from_row(row)
            if len(rows) < page_size:
                return
            cursor = (rows[-1]["created_at"], rows[-1]["id"])

    async def count_user_conversations(self, user_id: int, resource_id: str | None = None) -> int:
        """How many conversations the user has (with this agent, if given)."""
        user_id = check_bigint(user_id, "user_id")
        args: list[Any] = [user_id]
        where = "user_id = $1"
        if resource_id is not None:
            args.append(check_name(resource_id, "resource_id"))
            where += " AND resource_id = $2"
        async with self._db.acquire() as conn:
            n = await conn.fetchval(
                f"SELECT count(*) FROM conversations WHERE {where}",  # noqa: S608 - fixed fragments
                *args,
            )
        return int(n)

    async def count_user_messages(self, user_id: int) -> int:
        """How many messages the user's conversations hold."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM conversations c "
                "JOIN conversation_messages m ON m.conversation_id = c.id WHERE c.user_id = $1",
                user_id,
            )
        return int(n)

    async def delete_user_conversations(self, user_id: int) -> int:
        """Delete every conversation of the user (their messages go with them); returns how many."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM conversations WHERE user_id = $1", user_id)
        return int(status.rsplit(" ", 1)[-1])

    # --- Loyal Companion's conversation rule ---------------------------------------------

    async def get_or_start_conversation(
        self,
        user_id: int,
        *,
        channel_id: int,
        guild_id: int | None = None,
        resource_id: str = DEFAULT_RESOURCE_ID,
        now: datetime | None = None,
    ) -> Conversation:
        """The user's active conversation in this channel, or a new one after the timeout.

        The newest active conversation of (user, channel, resource) is returned if its
        last message is at most ``timeout`` before ``now``; otherwise every active one
        there is marked inactive and a new conversation starts (its times are ``now``).

        Race-safe: the whole read-decide-write runs under a transaction-scoped advisory
        lock on (schema, user, channel, resource), so concurrent calls return one
        conversation. A lock rather than a partial unique index on active
        conversations, because :meth:`create_conversation` may legitimately keep several
        active conversations in a channel (VoltAgent-style callers), and the lock makes
        the timeout check and the start atomic without retry loops. Served by
        ix_conversations_channel_user.

        Args:
            user_id: the user.
            channel_id: the Discord channel (a DM channel for direct messages).
            guild_id: the guild, None in DMs.
            resource_id: the agent.
            now: the current time (timezone-aware); the database's clock when None.
                Tests inject it.
        """
        user_id = check_bigint(user_id, "user_id")
        channel_id = check_bigint(channel_id, "channel_id")
        if guild_id is not None:
            guild_id = check_bigint(guild_id, "guild_id")
        resource_id = check_name(resource_id, "resource_id")
        if now is not None:
            now = check_aware(now, "now")
        try:
            async with self._db.transaction() as conn:
                if await conn.fetchval(_LOCK_USER, user_id) is None:
                    raise NotFoundError(f"no user with id {user_id}")
                await conn.execute(_START_LOCK, self._db.schema, user_id, channel_id, resource_id)
                current = await conn.fetchrow(
                    _ACTIVE_IN_CHANNEL, channel_id, user_id, resource_id, now, self.timeout
                )
                if current is not None and current["fresh"]:
                    return Conversation.from_row(current)
                row = await conn.fetchrow(
                    _START_IN_CHANNEL,
                    channel_id,
                    user_id,
                    resource_id,
                    now,
                    str(uuid.uuid4()),
                    guild_id,
                )
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        assert row is not None
        return Conversation.from_row(row)

    async def deactivate_stale_conversations(self, *, now: datetime | None = None) -> int:
        """Mark inactive every active conversation silent for longer than the timeout.

        Housekeeping (:meth:`get_or_start_conversation` does this lazily per channel);
        served by the partial index ix_conversations_active_last. Returns how many.
        """
        if now is not None:
            now = check_aware(now, "now")
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "UPDATE conversations SET is_active = false WHERE is_active "
                "AND last_message_at < coalesce($1::timestamptz, now()) - $2::interval",
                now,
                self.timeout,
            )
        return int(status.rsplit(" ", 1)[-1])

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _metadata(value: object) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"metadata must be a JSON object (a mapping), not {type(value).__name__}"
            )
        cleaned: dict[str, Any] = check_json(value, "metadata")
        return cleaned

    @staticmethod
    def _message_filters(
        cid: str,
        before: datetime | None,
        after: datetime | None,
        roles: Sequence[str] | None,
        user_id: int,
    ) -> tuple[str, list[Any]]:
        where = ["conversation_id = $1"]
        args: list[Any] = [cid]
        if before is not None:
            args.append(check_aware(before, "before"))
            where.append(f"created_at < ${len(args)}")
        if after is not None:
            args.append(check_aware(after, "after"))
            where.append(f"created_at > ${len(args)}")
        checked_roles = _check_roles(roles)
        if checked_roles is not None:
            args.append(checked_roles)
            where.append(f"role = ANY(${len(args)}::text[])")
        args.append(check_bigint(user_id, "user_id"))
        where.append(
            "EXISTS (SELECT 1 FROM conversations c "  # noqa: S608 - a parameter number
            f"WHERE c.id = $1 AND c.user_id = ${len(args)})"
        )
        return " AND ".join(where), args

    async def _query(
        self,
        user_id: int | None,
        resource_id: str | None,
        order_by: object,
        direction: object,
        limit: int,
        offset: int,
    ) -> list[Conversation]:
        order = _check_order(order_by, direction)
        limit = check_count(limit, "limit", minimum=1)
        offset = check_count(offset, "offset", maximum=100_000_000)
        where: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            args.append(user_id)
            where.append(f"user_id = ${len(args)}")
        if resource_id is not None:
            args.append(check_name(resource_id, "resource_id"))
            where.append(f"resource_id = ${len(args)}")
        args += [limit, offset]
        sql = (
            "SELECT * FROM conversations "  # noqa: S608 - fixed fragments
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY {order} LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        )
        async with self._db.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [Conversation.from_row(r) for r in rows]
