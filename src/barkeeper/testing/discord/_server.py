""":class:`DiscordEmulator`: a local Discord (REST API and gateway) for the real discord.py.

It serves the routes discord.py needs to log in, read channels and guilds, page
message history, send, edit and delete messages, type, open DMs and threads, sync
application commands and answer interactions (callback, followup and ``@original``
webhook routes), under ``/api/v10`` on 127.0.0.1 (by default), with Discord's JSON
error bodies, ``X-RateLimit-*`` headers and 429s, seeded fault injection and request
statistics; ``/gateway`` is the websocket (:class:`~barkeeper.testing.discord.Gateway`).
What the bot does through REST is stored in the world (so history sees it) and
recorded in :attr:`DiscordEmulator.activity`. It never opens a connection to anything.

Outside ``/api`` unauthenticated helper routes exist for other processes:
``GET /_emulator/info``, ``GET /_emulator/truth``, ``GET /_emulator/stats``,
``POST /_emulator/offline-changes`` and the gateway-driving ones of
:mod:`barkeeper.testing.discord._helpers` (post as a person, invoke a command, read
the bot's messages and interaction responses, gateway faults).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import json
import math
import re
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from barkeeper.testing.discord._content import (
    BOT_CONTENT_MAX,
    DM,
    EVERYONE_PERMISSIONS,
    GUILD_TEXT,
    LONG_CONTENT,
    EmulatedChannel,
    EmulatedMessage,
    EmulatedRole,
    OfflineChanges,
    World,
)
from barkeeper.testing.discord._faults import Fault, FaultInjector
from barkeeper.testing.discord._gateway import Gateway, GatewaySession
from barkeeper.testing.discord._helpers import helper_route
from barkeeper.testing.discord._http import (
    _constant,
    _error,
    _form_error,
    _json_bytes,
    _read_message_body,
    _Reply,
    _snowflake,
)
from barkeeper.testing.discord._interactions import InteractionRoutes
from barkeeper.testing.discord._people import (
    BotAction,
    BotActionKind,
    Changes,
    CommandSync,
    EmulatedInteraction,
    Person,
)
from barkeeper.testing.discord._ratelimit import RateDecision, RateLimiter
from barkeeper.testing.discord._spec import ChannelAccess, EmulatorSpec, ExplicitAttachment

__all__ = ["API_PREFIX", "DiscordEmulator", "EmulatorStats"]

#: Path prefix of the REST API, as in ``https://discord.com/api/v10``.
API_PREFIX = "/api/v10"

_API_PATH = re.compile(r"^/api(?:/v\d+)?(?P<rest>/.*)$")
_USER_MENTION = re.compile(r"<@!?([0-9]{1,20})>")
_JSON = "application/json"
_UNKNOWN_ROUTE = "UNKNOWN"
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_UPSTREAM_RESET = (
    "upstream connect error or disconnect/reset before headers. reset reason: overflow"
)


@dataclass(slots=True)
class EmulatorStats:
    """What the emulator has answered so far.

    Attributes:
        requests: Requests per route key (``"GET /channels/{channel_id}/messages"``);
            unmatched paths count under ``"UNKNOWN"``.
        statuses: Responses per HTTP status (dropped connections are not responses).
        rate_limited: 429s sent, by scope (``user``, ``global``, ``shared``).
        faults: Faults injected, by kind.
        messages_served: Message objects returned by history and single-message reads.
    """

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    messages_served: int = 0

    @property
    def total_requests(self) -> int:
        """Every API request received."""
        return sum(self.requests.values())

    @property
    def total_429s(self) -> int:
        """Every 429 sent."""
        return sum(self.rate_limited.values())

    @property
    def total_faults(self) -> int:
        """Every fault injected."""
        return sum(self.faults.values())

    def as_dict(self) -> dict[str, Any]:
        """The statistics as JSON-ready data."""
        return {
            "total_requests": self.total_requests,
            "requests": dict(self.requests),
            "statuses": {str(status): count for status, count in self.statuses.items()},
            "rate_limited": dict(self.rate_limited),
            "total_429s": self.total_429s,
            "faults": dict(self.faults),
            "total_faults": self.total_faults,
            "messages_served": self.messages_served,
        }

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.requests.clear()
        self.statuses.clear()
        self.rate_limited.clear()
        self.faults.clear()
        self.messages_served = 0


_Handler = Callable[["DiscordEmulator", web.Request, dict[str, str]], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: _Handler
    auth: bool = True

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _route(method: str, template: str, handler: _Handler, *, auth: bool = True) -> _Route:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return _Route(method, template, re.compile(f"^{regex}$"), handler, auth)


def _generate_token(bot_id: int) -> str:
    head = base64.urlsafe_b64encode(str(bot_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"


class DiscordEmulator(InteractionRoutes):
    """A local Discord REST API; use it as an async context manager.

    Content is generated (or loaded) when the emulator is created, so
    :meth:`truth` works before :meth:`start`. Requests are handled in the event
    loop that called :meth:`start`.

    Example:
        >>> async def demo() -> None:
        ...     spec = EmulatorSpec(seed=1, channels=2, messages_per_channel=300)
        ...     async with DiscordEmulator(spec) as emu:
        ...         async with logged_in_client(emu.base_url, emu.token) as client:
        ...             channel = await client.fetch_channel(emu.channel_ids()[0])
        ...             messages = [m async for m in channel.history(limit=None)]

    Args:
        spec: Every knob; defaults to ``EmulatorSpec()``.
    """

    def __init__(self, spec: EmulatorSpec | None = None) -> None:
        """Generate the content ``spec`` describes (nothing listens yet)."""
        self.spec = spec if spec is not None else EmulatorSpec()
        self.world = World.from_spec(self.spec)
        self.token = self.spec.token or _generate_token(self.world.bot.id)
        self.stats = EmulatorStats()
        self._limiter = self._make_limiter(self.spec)
        self._faults = self._make_faults(self.spec)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._verify_key = hashlib.sha256(str(self.world.bot.id).encode()).hexdigest()
        self._changes = Changes()
        #: The gateway: fault hooks and sessions (see :class:`Gateway`).
        self.gateway = Gateway(self)
        self.gateway.on_change(self._changes.notify)
        #: Everything the bot did through REST, in order.
        self.activity: list[BotAction] = []
        #: Every ``tree.sync()`` the bot made, in order.
        self.command_syncs: list[CommandSync] = []
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._interactions: dict[str, EmulatedInteraction] = {}
        self._uploads: dict[int, bytes] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening on ``spec.host``/``spec.port`` (port 0: a free port).

        Raises:
            RuntimeError: Already started.
            OSError: The port is taken.
        """
        if self._runner is not None:
            raise RuntimeError("the Discord emulator is already running")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.spec.host, self.spec.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self.gateway.drop()
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The interface listened on."""
        return self.spec.host

    @property
    def port(self) -> int:
        """The TCP port listened on.

        Raises:
            RuntimeError: Not started.
        """
        if self._port is None:
            raise RuntimeError("the Discord emulator has not been started")
        return self._port

    @property
    def origin(self) -> str:
        """``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The REST API base, ``http://host:port/api/v10`` (the ``DISCORD_API_BASE`` value)."""
        return self.origin + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The websocket URL, ``ws://host:port/gateway`` (what ``GET /gateway`` answers)."""
        return "ws" + self.origin.removeprefix("http") + "/gateway"

    # -- content -----------------------------------------------------------------------

    @property
    def bot_user_id(self) -> int:
        """The id of the bot user the token logs in as."""
        return self.world.bot.id

    def guild_ids(self) -> list[int]:
        """Guild ids in creation order."""
        return list(self.world.guilds)

    def channel_ids(self, *, access: ChannelAccess | None = None) -> list[int]:
        """Channel ids in creation order, optionally only those with ``access``."""
        return self.world.channel_ids(access=access)

    def truth(self) -> dict[int, list[dict[str, Any]]]:
        """Every message per channel, oldest first (see :meth:`World.truth`)."""
        return self.world.truth()

    def truth_json(self) -> dict[str, list[dict[str, Any]]]:
        """:meth:`truth` with string snowflakes, ready for :func:`json.dumps`."""
        return self.world.truth_json()

    def write_truth(self, path: str | Path) -> None:
        """Write :meth:`truth_json` to ``path`` as JSON (UTF-8, non-ASCII escaped)."""
        Path(path).write_text(json.dumps(self.truth_json()), encoding="utf-8")

    def apply_offline_changes(
        self,
        *,
        edits: int = 0,
        deletes: int = 0,
        new_messages: int = 0,
        seed: int | None = None,
        channel_ids: list[int] | None = None,
    ) -> OfflineChanges:
        """Edit, delete and add messages as if the bot had been offline.

        See :meth:`World.apply_offline_changes` for the arguments.

        Returns:
            What changed.
        """
        return self.world.apply_offline_changes(
            edits=edits,
            deletes=deletes,
            new_messages=new_messages,
            seed=seed,
            channel_ids=channel_ids,
        )

    def set_channel_access(self, channel_id: int, access: ChannelAccess) -> None:
        """Change how the bot may read a channel (``"ok"``, ``"empty"``, ``"forbidden"``)."""
        self.world.set_channel_access(channel_id, access)

    # -- people: what simulated users do ------------------------------------------------

    def person(self, username: str, *, global_name: str | None = None) -> Person:
        """A simulated user (created on first use, a member of every guild).

        Args:
            username: Unique username; an existing user with it is reused.
            global_name: Display name when creating.

        Returns:
            A handle to post, edit, delete, open threads and invoke commands.
        """
        known = len(self.world.users)
        user = self.world.add_user(username, global_name=global_name)
        if len(self.world.users) > known:  # joined: GUILD_MEMBER_ADD where members are on
            for guild_id in self.world.guilds:
                member = self.gateway.member_payload(user.id, guild_id=guild_id)
                data: dict[str, Any] = {**member, "guild_id": str(guild_id)}
                self.gateway.dispatch(
                    "GUILD_MEMBER_ADD", _constant(data), guild_id=guild_id, intent="members"
                )
        return Person(self, user)

    def post_message(
        self,
        author_id: int,
        channel_id: int,
        content: str,
        *,
        reply_to: EmulatedMessage | int | None = None,
        mention_bot: bool = False,
        mentions: Iterable[int] = (),
        mention_replied: bool = True,
        attachments: Iterable[ExplicitAttachment] = (),
    ) -> EmulatedMessage:
        """Post a message as ``author_id`` and dispatch MESSAGE_CREATE (see :meth:`Person.send`).

        Raises:
            KeyError: Unknown author, channel, mentioned user or replied-to message.
            ValueError: Longer than Discord allows (4000 characters), empty without
                attachments, or in another user's DM.
        """
        channel = self.world.channels[channel_id]
        if channel.type == DM and author_id not in (channel.recipient_id, self.world.bot.id):
            raise ValueError(f"user {author_id} cannot post in another user's DM {channel_id}")
        mentioned = list(mentions)
        if mention_bot:
            mentioned.insert(0, self.world.bot.id)
        prefix = "".join(f"<@{user_id}> " for user_id in mentioned)
        files = list(attachments)
        text = prefix + content
        if len(text) > LONG_CONTENT:
            raise ValueError(f"{len(text)} characters: Discord allows {LONG_CONTENT} at most")
        if not text and not files:
            raise ValueError("a message needs content or attachments")
        reply_id = reply_to.id if isinstance(reply_to, EmulatedMessage) else reply_to
        message = self.world.add_message(
            channel_id,
            text,
            author_id=author_id,
            reply_to=reply_id,
            mentions=mentioned,
            mention_replied=mention_replied,
            attachments=files,
        )
        self.gateway.dispatch_message("MESSAGE_CREATE", message)
        self._changes.notify()
        return message

    def start_typing(self, user_id: int, channel_id: int) -> None:
        """Dispatch TYPING_START for ``user_id`` in a channel (see :meth:`Person.type`).

        Raises:
            KeyError: Unknown user or channel.
        """
        channel = self.world.channels[channel_id]
        if user_id not in self.world.users:
            raise KeyError(f"unknown user {user_id}")
        data: dict[str, Any] = {
            "channel_id": str(channel.id),
            "user_id": str(user_id),
            "timestamp": int(time.time()),
        }
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
            data["member"] = self.gateway.member_payload(user_id, guild_id=channel.guild_id)
        intent = "direct_message_typing" if channel.guild_id is None else "guild_message_typing"
        self.gateway.dispatch(
            "TYPING_START", _constant(data), guild_id=channel.guild_id, intent=intent
        )

    def edit_message(self, channel_id: int, message_id: int, content: str) -> EmulatedMessage:
        """Edit any message and dispatch MESSAGE_UPDATE.

        Raises:
            KeyError: Unknown channel or message.
        """
        message = self.world.edit_message(channel_id, message_id, content)
        self.gateway.dispatch_message("MESSAGE_UPDATE", message)
        self._changes.notify()
        return message

    def delete_message(self, channel_id: int, message_id: int) -> EmulatedMessage:
        """Delete any message and dispatch MESSAGE_DELETE.

        Raises:
            KeyError: Unknown channel or message.
        """
        message = self.world.delete_message(channel_id, message_id)
        self.gateway.dispatch_delete(channel_id, message_id, message.guild_id)
        self._changes.notify()
        return message

    def open_thread(
        self, owner_id: int, channel_id: int, name: str, *, message_id: int | None = None
    ) -> EmulatedChannel:
        """Open a public thread and dispatch THREAD_CREATE (see :meth:`Person.open_thread`).

        Raises:
            KeyError: Unknown channel, user or message.
            ValueError: Not a guild text channel, or the message has a thread already.
        """
        thread = self.world.add_thread(channel_id, name, owner_id=owner_id, message_id=message_id)
        data = {**self.world.channel_payload(thread), "newly_created": True}
        self.gateway.dispatch("THREAD_CREATE", lambda _: data, guild_id=thread.guild_id)
        self._changes.notify()
        return thread

    # -- guild structure: categories and roles --------------------------------------------

    def _guild(self, guild_id: int | None) -> int:
        if guild_id is None:
            return next(iter(self.world.guilds))
        if guild_id not in self.world.guilds:
            raise KeyError(f"unknown guild {guild_id}")
        return guild_id

    def add_category(
        self, name: str, *, guild_id: int | None = None, channel_ids: Iterable[int] = ()
    ) -> EmulatedChannel:
        """Create a category (channel type 4), moving text channels into it.

        Dispatches CHANNEL_CREATE for it and CHANNEL_UPDATE for each channel moved.

        Args:
            name: Category name.
            guild_id: The guild (``None``: the first one).
            channel_ids: Text channels of that guild to put in it.

        Raises:
            KeyError: Unknown guild or channel.
            ValueError: A channel is not a text channel of that guild.
        """
        guild = self._guild(guild_id)
        category = self.world.add_category(guild, name)
        data = category.payload()
        self.gateway.dispatch("CHANNEL_CREATE", _constant(data), guild_id=guild, intent="guilds")
        for channel_id in channel_ids:
            self.move_channel(channel_id, category.id)
        self._changes.notify()
        return category

    def move_channel(self, channel_id: int, category_id: int | None) -> EmulatedChannel:
        """Put a text channel in a category (``None``: in none); dispatches CHANNEL_UPDATE.

        Raises:
            KeyError: Unknown channel or category.
            ValueError: Not a guild text channel, or a category of another guild.
        """
        channel = self.world.move_channel(channel_id, category_id)
        data = channel.payload()
        self.gateway.dispatch(
            "CHANNEL_UPDATE", _constant(data), guild_id=channel.guild_id, intent="guilds"
        )
        self._changes.notify()
        return channel

    def add_role(
        self, name: str, *, guild_id: int | None = None, permissions: int = 0
    ) -> EmulatedRole:
        """Create a role; dispatches GUILD_ROLE_CREATE.

        Members given it (:meth:`set_roles`) have its permissions: interactions carry
        ``@everyone``'s permissions OR their roles' (every permission with
        *Administrator*, and for the guild's owner), as on Discord.

        Args:
            name: Role name.
            guild_id: The guild (``None``: the first one).
            permissions: Discord permission bits it grants, e.g. ``0x20`` (*Manage
                Server*) or ``discord.Permissions(manage_guild=True).value``.

        Raises:
            KeyError: Unknown guild.
            ValueError: ``permissions`` is negative.
        """
        guild = self._guild(guild_id)
        role = self.world.add_role(guild, name, permissions=permissions)
        data = {"guild_id": str(guild), "role": role.payload()}
        self.gateway.dispatch("GUILD_ROLE_CREATE", _constant(data), guild_id=guild, intent="guilds")
        self._changes.notify()
        return role

    def set_roles(
        self, user_id: int, role_ids: Iterable[int], *, guild_id: int | None = None
    ) -> list[int]:
        """Give a member exactly these roles; dispatches GUILD_MEMBER_UPDATE (members intent).

        Later MESSAGE_CREATE, TYPING_START and interaction payloads carry the roles in
        their ``member``, as on Discord, so a bot without the members intent sees them too.

        Raises:
            KeyError: Unknown guild, user or role.
        """
        guild = self._guild(guild_id)
        roles = self.world.set_roles(guild, user_id, role_ids)
        data = {**self.gateway.member_payload(user_id, guild_id=guild), "guild_id": str(guild)}
        self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE", _constant(data), guild_id=guild, intent="members"
        )
        self._changes.notify()
        return roles

    # -- what the bot did --------------------------------------------------------------

    def bot_messages(
        self, channel_id: int | None = None, *, after: int = 0
    ) -> list[EmulatedMessage]:
        """The bot's messages that exist now (not ephemeral ones), oldest first.

        Args:
            channel_id: Only this channel's (none while it does not exist);
                ``None``: every channel's, by id.
            after: Only messages newer than this id.
        """
        bot_id = self.world.bot.id
        if channel_id is None:
            channels = list(self.world.channels.values())
        else:  # a channel that does not exist (yet: a thread) has no messages
            known = self.world.channels.get(channel_id)
            channels = [] if known is None else [known]
        found = [
            c.messages[i]
            for c in channels
            for i in c.ids[bisect.bisect_right(c.ids, after) :]
            if c.messages[i].author_id == bot_id
        ]
        return sorted(found, key=lambda m: m.id) if channel_id is None else found

    async def wait_until(self, check: Callable[[], object], *, timeout: float, what: str) -> None:
        """Wait until ``check()`` is truthy; it is re-run whenever the world or the bot changes.

        Args:
            check: Reads the emulator (``emu.world``, ``emu.activity``, …).
            timeout: Seconds to wait at most.
            what: Describes the condition, for the error message.

        Raises:
            TimeoutError: Not met within ``timeout``.
        """
        await self._changes.wait_for(lambda: bool(check()) or None, timeout=timeout, what=what)

    async def wait_for_bot_messages(
        self,
        channel_id: int,
        count: int = 1,
        *,
        after: EmulatedMessage | int | None = None,
        timeout: float = 5.0,
    ) -> list[EmulatedMessage]:
        """Wait until the bot has at least ``count`` messages in a channel.

        Args:
            channel_id: The channel (guild channel, thread or DM).
            count: How many.
            after: Count only messages newer than this one.
            timeout: Seconds to wait at most.

        Returns:
            The bot's messages there (newer than ``after``), oldest first.

        Raises:
            TimeoutError: Fewer than ``count`` within ``timeout``.
        """
        floor = after.id if isinstance(after, EmulatedMessage) else (after or 0)

        def current() -> list[EmulatedMessage]:
            return self.bot_messages(channel_id, after=floor)

        return await self._changes.wait_for(
            lambda: current() if len(current()) >= count else None,
            timeout=timeout,
            what=f"{count} bot message(s) in channel {channel_id}",
            seen=lambda: f"{len(current())} so far",
        )

    async def wait_for_reply(
        self, message: EmulatedMessage | int, *, timeout: float = 5.0
    ) -> EmulatedMessage:
        """Wait until the bot has replied (``message_reference``) to ``message``.

        Returns:
            The bot's first reply.

        Raises:
            TimeoutError: No reply within ``timeout``.
        """
        target = message.id if isinstance(message, EmulatedMessage) else message
        channel_id = message.channel_id if isinstance(message, EmulatedMessage) else None
        if channel_id is None:
            channel_id = next(
                (c.id for c in self.world.channels.values() if target in c.messages), None
            )
        if channel_id is None:
            raise KeyError(f"unknown message {target}")
        bot_id = self.world.bot.id

        def reply() -> EmulatedMessage | None:
            for other in self.bot_messages(channel_id, after=target):
                if other.reply_to == target and other.author_id == bot_id:
                    return other
            return None

        return await self._changes.wait_for(
            reply, timeout=timeout, what=f"a bot reply to message {target}"
        )

    async def wait_for_actions(
        self,
        kind: BotActionKind,
        count: int = 1,
        *,
        channel_id: int | None = None,
        timeout: float = 5.0,
    ) -> list[BotAction]:
        """Wait until :attr:`activity` holds at least ``count`` actions of ``kind``.

        Raises:
            TimeoutError: Fewer within ``timeout``.
        """

        def matching() -> list[BotAction]:
            return [
                a
                for a in self.activity
                if a.kind == kind and (channel_id is None or a.channel_id == channel_id)
            ]

        return await self._changes.wait_for(
            lambda: matching() if len(matching()) >= count else None,
            timeout=timeout,
            what=f"{count} bot {kind!r} action(s)",
            seen=lambda: f"{len(matching())} so far",
        )

    async def wait_for_sessions(
        self, count: int = 1, *, timeout: float = 5.0
    ) -> list[GatewaySession]:
        """Wait until ``count`` gateway sessions are connected (one per shard).

        Raises:
            TimeoutError: Fewer within ``timeout``.
        """
        return await self._changes.wait_for(
            lambda: s if len(s := self.gateway.sessions(connected=True)) >= count else None,
            timeout=timeout,
            what=f"{count} connected gateway session(s)",
            seen=lambda: f"{len(self.gateway.sessions(connected=True))} connected",
        )

    def reset_token(self) -> str:
        """Replace the bot token (as a reset in the Developer Portal does); returns the new one.

        Connected sessions keep working; the old token is refused from now on
        (401 on REST, close 4004 on IDENTIFY/RESUME).
        """
        self.token = _generate_token(self.world.bot.id)
        return self.token

    def _record(
        self,
        kind: BotActionKind,
        channel_id: int,
        message: EmulatedMessage | None,
        *,
        message_id: int | None = None,
        interaction: EmulatedInteraction | None = None,
    ) -> None:
        self.activity.append(
            BotAction(
                kind=kind,
                channel_id=channel_id,
                message_id=message.id if message is not None else message_id,
                content=message.content if message is not None and kind != "delete" else None,
                at=time.monotonic(),
                interaction_id=None if interaction is None else interaction.id,
            )
        )
        self._changes.notify()

    # -- behaviour ---------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change rate-limit and fault knobs of a running emulator.

        Args:
            **changes: :class:`EmulatorSpec` fields, e.g. ``fault_rate=0.2`` or
                ``route_limit=2``. Content fields are accepted but have no effect
                (the world is already built); ``host``/``port`` apply on next start.
                Rate-limit windows and the fault sequence restart.

        Raises:
            pydantic.ValidationError: A change is not a valid spec value.
        """
        self.spec = EmulatorSpec.model_validate({**self.spec.model_dump(), **changes})
        self._limiter = self._make_limiter(self.spec)
        self._faults = self._make_faults(self.spec)

    def reset_stats(self) -> None:
        """Zero :attr:`stats`."""
        self.stats.reset()

    @staticmethod
    def _make_limiter(spec: EmulatorSpec) -> RateLimiter:
        return RateLimiter(
            route_limit=spec.route_limit,
            route_window=spec.route_window,
            global_limit=spec.global_limit,
            global_window=spec.global_window,
            enabled=spec.rate_limits,
            shared_429_rate=spec.shared_429_rate,
            shared_retry_after=spec.shared_retry_after,
            seed=spec.seed if spec.fault_seed is None else spec.fault_seed,
        )

    @staticmethod
    def _make_faults(spec: EmulatorSpec) -> FaultInjector:
        return FaultInjector(
            rate=spec.fault_rate,
            kinds=spec.fault_kinds,
            statuses=spec.fault_statuses,
            routes=spec.fault_routes,
            include_login=spec.fault_login,
            max_faults=spec.fault_max,
            seed=spec.seed if spec.fault_seed is None else spec.fault_seed,
        )

    # -- dispatch ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_emulator/"):
            return await self._admin(request)
        found = _API_PATH.match(path)
        route: _Route | None = None
        params: dict[str, str] = {}
        allowed = False
        if found is not None:
            rest = found.group("rest").rstrip("/") or "/"
            for candidate in _ROUTES:
                matched = candidate.pattern.match(rest)
                if matched is None:
                    continue
                allowed = True
                if candidate.method == request.method:
                    route, params = candidate, matched.groupdict()
                    break
        key = route.key if route is not None else _UNKNOWN_ROUTE
        self.stats.requests[key] += 1
        # Discord buckets webhook and interaction routes per token.
        major = (
            params.get("channel_id")
            or params.get("guild_id")
            or params.get("token")
            or params.get("interaction_id")
            or ""
        )
        decision = self._limiter.check(key, major)
        headers = {**decision.headers, "Via": "1.1 google"}
        if decision.scope is not None:
            return self._rate_limited(decision, headers)
        if route is None:
            if allowed:
                return self._respond(
                    405, {"message": "405: Method Not Allowed", "code": 0}, headers
                )
            return self._respond(404, {"message": "404: Not Found", "code": 0}, headers)

        fault = self._faults.draw(key)
        if fault is not None:
            self.stats.faults[fault.kind] += 1
            if fault.kind == "slow":
                await asyncio.sleep(self.spec.fault_slow_seconds)
            elif fault.kind == "drop":
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)
            elif fault.kind == "server_error":
                return self._server_error(fault, headers)

        try:
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _error(401, "401: Unauthorized", 0)
            status, body = await route.handler(self, request, params)
        except _Reply as reply:
            status, body = reply.status, reply.body
        if fault is not None and fault.kind in ("truncate", "bad_json"):
            return await self._mangled(request, fault, status, body, headers)
        return self._respond(status, body, headers)

    def _respond(self, status: int, body: Any, headers: dict[str, str]) -> web.Response:
        self.stats.statuses[status] += 1
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, body=_json_bytes(body), headers={**headers, "Content-Type": _JSON}
        )

    def _rate_limited(self, decision: RateDecision, headers: dict[str, str]) -> web.Response:
        assert decision.scope is not None
        self.stats.rate_limited[decision.scope] += 1
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
        headers["X-RateLimit-Scope"] = decision.scope
        body = {
            "message": "You are being rate limited.",
            "retry_after": decision.retry_after,
            "global": decision.scope == "global",
        }
        if decision.scope == "global":
            body["code"] = 0
        return self._respond(429, body, headers)

    def _server_error(self, fault: Fault, headers: dict[str, str]) -> web.Response:
        status = fault.status
        self.stats.statuses[status] += 1
        if status == 502:
            return web.Response(
                status=status,
                body=_BAD_GATEWAY_HTML.encode(),
                headers={**headers, "Content-Type": "text/html"},
            )
        if status == 503:
            return web.Response(
                status=status,
                body=_UPSTREAM_RESET.encode(),
                headers={**headers, "Content-Type": "text/plain"},
            )
        reason = {500: "Internal Server Error", 504: "Gateway Timeout"}.get(status, "Server Error")
        body = _json_bytes({"message": f"{status}: {reason}", "code": 0})
        return web.Response(status=status, body=body, headers={**headers, "Content-Type": _JSON})

    async def _mangled(
        self,
        request: web.Request,
        fault: Fault,
        status: int,
        body: Any,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        self.stats.statuses[status] += 1
        data = _json_bytes(body) if body is not None else b""
        cut = data[: len(data) // 2]
        if fault.kind == "bad_json":
            return web.Response(status=status, body=cut, headers={**headers, "Content-Type": _JSON})
        response = web.StreamResponse(status=status, headers={**headers, "Content-Type": _JSON})
        response.content_length = max(len(data), 1)
        await response.prepare(request)
        await response.write(cut)
        if request.transport is not None:
            request.transport.close()
        return response

    async def _admin(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        if request.method == "GET" and len(parts) == 5 and parts[2] == "attachments":
            data = self._uploads.get(int(parts[3])) if parts[3].isdigit() else None
            if data is None:
                return web.Response(status=404)
            return web.Response(body=data, content_type="application/octet-stream")
        answered = await helper_route(self, request)
        if answered is not None:
            return answered
        path = request.path.removeprefix("/_emulator/")
        body: Any
        if request.method == "GET" and path == "truth":
            body = self.truth_json()
        elif request.method == "GET" and path == "stats":
            body = self.stats.as_dict()
        elif request.method == "GET" and path == "info":
            body = {
                "api_base": self.base_url,
                "gateway_url": self.gateway_url,
                "bot_user_id": str(self.bot_user_id),
                "guild_ids": [str(i) for i in self.guild_ids()],
                "channels": [
                    {
                        "id": str(c.id),
                        "guild_id": None if c.guild_id is None else str(c.guild_id),
                        "type": c.type,
                        "parent_id": None if c.parent_id is None else str(c.parent_id),
                        "access": c.access,
                    }
                    for c in self.world.channels.values()
                ],
                "categories": [
                    {"id": str(c.id), "guild_id": str(c.guild_id), "name": c.name}
                    for c in self.world.categories.values()
                ],
                "roles": [
                    {
                        **role.payload(),
                        "guild_id": str(guild.id),
                        "members": [
                            str(user) for user, ids in guild.member_roles.items() if role.id in ids
                        ],
                    }
                    for guild in self.world.guilds.values()
                    for role in guild.roles.values()
                ],
                "messages": self.world.message_count(),
            }
        elif request.method == "POST" and path == "offline-changes":
            try:
                changes = self.apply_offline_changes(
                    edits=int(request.query.get("edits", "0")),
                    deletes=int(request.query.get("deletes", "0")),
                    new_messages=int(request.query.get("new_messages", "0")),
                    seed=int(request.query["seed"]) if "seed" in request.query else None,
                )
            except ValueError as exc:
                return web.Response(
                    status=400,
                    body=_json_bytes({"message": str(exc), "code": 0}),
                    headers={"Content-Type": _JSON},
                )
            body = {
                name: [[str(c), str(m)] for c, m in getattr(changes, name)]
                for name in ("edited", "deleted", "created")
            }
        else:
            return web.Response(
                status=404,
                body=_json_bytes({"message": "404: Not Found", "code": 0}),
                headers={"Content-Type": _JSON},
            )
        return web.Response(body=_json_bytes(body), headers={"Content-Type": _JSON})

    # -- lookups shared by handlers ----------------------------------------------------

    def _channel(self, params: dict[str, str]) -> EmulatedChannel:
        channel_id = _snowflake(params["channel_id"], "channel_id")
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise _error(404, "Unknown Channel", 10003)
        if channel.access == "forbidden":
            raise _error(403, "Missing Access", 50001)
        return channel

    def _guild_payload_short(self, guild_id: int) -> dict[str, Any]:
        guild = self.world.guilds[guild_id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "banner": None,
            "owner": False,
            "permissions": str(EVERYONE_PERMISSIONS),
            "features": [],
        }

    # -- handlers ----------------------------------------------------------------------

    async def _get_me(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        data = self.world.bot.payload()
        data.update(
            {"verified": True, "mfa_enabled": False, "flags": 0, "locale": "en-US", "email": None}
        )
        return 200, data

    async def _get_user(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        user = self.world.users.get(_snowflake(params["user_id"], "user_id"))
        if user is None:
            raise _error(404, "Unknown User", 10013)
        return 200, user.payload()

    async def _get_my_guilds(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        return 200, [self._guild_payload_short(guild_id) for guild_id in self.world.guilds]

    async def _get_application(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        bot = self.world.bot
        owner = next((u for u in self.world.users.values() if not u.bot), bot)
        return 200, {
            "id": str(bot.id),
            "name": bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": self._verify_key,
            "owner": owner.payload(),
            "team": None,
            "flags": 0,
            "bot": bot.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
        }

    async def _get_gateway(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"url": f"ws://{request.host}/gateway"}

    async def _get_gateway_bot(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        return 200, {
            "url": f"ws://{request.host}/gateway",
            "shards": self.spec.shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000,
                "reset_after": 0,
                "max_concurrency": 1,
            },
        }

    async def _get_channel(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        category = self.world.categories.get(_snowflake(params["channel_id"], "channel_id"))
        if category is not None:
            return 200, category.payload()
        return 200, self.world.channel_payload(self._channel(params))

    async def _get_messages(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        query = request.query
        raw_limit = query.get("limit", "50")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _form_error(
                "limit", "NUMBER_TYPE_COERCE", f'Value "{raw_limit}" is not int.'
            ) from None
        if limit > 100:
            raise _form_error(
                "limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 100."
            )
        if limit < 1:
            raise _form_error(
                "limit", "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1."
            )
        cursors = {name: query[name] for name in ("before", "after", "around") if name in query}
        if len(cursors) > 1:
            raise _form_error(
                sorted(cursors)[-1],
                "ONLY_ONE_OF",
                "Only one of before, after and around may be specified.",
            )
        values = {name: _snowflake(value, name) for name, value in cursors.items()}
        channel = self._channel(params)
        if channel.access == "empty":
            return 200, []
        page = channel.page(limit, **values)
        self.stats.messages_served += len(page)
        payload = self._rest_message
        return 200, [payload(message) for message in page]

    async def _get_message(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        message_id = _snowflake(params["message_id"], "message_id")
        if channel.access == "empty":
            raise _error(403, "Missing Permissions", 50013)
        message = channel.messages.get(message_id)
        if message is None:
            raise _error(404, "Unknown Message", 10008)
        self.stats.messages_served += 1
        return 200, self._rest_message(message)

    def _rest_message(self, message: EmulatedMessage) -> dict[str, Any]:
        """A message as REST reads answer it: blanked like the gateway's when the
        application was not granted the message-content intent."""
        data = self.world.message_payload(message)
        if "message_content" not in self.spec.granted_intents:
            self.gateway.blank(data, message, has_intent=False)
            referenced = data.get("referenced_message")
            target = self.world.channels[message.channel_id].messages.get(message.reply_to or 0)
            if isinstance(referenced, dict) and target is not None:
                self.gateway.blank(referenced, target, has_intent=False)
        return data

    async def _post_message(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        payload, files = await _read_message_body(request)
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        content = content or ""
        if len(content) > BOT_CONTENT_MAX:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {BOT_CONTENT_MAX} or fewer in length."
            )
        embeds = payload.get("embeds") or []
        if not isinstance(embeds, list) or not all(isinstance(e, dict) for e in embeds):
            raise _form_error("embeds", "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
        if not content and not embeds and not files and not payload.get("sticker_ids"):
            raise _error(400, "Cannot send an empty message", 50006)
        reply_to: int | None = None
        reference = payload.get("message_reference")
        allowed = payload.get("allowed_mentions")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            reply_to = _snowflake(str(reference["message_id"]), "message_reference")
            if reply_to not in channel.messages:
                if reference.get("fail_if_not_exists", True):
                    raise _form_error(
                        "message_reference",
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
                reply_to = None
        message = self.world.add_message(
            channel.id,
            content,
            embeds=[{"type": "rich", **embed} for embed in embeds],
            reply_to=reply_to,
            mentions=self._allowed_mentions(content, allowed),
            mention_replied=not isinstance(allowed, dict) or allowed.get("replied_user", True),
        )
        components = payload.get("components")
        if isinstance(components, list):
            message.components = [c for c in components if isinstance(c, dict)]
        self._attach(message, files)
        self._sent_by_bot("message", message)
        return 200, self.world.message_payload(message)

    def _allowed_mentions(self, content: str, allowed: Any) -> list[int]:
        """Users ``content`` pings, as ``allowed_mentions`` lets it (Discord's rules)."""
        named = [int(m) for m in _USER_MENTION.findall(content)]
        named = [u for u in dict.fromkeys(named) if u in self.world.users]
        if not isinstance(allowed, dict):
            return named
        users = allowed.get("users")
        if isinstance(users, list):
            listed = {int(u) for u in users if str(u).isdigit()}
            return [u for u in named if u in listed]
        parse = allowed.get("parse")
        if isinstance(parse, list) and "users" in parse:
            return named
        return []

    def _sent_by_bot(
        self,
        kind: BotActionKind,
        message: EmulatedMessage,
        interaction: EmulatedInteraction | None = None,
    ) -> None:
        channel = self.world.channels.get(message.channel_id)
        if channel is not None and message.id in channel.messages:
            event = "MESSAGE_CREATE" if kind in ("message", "response", "followup") else None
            self.gateway.dispatch_message(event or "MESSAGE_UPDATE", message)
        self._record(kind, message.channel_id, message, interaction=interaction)

    async def _patch_message(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        message_id = _snowflake(params["message_id"], "message_id")
        message = channel.messages.get(message_id)
        if message is None:
            raise _error(404, "Unknown Message", 10008)
        if message.author_id != self.world.bot.id:
            raise _error(403, "Cannot edit a message authored by another user", 50005)
        payload, _ = await _read_message_body(request)
        self._update_bot_message(message, payload)
        self._sent_by_bot("edit", message)
        return 200, self.world.message_payload(message)

    async def _delete_message(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        channel = self._channel(params)
        message_id = _snowflake(params["message_id"], "message_id")
        if message_id not in channel.messages:
            raise _error(404, "Unknown Message", 10008)
        message = self.world.delete_message(channel.id, message_id)
        self.gateway.dispatch_delete(channel.id, message_id, message.guild_id)
        self._record("delete", channel.id, None, message_id=message_id)
        return 204, None

    async def _typing(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        self._record("typing", channel.id, None)
        return 204, None

    async def _react(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        message_id = _snowflake(params["message_id"], "message_id")
        if message_id not in channel.messages:
            raise _error(404, "Unknown Message", 10008)
        emoji = urllib.parse.unquote(params["emoji"])
        kind: BotActionKind = "react" if request.method == "PUT" else "unreact"
        self.activity.append(BotAction(kind, channel.id, message_id, emoji, time.monotonic()))
        self._changes.notify()
        return 204, None

    async def _get_member(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        guild_id = _snowflake(params["guild_id"], "guild_id")
        if guild_id not in self.world.guilds:
            raise _error(404, "Unknown Guild", 10004)
        user_id = _snowflake(params["user_id"], "user_id")
        if user_id not in self.world.users:
            raise _error(404, "Unknown Member", 10007)
        return 200, self.gateway.member_payload(user_id, guild_id=guild_id)

    async def _open_dm(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        payload, _ = await _read_message_body(request)
        raw = str(payload.get("recipient_id", ""))
        user_id = _snowflake(raw, "recipient_id")
        if user_id not in self.world.users or user_id == self.world.bot.id:
            raise _error(400, "Cannot send messages to this user", 50007)
        return 200, self.world.channel_payload(self.world.dm_channel(user_id))

    async def _bot_thread(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        channel = self._channel(params)
        if channel.type != GUILD_TEXT:
            raise _error(400, "Cannot execute action on this channel type", 50024)
        payload, _ = await _read_message_body(request)
        name = payload.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise _form_error(
                "name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        message_id = None
        if "message_id" in params:
            message_id = _snowflake(params["message_id"], "message_id")
            if message_id not in channel.messages:
                raise _error(404, "Unknown Message", 10008)
            if message_id in self.world.channels:
                raise _error(400, "A thread has already been created for this message", 160004)
        thread = self.open_thread(self.world.bot.id, channel.id, name, message_id=message_id)
        return 201, self.world.channel_payload(thread)

    async def _active_threads(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        guild = self.world.guilds.get(_snowflake(params["guild_id"], "guild_id"))
        if guild is None:
            raise _error(404, "Unknown Guild", 10004)
        threads = [self.world.channels[i] for i in guild.thread_ids if i in self.world.channels]
        return 200, {"threads": [self.world.channel_payload(t) for t in threads], "members": []}

    async def _get_guild(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        guild = self.world.guilds.get(_snowflake(params["guild_id"], "guild_id"))
        if guild is None:
            raise _error(404, "Unknown Guild", 10004)
        counts = request.query.get("with_counts", "false").lower() in ("1", "true")
        return 200, guild.payload(member_count=len(self.world.users) if counts else None)

    async def _get_guild_channels(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        guild = self.world.guilds.get(_snowflake(params["guild_id"], "guild_id"))
        if guild is None:
            raise _error(404, "Unknown Guild", 10004)
        categories = [self.world.categories[i].payload() for i in guild.category_ids]
        return 200, categories + [self.world.channels[i].payload() for i in guild.channel_ids]


_ROUTES: tuple[_Route, ...] = (
    _route("GET", "/users/@me", DiscordEmulator._get_me),
    _route("GET", "/users/@me/guilds", DiscordEmulator._get_my_guilds),
    _route("GET", "/users/{user_id}", DiscordEmulator._get_user),
    _route("GET", "/oauth2/applications/@me", DiscordEmulator._get_application),
    _route("GET", "/gateway", DiscordEmulator._get_gateway, auth=False),
    _route("GET", "/gateway/bot", DiscordEmulator._get_gateway_bot),
    _route("GET", "/channels/{channel_id}", DiscordEmulator._get_channel),
    _route("GET", "/channels/{channel_id}/messages", DiscordEmulator._get_messages),
    _route("POST", "/channels/{channel_id}/messages", DiscordEmulator._post_message),
    _route("GET", "/channels/{channel_id}/messages/{message_id}", DiscordEmulator._get_message),
    _route("PATCH", "/channels/{channel_id}/messages/{message_id}", DiscordEmulator._patch_message),
    _route(
        "DELETE", "/channels/{channel_id}/messages/{message_id}", DiscordEmulator._delete_message
    ),
    _route("GET", "/guilds/{guild_id}", DiscordEmulator._get_guild),
    _route("GET", "/guilds/{guild_id}/channels", DiscordEmulator._get_guild_channels),
    _route("GET", "/guilds/{guild_id}/threads/active", DiscordEmulator._active_threads),
    _route("POST", "/channels/{channel_id}/typing", DiscordEmulator._typing),
    _route(
        "PUT",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        DiscordEmulator._react,
    ),
    _route(
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        DiscordEmulator._react,
    ),
    _route("GET", "/guilds/{guild_id}/members/{user_id}", DiscordEmulator._get_member),
    _route("POST", "/users/@me/channels", DiscordEmulator._open_dm),
    _route("POST", "/channels/{channel_id}/threads", DiscordEmulator._bot_thread),
    _route(
        "POST", "/channels/{channel_id}/messages/{message_id}/threads", DiscordEmulator._bot_thread
    ),
    _route("GET", "/applications/{application_id}/commands", DiscordEmulator._get_commands),
    _route("PUT", "/applications/{application_id}/commands", DiscordEmulator._put_commands),
    _route(
        "GET",
        "/applications/{application_id}/guilds/{guild_id}/commands",
        DiscordEmulator._get_commands,
    ),
    _route(
        "PUT",
        "/applications/{application_id}/guilds/{guild_id}/commands",
        DiscordEmulator._put_commands,
    ),
    _route(
        "POST",
        "/interactions/{interaction_id}/{token}/callback",
        DiscordEmulator._callback,
        auth=False,
    ),
    _route("POST", "/webhooks/{application_id}/{token}", DiscordEmulator._followup, auth=False),
    _route(
        "GET",
        "/webhooks/{application_id}/{token}/messages/{message_id}",
        DiscordEmulator._get_webhook_message,
        auth=False,
    ),
    _route(
        "PATCH",
        "/webhooks/{application_id}/{token}/messages/{message_id}",
        DiscordEmulator._patch_webhook_message,
        auth=False,
    ),
    _route(
        "DELETE",
        "/webhooks/{application_id}/{token}/messages/{message_id}",
        DiscordEmulator._delete_webhook_message,
        auth=False,
    ),
)

#: Route keys the emulator serves (``"GET /channels/{channel_id}/messages"``, …).
ROUTE_KEYS: tuple[str, ...] = tuple(route.key for route in _ROUTES)
