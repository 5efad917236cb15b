"""Follow-ups, reminders and birthdays (``scheduled_events``): stored, timed, claimed once.

:class:`Followups` keeps a person's events and hands due ones to the bot:

- :meth:`Followups.schedule` turns what a person said ("my interview is on Friday",
  "remind me Monday to call mum", "my birthday is March 14") into an event, its day
  resolved in code against the MESSAGE's time and the person's time zone
  (:func:`~barkeeper.companion._when.resolve_when`).
- :meth:`Followups.claim_due` claims due events for one process, atomically:
  ``SELECT … FOR UPDATE SKIP LOCKED`` so two processes never claim the same row, a
  per-person advisory lock so the per-day cap holds across processes, quiet hours and
  the cap postponing instead of sending. A claim is a lease (``sending``,
  ``claimed_by``, ``claimed_at``) carrying the exact text to send.
- :meth:`Followups.mark_sent` records the delivery and schedules the next occurrence
  of a recurring event, in one transaction.

Delivery is at-least-once with a check that makes it exactly once: a claim whose
process died is taken over when its lease expires, and the new owner first looks for
the text in the channel (``reclaimed``) before sending it again. See
``docs/companion.md`` ("Follow-ups and reminders") for every rule and constant.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from barkeeper.companion._when import (
    RECURRENCES,
    QuietHours,
    Recurrence,
    local_moment,
    names_date,
    next_occurrence,
    quiet_until,
    resolve_when,
    stored_zone,
)
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError
from barkeeper.validation import check_aware, check_bigint, check_choice, check_count

__all__ = [
    "EVENT_KINDS",
    "EVENT_STATUSES",
    "ClaimedEvent",
    "EventKind",
    "EventStatus",
    "FollowupRules",
    "Followups",
    "ScheduledEvent",
    "event_text",
]

EventKind = Literal["followup", "reminder", "birthday"]
#: What an event is.
EVENT_KINDS: tuple[EventKind, ...] = ("followup", "reminder", "birthday")
EventStatus = Literal["pending", "sending", "sent", "triggered", "cancelled", "failed"]
#: Where an event stands (``triggered``: rows from before schema version 4).
EVENT_STATUSES: tuple[EventStatus, ...] = (
    "pending",
    "sending",
    "sent",
    "triggered",
    "cancelled",
    "failed",
)

#: The preference that turns a person's follow-ups off (value ``"off"``).
OFF_PREFERENCE = "followups"
#: The preference holding a person's IANA time zone.
ZONE_PREFERENCE = "timezone"
_MAX_TITLE = 255
_MAX_QUESTION = 300


@dataclass(frozen=True, slots=True)
class FollowupRules:
    """The rules of proactive messages (``docs/companion.md``).

    Attributes:
        per_day: Most proactive messages to one person per local day
            (``BARKEEPER_PROACTIVE_PER_DAY``); over it, an event waits until the next
            day at ``hour``.
        quiet_hours: Their local window in which nothing is sent
            (``BARKEEPER_QUIET_HOURS``); an event due in it waits until it ends.
        hour: Local time at which follow-ups, birthdays and reminders without a time
            are sent (``BARKEEPER_FOLLOWUP_HOUR``).
        followup_delay_days: Days after the last day of the thing that a follow-up
            asks how it went (1: the interview is Friday, the question comes Saturday).
        lease: How long a claim holds before another process may take it over
            (``BARKEEPER_FOLLOWUP_LEASE`` seconds).
        zone: The time zone of people who have not set theirs (``DISCORD_TIMEZONE``).
        batch: Most events one claim takes.
    """

    per_day: int = 3
    quiet_hours: QuietHours | None = field(
        default_factory=lambda: QuietHours(time(22, 0), time(8, 0))
    )
    hour: time = time(10, 0)
    followup_delay_days: int = 1
    lease: timedelta = timedelta(minutes=5)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    batch: int = 20


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """One follow-up, reminder or birthday.

    Attributes:
        id: Its id (what ``/followups cancel`` takes).
        user_id: Whose it is (``users.id``).
        kind: ``followup``, ``reminder`` or ``birthday``.
        title: What it is about ("job interview", "call mum").
        trigger_at: When it is due (UTC).
        recurrence: ``none``, ``weekly``, ``monthly`` or ``yearly``.
        status: Where it stands (:data:`EVENT_STATUSES`).
        guild_id: The Discord guild it came up in (``None``: a DM).
        channel_id: The Discord channel (or DM channel) it came up in.
        context: The question to ask, the local day and time it was meant for, the
            recurrence anchor, the source message.
        attempts: How many times it was claimed.
        claimed_by: The process that claimed it last.
        claimed_at: When.
        body: The text sent (set when claimed).
        sent_message_id: The Discord message that delivered it.
        sent_at: When it was sent.
        created_at: When it was scheduled.
    """

    id: int
    user_id: int
    kind: str
    title: str
    trigger_at: datetime
    recurrence: str
    status: str
    guild_id: int | None
    channel_id: int | None
    context: dict[str, Any]
    attempts: int
    claimed_by: str | None
    claimed_at: datetime | None
    body: str | None
    sent_message_id: int | None
    sent_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduledEvent:
        """Build from a ``scheduled_events`` row."""
        context = row["context"]
        if isinstance(context, str):
            context = json.loads(context)
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            kind=row["event_type"],
            title=row["title"],
            trigger_at=row["trigger_at"],
            recurrence=row["recurrence"],
            status=row["status"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            context=dict(context or {}),
            attempts=row["attempts"],
            claimed_by=row["claimed_by"],
            claimed_at=row["claimed_at"],
            body=row["body"],
            sent_message_id=row["sent_message_id"],
            sent_at=row["triggered_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event this process claimed and must now deliver.

    Attributes:
        event: The event (``sending``, ``body`` set).
        discord_id: The person's Discord id (to open the DM, or to mention).
        reclaimed: It had been claimed before by a process that did not finish: look
            for ``event.body`` in the channel before sending it again.
    """

    event: ScheduledEvent
    discord_id: int | None
    reclaimed: bool


def event_text(kind: str, title: str, question: str | None, mention: str = "") -> str:
    """The text of a proactive message (a template: no model call at delivery).

    Args:
        kind: The event's kind.
        title: What it is about.
        question: The follow-up question the memory model wrote when it found the
            event ("How did the job interview go?"), if any.
        mention: ``"<@id> "`` in a guild channel, ``""`` in a DM.
    """
    if kind == "birthday":
        return f"{mention}Happy birthday! 🎂 I hope the day treats you well."
    if kind == "reminder":
        return f"{mention}A reminder, as you asked: {title}."
    ask = (question or "").strip() or f"How did {title} go?"
    return f"{mention}You mentioned {title}. {ask}"


def _clip(text: str, size: int) -> str:
    text = " ".join(text.replace("\x00", "").split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _key_text(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()[:100]


_INSERT = """
INSERT INTO scheduled_events (user_id, guild_id, channel_id, event_type, trigger_at, title,
    context, is_recurring, recurrence_rule, recurrence, dedupe_key)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8 <> 'none', nullif($8, 'none'), $8, $9)
ON CONFLICT (user_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'sending')
DO NOTHING
RETURNING *
"""
# A birthday learnt again replaces the pending one (a corrected date, another channel).
_UPSERT_BIRTHDAY = """
INSERT INTO scheduled_events (user_id, guild_id, channel_id, event_type, trigger_at, title,
    context, is_recurring, recurrence_rule, recurrence, dedupe_key)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8 <> 'none', nullif($8, 'none'), $8, $9)
ON CONFLICT (user_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'sending')
DO UPDATE SET trigger_at = EXCLUDED.trigger_at, context = EXCLUDED.context,
    guild_id = EXCLUDED.guild_id, channel_id = EXCLUDED.channel_id, updated_at = now()
WHERE scheduled_events.status = 'pending'
RETURNING *
"""
# A person's time zone and follow-ups switch ($1: the user); the companion reads it too.
PREFS_READ = """
SELECT
    (SELECT preference_value FROM user_preferences
     WHERE user_id = $1 AND preference_key = 'timezone') AS zone,
    (SELECT preference_value FROM user_preferences
     WHERE user_id = $1 AND preference_key = 'followups') AS off
"""
# Due events (ix_scheduled_events_due) and expired claims (ix_scheduled_events_stale),
# each row locked; rows another process holds are skipped, never waited for.
_DUE = """
SELECT e.*, u.discord_id FROM scheduled_events e JOIN users u ON u.id = e.user_id
WHERE e.status = 'pending' AND e.trigger_at <= $1
ORDER BY e.trigger_at LIMIT $2
FOR UPDATE OF e SKIP LOCKED
"""
_STALE = """
SELECT e.*, u.discord_id FROM scheduled_events e JOIN users u ON u.id = e.user_id
WHERE e.status = 'sending' AND e.claimed_at <= $1
ORDER BY e.claimed_at LIMIT $2
FOR UPDATE OF e SKIP LOCKED
"""
_LOCK_PERSON = (
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':followups:' || $1, 0))"
)
_SENT_TODAY = """
SELECT count(*) FROM scheduled_events
WHERE user_id = $1 AND status IN ('sending', 'sent') AND claimed_at >= $2
"""
_CLAIM = """
UPDATE scheduled_events SET status = 'sending', claimed_by = $2, claimed_at = $3,
    attempts = attempts + 1, body = coalesce(body, $4), updated_at = now()
WHERE id = $1 RETURNING *
"""
_POSTPONE = """
UPDATE scheduled_events SET status = 'pending', trigger_at = $2, updated_at = now()
WHERE id = $1
"""
_CANCEL_ONE = """
UPDATE scheduled_events SET status = 'cancelled', updated_at = now()
WHERE id = $1
"""
_SENT = """
UPDATE scheduled_events SET status = 'sent', triggered_at = $3, sent_message_id = $4,
    updated_at = now()
WHERE id = $1 AND status = 'sending' AND claimed_by = $2
RETURNING *
"""


class Followups:
    """The ``scheduled_events`` store and scheduler.

    Args:
        db: The database (migrated to version 4).
        rules: The timing rules (:class:`FollowupRules`).
        clock: The current time (for tests); UTC now by default.
        owner: This process's name in claims (default: host, process id and a random
            part, so two instances in one process are two owners).

    Example::

        followups = Followups(db, FollowupRules(per_day=3))
        await followups.schedule(user.id, "followup", "your job interview", "Friday",
                                 said_at=message.created_at, guild_id=g, channel_id=c,
                                 question="How did the interview go?")
        for claim in await followups.claim_due():
            message = await send(claim.event.body)          # the bot's part
            await followups.mark_sent(claim, message.id)
    """

    def __init__(
        self,
        db: Database,
        rules: FollowupRules | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        owner: str | None = None,
    ) -> None:
        self._db = db
        self.rules = rules or FollowupRules()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.owner = owner or f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"

    def __repr__(self) -> str:
        return f"<Followups owner={self.owner!r}>"

    def now(self) -> datetime:
        """The current time by this scheduler's clock."""
        return self._clock()

    # --- a person's settings -------------------------------------------------------------

    async def _prefs(self, user_id: int) -> tuple[ZoneInfo, bool]:
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(PREFS_READ, user_id)
        assert row is not None
        return self._zone(row["zone"]), row["off"] != "off"

    def _zone(self, name: str | None) -> ZoneInfo:
        return stored_zone(name) or self.rules.zone

    async def zone_of(self, user_id: int) -> ZoneInfo:
        """The person's time zone: their own when set, else the default."""
        return (await self._prefs(check_bigint(user_id, "user_id")))[0]

    async def enabled(self, user_id: int) -> bool:
        """Whether the person has follow-ups on (the default)."""
        return (await self._prefs(check_bigint(user_id, "user_id")))[1]

    async def set_timezone(self, user_id: int, name: str) -> ZoneInfo:
        """Set the person's IANA time zone.

        Raises:
            InvalidInputError: Not a known time zone.
        """
        user_id = check_bigint(user_id, "user_id")
        try:
            zone = ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInputError(
                f"unknown time zone {name!r}; use an IANA name such as Europe/Lisbon"
            ) from None
        async with self._db.acquire() as conn:
            await conn.execute(
                "INSERT INTO user_preferences (user_id, preference_key, preference_value) "
                "VALUES ($1, 'timezone', $2) ON CONFLICT (user_id, preference_key) "
                "DO UPDATE SET preference_value = EXCLUDED.preference_value, updated_at = now()",
                user_id,
                zone.key,
            )
        return zone

    async def set_enabled(self, user_id: int, on: bool) -> int:
        """Turn the person's follow-ups on or off.

        Off cancels every pending event of theirs and keeps new ones from being
        scheduled (reminders they ask for included) until they turn it on again.

        Returns:
            How many pending events were cancelled (0 when turning on).
        """
        user_id = check_bigint(user_id, "user_id")
        async with self._db.transaction() as conn:
            if on:
                await conn.execute(
                    "DELETE FROM user_preferences WHERE user_id = $1 AND preference_key = $2",
                    user_id,
                    OFF_PREFERENCE,
                )
                return 0
            await conn.execute(
                "INSERT INTO user_preferences (user_id, preference_key, preference_value) "
                "VALUES ($1, $2, 'off') ON CONFLICT (user_id, preference_key) "
                "DO UPDATE SET preference_value = 'off', updated_at = now()",
                user_id,
                OFF_PREFERENCE,
            )
            status = await conn.execute(
                "UPDATE scheduled_events SET status = 'cancelled', updated_at = now() "
                "WHERE user_id = $1 AND status = 'pending'",
                user_id,
            )
        return int(status.rsplit(" ", 1)[-1])

    # --- creating ------------------------------------------------------------------------

    async def create(
        self,
        user_id: int,
        kind: EventKind,
        title: str,
        trigger_at: datetime,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        recurrence: Recurrence = "none",
        context: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> ScheduledEvent | None:
        """Store one event as given (no resolution, no check of the person's switch).

        Returns:
            The event, or ``None`` when a live event with the same ``dedupe_key``
            exists (a birthday replaces the pending one instead).

        Raises:
            InvalidInputError: A malformed argument.
        """
        user_id = check_bigint(user_id, "user_id")
        kind = check_choice(kind, "kind", EVENT_KINDS)
        recurrence = check_choice(recurrence, "recurrence", RECURRENCES)
        trigger_at = check_aware(trigger_at, "trigger_at")
        title = _clip(title, _MAX_TITLE)
        if not title:
            raise InvalidInputError("an event needs a title")
        if guild_id is not None:
            guild_id = check_bigint(guild_id, "guild_id")
        if channel_id is not None:
            channel_id = check_bigint(channel_id, "channel_id")
        query = _UPSERT_BIRTHDAY if kind == "birthday" else _INSERT
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                query,
                user_id,
                guild_id,
                channel_id,
                kind,
                trigger_at,
                title,
                json.dumps(dict(context or {}), ensure_ascii=False),
                recurrence,
                dedupe_key[:300] if dedupe_key else None,
            )
        return None if row is None else ScheduledEvent.from_row(row)

    async def schedule(
        self,
        user_id: int,
        kind: EventKind,
        what: str,
        when: str,
        *,
        said_at: datetime,
        guild_id: int | None = None,
        channel_id: int | None = None,
        question: str | None = None,
        recurrence: Recurrence = "none",
        source_message_id: int | None = None,
    ) -> ScheduledEvent | None:
        """Schedule what a person said, its day resolved against when they said it.

        - ``followup``: ``followup_delay_days`` after the thing's last day, at ``hour``.
        - ``reminder``: on its day at the time said, else at ``hour``; a moment already
          past (said at 3 pm: "remind me today") is one hour after the message.
        - ``birthday``: yearly, on the month and day (Feb 29: Feb 28 in other years),
          at ``hour``; the next one on or after the message's day.

        Returns:
            The event; ``None`` when the phrase names no day, the day is past, the
            person turned follow-ups off, or the same event is already scheduled.
        """
        user_id = check_bigint(user_id, "user_id")
        kind = check_choice(kind, "kind", EVENT_KINDS)
        said_at = check_aware(said_at, "said_at")
        zone, on = await self._prefs(user_id)
        if not on:
            return None
        span = resolve_when(when, said_at, zone)
        if span is None or (kind == "birthday" and not names_date(when)):
            return None
        rules = self.rules
        today = said_at.astimezone(zone).date()
        at = span.at or rules.hour
        anchor = span.start
        if kind == "followup":
            day = span.end + timedelta(days=rules.followup_delay_days)
            at = rules.hour
            if span.end < today:
                return None  # it is over already: nothing to ask about later
        elif kind == "birthday":
            recurrence = "yearly"
            day = _yearly_on_or_after(today, anchor)
            at = rules.hour
        else:
            day = span.start
        trigger = local_moment(day, at, zone)
        if kind == "reminder" and trigger <= said_at:
            if day < today:
                return None
            trigger = said_at + timedelta(hours=1)
        context: dict[str, Any] = {
            "when": _clip(when, 100),
            "day": day.isoformat(),
            "at": at.strftime("%H:%M"),
            "anchor": anchor.isoformat(),
        }
        if question:
            context["question"] = _clip(question, _MAX_QUESTION)
        if source_message_id is not None:
            context["source_message_id"] = source_message_id
        if kind == "birthday":
            key: str | None = "birthday"
        elif source_message_id is not None:
            key = f"{kind}:{source_message_id}:{_key_text(what)}"
        else:
            key = f"{kind}:{day.isoformat()}:{_key_text(what)}"
        return await self.create(
            user_id,
            kind,
            what,
            trigger,
            guild_id=guild_id,
            channel_id=channel_id,
            recurrence=recurrence,
            context=context,
            dedupe_key=key,
        )

    # --- a person's events ---------------------------------------------------------------

    async def list_events(
        self, user_id: int, *, include_done: bool = False, limit: int = 50
    ) -> list[ScheduledEvent]:
        """The person's events, soonest first (pending and being sent, unless all)."""
        user_id = check_bigint(user_id, "user_id")
        limit = check_count(limit, "limit", minimum=1, maximum=1000)
        where = "" if include_done else "AND status IN ('pending', 'sending')"
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM scheduled_events WHERE user_id = $1 {where} "  # noqa: S608 - constant
                "ORDER BY trigger_at, id LIMIT $2",
                user_id,
                limit,
            )
        return [ScheduledEvent.from_row(r) for r in rows]

    async def cancel(self, user_id: int, event_id: int) -> bool:
        """Cancel one of the person's pending events; False if it is not theirs or not pending."""
        user_id = check_bigint(user_id, "user_id")
        event_id = check_bigint(event_id, "event_id")
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "UPDATE scheduled_events SET status = 'cancelled', updated_at = now() "
                "WHERE id = $1 AND user_id = $2 AND status = 'pending'",
                event_id,
                user_id,
            )
        return bool(status != "UPDATE 0")

    # --- delivery ------------------------------------------------------------------------

    async def claim_due(self, now: datetime | None = None) -> list[ClaimedEvent]:
        """Claim the events this process must send now, in one transaction.

        Each due event (and each claim whose lease expired) is locked with ``SKIP
        LOCKED``; its person is locked (an advisory lock per person, in id order) so
        that the per-day count cannot race with another process. Then, per event:

        1. the person turned follow-ups off → ``cancelled``;
        2. it is inside their quiet hours → postponed to the end of them;
        3. they had ``per_day`` proactive messages today (their local day) →
           postponed to tomorrow at ``hour`` (a taken-over claim was counted already);
        4. else claimed: ``sending``, ``claimed_by`` this process, ``claimed_at`` now,
           its text composed and stored.

        Returns:
            The claimed events, to deliver and then :meth:`mark_sent`.
        """
        now = now or self._clock()
        rules = self.rules
        claimed: list[ClaimedEvent] = []
        async with self._db.transaction() as conn:
            stale = await conn.fetch(_STALE, now - rules.lease, rules.batch)
            due = await conn.fetch(_DUE, now, rules.batch)
            rows = [*stale, *due]
            for uid in sorted({r["user_id"] for r in rows}):
                await conn.execute(_LOCK_PERSON, str(uid))
            counts: dict[int, int] = {}
            for row in rows:
                uid = row["user_id"]
                prefs = await conn.fetchrow(PREFS_READ, uid)
                assert prefs is not None
                zone = self._zone(prefs["zone"])
                if prefs["off"] == "off":
                    await conn.execute(_CANCEL_ONE, row["id"])
                    continue
                until = quiet_until(now, zone, rules.quiet_hours)
                if until is not None:
                    await conn.execute(_POSTPONE, row["id"], until)
                    continue
                reclaimed = row["status"] == "sending"
                if not reclaimed:
                    if uid not in counts:
                        local = now.astimezone(zone)
                        midnight = local_moment(local.date(), time(0), zone)
                        counts[uid] = int(await conn.fetchval(_SENT_TODAY, uid, midnight))
                    if counts[uid] >= rules.per_day:
                        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
                        await conn.execute(
                            _POSTPONE, row["id"], local_moment(tomorrow, rules.hour, zone)
                        )
                        continue
                    counts[uid] += 1
                event = ScheduledEvent.from_row(row)
                mention = f"<@{row['discord_id']}> " if event.guild_id and row["discord_id"] else ""
                body = event_text(event.kind, event.title, event.context.get("question"), mention)
                after = await conn.fetchrow(_CLAIM, row["id"], self.owner, now, body)
                assert after is not None
                claimed.append(
                    ClaimedEvent(
                        ScheduledEvent.from_row(after),
                        row["discord_id"],
                        reclaimed or row["attempts"] > 0,
                    )
                )
        return claimed

    async def mark_sent(
        self, claim: ClaimedEvent, message_id: int | None, *, now: datetime | None = None
    ) -> ScheduledEvent | None:
        """Record that ``claim`` was delivered; schedule its next occurrence if it recurs.

        Only the process holding the claim can mark it (a claim taken over since is
        left to its new owner).

        Returns:
            The next occurrence, if one was scheduled.
        """
        now = now or self._clock()
        event = claim.event
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(_SENT, event.id, self.owner, now, message_id)
            if row is None or event.recurrence == "none":
                return None
            prefs = await conn.fetchrow(PREFS_READ, event.user_id)
            zone = self._zone(prefs["zone"] if prefs is not None else None)
            ctx = event.context
            day = _iso_date(ctx.get("day")) or event.trigger_at.astimezone(zone).date()
            anchor = _iso_date(ctx.get("anchor")) or day
            at = _hhmm(ctx.get("at")) or self.rules.hour
            recurrence = cast(Recurrence, event.recurrence)
            trigger = now
            for _ in range(10_000):  # skip occurrences missed while nothing ran
                following = next_occurrence(day, recurrence, anchor=anchor)
                if following is None:
                    return None
                day = following
                trigger = local_moment(day, at, zone)
                if trigger > now:
                    break
            nxt = await conn.fetchrow(
                _INSERT,
                event.user_id,
                event.guild_id,
                event.channel_id,
                event.kind,
                trigger,
                event.title,
                json.dumps({**ctx, "day": day.isoformat()}, ensure_ascii=False),
                event.recurrence,
                _next_key(event),
            )
        return None if nxt is None else ScheduledEvent.from_row(nxt)

    async def mark_cancelled(self, claim: ClaimedEvent) -> bool:
        """Cancel ``claim`` unsent (the feature was switched off where it would be sent)."""
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "UPDATE scheduled_events SET status = 'cancelled', updated_at = now() "
                "WHERE id = $1 AND status = 'sending' AND claimed_by = $2",
                claim.event.id,
                self.owner,
            )
        return bool(status != "UPDATE 0")

    async def mark_failed(self, claim: ClaimedEvent) -> bool:
        """Record that ``claim`` cannot be delivered (the channel is gone, no access)."""
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "UPDATE scheduled_events SET status = 'failed', updated_at = now() "
                "WHERE id = $1 AND status = 'sending' AND claimed_by = $2",
                claim.event.id,
                self.owner,
            )
        return bool(status != "UPDATE 0")


def _next_key(event: ScheduledEvent) -> str | None:
    if event.kind == "birthday":
        return "birthday"
    return None


def _iso_date(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _hhmm(value: object) -> time | None:
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            return None
    return None


def _yearly_on_or_after(today: date, anchor: date) -> date:
    """The next ``anchor`` month and day on or after ``today`` (Feb 29 → Feb 28 if needed)."""
    for year in (today.year, today.year + 1):
        day = next_occurrence(date(year - 1, 1, 1), "yearly", anchor=anchor)
        assert day is not None
        if day >= today:
            return day
    raise AssertionError("unreachable")  # pragma: no cover
