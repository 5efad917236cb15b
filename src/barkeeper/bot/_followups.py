"""Follow-ups on Discord: the scheduler's delivery loop and ``/followups``.

- :class:`FollowupSink`: what the memory manager hands found events to
  (:class:`barkeeper.learning.EventSink`); it schedules them with the message's time,
  guild and channel.
- :class:`FollowupsCog`: every ``BARKEEPER_FOLLOWUP_POLL`` seconds each bot process
  claims the due events (:meth:`barkeeper.companion.Followups.claim_due`: a row is
  claimed by one process only) and sends them in the channel or DM they came up in;
  ``/followups list | remind | cancel | off | on | timezone`` for the person's own
  events (``remind``: a reminder set by hand, told at once why when it cannot be).

Delivery is at-least-once made exactly-once: a claim whose process died before
recording the send is taken over after the lease, and the new owner looks for the
exact text among the channel's last :data:`RECOVERY_SCAN` messages by the bot before
sending it again (``docs/companion.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import discord
from discord import app_commands
from discord.ext import commands

from barkeeper.companion import (
    ClaimedEvent,
    CompanionSettings,
    FollowupRules,
    Followups,
    ScheduledEvent,
    parse_quiet_hours,
    resolve_when,
)
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import BarkeeperError, InvalidInputError
from barkeeper.learning import CandidateEvent, UserMessage

if TYPE_CHECKING:
    from barkeeper.bot._bot import Barkeeper

__all__ = ["RECOVERY_SCAN", "FollowupSink", "FollowupsCog", "build_followups"]

_log = logging.getLogger(__name__)

#: The bot's recent messages searched for an event's text before a taken-over claim
#: is sent again.
RECOVERY_SCAN = 50

# How to ask for a reminder, in the words the scheduler reads (docs/users.md).
_WHEN_EXAMPLES = (
    "Days I read: tomorrow at 5pm, Friday evening, next Tuesday, in 2 hours, in 3 days, "
    "on the 14th, March 14, 2026-12-24."
)
_HOW_TO_ASK = (
    'To set a reminder, use `/followups remind`, or tell me e.g. "remind me tomorrow at '
    '5pm to call mum" or "remind me every Friday to pay rent"; I tell you when I '
    "can't read a day from it."
)


def build_followups(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> Followups | None:
    """The scheduler the settings describe; ``None`` when the ``followups`` feature is off.

    Raises:
        InvalidInputError: ``BARKEEPER_QUIET_HOURS`` is malformed.
    """
    if not settings.companion or "followups" not in settings.companion_features():
        return None
    rules = FollowupRules(
        per_day=settings.proactive_per_day,
        quiet_hours=parse_quiet_hours(settings.quiet_hours),
        hour=time(settings.followup_hour),
        lease=timedelta(seconds=settings.followup_lease),
        zone=ZoneInfo(settings.discord_timezone),
    )
    return Followups(db, rules, clock=clock)


class FollowupSink:
    """Schedules the events the memory manager found, where and when they were said.

    Args:
        followups: The scheduler.
        places: The per-server switches: nothing is scheduled from a server whose admins
            turned ``followups`` off (``/features``). ``None``: only the global setting.
    """

    def __init__(self, followups: Followups, places: CompanionSettings | None = None) -> None:
        self._followups = followups
        self._places = places

    async def schedule_events(self, message: UserMessage, events: Sequence[CandidateEvent]) -> int:
        """Schedule each event for the message's author; returns how many were new."""
        made = 0
        if (
            events
            and message.guild_id is not None
            and self._places is not None
            and not await self._places.feature_on(message.guild_id, "followups")
        ):
            return 0
        for event in events:
            scheduled = await self._followups.schedule(
                message.user_id,
                event.kind,
                event.what,
                event.when,
                said_at=message.created_at or self._followups.now(),
                guild_id=message.guild_id,
                channel_id=message.channel_id,
                question=event.question,
                recurrence=event.recurrence,
                source_message_id=message.message_id,
            )
            made += scheduled is not None
            if scheduled is None and event.kind == "reminder":
                # The reply said so already (the companion's reminder line); this is
                # for the operator. Nothing of what the person wrote is logged.
                _log.info(
                    "reminder of message %s not scheduled (no day could be read, the day "
                    "passed, follow-ups off for the person, or already scheduled)",
                    message.message_id,
                )
        return made


def _quoted(text: str) -> str:
    """The person's words, shown back in quotes: one line, no NUL, no code span."""
    return "“" + " ".join(text.replace("\x00", " ").split())[:100].replace("`", "'") + "”"


def _event_line(event: ScheduledEvent, zone: ZoneInfo) -> str:
    when = event.trigger_at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M")
    repeat = f", {event.recurrence}" if event.recurrence != "none" else ""
    where = "here in DMs" if event.guild_id is None else f"in <#{event.channel_id}>"
    title = " ".join(event.title.split())[:120]
    return f"`#{event.id}` {event.kind}{repeat}: {title} ({when} {zone.key}, {where})"


class FollowupsCog(commands.GroupCog, group_name="followups"):
    """``/followups`` and the delivery loop of one bot process.

    Args:
        bot: The bot.
        followups: The scheduler.
        poll: Seconds between two claims (``BARKEEPER_FOLLOWUP_POLL``).
    """

    def __init__(self, bot: Barkeeper, followups: Followups, *, poll: float) -> None:
        self.bot = bot
        self.followups = followups
        self.poll = poll
        #: Delivery rounds completed (each claimed and sent what was due).
        self.rounds = 0
        #: Events this process sent (or found sent, after taking a claim over).
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._round = asyncio.Condition()
        super().__init__()

    async def cog_load(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="followups")

    async def cog_unload(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop the delivery loop (a send in flight is cancelled; its lease covers it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self) -> None:
        await self.bot.wait_until_ready()
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except BarkeeperError as exc:  # the database is down: try again next round
                _log.warning("follow-up delivery round failed: %s", exc)
            except Exception:
                _log.exception("follow-up delivery round failed")
            async with self._round:
                self.rounds += 1
                self._round.notify_all()
            await asyncio.sleep(self.poll)

    async def wait_rounds(self, count: int = 1) -> None:
        """Wait until ``count`` more delivery rounds are complete."""
        target = self.rounds + count
        async with self._round:
            await self._round.wait_for(lambda: self.rounds >= target)

    async def deliver_due(self) -> int:
        """Claim what is due and send it; returns how many were delivered."""
        delivered = 0
        for claim in await self.followups.claim_due():
            try:
                delivered += await self._deliver(claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The outcome is unknown: the claim stays; after its lease a process
                # checks the channel and sends it only if it is not there.
                _log.exception("follow-up %d: delivery failed", claim.event.id)
        self.sent += delivered
        return delivered

    async def _destination(self, claim: ClaimedEvent) -> discord.abc.Messageable | None:
        bot = self.bot
        event = claim.event
        if event.guild_id is None or event.channel_id is None:
            if claim.discord_id is None:
                return None
            user = bot.get_user(claim.discord_id) or await bot.fetch_user(claim.discord_id)
            return await user.create_dm()
        channel = bot.get_channel(event.channel_id) or await bot.fetch_channel(event.channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def _deliver(self, claim: ClaimedEvent) -> int:
        event = claim.event
        body = event.body or ""
        try:
            channel = await self._destination(claim)
        except (discord.NotFound, discord.Forbidden):
            channel = None
        if channel is None or not body:
            await self.followups.mark_failed(claim)
            _log.warning("follow-up %d: its channel is gone; marked failed", event.id)
            return 0
        companion = self.bot.agent.companion
        if (
            event.guild_id is not None
            and companion is not None
            and not await companion.feature_on(event.guild_id, "followups")
        ):  # the server's admins switched follow-ups off after it was scheduled
            await self.followups.mark_cancelled(claim)
            _log.info("follow-up %d: off in its server; cancelled", event.id)
            return 0
        me = self.bot.user
        if claim.reclaimed and me is not None:
            async for message in channel.history(limit=RECOVERY_SCAN):
                if message.author.id == me.id and message.content == body:
                    await self.followups.mark_sent(claim, message.id)
                    _log.info("follow-up %d: found sent by an earlier claim", event.id)
                    return 1
        mentions = (
            discord.AllowedMentions(users=[discord.Object(id=claim.discord_id)])
            if event.guild_id is not None and claim.discord_id is not None
            else discord.AllowedMentions.none()
        )
        try:
            sent = await channel.send(body, allowed_mentions=mentions)
        except (discord.NotFound, discord.Forbidden):
            await self.followups.mark_failed(claim)
            _log.warning("follow-up %d: no access to its channel; marked failed", event.id)
            return 0
        await self.followups.mark_sent(claim, sent.id)
        _log.info("follow-up %d (%s) sent", event.id, event.kind)
        return 1

    # --- /followups ---------------------------------------------------------------------

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="list", description="Your follow-ups, reminders and birthday")
    async def list_(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        events = await self.followups.list_events(user.id, limit=20)
        zone = await self.followups.zone_of(user.id)
        on = await self.followups.enabled(user.id)
        head = "Follow-ups are on." if on else "Follow-ups are off (`/followups on`)."
        if not events:
            await self._say(interaction, f"{head} Nothing is scheduled for you. {_HOW_TO_ASK}")
            return
        lines = [f"{head} Scheduled for you:", *(_event_line(e, zone) for e in events)]
        await self._say(interaction, "\n".join(lines)[:1900])

    @app_commands.command(name="remind", description="Set a reminder: when, and what")
    @app_commands.describe(
        when="e.g. tomorrow at 5pm, Friday evening, in 2 hours, on the 14th, 2026-12-24",
        what="What to remind you of",
        repeat="Repeat it every week, month or year from that day",
    )
    async def remind(
        self,
        interaction: discord.Interaction,
        when: app_commands.Range[str, 1, 100],
        what: app_commands.Range[str, 1, 200],
        repeat: Literal["none", "weekly", "monthly", "yearly"] = "none",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if not what.replace("\x00", " ").strip():
            await self._say(interaction, "Say what to remind you of: `what` has no words in it.")
            return
        user = await self.bot.user_for(interaction.user)
        guild = interaction.guild_id
        companion = self.bot.agent.companion
        if (
            guild is not None
            and companion is not None
            and not await companion.feature_on(guild, "followups")
        ):
            await self._say(
                interaction, "Reminders are switched off in this server; ask me in a DM instead."
            )
            return
        if not await self.followups.enabled(user.id):
            await self._say(interaction, "Your follow-ups are off: `/followups on` first.")
            return
        now = self.followups.now()
        event = await self.followups.schedule(
            user.id,
            "reminder",
            what,
            when,
            said_at=now,
            guild_id=guild,
            channel_id=interaction.channel_id,
            recurrence=repeat,
        )
        zone = await self.followups.zone_of(user.id)
        if event is not None:
            await self._say(interaction, "Reminder set: " + _event_line(event, zone))
            return
        span = resolve_when(when, now, zone)
        if span is None:
            why = f"I can't read a day from {_quoted(when)}. {_WHEN_EXAMPLES}"
        elif span.start < now.astimezone(zone).date():
            why = f"{_quoted(when)} has passed ({span.start.isoformat()}): give a day to come."
        else:
            why = "That reminder is already scheduled (`/followups list`)."
        await self._say(interaction, why)

    @app_commands.command(name="cancel", description="Cancel one of your follow-ups")
    @app_commands.describe(id="The number shown by /followups list")
    async def cancel(
        self, interaction: discord.Interaction, id: app_commands.Range[int, 1, 2**53]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        done = await self.followups.cancel(user.id, id)
        await self._say(
            interaction,
            f"Cancelled `#{id}`." if done else f"You have no pending follow-up `#{id}`.",
        )

    @app_commands.command(name="off", description="No more follow-ups or reminders")
    async def off(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        cancelled = await self.followups.set_enabled(user.id, False)
        await self._say(
            interaction,
            f"Follow-ups are off: I cancelled {cancelled} and won't schedule new ones. "
            "`/followups on` brings them back.",
        )

    @app_commands.command(name="on", description="Follow-ups and reminders again")
    async def on(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        await self.followups.set_enabled(user.id, True)
        await self._say(interaction, "Follow-ups are on: I'll check in on what you tell me.")

    @app_commands.command(name="timezone", description="Your time zone, for quiet hours and days")
    @app_commands.describe(zone="An IANA name such as Europe/Lisbon or America/Chicago")
    async def timezone(
        self, interaction: discord.Interaction, zone: app_commands.Range[str, 1, 64]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        try:
            found = await self.followups.set_timezone(user.id, zone)
        except InvalidInputError as exc:
            await self._say(interaction, str(exc))
            return
        await self._say(interaction, f"Your time zone is now {found.key}.")
