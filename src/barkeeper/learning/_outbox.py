""":class:`OutboxStore`: the memory outbox, durable memory work in PostgreSQL.

A message waiting for memory extraction is a row of ``memory_outbox`` (schema
version 3), written by the bot in the transaction that caches the message
(:meth:`OutboxStore.enqueue` with the cache's connection). Rows are claimed by
:class:`~barkeeper.learning.OutboxWorker` tasks of any number of processes:

- **Order per user.** A row is ready when ``available_at`` has passed, its user
  has no earlier row that is not dead and no later row claimed under a live lease;
  so a user's later message is never examined before an earlier one is done
  (deleted) or dead, and a user has at most one item in flight, even when an earlier
  row comes back while a later one is claimed (a requeued dead letter waits for it).
  Other users' rows go on.
- **Claims.** :meth:`OutboxStore.claim` takes ready rows with ``FOR UPDATE SKIP
  LOCKED`` and commits ``state = 'claimed'``, ``attempts + 1``, a fresh
  ``claim_token`` and ``available_at = now + lease``. The attempt is counted before
  any work, so a message that kills its process every time still ends dead.
- **Leases.** A claim is not a lock: if its process dies (``kill -9``), the row is
  ready again once ``available_at`` (the lease) has passed, for any worker.
- **Done, retried, dead.** The worker finishes a row inside the transaction that
  writes its memories (:meth:`OutboxStore.lock`, :meth:`OutboxStore.finish`). A
  failure sets ``retrying`` with ``available_at`` backed off exponentially
  (``backoff * 2 ** (attempts - 1)``, at most ``backoff_max``), or ``dead`` with the
  reason after ``max_attempts`` attempts. Dead rows stay until they are requeued
  (:meth:`OutboxStore.requeue_dead`, ``barkeeper outbox retry``), purged
  (:meth:`OutboxStore.purge_dead`, ``barkeeper outbox purge``) or their author is
  forgotten (``privacy forget``). A requeued row keeps its id, so it runs before the
  same user's later messages still waiting, as it would have (after the one in
  flight, if any, is done, failed or its lease lapsed).

Every time comes from the injected ``clock`` (UTC ``datetime``), never from the
server's ``now()``, so tests move time by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError
from barkeeper.validation import check_bigint, check_count, clean_text

__all__ = ["DeadLetter", "OutboxCounts", "OutboxEntry", "OutboxItem", "OutboxStore"]

Clock = Callable[[], datetime]
"""The current time, timezone-aware (UTC)."""

_MAX_REASON = 300

_ENQUEUE = """
INSERT INTO memory_outbox
    (user_id, message_id, channel_id, guild_id, author_name, content,
     available_at, created_at, updated_at)
SELECT e.user_id, e.message_id, e.channel_id, e.guild_id, e.author_name, e.content, $7, $8, $8
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
     WITH ORDINALITY AS e(user_id, message_id, channel_id, guild_id, author_name, content, n)
JOIN users u ON u.id = e.user_id  -- a person forgotten meanwhile: nothing to queue
ORDER BY e.n
ON CONFLICT (user_id, message_id) WHERE message_id IS NOT NULL DO NOTHING
"""

_RELEASE_HELD = """
UPDATE memory_outbox SET available_at = $3, updated_at = $3
WHERE user_id = $1 AND message_id = $2 AND state = 'pending' AND available_at > $3
"""

# The candidates' scan runs on memory_outbox_ready (available_at, id); the "nothing
# earlier" probe and the "nothing later in flight" probe on memory_outbox_user
# (user_id, id); all leave dead rows out. A later item can be in flight when an
# earlier one became not dead after it was claimed (a requeued dead letter, or a
# message committed after a later one of the same user): the earlier one waits until
# the later one is done, failed or its lease lapsed.
_CLAIM = """
WITH ready AS (
    SELECT o.id FROM memory_outbox o
    WHERE o.state <> 'dead' AND o.available_at <= $1
      AND NOT EXISTS (
          SELECT 1 FROM memory_outbox e
          WHERE e.user_id = o.user_id AND e.id < o.id AND e.state <> 'dead')
      AND NOT EXISTS (
          SELECT 1 FROM memory_outbox c
          WHERE c.user_id = o.user_id AND c.id > o.id AND c.state <> 'dead'
            AND c.state = 'claimed' AND c.available_at > $1)
    ORDER BY o.available_at, o.id
    LIMIT $2
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE memory_outbox m
SET state = 'claimed', attempts = m.attempts + 1, available_at = $1 + $3::interval,
    claim_token = $4, claimed_by = $5, updated_at = $1
FROM ready WHERE m.id = ready.id
RETURNING m.id, m.user_id, m.message_id, m.channel_id, m.guild_id, m.author_name,
          m.content, m.attempts, m.claim_token, m.last_error, m.created_at
"""

# The author's row first, then the item's: the order ``privacy forget`` takes them in
# (it locks the user, then deletes their rows), so the two wait for each other instead
# of deadlocking when a forget comes while the author's message is being processed.
_LOCK_AUTHOR = "SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE"

_LOCK = """
SELECT id FROM memory_outbox WHERE id = $1 AND claim_token = $2 FOR UPDATE SKIP LOCKED
"""

_FINISH = "DELETE FROM memory_outbox WHERE id = $1 AND claim_token = $2"

_FAIL = """
UPDATE memory_outbox
SET state = $3, available_at = $4, last_error = $5, claim_token = NULL, claimed_by = NULL,
    updated_at = $6
WHERE id = $1 AND claim_token = $2
"""

_GIVE_BACK = """
UPDATE memory_outbox
SET state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,
    attempts = attempts - 1, available_at = $3, claim_token = NULL, claimed_by = NULL,
    updated_at = $3
WHERE id = $1 AND claim_token = $2
"""

# The claim's predicate without the locks; stops at the first row (the claim's indexes).
_HAS_READY = """
SELECT EXISTS (
    SELECT 1 FROM memory_outbox o
    WHERE o.state <> 'dead' AND o.available_at <= $1
      AND NOT EXISTS (
          SELECT 1 FROM memory_outbox e
          WHERE e.user_id = o.user_id AND e.id < o.id AND e.state <> 'dead')
      AND NOT EXISTS (
          SELECT 1 FROM memory_outbox c
          WHERE c.user_id = o.user_id AND c.id > o.id AND c.state <> 'dead'
            AND c.state = 'claimed' AND c.available_at > $1))
"""

# The outbox holds only unfinished work (and dead letters), so counting reads all of
# it: fine for status and doctor, not for a hot path.
_COUNTS = """
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'retrying') AS retrying,
       count(*) FILTER (WHERE state = 'claimed' AND available_at > $1) AS claimed,
       count(*) FILTER (WHERE state = 'claimed' AND available_at <= $1) AS abandoned,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       min(created_at) FILTER (WHERE state <> 'dead') AS oldest
FROM memory_outbox
"""

_DEAD_REASONS = """
SELECT coalesce(last_error, 'unknown') AS reason, count(*) AS n
FROM memory_outbox WHERE state = 'dead'
GROUP BY 1 ORDER BY n DESC, reason LIMIT $1
"""

# The dead letters chosen by $1 (a user, or NULL: all) and $2 (a piece of the reason,
# case-insensitive, or NULL: any).
_DEAD_WHERE = """
state = 'dead' AND ($1::bigint IS NULL OR user_id = $1)
AND ($2::text IS NULL OR strpos(lower(coalesce(last_error, 'unknown')), lower($2)) > 0)
"""

_LIST_DEAD = f"""
SELECT o.id, o.user_id, u.discord_id, o.message_id, o.channel_id, o.guild_id, o.attempts,
       coalesce(o.last_error, 'unknown') AS reason, o.created_at, o.updated_at
FROM (SELECT * FROM memory_outbox WHERE {_DEAD_WHERE} ORDER BY id LIMIT $3) o
LEFT JOIN users u ON u.id = o.user_id
ORDER BY o.id
"""  # noqa: S608 - constant fragments, parameters stay parameters

# Requeued rows keep their ids: the claim's "nothing earlier of this user" rule runs
# them in their old order, before the user's later messages still waiting, and its
# "nothing later in flight" rule keeps them waiting while one of those is claimed. A
# claim statement still running when the requeue commits would not see the requeued
# row nor be seen by a claim starting then (each has the other's row as it was): so
# the requeue first waits for the statements writing the table to commit and holds
# off new ones until it commits (this lock conflicts with the claim's, not with the
# row locks of workers processing their items).
_REQUEUE_LOCK = "LOCK TABLE memory_outbox IN SHARE ROW EXCLUSIVE MODE"

_REQUEUE_DEAD = f"""
UPDATE memory_outbox
SET state = 'pending', attempts = 0, available_at = $3, last_error = NULL, updated_at = $3
WHERE {_DEAD_WHERE}
"""  # noqa: S608 - constant fragments, parameters stay parameters

_PURGE_DEAD = f"DELETE FROM memory_outbox WHERE {_DEAD_WHERE}"  # noqa: S608 - constant


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message to queue for memory extraction.

    Attributes:
        user_id: The author's ``users.id``.
        content: What they wrote (as the model should read it: mention removed).
        message_id: The Discord message id: a message is queued at most once.
        channel_id: Where it was written (the worker reads the lines before it there).
        guild_id: The guild, if any.
        author_name: How to call the author in the prompt.
    """

    user_id: int
    content: str
    message_id: int | None = None
    channel_id: int | None = None
    guild_id: int | None = None
    author_name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.user_id, bool) or not isinstance(self.user_id, int):
            raise InvalidInputError("user_id must be an int")
        if self.user_id <= 0:
            raise InvalidInputError(f"user_id must be positive, not {self.user_id}")
        if not isinstance(self.content, str) or not self.content.strip():
            raise InvalidInputError("content must be a non-empty str")


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed outbox row: the work and the claim it is held under.

    Attributes:
        id: The row's id (the order of a user's items).
        user_id: The author's ``users.id``.
        content: The message's text.
        message_id: The Discord message id, if any.
        channel_id: The channel, if any.
        guild_id: The guild, if any.
        author_name: The author's display name, if known.
        attempts: Attempts so far, this one included.
        claim_token: The claim's token; only its holder can finish or fail the row.
        last_error: Why the previous attempt failed, if it did.
        queued_at: When it was queued (the message's time, give or take the cache's
            batching).
    """

    id: int
    user_id: int
    content: str
    message_id: int | None
    channel_id: int | None
    guild_id: int | None
    author_name: str | None
    attempts: int
    claim_token: uuid.UUID
    last_error: str | None = None
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead outbox item, as ``barkeeper outbox list`` shows it (no message text).

    Attributes:
        id: The row's id (a user's items run in id order).
        user_id: The author's ``users.id``.
        discord_id: The author's Discord id, if they have one.
        message_id: The Discord message, if any.
        channel_id: Its channel, if any.
        guild_id: Its guild, if any.
        attempts: Attempts made before it was given up.
        reason: Why the last attempt failed.
        queued_at: When it was queued.
        dead_at: When it was given up.
    """

    id: int
    user_id: int
    discord_id: int | None
    message_id: int | None
    channel_id: int | None
    guild_id: int | None
    attempts: int
    reason: str
    queued_at: datetime
    dead_at: datetime


# What `/barkeeper status` and `barkeeper doctor` say when there are dead letters.
_DEAD_HINT = "`barkeeper outbox list` shows them, `barkeeper outbox retry --all` requeues them"


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """What the outbox holds now.

    Attributes:
        pending: Never attempted (some may be held until their reply is sent).
        retrying: Failed, waiting for their next attempt (backoff).
        claimed: Being processed under a live lease.
        abandoned: Claimed under a lease that expired (their process died):
            ready to be taken over.
        dead: Gave up after ``max_attempts`` (kept with their reason).
        dead_reasons: The most common reasons of the dead ones, with their counts.
        oldest: When the oldest unfinished item was queued.
    """

    pending: int = 0
    retrying: int = 0
    claimed: int = 0
    abandoned: int = 0
    dead: int = 0
    dead_reasons: tuple[tuple[str, int], ...] = ()
    oldest: datetime | None = None

    @property
    def unfinished(self) -> int:
        """Items not done and not dead."""
        return self.pending + self.retrying + self.claimed + self.abandoned

    def summary(self) -> str:
        """One line for ``/barkeeper status`` and ``barkeeper doctor``."""
        text = (
            f"{self.pending} pending, {self.retrying} retrying, "
            f"{self.claimed + self.abandoned} in progress, {self.dead} dead"
        )
        if self.abandoned:
            text += f" ({self.abandoned} abandoned by a stopped process)"
        if self.dead_reasons:
            text += ": " + "; ".join(f"{n}× {reason}" for reason, n in self.dead_reasons)
        if self.dead:
            text += f". {_DEAD_HINT}"
        return text


def _one(status: object) -> bool:
    """Whether a command status (``"UPDATE 1"``) says one row."""
    return str(status).endswith(" 1")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def error_reason(exc: BaseException | str) -> str:
    """A short reason for ``last_error``: the error's type and first line, no traceback."""
    if isinstance(exc, str):
        text = exc
    else:
        first = str(exc).strip().splitlines()
        text = type(exc).__name__ + (f": {first[0]}" if first else "")
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


class OutboxStore:
    """The ``memory_outbox`` table: queue, claim, finish, retry, dead-letter, count.

    Args:
        db: The database (migrated to version 3 or later).
        max_attempts: Attempts per item before it is dead (``BARKEEPER_MEMORY_MAX_ATTEMPTS``).
        lease: Seconds a claim lasts; an item whose worker died is taken over after
            it (``BARKEEPER_MEMORY_LEASE_SECONDS``). A live worker keeps its item
            however long it takes (it holds the row's lock), so the lease only has to
            outlast the gap between the claim and that lock.
        backoff: Seconds before the second attempt; doubled at each further one
            (``BARKEEPER_MEMORY_BACKOFF_SECONDS``).
        backoff_max: The longest wait between attempts
            (``BARKEEPER_MEMORY_BACKOFF_MAX_SECONDS``).
        hold: Seconds a message queued with ``held=True`` waits for
            :meth:`release` (its reply) before it is ready anyway
            (``BARKEEPER_MEMORY_HOLD_SECONDS``).
        clock: The current time (tests move it); UTC now by default.

    Raises:
        InvalidInputError: A limit is out of range.

    Example::

        outbox = OutboxStore(db)
        async with db.transaction() as conn:
            ...  # the caller's writes
            await outbox.enqueue([OutboxEntry(user_id=7, content="I moved")], connection=conn)
        print((await outbox.counts()).summary())
    """

    def __init__(
        self,
        db: Database,
        *,
        max_attempts: int = 5,
        lease: float = 300.0,
        backoff: float = 10.0,
        backoff_max: float = 3600.0,
        hold: float = 120.0,
        clock: Clock | None = None,
    ) -> None:
        if not 1 <= max_attempts <= 100:
            raise InvalidInputError(f"max_attempts must be within 1..100, not {max_attempts}")
        if lease <= 0:
            raise InvalidInputError("lease must be positive")
        if backoff < 0 or backoff_max < backoff or hold < 0:
            raise InvalidInputError("backoff, backoff_max and hold must be 0 <= backoff <= max")
        self._db = db
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.hold = timedelta(seconds=hold)
        self.clock: Clock = clock or _utc_now

    def __repr__(self) -> str:
        return f"<OutboxStore max_attempts={self.max_attempts} lease={self.lease}>"

    def delay(self, attempts: int) -> timedelta:
        """The wait before the next attempt of an item that failed ``attempts`` times."""
        seconds = min(self.backoff * 2 ** max(attempts - 1, 0), self.backoff_max)
        return timedelta(seconds=seconds)

    # --- queueing ----------------------------------------------------------------------

    async def enqueue(
        self,
        entries: Sequence[OutboxEntry],
        *,
        connection: asyncpg.Connection | None = None,
        held: bool = False,
    ) -> int:
        """Queue messages, in order; a message already queued is left as it is.

        Args:
            entries: The messages, oldest first (a user's items run in this order).
            connection: Run on this connection, inside the caller's transaction (the
                one that caches the messages); else on a pooled one.
            held: Not ready until :meth:`release` (or ``hold`` seconds): the reply
                has not been sent yet.

        Returns:
            Rows added (an entry of a user who no longer exists, or a message already
            queued, adds none).
        """
        if not entries:
            return 0
        now = self.clock()
        args = (
            [e.user_id for e in entries],
            [e.message_id for e in entries],
            [e.channel_id for e in entries],
            [e.guild_id for e in entries],
            [e.author_name for e in entries],
            [e.content for e in entries],
            now + self.hold if held else now,
            now,
        )
        if connection is not None:
            status = await connection.execute(_ENQUEUE, *args)
        else:
            async with self._db.acquire() as conn:
                status = await conn.execute(_ENQUEUE, *args)
        return int(status.rsplit(" ", 1)[-1])

    async def release(self, user_id: int, message_id: int) -> bool:
        """A held message's reply was sent: make it ready now. Whether one was held."""
        now = self.clock()
        async with self._db.acquire() as conn:
            status = await conn.execute(_RELEASE_HELD, user_id, message_id, now)
        return _one(status)

    # --- claiming and finishing ------------------------------------------------------------

    async def claim(self, limit: int = 1, *, worker: str = "") -> list[OutboxItem]:
        """Claim up to ``limit`` ready items (at most one per user), oldest first.

        The claim is committed before this returns: each item's attempt is counted
        and its lease runs from now.
        """
        if limit < 1:
            return []
        now = self.clock()
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_CLAIM, now, limit, self.lease, uuid.uuid4(), worker[:200])
        items = [
            OutboxItem(
                id=r["id"],
                user_id=r["user_id"],
                content=r["content"],
                message_id=r["message_id"],
                channel_id=r["channel_id"],
                guild_id=r["guild_id"],
                author_name=r["author_name"],
                attempts=r["attempts"],
                claim_token=r["claim_token"],
                last_error=r["last_error"],
                queued_at=r["created_at"],
            )
            for r in rows
        ]
        return sorted(items, key=lambda i: i.id)

    async def lock(self, conn: asyncpg.Connection, item: OutboxItem) -> bool:
        """Lock a claimed item's row in the caller's transaction, if the claim still holds.

        ``False``: the lease expired and another worker took the item over (or it
        was deleted, e.g. its author was forgotten): leave it alone. While the lock
        is held, nobody else can claim, finish or fail the item, and the author's
        ``users`` row is share-locked: a ``privacy forget`` of them waits for the
        transaction (then deletes what it wrote) rather than deadlocking with it.
        """
        if await conn.fetchval(_LOCK_AUTHOR, item.user_id) is None:
            return False  # forgotten meanwhile: the item went with them
        found = await conn.fetchval(_LOCK, item.id, item.claim_token)
        return found is not None

    async def finish(self, conn: asyncpg.Connection, item: OutboxItem) -> bool:
        """Delete a done item, in the caller's transaction (the one writing its memories)."""
        status = await conn.execute(_FINISH, item.id, item.claim_token)
        return _one(status)

    async def fail(
        self,
        item: OutboxItem,
        reason: BaseException | str,
        *,
        connection: asyncpg.Connection | None = None,
        final: bool = False,
    ) -> Literal["retrying", "dead", "lost"]:
        """Record a failed attempt: retry later (backed off) or, after the last one, dead.

        Args:
            item: The claimed item.
            reason: Why (kept in ``last_error``: an error's type and first line).
            connection: Run in the caller's transaction; else on its own.
            final: Dead now, whatever the attempts left (the item can never succeed).

        Returns:
            The item's new state, or ``"lost"`` if the claim no longer held.
        """
        now = self.clock()
        dead = final or item.attempts >= self.max_attempts
        state: Literal["retrying", "dead"] = "dead" if dead else "retrying"
        available = now if dead else now + self.delay(item.attempts)
        args = (item.id, item.claim_token, state, available, error_reason(reason), now)
        if connection is not None:
            status = await connection.execute(_FAIL, *args)
        else:
            async with self._db.acquire() as conn:
                status = await conn.execute(_FAIL, *args)
        return state if status.endswith(" 1") else "lost"

    async def give_back(self, item: OutboxItem) -> bool:
        """Return an item claimed but not worked on (shutdown): ready now, attempt uncounted."""
        async with self._db.acquire() as conn:
            status = await conn.execute(_GIVE_BACK, item.id, item.claim_token, self.clock())
        return _one(status)

    # --- looking -----------------------------------------------------------------------

    async def has_ready(self) -> bool:
        """Whether an item could be claimed now (its user's oldest, available, not leased)."""
        async with self._db.acquire() as conn:
            found = await conn.fetchval(_HAS_READY, self.clock())
        return bool(found)

    async def counts(self, *, reasons: int = 5) -> OutboxCounts:
        """Pending, retrying, in progress and dead items, with the commonest dead reasons."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_COUNTS, self.clock())
            dead = await conn.fetch(_DEAD_REASONS, reasons) if row["dead"] else []
        return OutboxCounts(
            pending=row["pending"],
            retrying=row["retrying"],
            claimed=row["claimed"],
            abandoned=row["abandoned"],
            dead=row["dead"],
            dead_reasons=tuple((r["reason"], r["n"]) for r in dead),
            oldest=row["oldest"],
        )

    async def list_dead(
        self, *, user_id: int | None = None, reason: str | None = None, limit: int = 50
    ) -> list[DeadLetter]:
        """The dead items, oldest first.

        Args:
            user_id: Only this author's (``users.id``); ``None``: everyone's.
            reason: Only those whose reason contains this text (any case).
            limit: At most this many.

        Raises:
            InvalidInputError: ``user_id`` is no id, or ``reason`` is blank or longer
                than a reason (300 characters).
        """
        user_id = _optional_id(user_id)
        limit = check_count(limit, "limit", minimum=1, maximum=10_000)
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_LIST_DEAD, user_id, _reason_filter(reason), limit)
        return [
            DeadLetter(
                id=r["id"],
                user_id=r["user_id"],
                discord_id=r["discord_id"],
                message_id=r["message_id"],
                channel_id=r["channel_id"],
                guild_id=r["guild_id"],
                attempts=r["attempts"],
                reason=r["reason"],
                queued_at=r["created_at"],
                dead_at=r["updated_at"],
            )
            for r in rows
        ]

    async def requeue_dead(self, *, user_id: int | None = None, reason: str | None = None) -> int:
        """Give dead items a fresh set of attempts (after fixing their cause).

        Each keeps its place: it runs before its author's later messages still waiting,
        once the one in flight (if any) is done, failed or its lease lapsed. The
        requeue waits for the outbox writes under way (claims, queueing: short
        statements) to commit and holds new ones off until it commits, so that no
        claim sees a requeued item without the claim of its user's item in flight.

        Args:
            user_id: Only this author's (``users.id``); ``None``: everyone's.
            reason: Only those whose reason contains this text (any case).

        Returns:
            How many were requeued.

        Raises:
            InvalidInputError: ``user_id`` is no id, or ``reason`` is blank or longer
                than a reason (300 characters).
        """
        return await self._change_dead(_REQUEUE_DEAD, user_id, reason, self.clock(), lock=True)

    async def purge_dead(self, *, user_id: int | None = None, reason: str | None = None) -> int:
        """Delete dead items for good (the messages will never be examined).

        Args:
            user_id: Only this author's (``users.id``); ``None``: everyone's.
            reason: Only those whose reason contains this text (any case).

        Returns:
            How many were deleted.

        Raises:
            InvalidInputError: ``user_id`` is no id, or ``reason`` is blank or longer
                than a reason (300 characters).
        """
        return await self._change_dead(_PURGE_DEAD, user_id, reason)

    async def _change_dead(
        self,
        query: str,
        user_id: int | None,
        reason: str | None,
        *more: object,
        lock: bool = False,
    ) -> int:
        """Run a statement on the dead letters :data:`_DEAD_WHERE` chooses; rows changed.

        ``lock``: after :data:`_REQUEUE_LOCK`, in one transaction."""
        user_id, reason = _optional_id(user_id), _reason_filter(reason)
        async with self._db.transaction() as conn:
            if lock:
                await conn.execute(_REQUEUE_LOCK)
            status = await conn.execute(query, user_id, reason, *more)
        return int(status.rsplit(" ", 1)[-1])


def _optional_id(user_id: int | None) -> int | None:
    return None if user_id is None else check_bigint(user_id, "user_id")


def _reason_filter(reason: str | None) -> str | None:
    """A piece of a reason to match (``None`` or ``""``: any), cleaned as stored text
    (PostgreSQL refuses a NUL); blanks or more than a reason's length are refused."""
    if reason is None or reason == "":
        return None
    return clean_text(reason, "reason", max_chars=_MAX_REASON)
