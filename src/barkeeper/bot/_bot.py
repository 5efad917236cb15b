""":class:`Barkeeper`: the Discord bot (a ``commands.Bot``), its start-up and its chat cogs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from barkeeper.agent import (
    Agent,
    Author,
    IncomingMessage,
    Place,
    QuotedMessage,
    ReplyRequest,
)
from barkeeper.backfill import Backfill, BackfillResult, DiscordHistorySource, ProgressEvent
from barkeeper.bot._cache import CACHE_JOURNAL, LiveCache
from barkeeper.bot._commands import AdminCog, MemoryCog
from barkeeper.bot._companion_commands import CompanionCog
from barkeeper.bot._followups import FollowupsCog
from barkeeper.bot._indexer import ChannelIndexer
from barkeeper.bot._limits import UserLimits
from barkeeper.bot._reply import NO_MENTIONS, ReplyWriter
from barkeeper.companion import Followups, PreferenceStore, User, UserStore
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import BarkeeperError, DatabaseError
from barkeeper.history import MessageStore, message_from_discord
from barkeeper.learning import MemoryManager, OutboxEntry, OutboxWorker
from barkeeper.memory import MemoryStore

__all__ = ["Barkeeper"]

_log = logging.getLogger(__name__)

RATE_LIMITED = "Easy there, friend: one at a time. Give me a minute to catch up, then ask again."
OUT_OF_TOKENS = (
    "That's the last round I can pour you today, friend. Come back tomorrow and "
    "the bar's open again."
)
BROKEN = "Sorry, something went wrong behind the bar. Try me again in a moment?"
_INCOGNITO = "incognito"


def _shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to: ``(guild_id >> 22) % shard_count``."""
    return (guild_id >> 22) % shard_count


class Barkeeper(commands.AutoShardedBot):
    """barkeeper on Discord: answers mentions, replies, DMs and the prefix; caches what it sees.

    It is an ``AutoShardedBot``: with ``SHARD_COUNT`` unset it runs every shard Discord
    recommends in this process; with ``SHARD_COUNT`` and ``SHARD_IDS`` it runs only its
    share, and its background backfill only covers the servers of its shards, so
    several processes can split the shards over one database (``docs/scaling.md``).

    Args:
        db: The database (migrated).
        settings: The settings (the bot's ``BARKEEPER_*`` ones among them).
        agent: The reply pipeline.
        memories: The memory store the slash commands read and change.
        worker: The memory outbox's worker: an answered message is queued in its
            outbox with the cache write, released once the reply is sent, and the
            outbox's counts show in ``/barkeeper status`` (``None``: no memory work).
        manager: The memory manager: ``/remember`` confirms a memory it already has
            instead of adding it twice (``None``: the store's ``remember``).
        followups: The follow-up scheduler (:func:`~barkeeper.bot.build_followups`):
            this process delivers due events and answers ``/followups``; ``None``:
            neither (the ``followups`` feature is off).
        identify_delay: Seconds between two IDENTIFYs of this process's shards (Discord
            allows one per 5 s per ``max_concurrency`` bucket; tests pass 0).
        **options: More :class:`commands.AutoShardedBot` options (``guild_ready_timeout``
            in tests; ``shard_count``/``shard_ids`` win over the settings).
    """

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        agent: Agent,
        memories: MemoryStore,
        worker: OutboxWorker | None = None,
        manager: MemoryManager | None = None,
        followups: Followups | None = None,
        identify_delay: float = 5.0,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        options.setdefault("shard_count", settings.shard_count)
        options.setdefault("shard_ids", settings.shard_id_list() or None)
        self._identify_delay = identify_delay
        super().__init__(
            command_prefix=settings.bot_prefix or "!",
            intents=intents,
            help_command=None,
            allowed_mentions=NO_MENTIONS,
            **options,
        )
        self.db = db
        self.settings = settings
        self.agent = agent
        self.memories = memories
        self.worker = worker
        self.outbox = worker.outbox if worker is not None else None
        self.manager = manager
        self.followups = followups
        self.followups_cog: FollowupsCog | None = None
        self.messages = MessageStore(db)
        # Durable commits: unlike the backfill, the live cache has no cursor to refetch
        # from, so a write a server crash could undo would be a message lost for good.
        self.cache = LiveCache(
            MessageStore(db, durable=True),
            limit=settings.cache_buffer,
            journal=settings.data_dir / CACHE_JOURNAL,
            outbox=self.outbox,
        )
        # The agent's own turn index (and embedder): what the history-search tool reads.
        self.indexer = (
            ChannelIndexer(
                agent.index,
                self.messages,
                interval=settings.index_interval,
                flush=self.cache.flush,
                include=self.owns_guild,
            )
            if settings.index_history and agent.index is not None
            else None
        )
        self.people = UserStore(db)
        self.preferences = PreferenceStore(db)
        self.limits = UserLimits(settings.user_rate, settings.user_daily_tokens)
        self.admin_ids = settings.ids("admin_ids")
        self._incognito: dict[int, bool] = {}
        self._replies: set[asyncio.Task[None]] = set()
        self.backfill_task: asyncio.Task[BackfillResult | None] | None = None
        self.backfill_progress: dict[int, str] = {}
        self._was_ready = False
        #: Discord id → users.id seen by this process (used while the database is down).
        self.known_users: dict[int, int] = {}
        companion = agent.companion
        if worker is not None and companion is not None and worker.on_learned is None:
            worker.on_learned = companion.count_learned  # bot_states' facts learnt

    async def setup_hook(self) -> None:
        """Start the cache writer and the history indexer (every cached channel queued),
        add the cogs, sync the commands, start the backfill."""
        self.cache.start()
        if self.indexer is not None:
            self.indexer.sync_cached()
            self.indexer.start()
        self.tree.on_error = self._on_command_error  # type: ignore[method-assign]
        await self.add_cog(CacheCog(self))
        await self.add_cog(ChatCog(self))
        await self.add_cog(MemoryCog(self))
        await self.add_cog(AdminCog(self))
        if self.followups is not None:
            self.followups_cog = FollowupsCog(
                self, self.followups, poll=self.settings.followup_poll
            )
            await self.add_cog(self.followups_cog)
        await self.add_cog(CompanionCog(self))
        await self.sync_commands()
        if self.settings.backfill_on_start:
            self.backfill_task = asyncio.create_task(self.run_backfill(), name="backfill")

    async def _on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            return  # already answered by the check
        _log.error("/%s failed", interaction.command and interaction.command.name, exc_info=error)
        text = "Sorry, that didn't work on my side. Try again in a moment?"
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)

    async def on_ready(self) -> None:
        """After a reconnect that lost the session, catch up the channels (the backfill)."""
        if not self._was_ready:
            self._was_ready = True
            _log.info("connected as %s to %d server(s)", self.user, len(self.guilds))
            return
        if self.settings.backfill_on_start and (
            self.backfill_task is None or self.backfill_task.done()
        ):
            _log.info("reconnected with a new session: catching up the channels")
            self.backfill_task = asyncio.create_task(self.run_backfill(), name="backfill")

    async def on_message(self, message: discord.Message, /) -> None:
        """Nothing here: :class:`ChatCog` decides what to answer (no prefix commands)."""

    # --- shards -----------------------------------------------------------------------

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Space this process's IDENTIFYs by ``identify_delay`` (Discord's identify limit)."""
        if not initial and self._identify_delay > 0:
            await asyncio.sleep(self._identify_delay)

    async def launch_shards(self) -> None:
        """Start the shards; ``DISCORD_GATEWAY_URL`` is dialled even when Discord picks the count.

        discord.py takes the gateway URL of ``GET /gateway/bot`` along with the
        recommended shard count; a configured gateway (a proxy) must win over it.
        """
        if self.shard_count is None and self.settings.discord_gateway_url is not None:
            self.shard_count, _, _ = await self.http.get_bot_gateway()
        await super().launch_shards()

    @property
    def own_shards(self) -> frozenset[int] | None:
        """The shard ids this process runs (``None`` until the shard count is known)."""
        if self.shard_count is None:
            return None
        return frozenset(self.shard_ids or range(self.shard_count))

    def owns_guild(self, guild_id: int | None) -> bool:
        """Whether this process gets ``guild_id``'s events (``None``: DMs, which go to shard 0).

        Before the shard count is known every guild counts as this process's own.
        """
        shards = self.own_shards
        if shards is None or self.shard_count is None:
            return True
        if guild_id is None:
            return 0 in shards
        return _shard_of(guild_id, self.shard_count) in shards

    # --- commands sync ----------------------------------------------------------------

    async def sync_commands(self) -> str:
        """Sync slash commands: to ``BARKEEPER_DEV_GUILD_ID`` when set, else globally
        only when the command tree changed since the last global sync.

        Returns:
            ``"guild"``, ``"global"`` or ``"unchanged"``.
        """
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            return "guild"
        tree = [c.to_dict(self.tree) for c in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()
        path = self.settings.data_dir / f"commands-{self.application_id}.sha256"
        with contextlib.suppress(OSError):
            if path.read_text().strip() == digest:
                _log.info("slash commands unchanged: not synced")
                return "unchanged"
        await self.tree.sync()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(digest)
        except OSError as exc:
            _log.warning("could not keep the command tree's hash: %s", exc)
        _log.info("slash commands synced globally (%d)", len(tree))
        return "global"

    # --- backfill ---------------------------------------------------------------------

    async def run_backfill(self, channels: list[int] | None = None) -> BackfillResult | None:
        """The backfill (catch-up, deepen, sync) in the background, with progress in the log."""

        def progress(event: ProgressEvent) -> None:
            channel = event.channel
            if channel is not None and event.kind in ("start", "done"):
                self.backfill_progress[channel.channel_id] = (
                    f"{event.kind} {event.count}/{event.target}"
                )

        token = self.settings.discord_token
        if token is None:
            return None
        try:
            async with DiscordHistorySource.connect(
                token.get_secret_value(), api_base=self.settings.discord_api_base
            ) as source:
                engine = Backfill.from_settings(self.db, source, self.settings, progress=progress)
                # Each process backfills the servers of its own shards (the others'
                # processes do theirs); channels asked for by id are done as asked.
                result = await engine.run(
                    channels, include=lambda info: self.owns_guild(info.guild_id)
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("the background backfill failed")
            return None
        _log.info("backfill: %d/%d channels", result.successes, len(result.channels))
        if self.indexer is not None:  # synced whole in the indexer's task, one at a time
            self.indexer.sync_all(c.channel_id for c in result.channels)
        return result

    # --- people -----------------------------------------------------------------------

    async def user_for(self, person: discord.abc.User) -> User:
        """barkeeper's user row for a Discord person (created on first contact)."""
        return await self.people.get_or_create_discord_user(
            person.id,
            username=person.name,
            global_name=person.global_name,
            display_name=getattr(person, "nick", None),
        )

    async def is_incognito(self, user_id: int) -> bool:
        """Whether the user turned ``/incognito`` on."""
        cached = self._incognito.get(user_id)
        if cached is None:
            cached = await self.preferences.get_preference(user_id, _INCOGNITO) == "on"
            self._incognito[user_id] = cached
        return cached

    async def set_incognito(self, user_id: int, on: bool) -> None:
        """Turn incognito on or off for the user."""
        if on:
            await self.preferences.set_preference(user_id, _INCOGNITO, "on")
        else:
            await self.preferences.delete_preference(user_id, _INCOGNITO)
        self._incognito[user_id] = on

    @property
    def incognito_known(self) -> dict[int, bool]:
        """users.id → incognito, for the users this process has read or set it for."""
        return self._incognito

    async def release_memory_work(self, work: OutboxEntry) -> None:
        """The reply to a queued message is done: its memory work may start now.

        If this fails (or never runs: the process died), the item becomes ready by
        itself after ``BARKEEPER_MEMORY_HOLD_SECONDS``.
        """
        if self.outbox is None or work.message_id is None:
            return
        try:
            await self.outbox.release(work.user_id, work.message_id)
        except BarkeeperError as exc:
            _log.warning("memory work of message %s not released: %s", work.message_id, exc)
            return
        if self.worker is not None:
            self.worker.wake()

    def forget_local(self, user_id: int) -> None:
        """Drop what this process holds about a user (after ``/forget-me``)."""
        self._incognito.pop(user_id, None)

    def allowed(self, message: discord.Message) -> bool:
        """The allow and block lists: users, roles, channels and categories.

        Admins always pass; then any block list that matches refuses. The allow lists
        of users and of roles admit a person on either; the allow lists of channels
        (a channel, its parent or its category) and of categories must each be met too.
        A DM has no roles and no category.
        """
        s = self.settings
        author = message.author
        if author.id in self.admin_ids:
            return True
        if author.id in s.ids("blocked_users"):
            return False
        roles = {r.id for r in getattr(author, "roles", ())}
        if roles & s.ids("blocked_roles"):
            return False
        channel = message.channel
        categories = set()
        category = getattr(channel, "category_id", None)  # a thread's is its parent's
        if category is not None:
            categories.add(category)
        parent = getattr(channel, "parent", None)
        if parent is not None and getattr(parent, "category_id", None) is not None:
            categories.add(parent.category_id)
        places = {channel.id} | categories
        parent_id = getattr(channel, "parent_id", None)
        if parent_id is not None:
            places.add(parent_id)
        if places & s.ids("blocked_channels") or categories & s.ids("blocked_categories"):
            return False
        allowed_users, allowed_roles = s.ids("allowed_users"), s.ids("allowed_roles")
        if (allowed_users or allowed_roles) and not (
            author.id in allowed_users or roles & allowed_roles
        ):
            return False
        allowed_channels = s.ids("allowed_channels")
        if allowed_channels and not places & allowed_channels:
            return False
        allowed_categories = s.ids("allowed_categories")
        return not (allowed_categories and not categories & allowed_categories)

    # --- shutdown ---------------------------------------------------------------------

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reply task until it ends (shutdown waits for it)."""
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def wait_idle(self, limit: float = 10.0) -> None:
        """Wait (at most ``limit`` s) until no reply is in flight and memory hand-offs are done."""
        async with asyncio.timeout(limit):
            while self._replies:
                await asyncio.wait(set(self._replies))
            await self.agent.drain()

    @property
    def replies_in_flight(self) -> int:
        """Replies being written now."""
        return len(self._replies)

    async def close(self) -> None:
        """Finish replies in flight (10 s, then cancel them), stop the backfill and the
        history indexer, close."""
        if self.followups_cog is not None:
            await self.followups_cog.stop()
        if self.backfill_task is not None:
            self.backfill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.backfill_task
        if self.indexer is not None:
            await self.indexer.aclose()
        if self._replies:
            _, late = await asyncio.wait(set(self._replies), timeout=10)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2)
        await super().close()
        await self.cache.aclose()


class CacheCog(commands.Cog):
    """Every message the bot can see goes to the cache; edits and deletes follow, and
    each one marks its channel for the history indexer (``Barkeeper.indexer``)."""

    def __init__(self, bot: Barkeeper) -> None:
        self.bot = bot

    async def _skip(self, message: discord.Message) -> bool:
        if message.guild is not None or message.author.bot:
            return False
        # In DMs an incognito person's messages are not cached.
        bot = self.bot
        try:
            known = await bot.people.get_by_discord_id(message.author.id)
            return known is not None and await bot.is_incognito(known.id)
        except DatabaseError:
            # The database is down: decide from what this process knows; a person it
            # has not seen yet is not cached (the warning below counts it).
            user_id = bot.known_users.get(message.author.id)
            if user_id is None or user_id not in bot.incognito_known:
                raise
            return bot.incognito_known[user_id]

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            if await self._skip(message):
                return
            self.bot.cache.put(message_from_discord(message))
            self._mark(message.channel.id, message.id)
        except DatabaseError:  # a DM of someone whose incognito state is unknown
            self.bot.cache.count_dropped(message.id, "incognito state unknown, database down")
        except (BarkeeperError, ValueError) as exc:
            _log.warning("message %s not cached: %s", message.id, exc)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        try:
            if await self._skip(message):
                return
            self.bot.cache.put(message_from_discord(message))
            self._mark(payload.channel_id, payload.message_id)
        except (BarkeeperError, ValueError, AttributeError) as exc:
            _log.warning("edit of message %s not cached: %s", payload.message_id, exc)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.bot.cache.delete(payload.message_id)
        self._mark(payload.channel_id, payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        for message_id in payload.message_ids:
            self.bot.cache.delete(message_id)
            self._mark(payload.channel_id, message_id)

    def _mark(self, channel_id: int, message_id: int) -> None:
        """Have the history indexer sync the channel from this message (no I/O).

        A delete too: the message's row goes with it, and so does the row of the one
        after it (its context came from the deleted one): the sync indexes it again.
        """
        if self.bot.indexer is not None:
            self.bot.indexer.mark(channel_id, message_id)


@contextlib.asynccontextmanager
async def _typing(channel: discord.abc.Messageable) -> AsyncIterator[asyncio.Event]:
    """The typing indicator, without waiting for Discord to acknowledge it first.

    Yields an event set once the indicator is shown (or failed to be): a reply sent
    before it would have the indicator linger after the reply.
    """
    shown = asyncio.Event()

    async def show() -> None:
        try:
            async with channel.typing():
                shown.set()
                await asyncio.Event().wait()  # until cancelled
        except discord.HTTPException:
            pass
        finally:
            shown.set()

    task = asyncio.create_task(show())
    try:
        yield shown
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ChatCog(commands.Cog):
    """Answers mentions, replies to the bot, DMs and the prefix."""

    def __init__(self, bot: Barkeeper) -> None:
        self.bot = bot

    async def _text_for_bot(self, message: discord.Message) -> str | None:
        """The text to answer, or ``None`` when the message is not for the bot."""
        bot = self.bot
        me = bot.user
        if me is None or message.author.bot or message.author.id == me.id:
            return None
        stored = message_from_discord(message)
        text = stored.content
        mention = re.compile(rf"<@!?{me.id}>")
        if message.guild is None:
            return mention.sub("", text).strip()
        if any(u.id == me.id for u in message.mentions) or mention.search(text):
            return mention.sub("", text).strip()
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            resolved = reference.resolved
            if isinstance(resolved, discord.Message):
                if resolved.author.id == me.id:
                    return text.strip()
            else:
                parent = await bot.messages.get(reference.message_id)
                if parent is not None and parent.author_id == me.id:
                    return text.strip()
        prefix = bot.settings.bot_prefix
        if prefix and text.startswith(prefix):
            return text[len(prefix) :].strip()
        return None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            text = await self._text_for_bot(message)
        except Exception:
            _log.exception("could not read message %s", message.id)
            return
        if text is None or not self.bot.allowed(message):
            return
        task = asyncio.create_task(self._answer(message, text))
        self.bot.track(task)

    async def _answer(self, message: discord.Message, text: str) -> None:
        bot = self.bot
        verdict, tell = bot.limits.check(message.author.id)
        work: OutboxEntry | None = None
        flushing: asyncio.Task[bool] | None = None
        try:
            if verdict != "ok":
                if tell:
                    await message.reply(
                        RATE_LIMITED if verdict == "rate" else OUT_OF_TOKENS,
                        mention_author=False,
                        allowed_mentions=NO_MENTIONS,
                    )
                return
            bot.agent.prefetch(text)  # the message's embedding, while we do the rest
            writer = ReplyWriter(
                message,
                interval=bot.settings.stream_interval,
                stream=bot.settings.stream_replies,
            )
            async with _typing(message.channel) as typing_shown:
                user_id, incognito, seen = await self._who(message)
                work = self._memory_work(message, text, user_id, incognito)
                if work is not None:  # cached with its memory work, in one transaction
                    bot.cache.put(message_from_discord(message), work=work)
                if not bot.cache.database_down:  # else the reply goes on without history
                    # The history and reply chain read the cache, and the message is kept,
                    # with its memory work, before the model is asked: the agent waits for
                    # this write for those, and starts its other reads meanwhile.
                    flushing = asyncio.create_task(bot.cache.flush())
                request = await self._request(message, text, user_id, incognito, flushing)

                async def deliver(final: str) -> None:
                    with contextlib.suppress(TimeoutError):  # a slow indicator: go on
                        await asyncio.wait_for(typing_shown.wait(), 1.0)
                    await writer.finish(final)

                # Sent as soon as it is written; the run is recorded after.
                reply = await bot.agent.reply(
                    request, on_text=writer.feed, deliver=deliver, cached=flushing
                )
            bot.limits.spend(
                message.author.id, reply.record.prompt_tokens + reply.record.completion_tokens
            )
            if not seen:  # names and last seen, once the reply is out
                try:
                    await bot.user_for(message.author)
                except BarkeeperError as exc:
                    _log.warning("could not record that user %s was seen: %s", user_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("reply to message %s failed", message.id)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(BROKEN, mention_author=False, allowed_mentions=NO_MENTIONS)
        finally:
            if flushing is not None:  # the work is released once it is queued
                await asyncio.wait([flushing])
            if work is not None:
                await bot.release_memory_work(work)

    async def _who(self, message: discord.Message) -> tuple[int, bool, bool]:
        """The author's ``users.id``, whether they are incognito, and whether their names
        and last-seen time are recorded (a known person's are recorded after the reply:
        a read is quicker than a write)."""
        bot = self.bot
        seen = True
        try:
            known = await bot.people.get_by_discord_id(message.author.id)
            if known is None:
                known = await bot.user_for(message.author)
            else:
                seen = False
            user_id = known.id
            incognito = await bot.is_incognito(user_id)
            bot.known_users[message.author.id] = user_id
        except Exception as exc:  # the database is down: answer without memory, keep nothing
            _log.warning("answering %s without memory: %s", message.id, exc)
            user_id = bot.known_users.get(message.author.id, message.author.id)
            incognito = True
            seen = True
        return user_id, incognito, seen

    def _memory_work(
        self, message: discord.Message, text: str, user_id: int, incognito: bool
    ) -> OutboxEntry | None:
        """The memory outbox entry of an answered message (``None``: nothing to learn)."""
        if self.bot.outbox is None or incognito or not text.strip():
            return None
        return OutboxEntry(
            user_id=user_id,
            content=text,
            message_id=message.id,
            channel_id=message.channel.id,
            guild_id=message.guild.id if message.guild is not None else None,
            author_name=message.author.display_name,
        )

    async def _request(
        self,
        message: discord.Message,
        text: str,
        user_id: int,
        incognito: bool,
        flushing: asyncio.Task[bool] | None,
    ) -> ReplyRequest:
        bot = self.bot
        channel = message.channel
        if message.guild is not None:
            place = Place.guild(
                message.guild.id,
                channel.id,
                channel_name=getattr(channel, "name", None),
                guild_name=message.guild.name,
            )
        else:
            place = Place.dm(channel.id)
        starter = None
        if isinstance(channel, discord.Thread):
            if flushing is not None:  # the thread's first message may be waiting in it
                await asyncio.wait([flushing])
            try:
                first = await bot.messages.get(channel.id)
            except BarkeeperError:
                first = None
            if first is not None:
                starter = QuotedMessage(
                    first.message_id,
                    first.author_id,
                    first.author_name,
                    first.content,
                    first.created_at,
                    author_is_bot=first.author_is_bot,
                )
        reply_to = message.reference.message_id if message.reference is not None else None
        return ReplyRequest(
            author=Author(user_id, message.author.display_name, discord_id=message.author.id),
            place=place,
            message=IncomingMessage(
                text, created_at=message.created_at, id=message.id, reply_to_id=reply_to
            ),
            thread_starter=starter,
            bot_id=bot.user.id if bot.user is not None else None,
            incognito=incognito,
        )
