""":class:`World`: the emulator's ground truth of guilds, channels, users and messages.

Content is generated from an :class:`~barkeeper.testing.discord.EmulatorSpec` and its
seed (or taken from its explicit content), kept per channel as an ascending list of
message ids plus a dict, and paged with :mod:`bisect` the way Discord pages history.
It renders Discord JSON payloads, reports the truth, and mutates it (sends, edits,
deletes, "while the bot was offline" changes). It never does I/O.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from barkeeper.testing.discord._snowflake import iso_timestamp, make_snowflake, snowflake_ms
from barkeeper.testing.discord._spec import (
    ChannelAccess,
    EmulatorSpec,
    ExplicitAttachment,
    ExplicitContent,
)

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "EVERYONE_PERMISSIONS",
    "EmulatedChannel",
    "EmulatedGuild",
    "EmulatedMessage",
    "EmulatedRole",
    "EmulatedUser",
    "MessageRef",
    "OfflineChanges",
    "World",
]

#: Discord's message type of a reply.
REPLY_TYPE = 19
#: Discord's message type of a slash command's response.
CHAT_INPUT_COMMAND_TYPE = 20
#: Channel types: guild text, DM, category, public thread.
GUILD_TEXT, DM, GUILD_CATEGORY, PUBLIC_THREAD = 0, 1, 4, 11
#: Message flag of an ephemeral message.
EPHEMERAL_FLAG = 64
#: The longest ``content`` Discord allows (Nitro); bots may only send 2000.
LONG_CONTENT = 4000
#: The longest ``content`` a bot may send.
BOT_CONTENT_MAX = 2000
#: ``@everyone``'s permissions in every emulated guild: Discord's default set for a new
#: server (view channels, send messages, read history, use commands, …), without
#: *Administrator* (``0x8``) or *Manage Server* (``0x20``).
EVERYONE_PERMISSIONS = 1071698660929
#: The *Administrator* permission bit: a member with it has every permission.
ADMINISTRATOR = 1 << 3
#: Every permission bit Discord defines (up to *Use External Apps*, ``1 << 50``): what the
#: guild's owner and an administrator have.
ALL_PERMISSIONS = (1 << 51) - 1

_WORDS = tuple(
    """the a to and of you it is that in what lol yes no ok maybe tonight bar drink beer
    wine whiskey gin tonic lime ice tab round cheers mate again later sorry thanks please
    who where when why how good bad great terrible loud quiet music band song play table
    chair window door rain sun cold warm friday saturday weekend work boss meeting train
    bus taxi home late early tomorrow yesterday remember forgot story joke laugh funny weird
    pizza fries burger salad tea coffee water glass bottle barkeeper order pay cash card""".split()
)
_CORPUS = tuple(random.Random("barkeeper-discord:corpus").choices(_WORDS, k=8192))
_FIRST_NAMES = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter yasmin zoe"
).split()
_BOT_NAMES = "dj-bot dicebot modbot rss-feed weatherbot pollster".split()
_CHANNEL_NAMES = (
    "general random bar-talk memes music off-topic announcements help dev games "
    "photos links food late-night"
).split()
_GUILD_NAMES = (
    "The Tipsy Tavern",
    "Night Owls",
    "Pub Quiz League",
    "Corner Bar",
    "Cocktail Lab",
    "Brewers Guild",
)
# Text that trips up naive storage, search and rendering (all valid in PostgreSQL text).
_ODDITIES = (
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 flag",
    "🇯🇵🇫🇷 flags",
    "👍🏽 thumbs",
    "مرحبا بالعالم",
    "שלום עולם",
    "mixed \u200fRTL\u200f mark",
    "\u202eoverride\u202c text",
    "zero\u200bwidth\u200bspace",
    "joiner\u200dhere",
    "\ufeffbyte order mark",
    "e\u0301 cafe\u0301 n\u0303",
    "Z\u0351\u0352\u0353a\u0300\u0301\u0302l\u0316\u0317g\u0318\u0319o\u031a",
    "漢字かなカナ",
    "𝐁𝐨𝐥𝐝 𝔣𝔯𝔞𝔨𝔱𝔲𝔯",
    "ﷺ ligature",
    "line one\nline two\n\ttabbed",
    "**bold** _it_ `code` ```py\nprint('x')\n```",
    "\x07bell \x1b[31mred\x1b[0m",
    'quote\'s "double" \\back\\slash',
)
# Hostile: PostgreSQL text cannot store NUL, and lone surrogates are not valid UTF-8.
_HOSTILE = ("nul\x00inside", "\x00", "lone \ud800 high", "lone \udfff low", "half \ud83d emoji")
_ATTACHMENT_KINDS = (
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("gif", "image/gif"),
    ("pdf", "application/pdf"),
    ("txt", "text/plain; charset=utf-8"),
    ("mp4", "video/mp4"),
    ("zip", "application/zip"),
)


class MessageRef(NamedTuple):
    """Where a message is: its channel and its id."""

    channel_id: int
    message_id: int


@dataclass(slots=True)
class EmulatedUser:
    """A Discord user.

    Attributes:
        id: Snowflake.
        username: Unique username.
        global_name: Display name, if any.
        bot: Whether it is a bot account.
    """

    id: int
    username: str
    global_name: str | None
    bot: bool

    def payload(self) -> dict[str, Any]:
        """The user as Discord's JSON object."""
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(slots=True)
class EmulatedRole:
    """A guild role (``@everyone`` is implied: it has the guild's id).

    Attributes:
        id: Snowflake.
        guild_id: Its guild.
        name: Role name.
        position: Sort position (``@everyone`` is 0).
        permissions: Discord permission bits the role grants (``0``: none).
    """

    id: int
    guild_id: int
    name: str
    position: int
    permissions: int = 0

    def payload(self) -> dict[str, Any]:
        """The role as Discord's JSON object."""
        return _role_payload(self.id, self.name, self.position, permissions=str(self.permissions))


def _role_payload(role_id: int, name: str, position: int, *, permissions: str) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": permissions,
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


@dataclass(slots=True)
class EmulatedMessage:
    """A message as the emulator keeps it (rendered to Discord JSON on demand).

    Attributes:
        id: Snowflake; its timestamp is the message's creation time.
        channel_id: Channel snowflake.
        guild_id: Guild snowflake (``None`` in a DM).
        author_id: Author snowflake.
        content: Current text.
        edited_ms: Unix ms of the last edit, or ``None``.
        attachments: Discord attachment objects.
        embeds: Discord embed objects.
        reply_to: Id of the message this replies to, or ``None``.
        mention_ids: Mentioned users.
        pinned: Whether pinned.
        type: Discord message type (0 default, 19 reply, 20 slash-command response).
        flags: Discord message flags (64: ephemeral).
        webhook_id: The application id for interaction responses and followups.
        interaction_metadata: Discord's ``interaction_metadata`` of a command response.
        components: Discord component rows (buttons, selects) the bot attached.
        payload_overrides: Top-level keys replaced in the served JSON (see
            :attr:`ExplicitMessage.payload_overrides`).
    """

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str
    edited_ms: int | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    reply_to: int | None = None
    mention_ids: list[int] = field(default_factory=list)
    pinned: bool = False
    type: int = 0
    flags: int = 0
    webhook_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    payload_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> int:
        """Unix ms of creation (from the id)."""
        return snowflake_ms(self.id)


@dataclass(slots=True)
class EmulatedChannel:
    """A channel (guild text, DM, category or public thread) and its messages.

    Attributes:
        id: Snowflake.
        guild_id: Guild snowflake (``None`` for a DM).
        name: Channel name (empty for a DM).
        position: Sort position within the guild.
        access: How the bot may read it.
        ids: Message ids, ascending.
        messages: Messages by id.
        type: Discord channel type (0 guild text, 1 DM, 4 category, 11 public thread).
        parent_id: A thread's parent channel; a text channel's category.
        owner_id: A thread's creator.
        recipient_id: A DM's other user (the bot is the implied second one).
    """

    id: int
    guild_id: int | None
    name: str
    position: int
    access: ChannelAccess = "ok"
    ids: list[int] = field(default_factory=list)
    messages: dict[int, EmulatedMessage] = field(default_factory=dict)
    type: int = GUILD_TEXT
    parent_id: int | None = None
    owner_id: int | None = None
    recipient_id: int | None = None

    def payload(self, recipient: dict[str, Any] | None = None) -> dict[str, Any]:
        """The channel as Discord's JSON object.

        Args:
            recipient: The other user's payload, for a DM.
        """
        last = str(self.ids[-1]) if self.ids else None
        if self.type == DM:
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": last,
                "recipients": [] if recipient is None else [recipient],
                "flags": 0,
            }
        if self.type == PUBLIC_THREAD:
            return {
                "id": str(self.id),
                "type": PUBLIC_THREAD,
                "guild_id": str(self.guild_id),
                "parent_id": str(self.parent_id),
                "owner_id": str(self.owner_id),
                "name": self.name,
                "last_message_id": last,
                "rate_limit_per_user": 0,
                "message_count": len(self.ids),
                "total_message_sent": len(self.ids),
                "member_count": 1,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_timestamp(snowflake_ms(self.id)),
                    "locked": False,
                    "create_timestamp": iso_timestamp(snowflake_ms(self.id)),
                },
            }
        if self.type == GUILD_CATEGORY:
            return {
                "id": str(self.id),
                "type": GUILD_CATEGORY,
                "guild_id": str(self.guild_id),
                "name": self.name,
                "position": self.position,
                "permission_overwrites": [],
                "parent_id": None,
                "nsfw": False,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": last,
            "flags": 0,
        }

    def page(
        self,
        limit: int,
        *,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> list[EmulatedMessage]:
        """One page of history, newest first, exactly as Discord answers it.

        Args:
            limit: 1 to 100.
            before: Messages older than this id (the newest ``limit`` of them).
            after: Messages newer than this id (the *oldest* ``limit`` of them).
            around: ``limit // 2`` messages on each side of this id plus the message
                itself if it exists (so an even ``limit`` can yield ``limit + 1``,
                the quirk discord.py documents).

        Returns:
            The messages, newest first.
        """
        ids = self.ids
        if around is not None:
            half = limit // 2
            lo = bisect.bisect_left(ids, around)
            hi = bisect.bisect_right(ids, around)
            chosen = ids[max(0, lo - half) : hi + half]
        elif after is not None:
            start = bisect.bisect_right(ids, after)
            chosen = ids[start : start + limit]
        elif before is not None:
            end = bisect.bisect_left(ids, before)
            chosen = ids[max(0, end - limit) : end]
        else:
            chosen = ids[-limit:]
        messages = self.messages
        return [messages[i] for i in reversed(chosen)]


@dataclass(slots=True)
class EmulatedGuild:
    """A guild.

    Attributes:
        id: Snowflake.
        name: Guild name.
        owner_id: The owner's snowflake.
        channel_ids: Its text channels, by position.
        thread_ids: Its threads, oldest first.
        category_ids: Its categories (kept in :attr:`World.categories`), oldest first.
        roles: Its roles besides ``@everyone``, by id.
        member_roles: The role ids each member has (``@everyone`` not listed), by user id.
    """

    id: int
    name: str
    owner_id: int
    channel_ids: list[int] = field(default_factory=list)
    thread_ids: list[int] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    roles: dict[int, EmulatedRole] = field(default_factory=dict)
    member_roles: dict[int, list[int]] = field(default_factory=dict)

    def payload(self, *, member_count: int | None = None) -> dict[str, Any]:
        """The guild as Discord's JSON object, with the ``@everyone`` role."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [
                _role_payload(self.id, "@everyone", 0, permissions=str(EVERYONE_PERMISSIONS)),
                *(role.payload() for role in self.roles.values()),
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }
        if member_count is not None:
            data["approximate_member_count"] = member_count
            data["approximate_presence_count"] = member_count // 2
        return data


@dataclass(slots=True)
class OfflineChanges:
    """What :meth:`World.apply_offline_changes` changed.

    Attributes:
        edited: Messages whose content and ``edited_timestamp`` changed.
        deleted: Messages removed.
        created: Messages added after every existing one of their channel.
    """

    edited: list[MessageRef] = field(default_factory=list)
    deleted: list[MessageRef] = field(default_factory=list)
    created: list[MessageRef] = field(default_factory=list)


class _Ids:
    """Hands out unique snowflakes."""

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._entity_counter = 0

    def claim(self, snowflake: int, *, above: int = 0) -> int:
        snowflake = max(snowflake, above + 1)
        while snowflake in self._used:
            snowflake += 1
        self._used.add(snowflake)
        return snowflake

    def entity(self, ms: int) -> int:
        self._entity_counter += 1
        return self.claim(make_snowflake(ms, increment=self._entity_counter))

    def __contains__(self, snowflake: int) -> bool:
        return snowflake in self._used


_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)


def _ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _UNIX_EPOCH) // _ONE_MS


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class World:
    """Guilds, channels, users and messages: the truth the emulator serves.

    Build one with :meth:`from_spec`. Every mutation keeps each channel's ids
    ascending and every timestamp consistent with its id.

    Attributes:
        bot: The bot user the token belongs to.
        users: Every user by id, the bot included.
        guilds: Guilds by id, in creation order.
        channels: Channels by id, in creation order (categories are not channels here:
            no message is posted in one).
        categories: Guild categories by id, in creation order.
    """

    def __init__(self, bot: EmulatedUser) -> None:
        """Create an empty world around ``bot`` (use :meth:`from_spec` normally)."""
        self.bot = bot
        self.users: dict[int, EmulatedUser] = {bot.id: bot}
        self.guilds: dict[int, EmulatedGuild] = {}
        self.channels: dict[int, EmulatedChannel] = {}
        self.categories: dict[int, EmulatedChannel] = {}
        self._ids = _Ids()
        self._ids.claim(bot.id)
        self._clock_ms = snowflake_ms(bot.id)
        self._seed = 0
        self._offline_calls = 0
        self._long_cache: dict[int, str] = {}

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: EmulatorSpec) -> World:
        """Generate (or, with ``spec.explicit``, load) the world ``spec`` describes.

        Args:
            spec: The emulator spec; only its content fields and ``seed`` matter.

        Returns:
            The world. The same spec always gives the same world.

        Raises:
            ValueError: The explicit content is inconsistent (unknown author,
                duplicate id, id and timestamp disagreeing, reply to a missing message).
        """
        start_ms = _ms(spec.start)
        bot_ms = start_ms - 400 * 86_400_000
        bot = EmulatedUser(
            id=make_snowflake(bot_ms, worker=0, process=0, increment=0),
            username=spec.bot_username,
            global_name=spec.bot_username.capitalize(),
            bot=True,
        )
        world = cls(bot)
        world._seed = spec.seed
        if spec.explicit is not None:
            world._load_explicit(spec.explicit, start_ms, spec.mean_gap_seconds)
        else:
            world._generate(spec, start_ms)
        return world

    def _generate(self, spec: EmulatorSpec, start_ms: int) -> None:
        meta = random.Random(f"barkeeper-discord:{spec.seed}:meta")
        for index in range(spec.users):
            is_bot = meta.random() < spec.bot_user_fraction
            if is_bot:
                name = f"{_BOT_NAMES[index % len(_BOT_NAMES)]}{index}"
                global_name: str | None = None
            else:
                name = f"{_FIRST_NAMES[index % len(_FIRST_NAMES)]}{index}"
                global_name = None if meta.random() < 0.3 else name.rstrip("0123456789").title()
            ms = start_ms - meta.randrange(30, 300) * 86_400_000
            user = EmulatedUser(self._ids.entity(ms), name, global_name, is_bot)
            self.users[user.id] = user
        humans = [u.id for u in self.users.values() if not u.bot]
        for index in range(spec.guilds):
            ms = start_ms - (200 - index) * 86_400_000
            owner = humans[index % len(humans)] if humans else self.bot.id
            name = _GUILD_NAMES[index % len(_GUILD_NAMES)]
            if index >= len(_GUILD_NAMES):
                name = f"{name} {index // len(_GUILD_NAMES) + 1}"
            guild = EmulatedGuild(self._ids.entity(ms), name, owner)
            self.guilds[guild.id] = guild
        guilds = list(self.guilds.values())
        restricted_from = spec.channels - spec.empty_channels - spec.forbidden_channels
        for index in range(spec.channels):
            guild = guilds[index % len(guilds)]
            name = _CHANNEL_NAMES[index % len(_CHANNEL_NAMES)]
            if index >= len(_CHANNEL_NAMES):
                name = f"{name}-{index // len(_CHANNEL_NAMES) + 1}"
            access: ChannelAccess = "ok"
            if index >= spec.channels - spec.empty_channels:
                access = "empty"
            elif index >= restricted_from:
                access = "forbidden"
            ms = start_ms - (100 - index % 100) * 86_400_000
            channel = EmulatedChannel(
                id=self._ids.entity(ms),
                guild_id=guild.id,
                name=name,
                position=len(guild.channel_ids),
                access=access,
            )
            guild.channel_ids.append(channel.id)
            self.channels[channel.id] = channel
        authors = [u for u in self.users if u != self.bot.id] or [self.bot.id]
        for index, channel in enumerate(self.channels.values()):
            rng = random.Random(f"barkeeper-discord:{spec.seed}:channel:{index}")
            self._generate_channel(channel, index, rng, spec, start_ms, authors)

    def _generate_channel(
        self,
        channel: EmulatedChannel,
        index: int,
        rng: random.Random,
        spec: EmulatorSpec,
        start_ms: int,
        authors: Sequence[int],
    ) -> None:
        rand = rng.random
        # Locals, not attribute lookups: this loop runs once per generated message.
        own_rate, long_rate, unicode_rate = spec.own_message_rate, spec.long_rate, spec.unicode_rate
        hostile, hostile_rate = spec.hostile_text, spec.hostile_rate
        mention_rate, embed_rate = spec.mention_rate, spec.embed_rate
        attachment_rate, empty_rate = spec.attachment_rate, spec.empty_attachment_rate
        reply_rate, edit_rate, pinned_rate = spec.reply_rate, spec.edit_rate, spec.pinned_rate
        gap = 1.0 / (spec.mean_gap_seconds * 1000.0)
        ms = start_ms + rng.randrange(3_600_000)
        last_id = 0
        own_id = self.bot.id
        ids = channel.ids
        messages = channel.messages
        for position in range(spec.messages_per_channel):
            if position:
                ms += 1 + int(rng.expovariate(gap))
            message_id = self._ids.claim(
                make_snowflake(ms, worker=1, process=index, increment=position), above=last_id
            )
            last_id = message_id
            author = own_id if rand() < own_rate else rng.choice(authors)
            if rand() < long_rate:
                content = self._long_text(rng)
            elif rand() < unicode_rate:
                content = " ".join(
                    [*rng.sample(_ODDITIES, rng.randint(1, 3)), self._sentence(rng, 6)]
                )
            else:
                content = self._sentence(rng, 24)
            if hostile and rand() < hostile_rate:
                content = f"{content} {rng.choice(_HOSTILE)}"
            mention_ids: list[int] = []
            if rand() < mention_rate:
                target = rng.choice(authors)
                mention_ids.append(target)
                content = f"<@{target}> {content}"
            embeds: list[dict[str, Any]] = []
            if rand() < embed_rate:
                embed, url = self._embed(rng, message_id)
                embeds.append(embed)
                if url:
                    content = f"{content} {url}"
            attachments: list[dict[str, Any]] = []
            if rand() < attachment_rate:
                attachments = self._attachments(rng, channel, index, message_id, ms)
            elif rand() < empty_rate:
                attachments = self._attachments(rng, channel, index, message_id, ms)
                content, embeds, mention_ids = "", [], []
            reply_to = None
            if ids and rand() < reply_rate:
                reply_to = rng.choice(ids[-50:])
                replied_author = messages[reply_to].author_id
                if replied_author not in mention_ids:
                    mention_ids.append(replied_author)
            edited_ms = None
            if rand() < edit_rate:
                edited_ms = ms + rng.randrange(5_000, 7_200_000)
                self._clock_ms = max(self._clock_ms, edited_ms)
            message = EmulatedMessage(
                id=message_id,
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author_id=author,
                content=content[:LONG_CONTENT],
                edited_ms=edited_ms,
                attachments=attachments,
                embeds=embeds,
                reply_to=reply_to,
                mention_ids=mention_ids,
                pinned=rand() < pinned_rate,
                type=REPLY_TYPE if reply_to is not None else 0,
            )
            ids.append(message_id)
            messages[message_id] = message
        if ids:
            self._clock_ms = max(self._clock_ms, snowflake_ms(ids[-1]))

    def _load_explicit(self, content: ExplicitContent, start_ms: int, gap_s: float) -> None:
        for spec_user in content.users:
            if spec_user.id in self.users:
                raise ValueError(f"duplicate user id {spec_user.id}")
            self._ids.claim(spec_user.id)
            self.users[spec_user.id] = EmulatedUser(
                spec_user.id, spec_user.username, spec_user.global_name, spec_user.bot
            )
        channel_index = 0
        gap_ms = max(1, int(gap_s * 1000))
        for guild_index, spec_guild in enumerate(content.guilds):
            ms = start_ms - (200 - guild_index) * 86_400_000
            guild_id = self._explicit_id(spec_guild.id, ms)
            if guild_id in self.guilds:
                raise ValueError(f"duplicate guild id {guild_id}")
            owner = next(iter(u for u in self.users if u != self.bot.id), self.bot.id)
            guild = EmulatedGuild(guild_id, spec_guild.name, owner)
            self.guilds[guild_id] = guild
            for spec_channel in spec_guild.channels:
                ms = start_ms - (100 - channel_index % 100) * 86_400_000
                channel_id = self._explicit_id(spec_channel.id, ms)
                channel = EmulatedChannel(
                    id=channel_id,
                    guild_id=guild_id,
                    name=spec_channel.name,
                    position=len(guild.channel_ids),
                    access=spec_channel.access,
                )
                guild.channel_ids.append(channel_id)
                self.channels[channel_id] = channel
                clock = start_ms
                pending: list[EmulatedMessage] = []
                for position, spec_message in enumerate(spec_channel.messages):
                    if spec_message.author_id not in self.users:
                        raise ValueError(
                            f"message author {spec_message.author_id} is not a user of the spec"
                        )
                    if spec_message.id is not None:
                        message_id = spec_message.id
                        if spec_message.timestamp is not None and _ms(
                            spec_message.timestamp
                        ) != snowflake_ms(message_id):
                            raise ValueError(
                                f"message {message_id}: timestamp disagrees with the id"
                            )
                        if message_id in self._ids:
                            raise ValueError(f"duplicate message id {message_id}")
                        self._ids.claim(message_id)
                    else:
                        ms = (
                            _ms(spec_message.timestamp)
                            if spec_message.timestamp is not None
                            else clock + gap_ms
                        )
                        message_id = self._ids.claim(
                            make_snowflake(ms, worker=1, process=channel_index, increment=position)
                        )
                    clock = max(clock, snowflake_ms(message_id))
                    pending.append(
                        EmulatedMessage(
                            id=message_id,
                            channel_id=channel_id,
                            guild_id=guild_id,
                            author_id=spec_message.author_id,
                            content=spec_message.content,
                            edited_ms=(
                                None
                                if spec_message.edited_timestamp is None
                                else _ms(spec_message.edited_timestamp)
                            ),
                            attachments=[
                                self._attachment_payload(
                                    channel,
                                    channel_index,
                                    message_id,
                                    number,
                                    attachment.filename,
                                    attachment.size,
                                    attachment.content_type,
                                )
                                for number, attachment in enumerate(spec_message.attachments)
                            ],
                            embeds=[dict(embed) for embed in spec_message.embeds],
                            reply_to=spec_message.reply_to,
                            pinned=spec_message.pinned,
                            type=REPLY_TYPE if spec_message.reply_to is not None else 0,
                            payload_overrides=dict(spec_message.payload_overrides),
                        )
                    )
                pending.sort(key=lambda message: message.id)
                for message in pending:
                    channel.ids.append(message.id)
                    channel.messages[message.id] = message
                    self._clock_ms = max(self._clock_ms, message.ms, message.edited_ms or 0)
                for message in pending:
                    if message.reply_to is not None:
                        if message.reply_to not in channel.messages:
                            raise ValueError(
                                f"message {message.id} replies to {message.reply_to}, "
                                "which is not in its channel"
                            )
                        message.mention_ids = [channel.messages[message.reply_to].author_id]
                channel_index += 1

    def _explicit_id(self, given: int | None, ms: int) -> int:
        if given is None:
            return self._ids.entity(ms)
        if given in self._ids:
            raise ValueError(f"duplicate id {given}")
        return self._ids.claim(given)

    # -- content helpers ---------------------------------------------------------------

    @staticmethod
    def _sentence(rng: random.Random, most: int) -> str:
        # A window of a fixed random word sequence: as varied as sampling words one
        # by one, at a fraction of the cost (generation speed matters at 100k messages).
        rand = rng.random
        start = int(rand() * (len(_CORPUS) - most))
        text = " ".join(_CORPUS[start : start + 1 + int(rand() * most)])
        return text[0].upper() + text[1:] if rand() < 0.5 else text

    def _long_text(self, rng: random.Random) -> str:
        seed = rng.randrange(16)
        cached = self._long_cache.get(seed)
        if cached is None:
            local = random.Random(f"barkeeper-discord:long:{seed}")
            parts: list[str] = []
            size = 0
            while size < LONG_CONTENT:
                part = self._sentence(local, 30) + ". "
                parts.append(part)
                size += len(part)
            cached = "".join(parts)[: LONG_CONTENT - 1] + "."
            self._long_cache[seed] = cached
        return cached

    @staticmethod
    def _embed(rng: random.Random, message_id: int) -> tuple[dict[str, Any], str | None]:
        slug = hashlib.blake2s(str(message_id).encode(), digest_size=4).hexdigest()
        url = f"https://example.com/post/{slug}"
        if rng.random() < 0.5:
            return {
                "type": "link",
                "url": url,
                "title": f"Post {slug}",
                "description": "An article someone shared.",
                "provider": {"name": "Example"},
            }, url
        return {
            "type": "rich",
            "title": f"Round {rng.randint(1, 99)}",
            "description": "Scores so far",
            "color": rng.randrange(0x1000000),
            "fields": [
                {"name": "Team A", "value": str(rng.randint(0, 50)), "inline": True},
                {"name": "Team B", "value": str(rng.randint(0, 50)), "inline": True},
            ],
            "footer": {"text": "pub quiz"},
        }, None

    def _attachments(
        self, rng: random.Random, channel: EmulatedChannel, index: int, message_id: int, ms: int
    ) -> list[dict[str, Any]]:
        result = []
        for number in range(rng.choice((1, 1, 1, 2, 3))):
            extension, content_type = rng.choice(_ATTACHMENT_KINDS)
            filename = f"file_{number}_{rng.randrange(10_000)}.{extension}"
            size = rng.randrange(100, 8_000_000)
            result.append(
                self._attachment_payload(
                    channel, index, message_id, number, filename, size, content_type
                )
            )
        return result

    def _attachment_payload(
        self,
        channel: EmulatedChannel,
        index: int,
        message_id: int,
        number: int,
        filename: str,
        size: int,
        content_type: str | None,
    ) -> dict[str, Any]:
        attachment_id = self._ids.claim(
            make_snowflake(
                snowflake_ms(message_id), worker=2, process=index, increment=message_id + number
            )
        )
        path = f"attachments/{channel.id}/{attachment_id}/{filename}"
        data: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": size,
            "url": f"https://cdn.discordapp.com/{path}",
            "proxy_url": f"https://media.discordapp.net/{path}",
            "content_type": content_type,
        }
        if content_type and content_type.startswith("image/"):
            data["width"], data["height"] = 800, 600
        return data

    # -- reading -----------------------------------------------------------------------

    def channel(self, channel_id: int) -> EmulatedChannel:
        """The channel with ``channel_id``.

        Raises:
            KeyError: No such channel.
        """
        return self.channels[channel_id]

    def channel_ids(self, *, access: ChannelAccess | None = None) -> list[int]:
        """Channel ids in creation order, optionally only those with ``access``."""
        return [c.id for c in self.channels.values() if access is None or c.access == access]

    def message_payload(self, message: EmulatedMessage, *, nested: bool = True) -> dict[str, Any]:
        """``message`` as Discord's JSON object (with ``referenced_message`` for replies).

        Args:
            message: The stored message.
            nested: Include ``referenced_message`` (Discord nests one level only).

        Returns:
            The payload discord.py turns into a :class:`discord.Message`.
        """
        users = self.users
        data: dict[str, Any] = {
            "id": str(message.id),
            "type": message.type,
            "content": message.content,
            "channel_id": str(message.channel_id),
            "author": users[message.author_id].payload(),
            "attachments": message.attachments,
            "embeds": message.embeds,
            "mentions": [users[user_id].payload() for user_id in message.mention_ids],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": message.pinned,
            "tts": False,
            "timestamp": iso_timestamp(snowflake_ms(message.id)),
            "edited_timestamp": (
                None if message.edited_ms is None else iso_timestamp(message.edited_ms)
            ),
            "flags": message.flags,
            "components": message.components,
        }
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(message.webhook_id)
        if message.interaction_metadata is not None:
            data["interaction_metadata"] = message.interaction_metadata
        if message.reply_to is not None:
            reference = {
                "type": 0,
                "message_id": str(message.reply_to),
                "channel_id": str(message.channel_id),
            }
            if message.guild_id is not None:
                reference["guild_id"] = str(message.guild_id)
            data["message_reference"] = reference
            if nested:
                target = self.channels[message.channel_id].messages.get(message.reply_to)
                data["referenced_message"] = (
                    None if target is None else self.message_payload(target, nested=False)
                )
        data.update(message.payload_overrides)
        return data

    def channel_payload(self, channel: EmulatedChannel) -> dict[str, Any]:
        """``channel`` as Discord's JSON object (a DM names its other user)."""
        if channel.recipient_id is not None:
            return channel.payload(self.users[channel.recipient_id].payload())
        return channel.payload()

    def truth(self) -> dict[int, list[dict[str, Any]]]:
        """Every message of every channel, oldest first, with ``int`` snowflakes.

        Each record has ``id``, ``channel_id``, ``guild_id``, ``author_id``,
        ``author_bot``, ``type``, ``content``, ``timestamp`` and ``edited_timestamp``
        (ISO strings, ``None`` if never edited), ``attachments`` and ``embeds``
        (Discord objects), ``reply_to``, ``mention_ids`` and ``pinned``. Channels the
        bot cannot read are included: the truth is what exists, not what is visible.
        """
        return {
            channel.id: [self._truth_record(channel.messages[i]) for i in channel.ids]
            for channel in self.channels.values()
        }

    def truth_json(self) -> dict[str, list[dict[str, Any]]]:
        """:meth:`truth` with every snowflake as a string (Discord's JSON convention)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for channel_id, records in self.truth().items():
            converted = []
            for record in records:
                record = dict(record)
                for key in ("id", "channel_id", "guild_id", "author_id", "reply_to"):
                    if record[key] is not None:
                        record[key] = str(record[key])
                record["mention_ids"] = [str(i) for i in record["mention_ids"]]
                converted.append(record)
            result[str(channel_id)] = converted
        return result

    def _truth_record(self, message: EmulatedMessage) -> dict[str, Any]:
        return {
            "id": message.id,
            "channel_id": message.channel_id,
            "guild_id": message.guild_id,
            "author_id": message.author_id,
            "author_bot": self.users[message.author_id].bot,
            "type": message.type,
            "content": message.content,
            "timestamp": iso_timestamp(snowflake_ms(message.id)),
            "edited_timestamp": (
                None if message.edited_ms is None else iso_timestamp(message.edited_ms)
            ),
            "attachments": [dict(a) for a in message.attachments],
            "embeds": [dict(e) for e in message.embeds],
            "reply_to": message.reply_to,
            "mention_ids": list(message.mention_ids),
            "pinned": message.pinned,
        }

    def message_count(self) -> int:
        """Messages in every channel."""
        return sum(len(channel.ids) for channel in self.channels.values())

    # -- mutation ----------------------------------------------------------------------

    def set_channel_access(self, channel_id: int, access: ChannelAccess) -> None:
        """Change how the bot may read a channel (takes effect on the next request).

        Raises:
            KeyError: No such channel.
        """
        self.channels[channel_id].access = access

    def add_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int | None = None,
        at: dt.datetime | None = None,
        attachments: Iterable[ExplicitAttachment] = (),
        embeds: Iterable[dict[str, Any]] = (),
        reply_to: int | None = None,
        mentions: Iterable[int] = (),
        mention_replied: bool = True,
    ) -> EmulatedMessage:
        """Append a message to a channel (it becomes its newest).

        Args:
            channel_id: The channel.
            content: Text.
            author_id: Author; the bot when ``None``.
            at: Creation time; now when ``None``. Moved forward if it would not be
                after the channel's newest message.
            attachments: Files.
            embeds: Discord embed objects.
            reply_to: Id of a message of the channel this replies to.
            mentions: Users the message mentions (their ``<@id>`` is not added to
                ``content``; write it there yourself if the text should show it).
            mention_replied: Whether a reply mentions (pings) the replied-to author,
                as Discord's default reply does.

        Returns:
            The stored message.

        Raises:
            KeyError: Unknown channel, author, mentioned user or replied-to message.
        """
        ms = _ms(at) if at is not None else _now_ms()
        message = self._append(
            channel_id, content, author_id, ms, attachments, embeds, reply_to, mention_replied
        )
        for user_id in mentions:
            if user_id not in self.users:
                raise KeyError(f"unknown user {user_id}")
            if user_id not in message.mention_ids:
                message.mention_ids.append(user_id)
        return message

    def _append(
        self,
        channel_id: int,
        content: str,
        author_id: int | None,
        ms: int,
        attachments: Iterable[ExplicitAttachment] = (),
        embeds: Iterable[dict[str, Any]] = (),
        reply_to: int | None = None,
        mention_replied: bool = True,
    ) -> EmulatedMessage:
        channel = self.channels[channel_id]
        author = self.bot.id if author_id is None else author_id
        if author not in self.users:
            raise KeyError(f"unknown user {author}")
        if reply_to is not None and reply_to not in channel.messages:
            raise KeyError(f"unknown message {reply_to} in channel {channel_id}")
        last = channel.ids[-1] if channel.ids else 0
        if last:
            ms = max(ms, snowflake_ms(last))
        index = list(self.channels).index(channel_id)
        message_id = self._ids.claim(
            make_snowflake(ms, worker=1, process=index, increment=len(channel.ids)), above=last
        )
        message = EmulatedMessage(
            id=message_id,
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author_id=author,
            content=content,
            embeds=[dict(embed) for embed in embeds],
            reply_to=reply_to,
            mention_ids=(
                [channel.messages[reply_to].author_id]
                if reply_to is not None and mention_replied
                else []
            ),
            type=REPLY_TYPE if reply_to is not None else 0,
        )
        message.attachments = [
            self._attachment_payload(
                channel, index, message_id, number, a.filename, a.size, a.content_type
            )
            for number, a in enumerate(attachments)
        ]
        channel.ids.append(message_id)
        channel.messages[message_id] = message
        self._clock_ms = max(self._clock_ms, snowflake_ms(message_id))
        return message

    def add_user(
        self, username: str, *, global_name: str | None = None, bot: bool = False
    ) -> EmulatedUser:
        """Create a user (a member of every guild), or return the one with ``username``.

        Args:
            username: Unique username.
            global_name: Display name, if any (only used when creating).
            bot: Whether the account is a bot (only used when creating).

        Returns:
            The user.
        """
        for user in self.users.values():
            if user.username == username:
                return user
        user = EmulatedUser(self._ids.entity(_now_ms()), username, global_name, bot)
        self.users[user.id] = user
        return user

    def add_category(
        self, guild_id: int, name: str, *, channel_ids: Iterable[int] = ()
    ) -> EmulatedChannel:
        """Create a category (channel type 4) in a guild, and move channels into it.

        Args:
            guild_id: The guild.
            name: Category name.
            channel_ids: Text channels of that guild to put in it.

        Returns:
            The category (kept in :attr:`categories`).

        Raises:
            KeyError: Unknown guild or channel.
            ValueError: A channel is not a text channel of that guild.
        """
        guild = self.guilds[guild_id]
        category = EmulatedChannel(
            id=self._ids.entity(_now_ms()),
            guild_id=guild_id,
            name=name,
            position=len(guild.category_ids),
            type=GUILD_CATEGORY,
        )
        self.categories[category.id] = category
        guild.category_ids.append(category.id)
        for channel_id in channel_ids:
            self.move_channel(channel_id, category.id)
        return category

    def move_channel(self, channel_id: int, category_id: int | None) -> EmulatedChannel:
        """Put a text channel in a category (``None``: in none).

        Raises:
            KeyError: Unknown channel or category.
            ValueError: Not a guild text channel, or the category is another guild's.
        """
        channel = self.channels[channel_id]
        if channel.type != GUILD_TEXT or channel.guild_id is None:
            raise ValueError(f"channel {channel_id} is not a guild text channel")
        if category_id is not None and self.categories[category_id].guild_id != channel.guild_id:
            raise ValueError(f"category {category_id} is in another guild")
        channel.parent_id = category_id
        return channel

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0) -> EmulatedRole:
        """Create a role in a guild (above the existing ones).

        Args:
            guild_id: The guild.
            name: Role name.
            permissions: Discord permission bits it grants (``0``: none).

        Raises:
            KeyError: Unknown guild.
            ValueError: ``permissions`` is negative.
        """
        guild = self.guilds[guild_id]
        if permissions < 0:
            raise ValueError(f"permissions must be a non-negative bit set, not {permissions}")
        role = EmulatedRole(
            self._ids.entity(_now_ms()), guild_id, name, len(guild.roles) + 1, permissions
        )
        guild.roles[role.id] = role
        return role

    def set_roles(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> list[int]:
        """Give a member exactly these roles in a guild; returns them.

        Raises:
            KeyError: Unknown guild, user or role (of that guild).
        """
        guild = self.guilds[guild_id]
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id}")
        roles = list(dict.fromkeys(role_ids))
        for role_id in roles:
            if role_id not in guild.roles:
                raise KeyError(f"unknown role {role_id} in guild {guild_id}")
        guild.member_roles[user_id] = roles
        return roles

    def roles_of(self, guild_id: int, user_id: int) -> list[int]:
        """The role ids of a member (``@everyone`` not listed)."""
        return list(self.guilds[guild_id].member_roles.get(user_id, ()))

    def member_permissions(self, guild_id: int, user_id: int) -> int:
        """A member's permission bits in a guild, computed as Discord does.

        The owner has every permission; otherwise ``@everyone``'s permissions OR those of
        each of their roles, and every permission if that includes *Administrator*.
        Channel overwrites are not emulated: a channel's permissions are the guild's.

        Raises:
            KeyError: Unknown guild.
        """
        guild = self.guilds[guild_id]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        bits = EVERYONE_PERMISSIONS
        for role_id in guild.member_roles.get(user_id, ()):
            bits |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def new_id(self) -> int:
        """A fresh snowflake for now (for interactions, commands and the like)."""
        return self._ids.entity(_now_ms())

    def dm_channel(self, user_id: int) -> EmulatedChannel:
        """The DM channel between the bot and ``user_id``, created on first use.

        Raises:
            KeyError: Unknown user.
        """
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id}")
        for channel in self.channels.values():
            if channel.type == DM and channel.recipient_id == user_id:
                return channel
        channel = EmulatedChannel(
            id=self._ids.entity(_now_ms()),
            guild_id=None,
            name="",
            position=0,
            type=DM,
            recipient_id=user_id,
        )
        self.channels[channel.id] = channel
        return channel

    def add_thread(
        self, parent_id: int, name: str, *, owner_id: int, message_id: int | None = None
    ) -> EmulatedChannel:
        """Open a public thread in a guild text channel.

        Args:
            parent_id: The text channel.
            name: Thread name.
            owner_id: Who opens it.
            message_id: Start it from this message of the parent; the thread then
                has the message's id, as on Discord.

        Returns:
            The thread (also a channel of :attr:`channels`).

        Raises:
            KeyError: Unknown channel, user or message.
            ValueError: The parent is not a guild text channel, or the message
                already has a thread.
        """
        parent = self.channels[parent_id]
        if parent.type != GUILD_TEXT or parent.guild_id is None:
            raise ValueError(f"channel {parent_id} is not a guild text channel")
        if owner_id not in self.users:
            raise KeyError(f"unknown user {owner_id}")
        if message_id is not None:
            if message_id not in parent.messages:
                raise KeyError(f"unknown message {message_id} in channel {parent_id}")
            if message_id in self.channels:
                raise ValueError(f"message {message_id} already has a thread")
            thread_id = message_id  # Discord gives a message's thread the message's id
        else:
            thread_id = self._ids.entity(_now_ms())
        thread = EmulatedChannel(
            id=thread_id,
            guild_id=parent.guild_id,
            name=name,
            position=0,
            type=PUBLIC_THREAD,
            parent_id=parent_id,
            owner_id=owner_id,
        )
        self.channels[thread.id] = thread
        self.guilds[parent.guild_id].thread_ids.append(thread.id)
        return thread

    def edit_message(
        self, channel_id: int, message_id: int, content: str, *, at: dt.datetime | None = None
    ) -> EmulatedMessage:
        """Replace a message's content and set its ``edited_timestamp``.

        Args:
            channel_id: The channel.
            message_id: The message.
            content: New text.
            at: Edit time; now when ``None`` (never before the message itself).

        Returns:
            The edited message.

        Raises:
            KeyError: Unknown channel or message.
        """
        message = self.channels[channel_id].messages[message_id]
        ms = _ms(at) if at is not None else _now_ms()
        message.content = content
        message.edited_ms = max(ms, message.ms, message.edited_ms or 0)
        self._clock_ms = max(self._clock_ms, message.edited_ms)
        return message

    def delete_message(self, channel_id: int, message_id: int) -> EmulatedMessage:
        """Remove a message (replies to it keep their reference; it resolves to nothing).

        Returns:
            The removed message.

        Raises:
            KeyError: Unknown channel or message.
        """
        channel = self.channels[channel_id]
        message = channel.messages.pop(message_id)
        del channel.ids[bisect.bisect_left(channel.ids, message_id)]
        return message

    def apply_offline_changes(
        self,
        *,
        edits: int = 0,
        deletes: int = 0,
        new_messages: int = 0,
        seed: int | None = None,
        channel_ids: Sequence[int] | None = None,
    ) -> OfflineChanges:
        """Change the truth as if it happened while the bot was offline.

        Edits and deletes hit distinct random messages; new messages are appended
        after every existing one. Change times follow the latest time the world has
        seen, so the outcome is deterministic for a given ``seed``.

        Args:
            edits: Messages to edit (new content, ``edited_timestamp`` set).
            deletes: Messages to delete.
            new_messages: Messages to add.
            seed: Seeds the choices; ``None`` derives one from the spec's seed and the
                number of earlier calls.
            channel_ids: Channels to change; default every channel with access ``"ok"``.

        Returns:
            What changed.

        Raises:
            ValueError: More edits plus deletes than there are messages.
        """
        if seed is None:
            seed = self._seed * 1_000_003 + self._offline_calls
        self._offline_calls += 1
        rng = random.Random(f"barkeeper-discord:offline:{seed}")
        chosen_channels = (
            [self.channels[i] for i in channel_ids]
            if channel_ids is not None
            else [c for c in self.channels.values() if c.access == "ok"]
        )
        pool = [MessageRef(c.id, m) for c in chosen_channels for m in c.ids]
        if edits + deletes > len(pool):
            raise ValueError(
                f"{edits} edits + {deletes} deletes asked for, only {len(pool)} messages"
            )
        changes = OfflineChanges()
        picked = rng.sample(pool, edits + deletes)
        for ref in sorted(picked[:edits]):
            self._clock_ms += rng.randrange(1_000, 60_000)
            message = self.channels[ref.channel_id].messages[ref.message_id]
            message.content = f"{self._sentence(rng, 12)} (edited)"
            message.edited_ms = max(self._clock_ms, message.ms)
            changes.edited.append(ref)
        for ref in sorted(picked[edits:]):
            self.delete_message(ref.channel_id, ref.message_id)
            changes.deleted.append(ref)
        authors = [u for u in self.users if u != self.bot.id] or [self.bot.id]
        for _ in range(new_messages if chosen_channels else 0):
            self._clock_ms += rng.randrange(1_000, 60_000)
            channel = rng.choice(chosen_channels)
            message = self._append(
                channel.id, self._sentence(rng, 20), rng.choice(authors), self._clock_ms
            )
            changes.created.append(MessageRef(channel.id, message.id))
        return changes
