"""Slash commands, components and the interaction webhook: the emulator's side of them.

:class:`InteractionRoutes` is mixed into
:class:`~barkeeper.testing.discord.DiscordEmulator`: it records ``PUT …/commands``
syncs, builds INTERACTION_CREATE for a person invoking a command or pressing a
button, and answers the bot's callback, followup and ``@original`` requests,
storing what the bot answered (non-ephemeral answers are channel messages, as on
Discord). It needs the emulator's world, gateway and activity log, declared below.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from barkeeper.testing.discord._content import (
    BOT_CONTENT_MAX,
    CHAT_INPUT_COMMAND_TYPE,
    EPHEMERAL_FLAG,
    EVERYONE_PERMISSIONS,
    EmulatedChannel,
    EmulatedMessage,
    World,
)
from barkeeper.testing.discord._gateway import Gateway
from barkeeper.testing.discord._http import (
    Upload,
    _constant,
    _error,
    _form_error,
    _parse_json,
    _read_message_body,
    _snowflake,
)
from barkeeper.testing.discord._people import (
    BotActionKind,
    Changes,
    CommandSync,
    EmulatedInteraction,
)
from barkeeper.testing.discord._spec import EmulatorSpec

__all__ = ["InteractionRoutes"]

_LOADING_FLAG = 128
# Option types of application commands: subcommand, subcommand group, user, channel.
_SUBCOMMAND, _GROUP, _USER_OPTION, _CHANNEL_OPTION = 1, 2, 6, 7
#: The app's permissions in every channel (Discord's default set).
_APP_PERMISSIONS = str(EVERYONE_PERMISSIONS)


class InteractionRoutes:
    """Application commands and interactions (a mixin of the emulator)."""

    if TYPE_CHECKING:
        world: World
        spec: EmulatorSpec
        gateway: Gateway
        command_syncs: list[CommandSync]
        _changes: Changes
        _commands: dict[int | None, list[dict[str, Any]]]
        _interactions: dict[str, EmulatedInteraction]
        _uploads: dict[int, bytes]

        @property
        def origin(self) -> str: ...

        def _sent_by_bot(
            self,
            kind: BotActionKind,
            message: EmulatedMessage,
            interaction: EmulatedInteraction | None = None,
        ) -> None: ...

        def _record(
            self,
            kind: BotActionKind,
            channel_id: int,
            message: EmulatedMessage | None,
            *,
            message_id: int | None = None,
            interaction: EmulatedInteraction | None = None,
        ) -> None: ...

        def _allowed_mentions(self, content: str, allowed: Any) -> list[int]: ...

    def invoke_command(
        self, user_id: int, channel_id: int, name: str, options: dict[str, Any]
    ) -> EmulatedInteraction:
        """Invoke a synced slash command as ``user_id`` (see :meth:`Person.invoke`).

        Raises:
            KeyError: Unknown user or channel.
            LookupError: No such command is registered where it is invoked.
            ValueError: An option the command does not have.
        """
        channel = self.world.channels[channel_id]
        words = name.split()
        if not words:
            raise ValueError("the command name is empty")
        command = self._find_command(words[0], channel.guild_id)
        resolved: dict[str, dict[str, Any]] = {}
        data: dict[str, Any] = {
            "id": command["id"],
            "name": words[0],
            "type": 1,
            "options": self._command_options(command, words, options, resolved, channel.guild_id),
        }
        if resolved:
            data["resolved"] = resolved
        if command.get("guild_id") is not None:
            data["guild_id"] = command["guild_id"]
        return self._interact(
            user_id,
            channel,
            2,
            data,
            name=" ".join(words),
            options=dict(options),
            command_id=int(command["id"]),
        )

    def click(
        self,
        user_id: int,
        message: EmulatedMessage,
        custom_id: str,
        *,
        values: list[str] | None = None,
    ) -> EmulatedInteraction:
        """Use a component (button or select) of a bot message (see :meth:`Person.click`).

        Raises:
            KeyError: Unknown user or channel.
            LookupError: The message has no component with ``custom_id``.
        """
        component = next(
            (
                item
                for row in message.components
                for item in row.get("components", [])
                if item.get("custom_id") == custom_id
            ),
            None,
        )
        if component is None:
            found = [
                str(item.get("custom_id"))
                for row in message.components
                for item in row.get("components", [])
            ]
            raise LookupError(
                f"message {message.id} has no component {custom_id!r} "
                f"(it has: {', '.join(found) or 'none'})"
            )
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = list(values)
        channel = self.world.channels[message.channel_id]
        return self._interact(
            user_id,
            channel,
            3,
            data,
            name=f"component {custom_id}",
            options={} if values is None else {"values": list(values)},
            command_id=0,
            message=message,
        )

    def find_message(self, message_id: int) -> EmulatedMessage | None:
        """A message by id: in a channel, or an ephemeral interaction response or followup."""
        for channel in self.world.channels.values():
            found = channel.messages.get(message_id)
            if found is not None:
                return found
        for interaction in self._interactions.values():
            for candidate in (interaction.response, *interaction.followups):
                if candidate is not None and candidate.id == message_id:
                    return candidate
        return None

    def _interact(
        self,
        user_id: int,
        channel: EmulatedChannel,
        kind: int,
        data: dict[str, Any],
        *,
        name: str,
        options: dict[str, Any],
        command_id: int,
        message: EmulatedMessage | None = None,
    ) -> EmulatedInteraction:
        world = self.world
        user = world.users[user_id]
        interaction_id = world.new_id()
        token = f"emulated-{interaction_id}-{secrets.token_urlsafe(24)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(world.bot.id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel": world.channel_payload(channel),
            "channel_id": str(channel.id),
            "locale": "en-US",
            "app_permissions": _APP_PERMISSIONS,
            "entitlements": [],
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = world.message_payload(message)
        if channel.guild_id is not None:
            payload["guild_id"] = str(channel.guild_id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {
                **self.gateway.member_payload(user_id, guild_id=channel.guild_id),
                "permissions": str(world.member_permissions(channel.guild_id, user_id)),
            }
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(channel.guild_id)}
        else:
            payload["user"] = user.payload()
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": str(user_id)}
        interaction = EmulatedInteraction(
            id=interaction_id,
            token=token,
            name=name,
            options=options,
            user_id=user_id,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            command_id=command_id,
            type=kind,
            message=message,
            _changes=self._changes,
        )
        self._interactions[token] = interaction
        self.gateway.dispatch("INTERACTION_CREATE", _constant(payload), guild_id=channel.guild_id)
        self._changes.notify()
        return interaction

    def _find_command(self, name: str, guild_id: int | None) -> dict[str, Any]:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self._commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        known = sorted({c["name"] for scope in scopes for c in self._commands.get(scope, [])})
        raise LookupError(
            f"no slash command /{name} is synced here (synced: {', '.join(known) or 'none'}); "
            "the bot must tree.sync() it first"
        )

    def _command_options(
        self,
        command: dict[str, Any],
        words: list[str],
        values: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
    ) -> list[dict[str, Any]]:
        level = command
        path: list[dict[str, Any]] = []
        for word in words[1:]:
            found = next(
                (
                    o
                    for o in level.get("options") or []
                    if o["name"] == word and o["type"] in (_SUBCOMMAND, _GROUP)
                ),
                None,
            )
            if found is None:
                raise LookupError(f"/{' '.join(words)}: no subcommand {word!r}")
            path.append(found)
            level = found
        declared = {o["name"]: o for o in level.get("options") or []}
        leaf: list[dict[str, Any]] = []
        for option_name, value in values.items():
            option = declared.get(option_name)
            if option is None or option["type"] in (_SUBCOMMAND, _GROUP):
                raise ValueError(
                    f"/{' '.join(words)} has no option {option_name!r} "
                    f"(it has: {', '.join(sorted(declared)) or 'none'})"
                )
            kind = option["type"]
            if kind in (_USER_OPTION, _CHANNEL_OPTION):
                value = str(int(value))
                self._resolve(kind, int(value), resolved, guild_id)
            leaf.append({"name": option_name, "type": kind, "value": value})
        for option in reversed(path):
            leaf = [{"name": option["name"], "type": option["type"], "options": leaf}]
        return leaf

    def _resolve(
        self,
        kind: int,
        snowflake: int,
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
    ) -> None:
        if kind == _USER_OPTION:
            resolved.setdefault("users", {})[str(snowflake)] = self.world.users[snowflake].payload()
            member = self.gateway.member_payload(snowflake, with_user=False, guild_id=guild_id)
            permissions = (
                EVERYONE_PERMISSIONS
                if guild_id is None
                else self.world.member_permissions(guild_id, snowflake)
            )
            resolved.setdefault("members", {})[str(snowflake)] = {
                **member,
                "permissions": str(permissions),
            }
        else:
            channel = self.world.channels[snowflake]
            resolved.setdefault("channels", {})[str(snowflake)] = {
                **self.world.channel_payload(channel),
                "permissions": _APP_PERMISSIONS,
            }

    def interactions(self) -> list[EmulatedInteraction]:
        """Every interaction invoked so far, oldest first."""
        return list(self._interactions.values())

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The commands the bot registered: global ones, or ``guild_id``'s."""
        return [dict(c) for c in self._commands.get(guild_id, [])]

    async def wait_for_command_syncs(
        self, count: int = 1, *, timeout: float = 5.0
    ) -> list[CommandSync]:
        """Wait until the bot has synced its command tree ``count`` times.

        Raises:
            TimeoutError: Fewer within ``timeout``.
        """
        return await self._changes.wait_for(
            lambda: list(self.command_syncs) if len(self.command_syncs) >= count else None,
            timeout=timeout,
            what=f"{count} command sync(s)",
            seen=lambda: f"{len(self.command_syncs)} so far",
        )

    # -- application commands ------------------------------------------------------------

    def _check_app(self, params: dict[str, str]) -> None:
        if _snowflake(params["application_id"], "application_id") != self.world.bot.id:
            raise _error(403, "Missing Access", 50001)

    def _command_scope(self, params: dict[str, str]) -> int | None:
        self._check_app(params)
        if "guild_id" not in params:
            return None
        guild_id = _snowflake(params["guild_id"], "guild_id")
        if guild_id not in self.world.guilds:
            raise _error(404, "Unknown Guild", 10004)
        return guild_id

    async def _get_commands(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        return 200, self.commands(self._command_scope(params))

    async def _put_commands(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        scope = self._command_scope(params)
        body = _parse_json(await request.read()) if request.can_read_body else []
        if not isinstance(body, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in body
        ):
            raise _error(400, "400: Bad Request", 0)
        previous = {c["name"]: c["id"] for c in self._commands.get(scope, [])}
        stored = []
        for command in body:
            entry = {
                **command,
                "id": previous.get(command["name"]) or str(self.world.new_id()),
                "application_id": str(self.world.bot.id),
                "version": str(self.world.new_id()),
                "type": command.get("type", 1),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self._commands[scope] = stored
        self.command_syncs.append(CommandSync(scope, [c["name"] for c in stored], time.monotonic()))
        self._changes.notify()
        return 200, [dict(c) for c in stored]

    # -- interactions and their webhook --------------------------------------------------

    def _interaction(self, params: dict[str, str]) -> EmulatedInteraction:
        interaction = self._interactions.get(params["token"])
        if interaction is None:
            raise _error(404, "Unknown Webhook", 10015)
        if "interaction_id" in params and params["interaction_id"] != str(interaction.id):
            raise _error(404, "Unknown interaction", 10062)
        if "application_id" in params:
            self._check_app(params)
        return interaction

    def _attach(self, message: EmulatedMessage, files: Sequence[Upload]) -> None:
        """Attach the bot's uploads, kept so tests can read them (:meth:`uploads`)."""
        for attachment, data in files:
            attachment_id = self.world.new_id()
            self._uploads[attachment_id] = data
            url = f"{self.origin}/_emulator/attachments/{attachment_id}/{attachment.filename}"
            message.attachments.append(
                {
                    "id": str(attachment_id),
                    "filename": attachment.filename,
                    "size": attachment.size,
                    "url": url,
                    "proxy_url": url,
                    "content_type": attachment.content_type,
                }
            )

    def uploads(self, message: EmulatedMessage) -> list[tuple[str, bytes]]:
        """The files the bot attached to ``message``: ``(filename, bytes)`` in order.

        Their ``url`` is served too, at ``/_emulator/attachments/{id}/{filename}``.
        """
        return [
            (a["filename"], self._uploads[int(a["id"])])
            for a in message.attachments
            if int(a["id"]) in self._uploads
        ]

    def _interaction_message(
        self,
        interaction: EmulatedInteraction,
        data: dict[str, Any],
        flags: int,
        files: Sequence[Upload] = (),
    ) -> EmulatedMessage:
        content = data.get("content")
        content = "" if content is None else str(content)
        if len(content) > BOT_CONTENT_MAX:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {BOT_CONTENT_MAX} or fewer in length."
            )
        embeds = data.get("embeds") or []
        world = self.world
        metadata = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": world.users[interaction.user_id].payload(),
            "authorizing_integration_owners": {
                "0": str(interaction.guild_id or interaction.user_id)
            },
            "name": interaction.name,
            "command_type": 1,
        }
        if flags & EPHEMERAL_FLAG:
            message = EmulatedMessage(
                id=world.new_id(),
                channel_id=interaction.channel_id,
                guild_id=interaction.guild_id,
                author_id=world.bot.id,
                content=content,
                embeds=[{"type": "rich", **e} for e in embeds if isinstance(e, dict)],
            )
        else:
            message = world.add_message(
                interaction.channel_id,
                content,
                embeds=[{"type": "rich", **e} for e in embeds if isinstance(e, dict)],
                mentions=self._allowed_mentions(content, data.get("allowed_mentions")),
            )
        components = data.get("components")
        if isinstance(components, list):
            message.components = [c for c in components if isinstance(c, dict)]
        self._attach(message, list(files))
        message.type = CHAT_INPUT_COMMAND_TYPE
        message.flags = flags
        message.webhook_id = world.bot.id
        message.interaction_metadata = metadata
        return message

    async def _callback(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        interaction = self._interaction(params)
        payload, files = await _read_message_body(request)
        kind = payload.get("type")
        allowed = (4, 5, 6, 7) if interaction.message is not None else (4, 5)
        if kind not in allowed:
            raise _form_error(
                "type", "BASE_TYPE_CHOICES", f"Value must be one of {allowed}, got {kind}."
            )
        if interaction.answered:
            raise _error(400, "Interaction has already been acknowledged.", 40060)
        deadline = self.spec.interaction_ack_timeout
        if deadline and time.monotonic() - interaction.created > deadline:
            raise _error(404, "Unknown interaction", 10062)
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise _error(400, "400: Bad Request", 0)
        if kind in (6, 7) and interaction.message is not None:
            # Component interactions may update the message the component is on.
            message = interaction.message
            interaction.response_type = kind
            interaction.response = message
            interaction.ephemeral = bool(message.flags & EPHEMERAL_FLAG)
            if kind == 7:
                self._update_bot_message(message, data)
                self._sent_by_bot("edit", message, interaction)
            else:
                self._changes.notify()
        else:
            flags = int(data.get("flags") or 0) & EPHEMERAL_FLAG
            if kind == 5:
                flags |= _LOADING_FLAG
            message = self._interaction_message(interaction, data, flags, files)
            interaction.response_type = kind
            interaction.response = message
            interaction.ephemeral = bool(flags & EPHEMERAL_FLAG)
            self._sent_by_bot("response", message, interaction)
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        return 200, {
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "response_message_id": str(message.id),
                "response_message_loading": kind in (5, 6),
                "response_message_ephemeral": interaction.ephemeral,
            },
            "resource": {"type": kind, "message": self.world.message_payload(message)},
        }

    def _webhook_target(
        self, interaction: EmulatedInteraction, params: dict[str, str]
    ) -> EmulatedMessage:
        wanted = params["message_id"]
        if wanted == "@original":
            if interaction.response is None:
                raise _error(404, "Unknown Message", 10008)
            return interaction.response
        message_id = _snowflake(wanted, "message_id")
        for message in interaction.followups:
            if message.id == message_id:
                return message
        if interaction.response is not None and interaction.response.id == message_id:
            return interaction.response
        raise _error(404, "Unknown Message", 10008)

    async def _followup(self, request: web.Request, params: dict[str, str]) -> tuple[int, Any]:
        interaction = self._interaction(params)
        if not interaction.answered:
            raise _error(404, "Unknown Webhook", 10015)
        payload, files = await _read_message_body(request)
        if not payload.get("content") and not payload.get("embeds") and not files:
            raise _error(400, "Cannot send an empty message", 50006)
        original = interaction.response
        if original is not None and original.flags & _LOADING_FLAG:
            # After a defer, Discord turns the first followup into the response itself.
            content = str(payload.get("content") or "")
            channel = self.world.channels.get(original.channel_id)
            if channel is not None and original.id in channel.messages:
                self.world.edit_message(original.channel_id, original.id, content)
            else:
                original.content = content
            original.flags &= ~_LOADING_FLAG
            self._sent_by_bot("edit", original, interaction)
            return 200, self.world.message_payload(original)
        flags = int(payload.get("flags") or 0) & EPHEMERAL_FLAG
        message = self._interaction_message(interaction, payload, flags, files)
        interaction.followups.append(message)
        self._sent_by_bot("followup", message, interaction)
        return 200, self.world.message_payload(message)

    async def _get_webhook_message(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        interaction = self._interaction(params)
        return 200, self.world.message_payload(self._webhook_target(interaction, params))

    async def _patch_webhook_message(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        interaction = self._interaction(params)
        message = self._webhook_target(interaction, params)
        payload, _ = await _read_message_body(request)
        self._update_bot_message(message, payload)
        message.flags &= ~_LOADING_FLAG
        self._sent_by_bot("edit", message, interaction)
        return 200, self.world.message_payload(message)

    def _update_bot_message(self, message: EmulatedMessage, payload: dict[str, Any]) -> None:
        """Apply an edit body (content, embeds, components) to one of the bot's messages."""
        content = payload.get("content")
        if isinstance(content, str):
            if len(content) > BOT_CONTENT_MAX:
                raise _form_error(
                    "content",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {BOT_CONTENT_MAX} or fewer in length.",
                )
            channel = self.world.channels.get(message.channel_id)
            if channel is not None and message.id in channel.messages:
                self.world.edit_message(message.channel_id, message.id, content)
            else:  # ephemeral: not in the channel
                message.content = content
                message.edited_ms = time.time_ns() // 1_000_000
        if isinstance(payload.get("embeds"), list):
            message.embeds = [
                {"type": "rich", **e} for e in payload["embeds"] if isinstance(e, dict)
            ]
        if isinstance(payload.get("components"), list):
            message.components = [c for c in payload["components"] if isinstance(c, dict)]

    async def _delete_webhook_message(
        self, request: web.Request, params: dict[str, str]
    ) -> tuple[int, Any]:
        interaction = self._interaction(params)
        message = self._webhook_target(interaction, params)
        channel = self.world.channels.get(message.channel_id)
        if channel is not None and message.id in channel.messages:
            self.world.delete_message(message.channel_id, message.id)
            self.gateway.dispatch_delete(message.channel_id, message.id, message.guild_id)
        if interaction.response is message:
            interaction.response = None
        else:
            interaction.followups.remove(message)
        self._record(
            "delete", message.channel_id, None, message_id=message.id, interaction=interaction
        )
        return 204, None
