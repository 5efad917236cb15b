"""The ``/_emulator/*`` HTTP routes that drive the gateway from another process.

They mirror the Python driving API (:class:`~barkeeper.testing.discord.Person`,
``DiscordEmulator.wait_for_*``, ``emulator.gateway``) for a bot running elsewhere:
post, edit and delete as a person, open threads, invoke slash commands, read what
the bot sent and answered, and trigger gateway faults. Bodies and answers are JSON
with snowflakes as strings (numbers are accepted too). No authentication: the
emulator only listens where it is told to (127.0.0.1 by default).

Routes (``wait=S`` long-polls up to S seconds, at most 60; a wait that runs out
answers 408 with what was seen):

- ``POST /_emulator/people`` ``{"username", "global_name"?}`` → the user and its DM channel id.
- ``POST /_emulator/messages`` ``{"author", "channel_id" | "dm": true, "content",
  "reply_to"?, "mention_bot"?, "mentions"?, "attachments"?}`` → the message (Discord
  JSON); attachments are ``{"filename", "size"?, "content_type"?}``.
  ``author`` is a username (created on first use) or a user id.
- ``PATCH /_emulator/messages/{channel_id}/{message_id}`` ``{"content"}``;
  ``DELETE`` the same path.
- ``GET /_emulator/info`` also lists the ``categories`` and the ``roles`` (with the ids
  of their ``members``).
- ``POST /_emulator/roles`` ``{"name", "guild_id"?}`` → the role (GUILD_ROLE_CREATE).
- ``PUT /_emulator/members/{user}/roles`` ``{"role_ids": [...], "guild_id"?}`` → the
  member with exactly those roles (GUILD_MEMBER_UPDATE; later messages carry them).
  ``user`` is a username or a user id.
- ``POST /_emulator/categories`` ``{"name", "guild_id"?, "channel_ids"?}`` → the
  category (channel type 4, CHANNEL_CREATE), the channels moved into it (CHANNEL_UPDATE).
- ``PATCH /_emulator/channels/{channel_id}`` ``{"parent_id"}`` → the text channel, moved
  into that category (``null``: none).
- ``POST /_emulator/typing`` ``{"user", "channel_id"}`` → 204 (TYPING_START).
- ``POST /_emulator/threads`` ``{"author", "channel_id", "name", "message_id"?}`` → the thread.
- ``POST /_emulator/interactions`` ``{"user", "command", "channel_id"?, "options"?}``
  → the interaction record (``command`` may be ``"group sub"``; no ``channel_id``: a DM).
- ``GET /_emulator/interactions/{id}?wait=S&followups=N`` → the record once it has a
  response with content (and N followups).
- ``POST /_emulator/clicks`` ``{"user", "message_id", "custom_id", "values"?}`` → the
  component interaction's record (a button or select on one of the bot's messages).
- ``GET /_emulator/bot-messages?channel_id=&after=&reply_to=&count=N&wait=S`` → the
  bot's messages, oldest first (at least N of them when waiting).
- ``GET /_emulator/activity?after=K`` → what the bot did through REST, from index K.
- ``GET /_emulator/commands`` → registered commands (global and per guild) and every sync.
- ``GET /_emulator/gateway?connected=N&wait=S`` → sessions and counters.
- ``POST /_emulator/gateway/{drop|reconnect|invalidate|stop-acks|resume-acks}``
  ``?shard_id=&resumable=true`` → how many sockets it touched.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from barkeeper.testing.discord._content import EmulatedMessage
from barkeeper.testing.discord._people import EmulatedInteraction
from barkeeper.testing.discord._spec import ExplicitAttachment

if TYPE_CHECKING:
    from barkeeper.testing.discord._server import DiscordEmulator

__all__ = ["helper_route"]

_JSON = "application/json"
_MAX_WAIT = 60.0


class _HelperError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _answer(body: Any, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=204)
    data = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return web.Response(status=status, body=data, headers={"Content-Type": _JSON})


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise _HelperError(400, f"{name} must be a snowflake, got {value!r}") from None


def _wait(request: web.Request) -> float | None:
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        return min(max(float(raw), 0.0), _MAX_WAIT)
    except ValueError:
        raise _HelperError(400, f"wait must be seconds, got {raw!r}") from None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise _HelperError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _HelperError(400, "the body must be a JSON object")
    return body


def _user_id(emu: DiscordEmulator, who: Any, name: str) -> int:
    if who is None:
        raise _HelperError(400, f"{name} is required (a username or a user id)")
    text = str(who)
    if text.isdigit() and int(text) in emu.world.users:
        return int(text)
    if text.isdigit():
        raise _HelperError(404, f"no user with id {text}")
    return emu.person(text).id


def _message(emu: DiscordEmulator, message: EmulatedMessage) -> dict[str, Any]:
    data = emu.world.message_payload(message)
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    return data


def _interaction(emu: DiscordEmulator, interaction: EmulatedInteraction) -> dict[str, Any]:
    return {
        "id": str(interaction.id),
        "token": interaction.token,
        "name": interaction.name,
        "options": interaction.options,
        "user_id": str(interaction.user_id),
        "channel_id": str(interaction.channel_id),
        "guild_id": None if interaction.guild_id is None else str(interaction.guild_id),
        "command_id": str(interaction.command_id),
        "type": interaction.type,
        "message_id": None if interaction.message is None else str(interaction.message.id),
        "response_type": interaction.response_type,
        "ephemeral": interaction.ephemeral,
        "response": (None if interaction.response is None else _message(emu, interaction.response)),
        "followups": [_message(emu, m) for m in interaction.followups],
    }


async def helper_route(emu: DiscordEmulator, request: web.Request) -> web.Response | None:
    """Answer one of the gateway helper routes, or ``None`` if ``request`` is not one."""
    parts = request.path.removeprefix("/_emulator/").strip("/").split("/")
    try:
        return await _route(emu, request, request.method, parts)
    except _HelperError as error:
        body = {"message": str(error)}
        if error.body is not None:
            body["seen"] = error.body
        return _answer(body, error.status)
    except LookupError as error:
        return _answer({"message": str(error.args[0] if error.args else error)}, 404)
    except ValueError as error:
        return _answer({"message": str(error)}, 400)


async def _route(
    emu: DiscordEmulator, request: web.Request, method: str, parts: list[str]
) -> web.Response | None:
    head = parts[0]
    if (method, parts) == ("POST", ["people"]):
        body = await _body(request)
        username = body.get("username")
        if not isinstance(username, str) or not username:
            raise _HelperError(400, "username is required")
        person = emu.person(username, global_name=body.get("global_name"))
        return _answer(
            {
                **person.user.payload(),
                "dm_channel_id": str(person.dm_channel.id),
            }
        )
    if head == "messages":
        return await _messages(emu, request, method, parts)
    structure = await _structure(emu, request, method, parts)
    if structure is not None:
        return structure
    if (method, parts) == ("POST", ["typing"]):
        body = await _body(request)
        user = _user_id(emu, body.get("user"), "user")
        channel_id = _int(body.get("channel_id"), "channel_id")
        if channel_id not in emu.world.channels:
            raise _HelperError(404, f"no channel {channel_id}")
        emu.start_typing(user, channel_id)
        return _answer(None)
    if (method, parts) == ("POST", ["threads"]):
        body = await _body(request)
        author = _user_id(emu, body.get("author"), "author")
        message_id = body.get("message_id")
        thread = emu.open_thread(
            author,
            _int(body.get("channel_id"), "channel_id"),
            str(body.get("name") or "thread"),
            message_id=None if message_id is None else _int(message_id, "message_id"),
        )
        return _answer(emu.world.channel_payload(thread))
    if head == "interactions":
        return await _interactions(emu, request, method, parts)
    if (method, parts) == ("POST", ["clicks"]):
        body = await _body(request)
        user = _user_id(emu, body.get("user"), "user")
        message = emu.find_message(_int(body.get("message_id"), "message_id"))
        if message is None:
            raise _HelperError(404, f"no message {body.get('message_id')}")
        values = body.get("values")
        if values is not None and not isinstance(values, list):
            raise _HelperError(400, "values must be a list of strings")
        clicked = emu.click(
            user,
            message,
            str(body.get("custom_id", "")),
            values=None if values is None else [str(v) for v in values],
        )
        return _answer(_interaction(emu, clicked))
    if (method, parts) == ("GET", ["bot-messages"]):
        return await _bot_messages(emu, request)
    if (method, parts) == ("GET", ["activity"]):
        start = int(request.query.get("after", "0"))
        return _answer(
            [
                {
                    "index": index,
                    "kind": action.kind,
                    "channel_id": str(action.channel_id),
                    "message_id": None if action.message_id is None else str(action.message_id),
                    "content": action.content,
                    "at": action.at,
                    "interaction_id": (
                        None if action.interaction_id is None else str(action.interaction_id)
                    ),
                }
                for index, action in enumerate(emu.activity)
                if index >= start
            ]
        )
    if (method, parts) == ("GET", ["commands"]):
        return _answer(
            {
                "global": emu.commands(),
                "guilds": {str(g): emu.commands(g) for g in emu.guild_ids() if emu.commands(g)},
                "syncs": [
                    {"guild_id": None if s.guild_id is None else str(s.guild_id), "names": s.names}
                    for s in emu.command_syncs
                ],
            }
        )
    if head == "gateway":
        return await _gateway(emu, request, method, parts)
    return None


def _guild_id(body: dict[str, Any]) -> int | None:
    raw = body.get("guild_id")
    return None if raw is None else _int(raw, "guild_id")


async def _structure(
    emu: DiscordEmulator, request: web.Request, method: str, parts: list[str]
) -> web.Response | None:
    """Roles, members' roles, categories and channel moves."""
    if (method, parts) == ("POST", ["roles"]):
        body = await _body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _HelperError(400, "name is required")
        return _answer(emu.add_role(name, guild_id=_guild_id(body)).payload())
    if method == "PUT" and len(parts) == 3 and parts[0] == "members" and parts[2] == "roles":
        body = await _body(request)
        user = _user_id(emu, parts[1], "user")
        raw = body.get("role_ids", [])
        if not isinstance(raw, list):
            raise _HelperError(400, "role_ids must be a list of snowflakes")
        guild_id = _guild_id(body)
        emu.set_roles(user, [_int(r, "role_ids") for r in raw], guild_id=guild_id)
        guild = guild_id if guild_id is not None else emu.guild_ids()[0]
        return _answer({**emu.gateway.member_payload(user, guild_id=guild), "guild_id": str(guild)})
    if (method, parts) == ("POST", ["categories"]):
        body = await _body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _HelperError(400, "name is required")
        raw = body.get("channel_ids", [])
        if not isinstance(raw, list):
            raise _HelperError(400, "channel_ids must be a list of snowflakes")
        category = emu.add_category(
            name, guild_id=_guild_id(body), channel_ids=[_int(c, "channel_ids") for c in raw]
        )
        return _answer(category.payload())
    if method == "PATCH" and len(parts) == 2 and parts[0] == "channels":
        body = await _body(request)
        if "parent_id" not in body:
            raise _HelperError(400, "parent_id is required (null: no category)")
        raw = body["parent_id"]
        channel = emu.move_channel(
            _int(parts[1], "channel_id"), None if raw is None else _int(raw, "parent_id")
        )
        return _answer(channel.payload())
    return None


async def _messages(
    emu: DiscordEmulator, request: web.Request, method: str, parts: list[str]
) -> web.Response | None:
    if method == "POST" and len(parts) == 1:
        body = await _body(request)
        author = _user_id(emu, body.get("author"), "author")
        if body.get("dm"):
            channel_id = emu.world.dm_channel(author).id
        else:
            channel_id = _int(body.get("channel_id"), "channel_id")
        if channel_id not in emu.world.channels:
            raise _HelperError(404, f"no channel {channel_id}")
        reply_to = body.get("reply_to")
        raw_files = body.get("attachments") or []
        if not isinstance(raw_files, list):
            raise _HelperError(
                400, "attachments must be a list of {filename, size?, content_type?}"
            )
        try:
            files = [ExplicitAttachment.model_validate(f) for f in raw_files]
        except ValidationError as error:
            raise _HelperError(400, f"bad attachment: {error.errors()[0]['msg']}") from None
        message = emu.post_message(
            author,
            channel_id,
            str(body.get("content", "")),
            reply_to=None if reply_to is None else _int(reply_to, "reply_to"),
            mention_bot=bool(body.get("mention_bot", False)),
            mentions=[_int(u, "mentions") for u in body.get("mentions") or []],
            attachments=files,
        )
        return _answer(_message(emu, message))
    if len(parts) == 3 and method in ("PATCH", "DELETE"):
        channel_id, message_id = _int(parts[1], "channel_id"), _int(parts[2], "message_id")
        channel = emu.world.channels.get(channel_id)
        if channel is None or message_id not in channel.messages:
            raise _HelperError(404, f"no message {message_id} in channel {channel_id}")
        if method == "DELETE":
            emu.delete_message(channel_id, message_id)
            return _answer(None)
        body = await _body(request)
        edited = emu.edit_message(channel_id, message_id, str(body.get("content", "")))
        return _answer(_message(emu, edited))
    return None


async def _interactions(
    emu: DiscordEmulator, request: web.Request, method: str, parts: list[str]
) -> web.Response | None:
    if method == "POST" and len(parts) == 1:
        body = await _body(request)
        user = _user_id(emu, body.get("user"), "user")
        channel = body.get("channel_id")
        channel_id = (
            emu.world.dm_channel(user).id if channel is None else _int(channel, "channel_id")
        )
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _HelperError(400, "options must be an object of name → value")
        interaction = emu.invoke_command(user, channel_id, str(body.get("command", "")), options)
        return _answer(_interaction(emu, interaction))
    if method == "GET" and len(parts) == 2:
        wanted = parts[1]
        found = next((i for i in emu.interactions() if str(i.id) == wanted), None)
        if found is None:
            raise _HelperError(404, f"no interaction {wanted}")
        timeout = _wait(request)
        if timeout is not None:
            followups = int(request.query.get("followups", "0"))
            try:
                await found.wait_for_response(timeout=timeout)
                if followups:
                    await found.wait_for_followups(followups, timeout=timeout)
            except TimeoutError as error:
                raise _HelperError(408, str(error), _interaction(emu, found)) from None
        return _answer(_interaction(emu, found))
    return None


async def _bot_messages(emu: DiscordEmulator, request: web.Request) -> web.Response:
    query = request.query
    channel_id = _int(query["channel_id"], "channel_id") if "channel_id" in query else None
    if channel_id is not None and channel_id not in emu.world.channels:
        raise _HelperError(404, f"no channel {channel_id}")
    after = _int(query.get("after", "0"), "after")
    reply_to = _int(query["reply_to"], "reply_to") if "reply_to" in query else None
    count = int(query.get("count", "1"))

    def current() -> list[EmulatedMessage]:
        return [
            m
            for m in emu.bot_messages(channel_id)
            if m.id > after and (reply_to is None or m.reply_to == reply_to)
        ]

    timeout = _wait(request)
    if timeout is not None:
        try:
            await emu.wait_until(
                lambda: len(current()) >= count,
                timeout=timeout,
                what=f"{count} bot message(s)",
            )
        except TimeoutError as error:
            seen = [_message(emu, m) for m in current()]
            raise _HelperError(408, str(error), seen) from None
    return _answer([_message(emu, m) for m in current()])


async def _gateway(
    emu: DiscordEmulator, request: web.Request, method: str, parts: list[str]
) -> web.Response | None:
    gateway = emu.gateway
    if method == "GET" and len(parts) == 1:
        timeout = _wait(request)
        if timeout is not None:
            wanted = int(request.query.get("connected", "1"))
            try:
                await emu.wait_for_sessions(wanted, timeout=timeout)
            except TimeoutError as error:
                raise _HelperError(408, str(error)) from None
        return _answer(
            {
                "url": emu.gateway_url,
                "identifies": gateway.identifies,
                "resumes": gateway.resumes,
                "closes": gateway.closes,
                "acking": gateway.acking,
                "sessions": [
                    {
                        "id": s.id,
                        "shard": [s.shard_id, s.shard_count],
                        "intents": s.intents,
                        "seq": s.seq,
                        "resumes": s.resumes,
                        "connected": s.connected,
                    }
                    for s in gateway.sessions()
                ],
            }
        )
    if method != "POST" or len(parts) != 2:
        return None
    raw_shard = request.query.get("shard_id")
    shard = None if raw_shard is None else int(raw_shard)
    action = parts[1]
    if action == "drop":
        touched = gateway.drop(shard_id=shard)
    elif action == "reconnect":
        touched = gateway.reconnect(shard_id=shard)
    elif action == "invalidate":
        resumable = request.query.get("resumable", "false").lower() in ("1", "true")
        touched = gateway.invalidate(resumable=resumable, shard_id=shard)
    elif action in ("stop-acks", "resume-acks"):
        gateway.acking = action == "resume-acks"
        touched = len(gateway.sessions(connected=True))
    else:
        return None
    return _answer({"action": action, "sockets": touched})
