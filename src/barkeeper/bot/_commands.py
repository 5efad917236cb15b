"""Slash commands: memory a user can see and control (ephemeral answers), and the admin group."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from barkeeper.agent import RunRecord
from barkeeper.bot._followups import FollowupSink
from barkeeper.companion import SENSITIVE_MEMORY_TYPES
from barkeeper.errors import BarkeeperError, NotFoundError
from barkeeper.learning import UserMessage, birthday_event
from barkeeper.privacy import Privacy

if TYPE_CHECKING:
    from barkeeper.bot._bot import Barkeeper
    from barkeeper.memory import Memory

__all__ = ["AdminCog", "MemoryCog"]

_log = logging.getLogger(__name__)
_PAGE = 10
_LIMIT = 1900


def _clip(text: str, size: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _memory_line(memory: Memory) -> str:
    when = memory.created_at.strftime("%Y-%m-%d")
    sensitive = ", sensitive: DMs only" if memory.memory_type in SENSITIVE_MEMORY_TYPES else ""
    return f"`#{memory.id}` ({memory.memory_type}{sensitive}, {when}) {_clip(memory.content)}"


def _fit(lines: list[str]) -> str:
    out: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > _LIMIT:
            out.append("…")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


async def _model_reachable(bot: Barkeeper) -> str:
    """Whether the chat endpoint answers ``GET /models`` (with the key), in words."""
    settings = bot.settings
    key = settings.chat_llm_api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = settings.llm_base_url.rstrip("/") + "/models"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url, headers=headers) as response,
        ):
            return "reachable" if response.status < 400 else f"answers HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"unreachable ({type(exc).__name__})"


class Confirm(discord.ui.View):
    """Two buttons; ``action`` runs only when the person who asked presses Confirm."""

    def __init__(self, owner: int, action: Callable[[], Awaitable[str]]) -> None:
        super().__init__(timeout=300)
        self._owner = owner
        self._action = action

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self._owner

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger, custom_id="confirm")
    async def confirm(
        self, interaction: discord.Interaction, _: discord.ui.Button[Confirm]
    ) -> None:
        await interaction.response.defer()
        try:
            text = await self._action()
        except BarkeeperError as exc:
            text = f"That did not work: {exc}"
        self.stop()
        await interaction.edit_original_response(content=text, view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="cancel")
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button[Confirm]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was forgotten.", view=None)


class MemoryCog(commands.Cog):
    """``/memories``, ``/remember``, ``/forget``, ``/forget-me``, ``/export-my-data``,
    ``/incognito`` and ``/why``: each answered only to the person who asked."""

    def __init__(self, bot: Barkeeper) -> None:
        self.bot = bot

    async def _say(self, interaction: discord.Interaction, text: str, **extra: object) -> None:
        await interaction.followup.send(text, ephemeral=True, **extra)  # type: ignore[call-overload]

    @app_commands.command(name="memories", description="What barkeeper remembers about you")
    @app_commands.describe(query="Only what is about this", page="Which page (10 a page)")
    async def memories(
        self,
        interaction: discord.Interaction,
        query: str | None = None,
        page: app_commands.Range[int, 1, 100] = 1,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        store = self.bot.memories
        wanted = page * _PAGE
        if query and query.strip():
            hits = await store.search(user.id, query, k=min(200, wanted))
            found = [h.item for h in hits]
        else:
            found = await store.list_memories(user.id, limit=wanted)
        shown = found[(page - 1) * _PAGE : wanted]
        if not shown:
            await self._say(
                interaction,
                "I don't remember anything about you yet."
                if page == 1 and not query
                else "Nothing on that page.",
            )
            return
        total = await store.count(user.id)
        head = f"What I remember about you ({total} in all, page {page}):"
        await self._say(interaction, _fit([head, *(_memory_line(m) for m in shown)]))

    @app_commands.command(name="remember", description="Tell barkeeper something to remember")
    @app_commands.describe(text="What to remember, in your words")
    async def remember(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 1000]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        manager = self.bot.manager
        if manager is not None:  # confirms a memory it already has instead of repeating it
            change = await manager.remember(user.id, text, guild_id=interaction.guild_id)
            memory_id = change.memory_id
            added = change.action == "add"
        else:
            memory_id = (
                await self.bot.memories.remember(user.id, text, guild_id=interaction.guild_id)
            ).id
            added = True
        followups = self.bot.followups
        birthday = birthday_event(text) if followups is not None else None
        if followups is not None and birthday is not None:  # a birthday: wished yearly
            said = UserMessage(
                user.id,
                text,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                created_at=interaction.created_at,
            )
            await FollowupSink(followups).schedule_events(said, [birthday])
        companion = self.bot.agent.companion
        if added and companion is not None:  # bot_states' facts learnt
            await companion.count_learned(interaction.guild_id, 1)
        await self._say(interaction, f"Noted. I'll remember that (`#{memory_id}`).")

    @app_commands.command(name="forget", description="Forget one thing barkeeper remembers")
    @app_commands.describe(what="A memory's id (from /memories) or words it contains")
    async def forget(
        self, interaction: discord.Interaction, what: app_commands.Range[str, 1, 500]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        store = self.bot.memories
        target = what.strip().lstrip("#")
        found: list[Memory] = []
        if target.isascii() and target.isdigit() and 0 < int(target) < 2**63:
            try:
                found = [await store.get(user.id, int(target))]
            except NotFoundError:
                found = []
        else:
            hits = await store.search(user.id, what, k=5, mode="fulltext")
            found = [h.item for h in hits][:5]
        if not found:
            await self._say(interaction, "I don't remember anything like that about you.")
            return
        ids = [m.id for m in found]

        async def act() -> str:
            gone = 0
            for memory_id in ids:
                try:
                    await store.forget(user.id, memory_id, changed_by="user", reason="/forget")
                    gone += 1
                except NotFoundError:
                    continue
            return f"Forgotten: {gone} memor{'y' if gone == 1 else 'ies'}."

        lines = ["This will be forgotten:", *(_memory_line(m) for m in found)]
        await interaction.edit_original_response(
            content=_fit(lines), view=Confirm(interaction.user.id, act)
        )

    @app_commands.command(name="forget-me", description="Forget everything about you, everywhere")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        privacy = Privacy(self.bot.db)
        who = await privacy.find_user(discord_id=interaction.user.id)
        report = await privacy.show(who)

        async def act() -> str:
            await self.bot.cache.flush()  # their messages waiting for the cache go too
            target = await privacy.find_user(discord_id=interaction.user.id)
            done = await privacy.forget(target)
            if target.user_id is not None:
                self.bot.forget_local(target.user_id)
            if self.bot.indexer is not None:
                # The turn after each of their messages lost its row with it (its context
                # came from theirs): each channel they had messages in is synced from its
                # lowest deleted one, as for any delete (what `privacy forget` does too).
                for channel_id, lowest in done.channels.items():
                    self.bot.indexer.mark(channel_id, lowest)
            parts = ", ".join(f"{rows} {table}" for table, rows in sorted(done.rows.items()))
            return (
                f"Done: I forgot everything about you ({done.total} rows: {parts or 'none'}). "
                "Whatever you write from now on is new to me."
            )

        await interaction.edit_original_response(
            content=f"This forgets everything barkeeper keeps about you ({report.total} rows: "
            "memories, conversations, your cached messages), everywhere. It cannot be undone.",
            view=Confirm(interaction.user.id, act),
        )

    @app_commands.command(name="export-my-data", description="Everything barkeeper keeps about you")
    async def export_my_data(self, interaction: discord.Interaction) -> None:
        # Answered with the file in the first response (one read, well within the 3 s).
        privacy = Privacy(self.bot.db)
        who = await privacy.find_user(discord_id=interaction.user.id)
        document = await privacy.export(who)
        data = json.dumps(document, indent=2, default=str, ensure_ascii=False).encode()
        await interaction.response.send_message(
            "Here is everything I keep about you.",
            ephemeral=True,
            file=discord.File(io.BytesIO(data), filename="barkeeper-export.json"),
        )

    @app_commands.command(name="incognito", description="Off the record: remember nothing you say")
    @app_commands.describe(mode="on: nothing from your messages is kept; off: back to normal")
    async def incognito(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        await self.bot.set_incognito(user.id, mode == "on")
        await self._say(
            interaction,
            "Incognito is on: I'll answer, but remember nothing of what you say."
            if mode == "on"
            else "Incognito is off: I'll remember things again.",
        )

    @app_commands.command(name="why", description="What barkeeper's last reply to you was based on")
    async def why(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.bot.user_for(interaction.user)
        run = await self.bot.agent.last_run(user.id)
        if run is None:
            await self._say(interaction, "I have no reply to you on record.")
            return
        record = RunRecord.from_metrics(run.metrics)
        lines = [
            f"My last reply to you ({record.model or 'model'}, "
            f"{record.prompt_tokens}+{record.completion_tokens} tokens) used:"
        ]
        lines.append(f"**Memories** ({len(record.memory_ids)}):")
        for memory_id in record.memory_ids:
            try:
                lines.append("  " + _memory_line(await self.bot.memories.get(user.id, memory_id)))
            except NotFoundError:
                lines.append(f"  `#{memory_id}` (forgotten since)")
        lines.append(f"**Messages** ({len(record.message_ids)}):")
        for message_id in record.message_ids[-10:]:
            message = await self.bot.messages.get(message_id)
            if message is not None:
                lines.append(f"  {message.author_name}: {_clip(message.content, 100)}")
        if record.cut:
            cut = ", ".join(
                f"{len(v) if isinstance(v, list) else v} {k.replace('_', ' ')}"
                for k, v in record.cut.items()
            )
            lines.append(f"**Cut to fit the budget**: {cut}")
        await self._say(interaction, _fit(lines))


class AdminCog(commands.GroupCog, group_name="barkeeper"):
    """``/barkeeper status`` and ``/barkeeper backfill``, for ``BARKEEPER_ADMIN_IDS`` only."""

    def __init__(self, bot: Barkeeper) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id in self.bot.admin_ids:
            return True
        await interaction.response.send_message(
            "Only barkeeper's admins can do that.", ephemeral=True
        )
        return False

    @app_commands.command(name="status", description="Database, backfill, queues, model")
    async def status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        lines = []
        try:
            health = await bot.db.health()
            if health.error is not None:
                lines.append(f"Database: unreachable ({health.error})")
            else:
                lines.append(
                    f"Database: PostgreSQL {health.server_version}, {health.latency_ms:.1f} ms, "
                    f"schema v{health.schema_version}"
                )
        except BarkeeperError as exc:
            lines.append(f"Database: unreachable ({exc})")
        memory = "off"
        if bot.outbox is not None:
            try:
                counts = await bot.outbox.counts()
                memory = str(counts.unfinished)
                outbox_line = f"Memory outbox: {counts.summary()}"
            except BarkeeperError as exc:
                memory, outbox_line = "?", f"Memory outbox: unreadable ({exc})"
        lines.append(
            f"Queues: memory {memory}, cache {bot.cache.pending}, replies {bot.replies_in_flight}"
        )
        shards = bot.own_shards
        if shards is not None and bot.shard_count is not None:
            mine = ", ".join(str(i) for i in sorted(shards))
            lines.append(f"Shards: {mine} of {bot.shard_count} (this process)")
        cache = bot.cache
        if cache.database_down or cache.dropped or cache.outages:
            down = cache.down_for
            lines.append(
                f"Message cache: {cache.pending}/{cache.limit} buffered"
                + (f", database down for {down:.0f} s" if down is not None else "")
                + f", {cache.dropped} dropped since start, {cache.outages} outage(s)"
            )
        if bot.outbox is not None:
            lines.append(outbox_line)
        running = bot.backfill_task is not None and not bot.backfill_task.done()
        lines.append(f"Backfill: {'running' if running else 'idle'}")
        for channel_id, state in sorted(bot.backfill_progress.items()):
            lines.append(f"  <#{channel_id}>: {state}")
        try:
            channels = (await bot.messages.list_channels())[:20]
        except BarkeeperError:
            channels = []  # the database is down: said above
        for status in channels:
            lines.append(f"  {status.channel_id}: {status.message_count} cached")
        indexer = bot.indexer
        if indexer is None:
            lines.append("History index: off (BARKEEPER_INDEX_HISTORY)")
        else:
            lines.append(
                f"History index: {indexer.marked} channel(s) waiting, {indexer.queued} queued "
                f"whole, {indexer.indexed} turn(s) indexed since start, "
                f"{indexer.reembedded} re-embedded (stored without a vector), "
                f"{indexer.failures} failed sync(s)"
            )
        tools = "tools on" if bot.agent.tools_enabled else "tools off"
        lines.append(f"Model {bot.settings.llm_model}: {await _model_reachable(bot)}, {tools}")
        await interaction.followup.send(_fit(lines), ephemeral=True)

    @app_commands.command(name="backfill", description="Fetch history into the cache now")
    @app_commands.describe(channel="Only this channel (default: every channel)")
    async def backfill(
        self, interaction: discord.Interaction, channel: discord.abc.GuildChannel | None = None
    ) -> None:
        bot = self.bot
        if bot.backfill_task is not None and not bot.backfill_task.done():
            await interaction.response.send_message(
                "A backfill is running already.", ephemeral=True
            )
            return
        import asyncio

        bot.backfill_task = asyncio.create_task(
            bot.run_backfill([channel.id] if channel is not None else None)
        )
        where = f"<#{channel.id}>" if channel is not None else "every channel"
        await interaction.response.send_message(f"Backfill started for {where}.", ephemeral=True)
