"""Simulated people and what the bot did: the Python side tests drive the emulator with.

:class:`Person` is a handle on an emulated user: it posts (in a guild channel, a
thread, a DM, as a reply, mentioning the bot), edits, deletes, opens threads and
invokes slash commands; each action changes the world and reaches the bot over
the gateway. :class:`BotAction`, :class:`CommandSync` and
:class:`EmulatedInteraction` record what the bot did through REST, and
:class:`Changes` lets callers await a condition on them with a bounded timeout.
Nothing here does network I/O itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from barkeeper.testing.discord._content import (
    EmulatedChannel,
    EmulatedMessage,
    EmulatedRole,
    EmulatedUser,
)
from barkeeper.testing.discord._spec import ExplicitAttachment

if TYPE_CHECKING:
    from barkeeper.testing.discord._server import DiscordEmulator

__all__ = [
    "BotAction",
    "BotActionKind",
    "Changes",
    "CommandSync",
    "EmulatedInteraction",
    "Person",
]

_T = TypeVar("_T")

#: What the bot did: ``message`` (sent), ``edit``, ``delete``, ``typing``,
#: ``response`` (an interaction callback), ``followup``, ``react`` / ``unreact``
#: (its own reaction; the emoji is the action's ``content``).
BotActionKind: TypeAlias = Literal[
    "message", "edit", "delete", "typing", "response", "followup", "react", "unreact"
]


@dataclass(frozen=True, slots=True)
class BotAction:
    """One thing the bot did through REST, in the order the emulator saw it.

    Attributes:
        kind: What it did.
        channel_id: Where.
        message_id: The message sent, edited or deleted (``None`` for typing).
        content: The message's content after the action (``None`` for typing and
            delete; the emoji for a reaction).
        at: ``time.monotonic()`` when the emulator handled it.
        interaction_id: The interaction, for responses, followups and their edits.
    """

    kind: BotActionKind
    channel_id: int
    message_id: int | None
    content: str | None
    at: float
    interaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class CommandSync:
    """One ``PUT …/commands`` by the bot (``tree.sync()``).

    Attributes:
        guild_id: The guild of a guild sync; ``None`` for a global sync.
        names: The command names it put.
        at: ``time.monotonic()`` when the emulator handled it.
    """

    guild_id: int | None
    names: list[str]
    at: float


class Changes:
    """Wakes waiters whenever the emulator's world or the bot's activity changes."""

    def __init__(self) -> None:
        """No waiters yet."""
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        """Something changed: let every waiter re-check its condition."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(
        self,
        check: Callable[[], _T | None],
        *,
        timeout: float,
        what: str,
        seen: Callable[[], str] | None = None,
    ) -> _T:
        """Return ``check()`` once it is truthy.

        Args:
            check: Re-run after every change; a truthy result ends the wait.
            timeout: Seconds to wait at most.
            what: Describes the condition, for the error message.
            seen: Describes the current state, for the error message.

        Raises:
            TimeoutError: Not met within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                detail = f"; {seen()}" if seen is not None else ""
                raise TimeoutError(f"waited {timeout:g}s for {what}{detail}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass


@dataclass(slots=True)
class EmulatedInteraction:
    """A slash-command invocation and how the bot answered it.

    Attributes:
        id: Interaction snowflake.
        token: Interaction token (the webhook routes' key).
        name: Command name as invoked (``"barkeeper status"`` for a subcommand).
        options: Option values by name.
        user_id: Who invoked it.
        channel_id: Where.
        guild_id: The guild, or ``None`` in a DM.
        command_id: The registered command's id (0 for a component).
        type: 2 for a slash command, 3 for a component (button, select).
        message: The message whose component was used (type 3).
        response_type: The callback type the bot answered with (4 message,
            5 deferred, and for components 6 deferred update, 7 update),
            ``None`` before it answered.
        response: The response message (``@original``; for a component answered
            with 6 or 7, the message the component is on); ``None`` before the bot
            answered or after it deleted it.
        ephemeral: Whether the response is ephemeral (only the invoker sees it).
        created: ``time.monotonic()`` when it was invoked (the callback deadline
            counts from here).
        followups: Followup messages, in order. After a deferred response the
            bot's first followup fills the response instead, as on Discord.
    """

    id: int
    token: str
    name: str
    options: dict[str, Any]
    user_id: int
    channel_id: int
    guild_id: int | None
    command_id: int
    type: int = 2
    message: EmulatedMessage | None = None
    response_type: int | None = None
    response: EmulatedMessage | None = None
    ephemeral: bool = False
    followups: list[EmulatedMessage] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    _changes: Changes = field(default_factory=Changes, repr=False)

    @property
    def answered(self) -> bool:
        """Whether the bot has called back (answered or deferred)."""
        return self.response_type is not None

    async def wait_for_response(self, *, timeout: float = 5.0) -> EmulatedMessage:
        """Wait until the bot's response has content (a deferred one: until it is edited).

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """

        def check() -> EmulatedMessage | None:
            message = self.response
            if message is None or (message.flags & 128 and not message.content):
                return None
            return message

        return await self._changes.wait_for(
            check,
            timeout=timeout,
            what=f"a response to /{self.name}",
            seen=lambda: f"callback type {self.response_type}",
        )

    async def wait_for_followups(
        self, count: int = 1, *, timeout: float = 5.0
    ) -> list[EmulatedMessage]:
        """Wait until the bot has sent at least ``count`` followups.

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """
        return await self._changes.wait_for(
            lambda: list(self.followups) if len(self.followups) >= count else None,
            timeout=timeout,
            what=f"{count} followup(s) to /{self.name}",
            seen=lambda: f"{len(self.followups)} so far",
        )


class Person:
    """A simulated Discord user, acting through the emulator.

    Get one from :meth:`DiscordEmulator.person`. Every action updates the world at
    once (so REST history sees it) and dispatches the gateway event to the bot.

    Example:
        >>> async def demo(emu: DiscordEmulator) -> None:
        ...     alice = emu.person("alice")
        ...     asked = alice.send(emu.channel_ids()[0], "hi there", mention_bot=True)
        ...     reply = await emu.wait_for_reply(asked, timeout=5)

    Attributes:
        user: The emulated user.
    """

    def __init__(self, emulator: DiscordEmulator, user: EmulatedUser) -> None:
        """Wrap ``user`` of ``emulator``'s world."""
        self._emulator = emulator
        self.user = user

    @property
    def id(self) -> int:
        """The user's snowflake."""
        return self.user.id

    def __repr__(self) -> str:
        return f"Person({self.user.username!r}, id={self.user.id})"

    def set_roles(self, *roles: EmulatedRole | int, guild_id: int | None = None) -> list[int]:
        """Have exactly these roles in a guild (GUILD_MEMBER_UPDATE; later messages carry them).

        Args:
            *roles: Roles (or role ids) from :meth:`DiscordEmulator.add_role`; none: no role.
            guild_id: The guild (``None``: the first one).

        Raises:
            KeyError: Unknown guild or role.
        """
        ids = [r if isinstance(r, int) else r.id for r in roles]
        return self._emulator.set_roles(self.id, ids, guild_id=guild_id)

    def send(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: EmulatedMessage | int | None = None,
        mention_bot: bool = False,
        mentions: Iterable[int] = (),
        mention_replied: bool = True,
        attachments: Iterable[ExplicitAttachment] = (),
    ) -> EmulatedMessage:
        """Post a message in a guild channel, thread or DM channel.

        Args:
            channel_id: Where.
            content: Text.
            reply_to: The message (or its id, in the same channel) this replies to.
            mention_bot: Start the text with ``<@bot>`` and mention the bot.
            mentions: More users to mention (their ``<@id>`` is prepended too).
            mention_replied: Whether a reply pings its author (Discord's default).
            attachments: Files (``content`` may then be empty).

        Returns:
            The stored message (as the world keeps it; the bot may get it blanked).

        Raises:
            KeyError: Unknown channel or replied-to message.
            ValueError: Over 4000 characters, empty without attachments, or
                another user's DM.
        """
        return self._emulator.post_message(
            self.id,
            channel_id,
            content,
            reply_to=reply_to,
            mention_bot=mention_bot,
            mentions=mentions,
            mention_replied=mention_replied,
            attachments=attachments,
        )

    def dm(self, content: str, *, reply_to: EmulatedMessage | int | None = None) -> EmulatedMessage:
        """Post ``content`` in this person's DM channel with the bot."""
        channel = self._emulator.world.dm_channel(self.id)
        return self.send(channel.id, content, reply_to=reply_to)

    @property
    def dm_channel(self) -> EmulatedChannel:
        """This person's DM channel with the bot (created on first use)."""
        return self._emulator.world.dm_channel(self.id)

    def type(self, channel_id: int) -> None:
        """Start typing in a channel (TYPING_START, for sessions with the typing intents)."""
        self._emulator.start_typing(self.id, channel_id)

    def edit(self, message: EmulatedMessage, content: str) -> EmulatedMessage:
        """Edit one of this person's messages (MESSAGE_UPDATE).

        Raises:
            ValueError: Not this person's message.
        """
        if message.author_id != self.id:
            raise ValueError(f"message {message.id} is not by {self.user.username}")
        return self._emulator.edit_message(message.channel_id, message.id, content)

    def delete(self, message: EmulatedMessage) -> None:
        """Delete one of this person's messages (MESSAGE_DELETE).

        Raises:
            ValueError: Not this person's message.
        """
        if message.author_id != self.id:
            raise ValueError(f"message {message.id} is not by {self.user.username}")
        self._emulator.delete_message(message.channel_id, message.id)

    def open_thread(
        self, channel_id: int, name: str, *, message: EmulatedMessage | None = None
    ) -> EmulatedChannel:
        """Open a public thread in a guild text channel (THREAD_CREATE).

        Args:
            channel_id: The parent channel.
            name: Thread name.
            message: Start it from this message (the thread gets its id).
        """
        return self._emulator.open_thread(
            self.id, channel_id, name, message_id=None if message is None else message.id
        )

    def click(
        self, message: EmulatedMessage, custom_id: str, *, values: list[str] | None = None
    ) -> EmulatedInteraction:
        """Press a button (or pick ``values`` in a select) on one of the bot's messages.

        Args:
            message: The message carrying the component (an ephemeral one too).
            custom_id: The component's ``custom_id``.
            values: The chosen options of a select menu.

        Returns:
            The component interaction (type 3); the bot answers it like a command.

        Raises:
            LookupError: The message has no such component.
        """
        return self._emulator.click(self.id, message, custom_id, values=values)

    def invoke(
        self,
        command: str,
        channel_id: int | None = None,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> EmulatedInteraction:
        """Invoke a slash command the bot has synced (INTERACTION_CREATE).

        Args:
            command: Its name; ``"group sub"`` or ``"group subgroup sub"`` for subcommands.
            channel_id: Where (a guild channel, thread or DM); ``None``: this
                person's DM with the bot.
            options: Option values by name (user options: a user id; channel
                options: a channel id).

        Returns:
            The interaction; await :meth:`EmulatedInteraction.wait_for_response`.

        Raises:
            LookupError: No such command is registered where it is invoked.
            ValueError: An option the command does not have.
        """
        if channel_id is None:
            channel_id = self.dm_channel.id
        return self._emulator.invoke_command(self.id, channel_id, command, dict(options or {}))
