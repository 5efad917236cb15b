"""Follow-ups, reminders and birthdays: dates resolved in code, quiet hours, the per-day
cap, recurrence across month ends and leap years, time zones, claims that hold across
processes; every rule with an injected clock, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from barkeeper.bot import FollowupSink, build_followups
from barkeeper.companion import (
    FollowupRules,
    Followups,
    QuietHours,
    ReminderRequest,
    Span,
    UserStore,
    event_text,
    local_moment,
    next_occurrence,
    parse_quiet_hours,
    quiet_until,
    reminder_request,
    reminder_trouble,
    resolve_when,
)
from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.errors import ConfigError, InvalidInputError
from barkeeper.learning import (
    FactExtractor,
    MemoryManager,
    UserMessage,
    birthday_event,
    parse_reminder,
)
from barkeeper.learning._extraction import ExtractionReply
from barkeeper.llm import OpenAIChatModel
from barkeeper.memory import MemoryStore
from barkeeper.privacy import Privacy
from barkeeper.testing.llm import LLMServer

UTC_ZONE = ZoneInfo("UTC")
LISBON = ZoneInfo("Europe/Lisbon")
TOKYO = ZoneInfo("Asia/Tokyo")
TUESDAY = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # Tuesday 1 December 2026, noon
GUILD, CHANNEL = 5000, 6000


def _day(phrase: str, at: datetime = TUESDAY, zone: ZoneInfo = UTC_ZONE) -> date | None:
    span = resolve_when(phrase, at, zone)
    return None if span is None else span.start


# --- resolving days ---------------------------------------------------------------------


def test_weekdays_resolve_against_the_messages_day() -> None:
    assert _day("my interview is on Friday") == date(2026, 12, 4)
    assert _day("this friday") == date(2026, 12, 4)
    assert _day("fri") == date(2026, 12, 4)
    assert _day("next Friday") == date(2026, 12, 11)  # the Friday of next week
    assert _day("on Tuesday") == date(2026, 12, 8)  # said on a Tuesday: the next one
    assert _day("Monday") == date(2026, 12, 7)
    friday = datetime(2026, 12, 4, 9, tzinfo=UTC)
    assert _day("friday", friday) == date(2026, 12, 11)
    assert _day("next friday", friday) == date(2026, 12, 11)
    assert _day("wedding on saturday") == date(2026, 12, 5)  # "wed" inside a word is no day


def test_relative_phrases_dates_and_times() -> None:
    assert resolve_when("tomorrow at 5pm", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 2), date(2026, 12, 2), time(17, 0)
    )
    assert resolve_when("next week", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 7), date(2026, 12, 13)
    )
    assert resolve_when("this weekend", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 5), date(2026, 12, 6)
    )
    assert resolve_when("next month", TUESDAY, UTC_ZONE) == Span(
        date(2027, 1, 1), date(2027, 1, 31)
    )
    assert _day("today") == date(2026, 12, 1)
    assert _day("day after tomorrow") == date(2026, 12, 3)
    assert _day("in 3 days") == date(2026, 12, 4)
    assert _day("in a couple of weeks") == date(2026, 12, 15)
    assert _day("March 14") == date(2027, 3, 14)  # passed this year: next year
    assert _day("14th of December") == date(2026, 12, 14)
    assert _day("the 1st") == date(2027, 1, 1)  # on or after tomorrow
    assert _day("2026-12-24") == date(2026, 12, 24)
    assert _day("Feb 29") == date(2028, 2, 29)
    assert resolve_when("at 9am", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 2), date(2026, 12, 2), time(9, 0)
    )  # 9 am has passed today: tomorrow
    assert _day("sometime soon") is None
    assert _day("February 30") is None
    with pytest.raises(InvalidInputError):
        resolve_when("friday", datetime(2026, 12, 1), UTC_ZONE)


def test_the_persons_time_zone_decides_which_day_it_is() -> None:
    late = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)  # Thursday night in London...
    assert _day("tomorrow", late, UTC_ZONE) == date(2026, 12, 4)
    assert _day("tomorrow", late, TOKYO) == date(2026, 12, 5)  # ...Friday morning in Tokyo
    assert _day("friday", late, TOKYO) == date(2026, 12, 11)
    assert _day("friday", late, UTC_ZONE) == date(2026, 12, 4)


# --- recurrence, DST, quiet hours ------------------------------------------------------


def test_monthly_recurrence_clamps_to_month_ends_and_returns_to_the_anchor() -> None:
    anchor = date(2027, 1, 31)
    days = [anchor]
    for _ in range(4):
        nxt = next_occurrence(days[-1], "monthly", anchor=anchor)
        assert nxt is not None
        days.append(nxt)
    assert days == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
    ]
    leap = date(2028, 1, 31)
    assert next_occurrence(leap, "monthly", anchor=leap) == date(2028, 2, 29)
    assert next_occurrence(date(2027, 12, 15), "monthly") == date(2028, 1, 15)
    assert next_occurrence(date(2027, 12, 15), "weekly") == date(2027, 12, 22)
    assert next_occurrence(date(2027, 12, 15), "none") is None


def test_yearly_feb_29_is_feb_28_in_other_years_and_feb_29_again_in_leap_years() -> None:
    anchor = date(2028, 2, 29)
    days = [anchor]
    for _ in range(4):
        nxt = next_occurrence(days[-1], "yearly", anchor=anchor)
        assert nxt is not None
        days.append(nxt)
    assert days == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]


def test_local_times_hold_across_daylight_saving_changes() -> None:
    # 10:00 in Lisbon is 10:00 UTC in winter and 09:00 UTC in summer.
    assert local_moment(date(2027, 3, 27), time(10), LISBON) == datetime(
        2027, 3, 27, 10, tzinfo=UTC
    )
    assert local_moment(date(2027, 3, 28), time(10), LISBON) == datetime(2027, 3, 28, 9, tzinfo=UTC)
    # 01:30 does not exist on 28 March 2027 in Lisbon: moved forward by the gap.
    assert local_moment(date(2027, 3, 28), time(1, 30), LISBON) == datetime(
        2027, 3, 28, 1, 30, tzinfo=UTC
    )


def test_quiet_hours_across_midnight_and_within_a_day() -> None:
    night = parse_quiet_hours("22:00-08:00")
    assert night == QuietHours(time(22), time(8))
    assert parse_quiet_hours("off") is None and parse_quiet_hours("") is None
    with pytest.raises(InvalidInputError):
        parse_quiet_hours("10pm-8am")
    at = datetime(2026, 12, 1, 23, 15, tzinfo=UTC)
    assert quiet_until(at, UTC_ZONE, night) == datetime(2026, 12, 2, 8, tzinfo=UTC)
    early = datetime(2026, 12, 2, 7, 59, tzinfo=UTC)
    assert quiet_until(early, UTC_ZONE, night) == datetime(2026, 12, 2, 8, tzinfo=UTC)
    assert quiet_until(datetime(2026, 12, 2, 8, tzinfo=UTC), UTC_ZONE, night) is None
    # In Tokyo (UTC+9) 14:00 UTC is 23:00: quiet until 08:00 Tokyo = 23:00 UTC.
    assert quiet_until(datetime(2026, 12, 1, 14, tzinfo=UTC), TOKYO, night) == datetime(
        2026, 12, 1, 23, tzinfo=UTC
    )
    lunch = parse_quiet_hours("12:00-13:30")
    assert quiet_until(datetime(2026, 12, 1, 12, 5, tzinfo=UTC), UTC_ZONE, lunch) == datetime(
        2026, 12, 1, 13, 30, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 12, 1, 23, tzinfo=UTC), UTC_ZONE, lunch) is None


def test_reminder_requests_and_birthday_memories_are_found_by_rules() -> None:
    r = parse_reminder("remind me Monday to call mum")
    assert r is not None and (r.kind, r.what, r.when) == ("reminder", "call mum", "Monday")
    r = parse_reminder("could you remind me to water the plants tomorrow at 6pm?")
    assert r is not None and (r.what, r.when) == ("water the plants", "tomorrow at 6pm")
    r = parse_reminder("remind me every Friday to pay rent")
    assert r is not None and (r.what, r.recurrence) == ("pay rent", "weekly")
    assert parse_reminder("please remind me") is None
    assert parse_reminder("I reminded Ana about it") is None
    b = birthday_event("Birthday is on March 14")
    assert b is not None and (b.kind, b.recurrence) == ("birthday", "yearly")
    assert birthday_event("Loves the cello") is None
    assert event_text("reminder", "call mum", None) == "A reminder, as you asked: call mum."
    assert "How did the exam go?" in event_text("followup", "your exam", "How did the exam go?")


def test_more_ways_of_saying_when() -> None:
    # Each of these is common in reminder requests; TUESDAY is 1 Dec 2026, 12:00 UTC.
    assert resolve_when("in 2 weeks", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 15), date(2026, 12, 15)
    )
    assert _day("in a fortnight") == date(2026, 12, 15)
    assert resolve_when("next Tuesday at 5pm", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 8), date(2026, 12, 8), time(17, 0)
    )
    assert _day("on the 14th") == date(2026, 12, 14)
    assert resolve_when("on 2026-12-24 at 17:30", TUESDAY, UTC_ZONE) == Span(
        date(2026, 12, 24), date(2026, 12, 24), time(17, 30)
    )
    # A part of the day without a time stands for one.
    for phrase, day, at in (
        ("tomorrow evening", date(2026, 12, 2), time(18, 0)),
        ("tomorrow morning", date(2026, 12, 2), time(9, 0)),
        ("friday afternoon", date(2026, 12, 4), time(15, 0)),
        ("tomorrow night", date(2026, 12, 2), time(20, 0)),
        ("tonight", date(2026, 12, 1), time(20, 0)),
        ("this evening", date(2026, 12, 1), time(18, 0)),
        ("in the morning", date(2026, 12, 2), time(9, 0)),  # 9 am has passed: tomorrow's
        ("in the evening", date(2026, 12, 1), time(18, 0)),
        ("tomorrow evening at 7pm", date(2026, 12, 2), time(19, 0)),  # the time said wins
    ):
        assert resolve_when(phrase, TUESDAY, UTC_ZONE) == Span(day, day, at), phrase
    assert resolve_when("last night", TUESDAY, UTC_ZONE) is None  # past: not a time to come
    # "in N hours/minutes": that long after the message, to the minute, never earlier.
    late = datetime(2026, 12, 1, 23, 10, 30, tzinfo=UTC)
    for phrase, day, at in (
        ("in 2 hours", date(2026, 12, 2), time(1, 11)),  # past midnight: the next day
        ("in 30 minutes", date(2026, 12, 1), time(23, 41)),
        ("in an hour", date(2026, 12, 2), time(0, 11)),
        ("in half an hour", date(2026, 12, 1), time(23, 41)),
        ("in a couple of hours", date(2026, 12, 2), time(1, 11)),
    ):
        assert resolve_when(phrase, late, UTC_ZONE) == Span(day, day, at), phrase
    assert resolve_when("in 2 hours", late, TOKYO) == Span(  # 08:10 in Tokyo
        date(2026, 12, 2), date(2026, 12, 2), time(10, 11)
    )


def test_a_reminder_that_cannot_be_set_is_named_with_its_reason() -> None:
    r = reminder_request("remind me in 2 hours to check the oven")
    assert r == ReminderRequest("check the oven", "in 2 hours")
    r = reminder_request("remind me to call mum tomorrow evening")
    assert r == ReminderRequest("call mum", "tomorrow evening")
    r = reminder_request("can you remind me to water the plants in the morning?")
    assert r == ReminderRequest("water the plants", "in the morning")
    assert reminder_trouble("remind me tomorrow at 5pm to call mum", TUESDAY, None) is None
    assert reminder_trouble("remind me in 2 hours to check the oven", TUESDAY, LISBON) is None
    assert reminder_trouble("I love my mum", TUESDAY, None) is None  # nothing asked
    # No day can be read: from the thing, from nothing, from a vague word.
    assert reminder_trouble("remind me to call mum", TUESDAY, None) == "undated"
    assert reminder_trouble("remind me tomorrow", TUESDAY, None) == "undated"
    assert reminder_trouble("remind me later to call mum", TUESDAY, None) == "undated"
    assert reminder_trouble("Remind me about the dentist", TUESDAY, None) == "undated"
    # A day gone: exact in the person's zone; without it, only when two days gone.
    assert reminder_trouble("remind me on 2026-11-30 to pay", TUESDAY, UTC_ZONE) == "past"
    assert reminder_trouble("remind me on 2026-11-30 to pay", TUESDAY, None) is None
    assert reminder_trouble("remind me on 2026-11-29 to pay", TUESDAY, None) == "past"
    # Off: for the person, or here (the server's switch, or the whole bot's).
    asked = "remind me tomorrow to call mum"
    assert reminder_trouble(asked, TUESDAY, None, on_for_them=False) == "off_for_them"
    assert reminder_trouble(asked, TUESDAY, None, on_here=False) == "off_here"
    # The scheduler agrees: what is named undated or past is what it does not schedule.
    for text in ("remind me to call mum", "remind me later to call mum"):
        found = parse_reminder(text)
        assert found is not None and resolve_when(found.when, TUESDAY, UTC_ZONE) is None


# --- the store, with an injected clock -------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _person(db: Database, discord_id: int = 1001) -> int:
    return (await UserStore(db).get_or_create_discord_user(discord_id, username="alice")).id


def _followups(db: Database, clock: Clock, **rules: object) -> Followups:
    return Followups(db, FollowupRules(**rules), clock=clock)  # type: ignore[arg-type]


async def test_a_followup_fires_the_day_after_at_the_hour_and_is_claimed_once(
    db: Database,
) -> None:
    uid = await _person(db)
    clock = Clock(TUESDAY)
    a, b = _followups(db, clock), _followups(db, clock)
    event = await a.schedule(
        uid,
        "followup",
        "your job interview",
        "Friday",
        said_at=TUESDAY,
        guild_id=GUILD,
        channel_id=CHANNEL,
        question="How did the job interview go?",
        source_message_id=77,
    )
    assert event is not None
    assert event.trigger_at == datetime(2026, 12, 5, 10, tzinfo=UTC)  # Saturday 10:00
    # The same message processed again schedules nothing more.
    again = await a.schedule(
        uid, "followup", "your job interview", "Friday", said_at=TUESDAY, source_message_id=77
    )
    assert again is None
    clock.now = datetime(2026, 12, 5, 9, 59, tzinfo=UTC)
    assert await a.claim_due() == [] and await b.claim_due() == []
    clock.now = datetime(2026, 12, 5, 10, 1, tzinfo=UTC)
    claims = [*await a.claim_due(), *await b.claim_due()]
    assert len(claims) == 1
    claim = claims[0]
    assert claim.discord_id == 1001 and not claim.reclaimed
    assert claim.event.status == "sending" and claim.event.claimed_by == a.owner
    assert claim.event.body == (
        "<@1001> You mentioned your job interview. How did the job interview go?"
    )
    assert await b.mark_sent(claim, 42) is None  # not b's claim: nothing recorded
    assert (await a.list_events(uid))[0].status == "sending"
    await a.mark_sent(claim, 42)
    done = await a.list_events(uid, include_done=True)
    assert [(e.status, e.sent_message_id) for e in done] == [("sent", 42)]
    assert await a.list_events(uid) == []


async def test_an_expired_claim_is_taken_over_and_flagged_for_the_check(db: Database) -> None:
    uid = await _person(db)
    clock = Clock(TUESDAY)
    a, b = _followups(db, clock), _followups(db, clock)
    await a.schedule(uid, "reminder", "call mum", "today at 3pm", said_at=TUESDAY)
    clock.now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    (claim,) = await a.claim_due()  # ...and process a dies before sending
    clock.now += timedelta(minutes=4)
    assert await b.claim_due() == []  # the lease (5 minutes) still holds
    clock.now += timedelta(minutes=2)
    (taken,) = await b.claim_due()
    assert taken.event.id == claim.event.id and taken.reclaimed
    assert taken.event.claimed_by == b.owner and taken.event.attempts == 2
    assert taken.event.body == claim.event.body  # the same text: findable in the channel
    assert await a.mark_sent(claim, 1) is None  # a is no longer the owner
    await b.mark_sent(taken, 2)
    (row,) = await b.list_events(uid, include_done=True)
    assert (row.status, row.sent_message_id) == ("sent", 2)


async def test_quiet_hours_postpone_to_their_end_in_the_persons_zone(db: Database) -> None:
    uid = await _person(db)
    clock = Clock(TUESDAY)
    f = _followups(db, clock, hour=time(10))
    await f.set_timezone(uid, "Asia/Tokyo")
    with pytest.raises(InvalidInputError):
        await f.set_timezone(uid, "Mars/Olympus")
    # "tonight at 11pm" in Tokyo: due at 14:00 UTC, inside 22:00-08:00 Tokyo.
    event = await f.schedule(uid, "reminder", "take the pills", "tonight at 11pm", said_at=TUESDAY)
    assert event is not None and event.trigger_at == datetime(2026, 12, 1, 14, tzinfo=UTC)
    clock.now = datetime(2026, 12, 1, 14, 1, tzinfo=UTC)
    assert await f.claim_due() == []
    (waiting,) = await f.list_events(uid)
    assert waiting.trigger_at == datetime(2026, 12, 1, 23, tzinfo=UTC)  # 08:00 in Tokyo
    clock.now = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert len(await f.claim_due()) == 1


async def test_the_per_day_cap_holds_across_processes(db: Database) -> None:
    uid = await _person(db)
    other = await _person(db, 2002)
    clock = Clock(TUESDAY)
    procs = [_followups(db, clock, per_day=2) for _ in range(3)]
    for n in range(6):
        await procs[0].schedule(uid, "reminder", f"task {n}", "tomorrow at 11am", said_at=TUESDAY)
    await procs[0].schedule(other, "reminder", "bob's task", "tomorrow at 11am", said_at=TUESDAY)
    clock.now = datetime(2026, 12, 2, 11, 5, tzinfo=UTC)
    rounds = await asyncio.gather(*(p.claim_due() for p in procs for _ in range(3)))
    claims = [c for r in rounds for c in r]
    mine = [c for c in claims if c.event.user_id == uid]
    assert len(mine) == 2  # never more than per_day, whichever process claimed
    assert len({c.event.id for c in claims}) == len(claims)  # no event twice
    assert [c for c in claims if c.event.user_id == other] != []  # others are not held up
    by_owner = {p.owner: p for p in procs}
    for c in claims:
        await by_owner[str(c.event.claimed_by)].mark_sent(c, 1)
    later = [e for e in await procs[0].list_events(uid) if e.status == "pending"]
    assert len(later) == 4
    assert {e.trigger_at for e in later} == {datetime(2026, 12, 3, 10, tzinfo=UTC)}
    # The next day: two more, and the day after the last two.
    for day in (3, 4):
        clock.now = datetime(2026, 12, day, 10, 0, tzinfo=UTC)
        claims = [c for p in procs for c in await p.claim_due()]
        assert len(claims) == 2 and not any(c.reclaimed for c in claims)
        for c in claims:
            await by_owner[str(c.event.claimed_by)].mark_sent(c, 1)
    assert await procs[0].list_events(uid) == []


async def test_many_processes_claiming_at_once_claim_each_event_once(db: Database) -> None:
    clock = Clock(TUESDAY)
    procs = [_followups(db, clock, per_day=100) for _ in range(4)]
    for person in range(10):
        uid = await _person(db, 3000 + person)
        for n in range(5):
            await procs[0].schedule(uid, "reminder", f"thing {n}", "at 1pm", said_at=TUESDAY)
    clock.now = datetime(2026, 12, 1, 13, 1, tzinfo=UTC)
    rounds = await asyncio.gather(*(p.claim_due() for p in procs for _ in range(5)))
    ids = [c.event.id for r in rounds for c in r]
    assert len(ids) == 50 and len(set(ids)) == 50


async def test_monthly_reminder_on_the_31st_and_a_leap_day_birthday_recur(db: Database) -> None:
    uid = await _person(db)
    said = datetime(2027, 1, 20, 12, tzinfo=UTC)
    clock = Clock(said)
    f = _followups(db, clock, quiet_hours=None, per_day=10)
    await f.schedule(uid, "reminder", "pay rent", "January 31", said_at=said, recurrence="monthly")
    seen = []
    for _ in range(4):
        (event,) = [e for e in await f.list_events(uid) if e.kind == "reminder"]
        seen.append(event.trigger_at)
        clock.now = event.trigger_at
        (claim,) = await f.claim_due()
        nxt = await f.mark_sent(claim, 1)
        assert nxt is not None and nxt.recurrence == "monthly"
    assert [s.date() for s in seen] == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    born = await f.schedule(
        uid, "birthday", "your birthday", "Was born on 29 February 1996", said_at=said
    )
    assert born is not None and born.trigger_at == datetime(2027, 2, 28, 10, tzinfo=UTC)
    # A birthday learnt again replaces the pending one; a weekday is no birthday.
    assert await f.schedule(uid, "birthday", "b", "Birthday is on a Friday", said_at=said) is None
    years = []
    for _ in range(3):
        (event,) = [e for e in await f.list_events(uid) if e.kind == "birthday"]
        years.append(event.trigger_at.date())
        clock.now = event.trigger_at
        claims = await f.claim_due()
        for c in claims:
            await f.mark_sent(c, 1)
    assert years == [date(2027, 2, 28), date(2028, 2, 29), date(2029, 2, 28)]


async def test_weekly_recurrence_keeps_the_local_hour_across_dst(db: Database) -> None:
    uid = await _person(db)
    said = datetime(2027, 3, 20, 12, tzinfo=UTC)  # Saturday, winter time in Lisbon
    clock = Clock(said)
    f = _followups(db, clock, quiet_hours=None)
    await f.set_timezone(uid, "Europe/Lisbon")
    await f.schedule(
        uid, "reminder", "call dad", "monday at 7pm", said_at=said, recurrence="weekly"
    )
    (event,) = await f.list_events(uid)
    assert event.trigger_at == datetime(2027, 3, 22, 19, tzinfo=UTC)
    clock.now = event.trigger_at
    (claim,) = await f.claim_due()
    nxt = await f.mark_sent(claim, 1)
    assert nxt is not None and nxt.trigger_at == datetime(2027, 3, 29, 18, tzinfo=UTC)  # 19:00 WEST


async def test_off_cancels_and_stops_new_ones_on_brings_them_back(db: Database) -> None:
    uid = await _person(db)
    bob = await _person(db, 2002)
    clock = Clock(TUESDAY)
    f = _followups(db, clock)
    ev = await f.schedule(uid, "followup", "your exam", "next week", said_at=TUESDAY)
    assert ev is not None and ev.trigger_at == datetime(2026, 12, 14, 10, tzinfo=UTC)
    keep = await f.schedule(bob, "reminder", "bob's thing", "friday", said_at=TUESDAY)
    assert keep is not None
    assert not await f.cancel(uid, keep.id)  # not hers
    assert await f.set_enabled(uid, False) == 1
    assert not await f.enabled(uid)
    assert await f.schedule(uid, "reminder", "x", "friday", said_at=TUESDAY) is None
    assert [e.id for e in await f.list_events(bob)] == [keep.id]
    await f.set_enabled(uid, True)
    again = await f.schedule(uid, "reminder", "call mum", "friday", said_at=TUESDAY)
    assert again is not None
    assert await f.cancel(uid, again.id) and not await f.cancel(uid, again.id)
    # Something already over is not followed up; an unknown day schedules nothing.
    past = datetime(2026, 12, 10, tzinfo=UTC)
    assert await f.schedule(uid, "followup", "y", "2026-12-01", said_at=past) is None
    assert await f.schedule(uid, "followup", "z", "one day", said_at=TUESDAY) is None


async def test_events_are_in_the_privacy_export_and_gone_after_forget(db: Database) -> None:
    uid = await _person(db)
    f = _followups(db, Clock(TUESDAY))
    await f.schedule(uid, "followup", "your quokka-zanzibar interview", "friday", said_at=TUESDAY)
    await f.set_timezone(uid, "Asia/Tokyo")
    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=1001)
    exported = await privacy.export(who)
    titles = [e["title"] for e in exported["tables"]["scheduled_events"]]
    assert titles == ["your quokka-zanzibar interview"]
    done = await privacy.forget(who)
    assert done.rows["scheduled_events"] == 1
    async with db.acquire() as conn:
        left = await conn.fetchval("SELECT count(*) FROM scheduled_events")
    assert left == 0


# --- finding them: the memory manager hands events to the scheduler --------------------


async def test_reminders_outside_sampling_and_birthdays_from_memories(db: Database) -> None:
    uid = await _person(db)
    followups = _followups(db, Clock(TUESDAY))
    async with LLMServer() as llm:
        model = OpenAIChatModel(base_url=llm.base_url, api_key="k", model="m", timeout=5)
        manager = MemoryManager(
            MemoryStore(db, HashingEmbedder()),
            model,
            extraction_rate=0.0,  # no message is sampled: the rules still work
            events=FollowupSink(followups),
        )
        try:
            asked = UserMessage(
                uid,
                "remind me Monday to call mum",
                message_id=1,
                guild_id=GUILD,
                created_at=TUESDAY,
                channel_id=CHANNEL,
            )
            outcome = await manager.process(asked)
            assert outcome.status == "not_sampled" and len(outcome.events) == 1
            await manager.process(asked)  # processed again: still one reminder
            told = UserMessage(
                uid, "remember that my birthday is March 14", message_id=2, created_at=TUESDAY
            )
            assert (await manager.process(told)).status == "remembered"
        finally:
            await model.aclose()
        assert llm.chat_requests == []
    events = await followups.list_events(uid)
    assert [(e.kind, e.title, e.trigger_at, e.channel_id) for e in events] == [
        ("reminder", "call mum", datetime(2026, 12, 7, 10, tzinfo=UTC), CHANNEL),
        ("birthday", "your birthday", datetime(2027, 3, 14, 10, tzinfo=UTC), None),
    ]


async def test_a_malformed_event_is_dropped_and_the_facts_kept() -> None:
    reply = ExtractionReply.model_validate(
        {
            "facts": [{"type": "work", "content": "Has an interview on Friday"}],
            "events": [
                {"kind": "party", "what": None, "when": "friday"},
                {"kind": "Follow-up", "what": "your interview", "when": "Friday"},
            ],
        }
    )
    model = OpenAIChatModel(base_url="http://127.0.0.1:9", api_key="k", model="m")
    extractor = FactExtractor(model)
    await model.aclose()
    assert [f.content for f in extractor.clean(reply.facts)] == ["Has an interview on Friday"]
    events = extractor.clean_events(reply.events)
    assert [(e.kind, e.what, e.when) for e in events] == [("followup", "your interview", "Friday")]
    assert ExtractionReply.model_validate({"facts": []}).events == []


async def test_the_followups_feature_and_the_settings(db: Database) -> None:
    on = load_settings(quiet_hours="23:30-07:00", proactive_per_day=1, followup_hour=9)
    followups = build_followups(db, on)
    assert followups is not None
    assert followups.rules.quiet_hours == QuietHours(time(23, 30), time(7))
    assert (followups.rules.per_day, followups.rules.hour) == (1, time(9))
    assert build_followups(db, load_settings(features="mood,opinions")) is None
    assert build_followups(db, load_settings(companion=False)) is None
    assert build_followups(db, load_settings(quiet_hours="off")).rules.quiet_hours is None  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        load_settings(quiet_hours="10pm-8am")
    with pytest.raises(ConfigError):
        load_settings(features="mood,reminders")


async def test_a_day_at_the_calendars_end_schedules_nothing_and_raises_nothing(
    db: Database,
) -> None:
    """A message's day is the person's words: "in 99999999999 hours" or an exam on
    9999-12-31 (its follow-up two days later is past the calendar) is no day to
    schedule, not an OverflowError in the learning worker (a dead letter), and no day
    /followups remind could call "already scheduled"."""
    uid = await _person(db)
    f = _followups(db, Clock(TUESDAY), hour=time(10))
    for when in ("in 99999999999 hours", "on 9999-01-01", "in 2913000 days"):
        assert resolve_when(when, TUESDAY, UTC_ZONE) is None, when
    assert resolve_when("on 9998-12-31", TUESDAY, UTC_ZONE) is not None
    for kind, when in (
        ("reminder", "in 99999999999 days"),
        ("followup", "on 9999-12-31"),
        ("followup", "in 2913000 days"),
    ):
        assert await f.schedule(uid, kind, "the exam", when, said_at=TUESDAY) is None, when
    assert await f.list_events(uid) == []
