""":class:`Gateway`: the emulator's Discord gateway (websocket) for the real discord.py.

It speaks gateway v10 with JSON payloads, as plain TEXT frames or, when the client
asks for ``compress=zlib-stream`` (discord.py's default), as one zlib stream per
connection flushed with ``Z_SYNC_FLUSH`` per payload (``zstd-stream`` is honoured
when the ``zstandard`` package is importable, plain TEXT otherwise, which discord.py
also reads). It handles HELLO, heartbeats and ACKs, IDENTIFY (token → close 4004,
privileged intents not granted → 4014, bad shard → 4010), READY, GUILD_CREATE,
RESUME with replay of missed dispatches, op 8 member requests, and dispatches
events to the sessions of the right shard (``(guild_id >> 22) % shard_count``; DMs go
to shard 0) with message content blanked as Discord does for connections without the
message-content intent. Fault hooks drop sockets, withhold ACKs, send op 7 and op 9.

It keeps no world state of its own: the :class:`~barkeeper.testing.discord.World`
is read through the emulator, and it never contacts anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from barkeeper.testing.discord._content import EmulatedMessage, World
from barkeeper.testing.discord._snowflake import iso_timestamp, snowflake_ms
from barkeeper.testing.discord._spec import PrivilegedIntent

if TYPE_CHECKING:
    from barkeeper.testing.discord._server import DiscordEmulator

__all__ = [
    "INTENT_BITS",
    "PRIVILEGED_INTENTS",
    "Gateway",
    "GatewaySession",
    "shard_of",
]

#: Bits of the privileged intents.
PRIVILEGED_INTENTS: dict[PrivilegedIntent, int] = {
    "members": 1 << 1,
    "presences": 1 << 8,
    "message_content": 1 << 15,
}

#: Bits of the intents the emulator looks at.
INTENT_BITS = {
    "guilds": 1 << 0,
    "members": 1 << 1,
    "presences": 1 << 8,
    "guild_messages": 1 << 9,
    "guild_message_typing": 1 << 11,
    "direct_messages": 1 << 12,
    "direct_message_typing": 1 << 14,
    "message_content": 1 << 15,
}

_DISPATCH, _HEARTBEAT, _IDENTIFY, _RESUME, _RECONNECT = 0, 1, 2, 6, 7
_REQUEST_MEMBERS, _INVALID_SESSION, _HELLO, _HEARTBEAT_ACK = 8, 9, 10, 11
#: Dispatches a session keeps for RESUME (Discord keeps a few minutes' worth).
_REPLAY_LIMIT = 5000


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to: ``(guild_id >> 22) % shard_count``."""
    return (guild_id >> 22) % shard_count


@dataclass(slots=True)
class GatewaySession:
    """One identified gateway session (it outlives its sockets until invalidated).

    Attributes:
        id: The ``session_id`` of READY.
        shard_id: The shard it identified as.
        shard_count: The shard count it identified with.
        intents: The intents bitmask of IDENTIFY.
        seq: The last sequence number dispatched.
        resumes: How many times it was resumed.
        connected: Whether a socket is attached now.
    """

    id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    resumes: int = 0
    disconnected_at: float | None = None
    sent: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=_REPLAY_LIMIT), repr=False
    )
    connection: _Connection | None = field(default=None, repr=False)

    @property
    def connected(self) -> bool:
        """Whether a socket is attached now."""
        return self.connection is not None

    def has(self, intent: str) -> bool:
        """Whether IDENTIFY asked for ``intent`` (a name of :data:`INTENT_BITS`)."""
        return bool(self.intents & INTENT_BITS[intent])

    def receives_guild(self, guild_id: int | None) -> bool:
        """Whether events of ``guild_id`` (``None``: a DM) go to this session."""
        if guild_id is None:
            return self.shard_id == 0
        return shard_of(guild_id, self.shard_count) == self.shard_id


class _Connection:
    """One websocket: a queue of payloads written in order by a single writer task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, compress: str) -> None:
        self.ws = ws
        self.request = request
        self.session: GatewaySession | None = None
        self.closed_by_server = False
        # Payloads, flush markers (futures to resolve once reached) and None (stop).
        self._queue: asyncio.Queue[dict[str, Any] | asyncio.Future[None] | None] = asyncio.Queue()
        self._encode = _encoder(compress)
        self._writer = asyncio.create_task(self._write())

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put_nowait(payload)

    async def flush(self) -> None:
        """Wait until every queued payload has been written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(done)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), 5)

    async def _write(self) -> None:
        while True:
            payload = await self._queue.get()
            if payload is None:
                return
            if isinstance(payload, asyncio.Future):
                if not payload.done():
                    payload.set_result(None)
                continue
            if self.ws.closed:
                continue
            raw = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
            frame = self._encode(raw)
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                continue

    async def close(self, code: int = 1000, message: str = "") -> None:
        self.closed_by_server = True
        await self.flush()
        await self.ws.close(code=code, message=message.encode())

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (a network drop)."""
        self.closed_by_server = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def finish(self) -> None:
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait({self._writer}, timeout=1)
        if not done:
            self._writer.cancel()


def _encoder(compress: str) -> Callable[[str], str | bytes]:
    if compress == "zlib-stream":
        compressor = zlib.compressobj()

        def zlib_frame(raw: str) -> bytes:
            return compressor.compress(raw.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)

        return zlib_frame
    if compress == "zstd-stream":
        try:
            import zstandard  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            return lambda raw: raw
        stream = zstandard.ZstdCompressor().compressobj()
        flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

        def zstd_frame(raw: str) -> bytes:
            return bytes(stream.compress(raw.encode()) + stream.flush(flush_block))

        return zstd_frame
    return lambda raw: raw


class Gateway:
    """The gateway side of a :class:`~barkeeper.testing.discord.DiscordEmulator`.

    Use it through ``emulator.gateway``: its fault hooks (:meth:`drop`,
    :meth:`reconnect`, :meth:`invalidate`, :attr:`acking`) and counters
    (:attr:`identifies`, :attr:`resumes`, :meth:`sessions`).

    Attributes:
        acking: Whether heartbeats are ACKed (set ``False`` to make the client think
            the connection is dead; it closes and RESUMEs after its
            ``heartbeat_timeout``).
        identifies: IDENTIFYs accepted so far.
        resumes: RESUMEs accepted so far.
        closes: Close codes the gateway sent, in order.
        compressions: The ``compress`` query of each websocket, in order.
        resume_window: Seconds a disconnected session stays resumable (events for
            it are kept meanwhile); a client closing with 1000 or 1001 ends its
            session at once, as on Discord.
    """

    def __init__(self, emulator: DiscordEmulator) -> None:
        """Attach to ``emulator`` (its world, token and spec)."""
        self._emulator = emulator
        self._sessions: dict[str, GatewaySession] = {}
        self._connections: set[_Connection] = set()
        self.acking = True
        self.identifies = 0
        self.resumes = 0
        self.closes: list[int] = []
        self.compressions: list[str] = []
        self.resume_window = 120.0
        self._changed: Callable[[], None] = lambda: None

    @property
    def _world(self) -> World:
        return self._emulator.world

    # -- observation -------------------------------------------------------------------

    def sessions(self, *, connected: bool | None = None) -> list[GatewaySession]:
        """The live sessions, optionally only (dis)connected ones."""
        return [s for s in self._sessions.values() if connected is None or s.connected == connected]

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a session is identified, resumed or lost."""
        self._changed = callback

    # -- faults ------------------------------------------------------------------------

    def drop(self, *, shard_id: int | None = None) -> int:
        """Cut the sockets (of one shard, or all) without a close frame; sessions stay resumable.

        Returns:
            How many sockets were cut.
        """
        cut = 0
        for connection in list(self._connections):
            session = connection.session
            if shard_id is None or (session is not None and session.shard_id == shard_id):
                connection.abort()
                cut += 1
        return cut

    def reconnect(self, *, shard_id: int | None = None) -> int:
        """Send op 7 RECONNECT; the client closes and RESUMEs.

        Returns:
            How many sockets were told.
        """
        return self._send_op({"op": _RECONNECT, "d": None}, shard_id)

    def invalidate(self, *, resumable: bool = False, shard_id: int | None = None) -> int:
        """Send op 9 INVALID_SESSION (``d`` = ``resumable``).

        When not resumable the sessions are forgotten, so the client must IDENTIFY
        again (and gets a fresh READY).

        Returns:
            How many sockets were told.
        """
        told = 0
        for connection in list(self._connections):
            session = connection.session
            if session is None or (shard_id is not None and session.shard_id != shard_id):
                continue
            connection.send({"op": _INVALID_SESSION, "d": resumable})
            if not resumable:
                self._sessions.pop(session.id, None)
            told += 1
        return told

    def _expire(self) -> None:
        horizon = time.monotonic() - self.resume_window
        for session in list(self._sessions.values()):
            if session.disconnected_at is not None and session.disconnected_at < horizon:
                del self._sessions[session.id]

    def _send_op(self, payload: dict[str, Any], shard_id: int | None) -> int:
        told = 0
        for connection in list(self._connections):
            session = connection.session
            if session is None or (shard_id is not None and session.shard_id != shard_id):
                continue
            connection.send(payload)
            told += 1
        return told

    # -- dispatch ----------------------------------------------------------------------

    def dispatch(
        self,
        event: str,
        render: Callable[[GatewaySession], dict[str, Any] | None],
        *,
        guild_id: int | None,
        intent: str | None = None,
    ) -> int:
        """Send one event to every session that should get it.

        Args:
            event: The event name (``"MESSAGE_CREATE"``).
            render: Builds ``d`` for one session (``None``: not for this session).
            guild_id: Routes to the guild's shard; ``None`` (a DM) routes to shard 0.
            intent: An :data:`INTENT_BITS` name the session needs to get the event.

        Returns:
            How many sessions got it (connected or buffered for RESUME).
        """
        delivered = 0
        self._expire()
        for session in list(self._sessions.values()):
            if not session.receives_guild(guild_id):
                continue
            if intent is not None and not session.has(intent):
                continue
            data = render(session)
            if data is None:
                continue
            self._send_dispatch(session, event, data)
            delivered += 1
        return delivered

    def dispatch_message(self, event: str, message: EmulatedMessage) -> int:
        """MESSAGE_CREATE/MESSAGE_UPDATE of ``message``, content blanked per session.

        Nothing is sent for a channel the bot cannot see (access ``"forbidden"``).
        """
        channel = self._world.channels.get(message.channel_id)
        if channel is not None and channel.access == "forbidden":
            return 0
        intent = "direct_messages" if message.guild_id is None else "guild_messages"
        return self.dispatch(
            event,
            lambda session: self.message_event(message, session),
            guild_id=message.guild_id,
            intent=intent,
        )

    def dispatch_delete(self, channel_id: int, message_id: int, guild_id: int | None) -> int:
        """MESSAGE_DELETE."""
        data: dict[str, Any] = {"id": str(message_id), "channel_id": str(channel_id)}
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        intent = "direct_messages" if guild_id is None else "guild_messages"
        return self.dispatch(
            "MESSAGE_DELETE", lambda session: data, guild_id=guild_id, intent=intent
        )

    def message_event(self, message: EmulatedMessage, session: GatewaySession) -> dict[str, Any]:
        """``message`` as a MESSAGE_CREATE ``d`` for ``session`` (with ``guild_id``, ``member``)."""
        world = self._world
        data = world.message_payload(message)
        has_intent = session.has("message_content")
        self.blank(data, message, has_intent=has_intent)
        referenced = data.get("referenced_message")
        if isinstance(referenced, dict):
            channel = world.channels[message.channel_id]
            target = channel.messages.get(message.reply_to or 0)
            if target is not None:
                self.blank(referenced, target, has_intent=has_intent)
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            data["member"] = self.member_payload(
                message.author_id, with_user=False, guild_id=message.guild_id
            )
        return data

    def blank(self, data: dict[str, Any], message: EmulatedMessage, *, has_intent: bool) -> None:
        """Empty ``data``'s content fields as Discord does for an app without the intent.

        Discord keeps them for DMs, the app's own messages and messages that mention
        it; everything else has empty ``content``, ``embeds``, ``attachments`` and
        ``components``.
        """
        if has_intent or message.guild_id is None:
            return
        bot_id = self._world.bot.id
        if message.author_id == bot_id or bot_id in message.mention_ids:
            return
        data["content"] = ""
        data["embeds"] = []
        data["attachments"] = []
        data["components"] = []

    def _send_dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": _DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append(frame)
        if session.connection is not None:
            session.connection.send(frame)

    # -- payloads ----------------------------------------------------------------------

    def member_payload(
        self, user_id: int, *, with_user: bool = True, guild_id: int | None = None
    ) -> dict[str, Any]:
        """A guild member object for ``user_id`` (every user is in every guild).

        Args:
            user_id: The member.
            with_user: Include the ``user`` object.
            guild_id: The guild, for the member's ``roles`` (``None``: no roles).
        """
        user = self._world.users[user_id]
        roles = [] if guild_id is None else self._world.roles_of(guild_id, user_id)
        data: dict[str, Any] = {
            "roles": [str(role_id) for role_id in roles],
            "joined_at": iso_timestamp(snowflake_ms(user.id)),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = user.payload()
        return data

    def guild_create(self, guild_id: int, session: GatewaySession) -> dict[str, Any]:
        """GUILD_CREATE ``d``: the guild with channels, threads, roles and members."""
        world = self._world
        guild = world.guilds[guild_id]
        data = guild.payload()
        users = list(world.users.values())
        if session.has("members"):
            members = [self.member_payload(u.id, guild_id=guild_id) for u in users]
        else:
            members = [self.member_payload(world.bot.id, guild_id=guild_id)]
        channels = []
        for category_id in guild.category_ids:
            payload = world.categories[category_id].payload()
            payload.pop("guild_id", None)
            channels.append(payload)
        for channel_id in guild.channel_ids:
            payload = world.channel_payload(world.channels[channel_id])
            payload.pop("guild_id", None)
            channels.append(payload)
        data.update(
            {
                "joined_at": iso_timestamp(snowflake_ms(guild.id)),
                "large": len(users) >= 250,
                "unavailable": False,
                "member_count": len(users),
                "members": members,
                "channels": channels,
                "threads": [
                    world.channel_payload(world.channels[i])
                    for i in guild.thread_ids
                    if i in world.channels
                ],
                "voice_states": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "application_command_counts": {},
            }
        )
        return data

    def _guilds_of(self, session: GatewaySession) -> Iterable[int]:
        return [g for g in self._world.guilds if session.receives_guild(g)]

    # -- the websocket -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one websocket at ``/gateway``."""
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        compress = request.query.get("compress", "")
        self.compressions.append(compress)
        connection = _Connection(ws, request, compress)
        self._connections.add(connection)
        try:
            if request.query.get("encoding", "json") != "json":
                await self._close(connection, 4002, "Only encoding=json is emulated.")
                return ws
            interval = int(self._emulator.spec.heartbeat_interval * 1000)
            connection.send({"op": _HELLO, "d": {"heartbeat_interval": interval}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    if msg.type is WSMsgType.BINARY:
                        await self._close(connection, 4002, "Binary payloads are not emulated.")
                    break
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await self._close(connection, 4002, "Error while decoding payload.")
                    break
                if not await self._receive(connection, op, payload.get("d")):
                    break
        finally:
            self._connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                session.disconnected_at = time.monotonic()
                clean = ws.close_code in (1000, 1001) and not connection.closed_by_server
                if clean:  # a client closing cleanly ends its session
                    self._sessions.pop(session.id, None)
            await connection.finish()
            self._changed()
        return ws

    async def _close(self, connection: _Connection, code: int, message: str) -> None:
        self.closes.append(code)
        await connection.close(code, message)

    async def _receive(self, connection: _Connection, op: int, data: Any) -> bool:
        """Handle one payload; ``False`` when the socket was closed."""
        if op == _HEARTBEAT:
            if self.acking:
                connection.send({"op": _HEARTBEAT_ACK})
            return True
        if op == _IDENTIFY:
            return await self._identify(connection, data)
        if op == _RESUME:
            return await self._resume(connection, data)
        if connection.session is None:
            await self._close(connection, 4003, "Not authenticated.")
            return False
        if op == _REQUEST_MEMBERS:
            self._request_members(connection.session, data)
            return True
        if op in (3, 4):  # presence and voice state updates: accepted, ignored
            return True
        await self._close(connection, 4001, "Unknown opcode.")
        return False

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str):
            return False
        return token.removeprefix("Bot ") == self._emulator.token

    async def _identify(self, connection: _Connection, data: Any) -> bool:
        if connection.session is not None:
            await self._close(connection, 4005, "Already authenticated.")
            return False
        if not isinstance(data, dict) or not self._token_ok(data.get("token")):
            await self._close(connection, 4004, "Authentication failed.")
            return False
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            await self._close(connection, 4013, "Invalid intent(s).")
            return False
        granted = self._emulator.spec.granted_intents
        for name, bit in PRIVILEGED_INTENTS.items():
            if intents & bit and name not in granted:
                await self._close(connection, 4014, "Disallowed intent(s).")
                return False
        shard = data.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(isinstance(x, int) for x in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            await self._close(connection, 4010, "Invalid shard.")
            return False
        session = GatewaySession(
            id=secrets.token_hex(16), shard_id=shard[0], shard_count=shard[1], intents=intents
        )
        self._sessions[session.id] = session
        session.connection = connection
        connection.session = session
        self.identifies += 1
        world = self._world
        bot = world.bot
        guild_ids = list(self._guilds_of(session))
        ready = {
            "v": 10,
            "user": {**bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://{connection.request.host}/gateway",
            "shard": [session.shard_id, session.shard_count],
            "application": {"id": str(bot.id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
        }
        self._send_dispatch(session, "READY", ready)
        for guild_id in guild_ids:
            self._send_dispatch(session, "GUILD_CREATE", self.guild_create(guild_id, session))
        self._changed()
        return True

    async def _resume(self, connection: _Connection, data: Any) -> bool:
        if not isinstance(data, dict) or not self._token_ok(data.get("token")):
            await self._close(connection, 4004, "Authentication failed.")
            return False
        self._expire()
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not isinstance(seq, int) or seq > session.seq:
            connection.send({"op": _INVALID_SESSION, "d": False})
            return True
        missed = [frame for frame in session.sent if frame["s"] > seq]
        if missed and missed[0]["s"] != seq + 1:  # older than the replay buffer
            connection.send({"op": _INVALID_SESSION, "d": False})
            self._sessions.pop(session.id, None)
            return True
        previous = session.connection
        if previous is not None and previous is not connection:
            previous.session = None
            previous.abort()
        session.connection = connection
        session.disconnected_at = None
        connection.session = session
        for frame in missed:
            connection.send(frame)
        session.resumes += 1
        self.resumes += 1
        self._send_dispatch(session, "RESUMED", {})
        self._changed()
        return True

    def _request_members(self, session: GatewaySession, data: Any) -> None:
        if not isinstance(data, dict):
            return
        guild_id = int(data.get("guild_id", 0))
        if guild_id not in self._world.guilds:
            return
        members = [self.member_payload(u, guild_id=guild_id) for u in self._world.users]
        chunk: dict[str, Any] = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)
