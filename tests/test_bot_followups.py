"""Follow-ups end to end: a person mentions an interview on Friday in a channel, the
memory extraction (scripted model) finds it, the clock passes Friday, and with TWO bot
instances (two gateway sessions, two database pools' worth of claims) running exactly
one follow-up arrives where it came up; ``/followups off`` stops the rest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import discord

from barkeeper.agent import build_agent
from barkeeper.bot import Barkeeper, FollowupsCog, build_followups
from barkeeper.companion import FollowupRules, Followups
from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.llm import OpenAIChatModel
from barkeeper.memory import MemoryStore
from barkeeper.testing.discord import running_client
from barkeeper.testing.llm import Reply
from tests._bot import FAST_RETRY, WAIT, Rig, bot_rig
from tests.test_extraction import fact


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def second_bot(rig: Rig, clock: Clock, server_url: str) -> AsyncIterator[Barkeeper]:
    """Another Barkeeper on the same schema (its own pool) and emulator: a second process."""
    async with (
        Database.connect(
            load_settings(), url=server_url, schema=rig.db.schema, min_size=1, max_size=4
        ) as db,
        _bot_on(rig, db, clock) as bot,
    ):
        yield bot


@contextlib.asynccontextmanager
async def _bot_on(rig: Rig, db: Database, clock: Clock) -> AsyncIterator[Barkeeper]:
    model = OpenAIChatModel(
        base_url=rig.llm.base_url,
        api_key="test",
        model="test-model",
        timeout=5,
        retry_policy=FAST_RETRY,
    )
    memories = MemoryStore(db, HashingEmbedder())
    agent = build_agent(db, rig.settings, model=model, memories=memories)
    bot = Barkeeper(
        db=db,
        settings=rig.settings,
        agent=agent,
        memories=memories,
        followups=build_followups(db, rig.settings, clock=clock),
        guild_ready_timeout=0.1,
    )
    try:
        async with running_client(rig.emu, bot, timeout=WAIT):
            yield bot
    finally:
        await agent.aclose()
        await model.aclose()


async def _rounds(cogs: list[FollowupsCog], more: int = 2) -> None:
    """Wait until every delivery loop has completed ``more`` further rounds."""
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(c.wait_rounds(more) for c in cogs))


async def test_an_interview_on_friday_gets_exactly_one_followup_from_two_bots(
    db: Database, server_url: str
) -> None:
    clock = Clock()
    async with bot_rig(db, learn=True, clock=clock, followup_poll=0.02) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script(
            "Good luck on Friday!",
            Reply.json(
                {
                    "facts": [fact("Has a job interview on Friday", "work")],
                    "events": [
                        {
                            "kind": "followup",
                            "what": "your job interview",
                            "when": "Friday",
                            "question": "How did the job interview go?",
                        },
                        {
                            "kind": "followup",
                            "what": "your driving test",
                            "when": "next month",
                            "question": "Did you pass the driving test?",
                        },
                    ],
                }
            ),
        )
        said = alice.send(
            channel,
            "my job interview is on Friday and my driving test next month, wish me luck",
            mention_bot=True,
        )
        reply = await rig.emu.wait_for_reply(said, timeout=WAIT)
        await rig.bot.wait_idle()
        assert rig.bot.worker is not None
        await rig.bot.worker.drain()
        followups = rig.bot.followups
        assert isinstance(followups, Followups)
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None
        events = await followups.list_events(user.id)
        assert [e.title for e in events] == ["your job interview", "your driving test"]
        interview = events[0]
        # Friday resolved against the message's own time, the day after at 10:00.
        sent_at = discord.utils.snowflake_time(said.id)
        friday = sent_at.date() + timedelta(days=(4 - sent_at.weekday()) % 7 or 7)
        assert interview.trigger_at == datetime.combine(
            friday + timedelta(days=1), datetime.min.time(), UTC
        ) + timedelta(hours=10)
        assert interview.channel_id == channel

        async with second_bot(rig, clock, server_url) as other:
            cogs = [rig.bot.followups_cog, other.followups_cog]
            assert all(isinstance(c, FollowupsCog) for c in cogs)
            running = [c for c in cogs if c is not None]
            clock.now = interview.trigger_at - timedelta(minutes=1)
            await _rounds(running)
            assert rig.emu.bot_messages(channel, after=reply.id) == []  # not before its time
            clock.now = interview.trigger_at + timedelta(minutes=1)
            (arrived,) = await rig.emu.wait_for_bot_messages(channel, 1, after=reply, timeout=WAIT)
            await _rounds(running, 3)  # both loops keep claiming: nothing more comes
            assert rig.emu.bot_messages(channel, after=reply.id) == [arrived]
            assert arrived.content == (
                f"<@{alice.id}> You mentioned your job interview. How did the job interview go?"
            )
            assert sum(c.sent for c in running) == 1
        # The second process is gone; the first answers /followups.
        listed = alice.invoke("followups list", channel)
        shown = (await listed.wait_for_response(timeout=WAIT)).content
        assert "your driving test" in shown and "your job interview" not in shown
        bob = rig.emu.person("bob").invoke("followups list", channel)
        assert "Nothing is scheduled" in (await bob.wait_for_response(timeout=WAIT)).content
        off = alice.invoke("followups off", channel)
        said_off = (await off.wait_for_response(timeout=WAIT)).content
        assert "cancelled 1" in said_off and off.ephemeral
        # The driving test's day passes: nothing more is sent.
        clock.now = events[1].trigger_at + timedelta(days=1)
        cog = rig.bot.followups_cog
        assert cog is not None
        await _rounds([cog], 3)
        assert rig.emu.bot_messages(channel, after=arrived.id) == []
        assert [e.status for e in await followups.list_events(user.id, include_done=True)] == [
            "sent",
            "cancelled",
        ]
        on = alice.invoke("followups on", channel)
        assert "on" in (await on.wait_for_response(timeout=WAIT)).content


async def test_a_reminder_asked_for_in_a_dm_arrives_in_the_dm(db: Database) -> None:
    clock = Clock()
    async with bot_rig(db, learn=True, clock=clock, followup_poll=0.02) as rig:
        alice = rig.emu.person("alice")
        dm = alice.dm_channel.id
        rig.llm.script("I will.", Reply.json({"facts": [], "events": []}))
        said = alice.send(dm, "remind me tomorrow at 6pm to call mum")
        reply = await rig.emu.wait_for_reply(said, timeout=WAIT)
        await rig.bot.wait_idle()
        assert rig.bot.worker is not None
        await rig.bot.worker.drain()
        followups = rig.bot.followups
        assert followups is not None
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None
        (event,) = await followups.list_events(user.id)
        assert (event.kind, event.title, event.guild_id) == ("reminder", "call mum", None)
        assert event.trigger_at.astimezone(UTC).hour == 18
        clock.now = event.trigger_at
        (arrived,) = await rig.emu.wait_for_bot_messages(dm, 1, after=reply, timeout=WAIT)
        assert arrived.content == "A reminder, as you asked: call mum."
        # A birthday told with /remember is wished yearly, in the DM it was told in.
        told = alice.invoke("remember", dm, options={"text": "My birthday is on 29 February"})
        await told.wait_for_response(timeout=WAIT)
        listed = alice.invoke("followups list", dm)
        shown = (await listed.wait_for_response(timeout=WAIT)).content
        assert "birthday, yearly: your birthday" in shown and "here in DMs" in shown


def _system_texts(rig: Rig) -> list[str]:
    """The system messages of every chat request the model server received."""
    return [
        str(m.get("content"))
        for r in rig.llm.requests
        if r.body and "messages" in r.body
        for m in r.messages
        if m.get("role") == "system"
    ]


async def test_a_reminder_with_no_day_is_not_promised_and_the_person_is_shown_how(
    db: Database,
) -> None:
    """ "remind me to call mum": no day can be read, so nothing is scheduled; the reply's
    context says so (the model is told to ask when, not to promise), and
    ``/followups list`` shows how to ask in words the scheduler reads."""
    clock = Clock()
    async with bot_rig(db, learn=True, clock=clock, followup_poll=0.02) as rig:
        alice = rig.emu.person("alice")
        dm = alice.dm_channel.id
        rig.llm.script("When should I remind you?", Reply.json({"facts": [], "events": []}))
        said = alice.send(dm, "remind me to call mum")
        await rig.emu.wait_for_reply(said, timeout=WAIT)
        await rig.bot.wait_idle()
        assert rig.bot.worker is not None
        await rig.bot.worker.drain()
        told = [t for t in _system_texts(rig) if "NO reminder is set" in t]
        assert len(told) == 1 and "ask when" in told[0]
        followups = rig.bot.followups
        assert followups is not None
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None and await followups.list_events(user.id) == []
        listed = alice.invoke("followups list", dm)
        shown = (await listed.wait_for_response(timeout=WAIT)).content
        assert "Nothing is scheduled for you" in shown
        assert '"remind me tomorrow at 5pm to call mum"' in shown and "/followups remind" in shown
        # /followups remind sets one by hand, or says at once why it cannot.
        for when, answer in (
            ("someday", "I can't read a day from “someday”. Days I read: tomorrow at 5pm"),
            ("2020-01-01", "“2020-01-01” has passed (2020-01-01): give a day to come."),
        ):
            asked = alice.invoke("followups remind", dm, options={"when": when, "what": "x"})
            said = (await asked.wait_for_response(timeout=WAIT)).content
            assert said.startswith(answer) and asked.ephemeral, said
        assert await followups.list_events(user.id) == []
        options = {"when": "in 2 hours", "what": "check the oven", "repeat": "weekly"}
        asked = alice.invoke("followups remind", dm, options=options)
        said = (await asked.wait_for_response(timeout=WAIT)).content
        (oven,) = await followups.list_events(user.id)
        assert said.startswith(f"Reminder set: `#{oven.id}` reminder, weekly: check the oven")
        assert timedelta(hours=2) <= oven.trigger_at - clock.now <= timedelta(hours=2, minutes=1)
        asked = alice.invoke("followups remind", dm, options=options)
        said = (await asked.wait_for_response(timeout=WAIT)).content
        assert said == "That reminder is already scheduled (`/followups list`)."
        assert await followups.cancel(user.id, oven.id)
        # Said with a day, the same request is scheduled, and the context says nothing.
        rig.llm.script("I will.", Reply.json({"facts": [], "events": []}))
        again = alice.send(dm, "remind me tomorrow evening to call mum")
        await rig.emu.wait_for_reply(again, timeout=WAIT)
        await rig.bot.wait_idle()
        await rig.bot.worker.drain()
        (event,) = await followups.list_events(user.id)
        assert (event.title, event.context["at"]) == ("call mum", "18:00")
        assert len([t for t in _system_texts(rig) if "NO reminder is set" in t]) == 1


async def test_claims_left_by_a_dead_process_are_sent_once_after_the_lease(
    db: Database,
) -> None:
    """A process claimed two events and died: after sending one, before sending the
    other. After the lease the bot takes both over: the one already in the channel is
    found there and not sent again; the other is sent."""
    clock = Clock()
    async with bot_rig(
        db, clock=clock, followup_poll=0.02, followup_lease=60, quiet_hours="off"
    ) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        guild = rig.emu.guild_ids()[0]
        user = await rig.bot.people.get_or_create_discord_user(alice.id, username="alice")
        due = clock.now + timedelta(minutes=10)
        rules = FollowupRules(lease=timedelta(seconds=60), quiet_hours=None)
        dead = Followups(db, rules, clock=clock)
        for title in ("water the basil", "feed the cat"):
            await dead.create(user.id, "reminder", title, due, guild_id=guild, channel_id=channel)
        claims = await dead.claim_due(now=due)  # the bot's clock is still before `due`
        assert len(claims) == 2
        first, second = claims
        target = rig.bot.get_channel(channel)
        assert isinstance(target, discord.TextChannel) and first.event.body
        before = rig.emu.bot_messages(channel)
        await target.send(first.event.body)  # sent, then the process died
        cog = rig.bot.followups_cog
        assert cog is not None
        clock.now = due + timedelta(seconds=30)
        await _rounds([cog], 2)
        assert len(rig.emu.bot_messages(channel)) == len(before) + 1  # the lease holds
        clock.now = due + timedelta(seconds=61)
        await rig.emu.wait_until(
            lambda: len(rig.emu.bot_messages(channel)) == len(before) + 2,
            timeout=WAIT,
            what="the second reminder",
        )
        await _rounds([cog], 3)
        bodies = [m.content for m in rig.emu.bot_messages(channel)[len(before) :]]
        assert bodies == [first.event.body, second.event.body]
        rows = await dead.list_events(user.id, include_done=True)
        assert {(e.status, e.attempts, e.claimed_by) for e in rows} == {
            ("sent", 2, cog.followups.owner)
        }


async def test_a_server_whose_admins_switched_followups_off_gets_none(db: Database) -> None:
    """``/features followups off`` in a server: an event already scheduled there is
    cancelled unsent when due, and nothing new is scheduled from that server; a DM
    reminder of the same person still arrives."""
    clock = Clock()
    async with bot_rig(db, learn=True, clock=clock, followup_poll=0.02, quiet_hours="off") as rig:
        alice = rig.emu.person("alice")
        rig.bot.admin_ids = frozenset({alice.id})
        channel = rig.emu.channel_ids()[0]
        guild = rig.emu.guild_ids()[0]
        user = await rig.bot.people.get_or_create_discord_user(alice.id, username="alice")
        followups = rig.bot.followups
        assert followups is not None
        due = clock.now + timedelta(minutes=10)
        early = await followups.create(
            user.id, "reminder", "water the basil", due, guild_id=guild, channel_id=channel
        )
        assert early is not None
        switched = alice.invoke(
            "features", channel, options={"feature": "followups", "mode": "off"}
        )
        assert "- followups: off" in (await switched.wait_for_response(timeout=WAIT)).content

        rig.llm.script("Noted.", Reply.json({"facts": [], "events": []}))
        said = alice.send(channel, "remind me tomorrow at 6pm to call mum", mention_bot=True)
        reply = await rig.emu.wait_for_reply(said, timeout=WAIT)
        await rig.bot.wait_idle()
        assert rig.bot.worker is not None
        await rig.bot.worker.drain()
        assert [e.title for e in await followups.list_events(user.id)] == ["water the basil"]
        # The reply was told: not "I will remind you", but that reminders are off here.
        assert any("reminders are switched off here" in t for t in _system_texts(rig))

        cog = rig.bot.followups_cog
        assert cog is not None
        clock.now = due + timedelta(minutes=1)
        await _rounds([cog], 3)
        assert rig.emu.bot_messages(channel, after=reply.id) == []
        (row,) = await followups.list_events(user.id, include_done=True)
        assert (row.id, row.status) == (early.id, "cancelled")

        dm = alice.dm_channel.id
        rig.llm.script("I will.", Reply.json({"facts": [], "events": []}))
        asked = alice.send(dm, "remind me tomorrow at 6pm to call mum")
        answer = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        await rig.bot.worker.drain()
        (event,) = await followups.list_events(user.id)
        clock.now = event.trigger_at
        (arrived,) = await rig.emu.wait_for_bot_messages(dm, 1, after=answer, timeout=WAIT)
        assert arrived.content == "A reminder, as you asked: call mum."


async def test_followups_remind_answers_text_with_no_words_in_it(db: Database) -> None:
    """/followups remind with a ``what`` of NULs and blanks, or a ``when`` of a NUL: the
    person is told what is wrong (not "Sorry, that didn't work on my side", with an
    error logged), nothing is scheduled, and no NUL is echoed back."""
    clock = Clock()
    async with bot_rig(db, learn=True, clock=clock, followup_poll=0.02) as rig:
        alice = rig.emu.person("alice")
        dm = alice.dm_channel.id
        for options, answer in (
            ({"when": "tomorrow at 5pm", "what": "\x00 \x00"}, "Say what to remind you of"),
            ({"when": "\x00", "what": "call mum"}, "I can't read a day from “”."),
        ):
            asked = alice.invoke("followups remind", dm, options=options)
            said = (await asked.wait_for_response(timeout=WAIT)).content
            assert asked.ephemeral and said.startswith(answer), said
        followups = rig.bot.followups
        assert followups is not None
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None and await followups.list_events(user.id) == []
