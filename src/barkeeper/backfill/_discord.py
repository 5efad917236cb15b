""":class:`DiscordHistorySource`: channel history from Discord through discord.py's HTTP client.

It logs a :class:`discord.Client` in (REST only: no gateway), reads raw message
payloads with ``GET /channels/{id}/messages`` (no :class:`discord.Message` objects:
the backfill stores payloads, so building models would only cost time) and turns
discord.py's and aiohttp's errors into barkeeper's: 403 becomes
:attr:`Access.NO_ACCESS`, network failures, cut or broken bodies, timeouts, 5xx and
429s that outlasted discord.py's own retries become
:class:`~barkeeper.errors.DiscordUnavailableError` (the engine retries those).

discord.py has no option for its API base: ``DISCORD_API_BASE`` is honoured by
setting ``discord.http.Route.BASE``, which is process-wide: sources of one process
must agree on it (a conflicting one is refused), and the original value comes back
when the last of them closes. The token is never logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import discord
import discord.http

from barkeeper.backfill._source import (
    TEXT_CHANNEL_TYPES,
    Access,
    ChannelInfo,
    MalformedMessage,
    MessageLookup,
    Page,
)
from barkeeper.errors import (
    DiscordAuthenticationError,
    DiscordError,
    DiscordUnavailableError,
    InvalidInputError,
    NotFoundError,
)
from barkeeper.history import (
    MAX_SNOWFLAKE,
    StoredMessage,
    message_from_payload,
    snowflake_time,
)

__all__ = ["DiscordHistorySource", "normalize_api_base"]

_log = logging.getLogger(__name__)

_DEFAULT_API_PATH = "/api/v10"
_UNKNOWN_CHANNEL = 10003
_GUILDS_PAGE = 200
# discord.py's login: GET /users/@me, then GET /oauth2/applications/@me.
_LOGIN_REQUESTS = 2
# What a broken connection, a cut body or cut JSON look like coming out of discord.py
# (it wraps none of them) and aiohttp. Not every ValueError: a message that cannot be
# read is no reason to ask again (it is skipped, see DiscordHistorySource.fetch_page).
_TRANSIENT = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)
# A malformed message's id moves the cursors past it only if it is plausible: a
# snowflake of a time not in the future (a garbage id must not make paging skip).
_ID_CLOCK_SLACK = dt.timedelta(hours=1)


def normalize_api_base(url: str) -> str:
    """``DISCORD_API_BASE`` as discord.py needs it: an absolute URL ending in ``/api/vN``.

    ``http://127.0.0.1:8080`` becomes ``http://127.0.0.1:8080/api/v10``; a URL with an
    ``/api`` path is kept as given (without a trailing slash).

    Raises:
        InvalidInputError: not an absolute http(s) URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(
            f"DISCORD_API_BASE must be an absolute http(s) URL such as "
            f"http://127.0.0.1:8080/api/v10, got {url!r}"
        )
    base = url.strip().rstrip("/")
    if "/api" not in parts.path:
        base += _DEFAULT_API_PATH
    return base


class _BaseRegistry:
    """Who pointed discord.py's process-wide ``Route.BASE`` where.

    Sources in one process may share a base (they count as users of it); one that
    wants another base while the first is in use is refused, since every discord.py
    client of the process would follow it. The original base comes back when the
    last user closes.
    """

    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        self._original = ""

    def acquire(self, base: str | None) -> str | None:
        current = discord.http.Route.BASE
        if base is None:
            if self._users:
                raise InvalidInputError(
                    f"discord.py is pointed at {current} by another history source in this "
                    "process; close it first or use the same DISCORD_API_BASE"
                )
            return None
        if self._users and base not in self._users:
            raise InvalidInputError(
                f"discord.py is pointed at {current} by another history source in this "
                f"process; it cannot also use {base}"
            )
        if not self._users:
            self._original = current
        self._users[base] = self._users.get(base, 0) + 1
        discord.http.Route.BASE = base
        return base

    def release(self, base: str | None) -> None:
        if base is None or base not in self._users:
            return
        self._users[base] -= 1
        if not self._users[base]:
            del self._users[base]
            discord.http.Route.BASE = self._original


_BASES = _BaseRegistry()


class _Pacer:
    """At most ``rate`` requests in any ``window`` seconds (Discord's global limit).

    A sliding window over the send times of the last ``rate`` requests: waiting is
    only ever as long as the oldest of them needs to leave the window, never a fixed
    delay. Waiters are served in arrival order.
    """

    def __init__(self, rate: int, window: float) -> None:
        self._rate = rate
        self._window = window
        self._sent: collections.deque[float] = collections.deque(maxlen=rate)
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            while len(self._sent) == self._rate:
                delay = self._sent[0] + self._window - time.monotonic()
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            self._sent.append(time.monotonic())

    def record(self, count: int = 1) -> None:
        """Count requests made without waiting (the login's), so the window includes them."""
        now = time.monotonic()
        for _ in range(count):
            self._sent.append(now)


def _snowflake(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _channel_info(data: Mapping[str, Any]) -> ChannelInfo:
    channel_id = _snowflake(data.get("id"))
    if channel_id is None:
        raise DiscordError(f"Discord sent a channel without an id: {str(data)[:200]}")
    raw_type = data.get("type", 0)
    return ChannelInfo(
        channel_id=channel_id,
        guild_id=_snowflake(data.get("guild_id")),
        name=None if data.get("name") is None else str(data["name"]),
        type=raw_type if isinstance(raw_type, int) else 0,
        last_message_id=_snowflake(data.get("last_message_id")),
    )


class DiscordHistorySource:
    """A :class:`~barkeeper.backfill.HistorySource` on discord.py.

    Open it with :meth:`connect` (logs in, closes on exit)::

        async with DiscordHistorySource.connect(token, api_base=None) as source:
            page = await source.fetch_page(channel_id, limit=100)

    Args:
        client: a logged-in :class:`discord.Client`, e.g. the bot's own (then the
            backfill shares its rate-limit buckets).
        close_client: whether :meth:`close` closes ``client`` (``True`` for the
            client :meth:`connect` made, ``False`` by default for one passed in).
        request_timeout: seconds one HTTP exchange may take (aiohttp's default is 300).
        global_rate: requests per second across every route, Discord's global limit
            (50 for bots); ``None`` or 0 leaves it to discord.py's 429 handling.
        global_margin: the global window is stretched by this many seconds, so that
            network jitter cannot land one request too many in the server's window.
        api_base: the ``Route.BASE`` this source registered (released on close).
        login_requests: requests the login just made (they count towards the global
            limit too).
    """

    def __init__(
        self,
        client: discord.Client,
        *,
        request_timeout: float = 30.0,
        global_rate: int | None = 50,
        global_margin: float = 0.05,
        api_base: str | None = None,
        login_requests: int = 0,
        close_client: bool = False,
    ) -> None:
        self._client = client
        self._close_client = close_client
        self._http = client.http
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._pacer = _Pacer(global_rate, 1.0 + global_margin) if global_rate else None
        if self._pacer is not None and login_requests:
            self._pacer.record(login_requests)
        self._guild_of: dict[int, int | None] = {}
        self._api_base = api_base
        self._closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        token: str,
        *,
        api_base: str | None = None,
        request_timeout: float = 30.0,
        global_rate: int | None = 50,
        login_attempts: int = 3,
        max_ratelimit_timeout: float = 120.0,
    ) -> AsyncIterator[DiscordHistorySource]:
        """Log in with ``token`` and yield a source; close the client on exit.

        Args:
            token: the bot token (``DISCORD_TOKEN``); never logged.
            api_base: ``DISCORD_API_BASE`` (``None``: Discord itself).
            request_timeout: seconds one HTTP exchange may take.
            global_rate: requests per second across every route (see the class).
            login_attempts: tries when Discord is unreachable or answers 5xx.
            max_ratelimit_timeout: a 429 asking to wait longer than this is raised
                (and retried by the engine later) instead of slept through.

        Raises:
            DiscordAuthenticationError: the token was refused.
            DiscordUnavailableError: Discord could not be reached.
            InvalidInputError: ``api_base`` is not an http(s) URL, or no token.
        """
        source = await cls.open(
            token,
            api_base=api_base,
            request_timeout=request_timeout,
            global_rate=global_rate,
            login_attempts=login_attempts,
            max_ratelimit_timeout=max_ratelimit_timeout,
        )
        try:
            yield source
        finally:
            await source.close()

    @classmethod
    async def open(
        cls,
        token: str,
        *,
        api_base: str | None = None,
        request_timeout: float = 30.0,
        global_rate: int | None = 50,
        login_attempts: int = 3,
        max_ratelimit_timeout: float = 120.0,
    ) -> DiscordHistorySource:
        """:meth:`connect` without the ``async with``: call :meth:`close` yourself."""
        token = (token or "").strip()
        if not token:
            raise InvalidInputError("no Discord bot token: set DISCORD_TOKEN")
        registered = _BASES.acquire(normalize_api_base(api_base) if api_base else None)
        where = discord.http.Route.BASE
        attempt = 0
        while True:
            attempt += 1
            # REST only (no gateway); the guilds intent just keeps discord.py from
            # warning that its state cache is disabled.
            client = discord.Client(
                intents=discord.Intents(guilds=True), max_ratelimit_timeout=max_ratelimit_timeout
            )
            try:
                await client.login(token)
                break
            except discord.LoginFailure:
                await client.close()
                _BASES.release(registered)
                raise DiscordAuthenticationError(
                    f"Discord at {where} refused the bot token (401 Unauthorized): "
                    "check DISCORD_TOKEN"
                ) from None
            except (discord.DiscordServerError, *_TRANSIENT) as exc:
                await client.close()
                if attempt >= login_attempts:
                    _BASES.release(registered)
                    raise DiscordUnavailableError(
                        f"cannot log in to Discord at {where}: {_describe(exc)}"
                    ) from None
                await asyncio.sleep(min(2.0**attempt, 10.0))
            except BaseException:
                await client.close()
                _BASES.release(registered)
                raise
        return cls(
            client,
            request_timeout=request_timeout,
            global_rate=global_rate,
            api_base=registered,
            login_requests=_LOGIN_REQUESTS,
            close_client=True,
        )

    async def close(self) -> None:
        """Close the client (if this source made it) and restore ``Route.BASE`` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._close_client:
                await self._client.close()
        finally:
            _BASES.release(self._api_base)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def bot_user_id(self) -> int | None:
        """The logged-in bot's user id."""
        user = self._client.user
        return None if user is None else user.id

    # --- requests --------------------------------------------------------------------

    async def _request(self, route: discord.http.Route, **params: Any) -> Any:
        if self._pacer is not None:
            await self._pacer.wait()
        try:
            return await self._http.request(route, params=params or None, timeout=self._timeout)
        except discord.LoginFailure:
            raise DiscordAuthenticationError(
                "Discord stopped accepting the bot token (401): check DISCORD_TOKEN"
            ) from None
        except (discord.Forbidden, discord.NotFound):
            raise
        except discord.RateLimited as exc:
            raise DiscordUnavailableError(
                f"{route.method} {route.path}: rate limited for {exc.retry_after:.1f} s"
            ) from None
        except discord.HTTPException as exc:
            if exc.status == 401:
                raise DiscordAuthenticationError(
                    "Discord stopped accepting the bot token (401): check DISCORD_TOKEN"
                ) from None
            if exc.status == 429 or exc.status >= 500:
                raise DiscordUnavailableError(
                    f"{route.method} {route.path}: {exc.status} after discord.py's retries"
                ) from None
            raise DiscordError(
                f"{route.method} {route.path}: Discord answered {exc.status}: {exc.text[:200]}"
            ) from None
        except _TRANSIENT as exc:
            raise DiscordUnavailableError(
                f"{route.method} {route.path}: {_describe(exc)}"
            ) from None

    async def fetch_page(
        self,
        channel_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> Page:
        """One page of history, newest first (see :meth:`HistorySource.fetch_page`).

        A message whose payload cannot be read (no author, a malformed field) is
        returned in :attr:`Page.malformed` rather than raised: asking again would
        bring the same payload back.

        Raises:
            DiscordUnavailableError: a transient failure, or a page that breaks
                Discord's cursor contract (wrong order, out of range, too long).
            NotFoundError: the channel does not exist.
            InvalidInputError: bad arguments.
        """
        if not 1 <= limit <= 100:
            raise InvalidInputError(f"limit must be 1 to 100, got {limit}")
        if before is not None and after is not None:
            raise InvalidInputError("give before or after, not both")
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        route = discord.http.Route("GET", "/channels/{channel_id}/messages", channel_id=channel_id)
        try:
            data = await self._request(route, **params)
        except discord.Forbidden:
            return Page((), Access.NO_ACCESS)
        except discord.NotFound:
            raise NotFoundError(f"Discord has no channel {channel_id} (404)") from None
        if not isinstance(data, list):
            raise DiscordUnavailableError(
                f"channel {channel_id}: expected a JSON list of messages, got {str(data)[:100]!r}"
            )
        guild_id = self._guild_of.get(channel_id)
        messages: list[StoredMessage] = []
        malformed: list[MalformedMessage] = []
        for item in data:
            read = _read_message(item, guild_id)
            if isinstance(read, MalformedMessage):
                malformed.append(read)
            else:
                messages.append(read)
        messages.sort(key=_message_id, reverse=True)
        _check_page(channel_id, messages, malformed, before=before, after=after, limit=limit)
        return Page(tuple(messages), malformed=tuple(malformed))

    async def fetch_message(self, channel_id: int, message_id: int) -> MessageLookup:
        """One message, or whether it is forbidden or missing."""
        route = discord.http.Route(
            "GET",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
        )
        try:
            data = await self._request(route)
        except discord.Forbidden:
            return MessageLookup(Access.NO_ACCESS)
        except discord.NotFound as exc:
            if exc.code == _UNKNOWN_CHANNEL:
                raise NotFoundError(f"Discord has no channel {channel_id} (404)") from None
            return MessageLookup(Access.MISSING)
        read = _read_message(data, self._guild_of.get(channel_id))
        if isinstance(read, MalformedMessage):
            return MessageLookup(Access.OK, malformed=read)
        return MessageLookup(Access.OK, read)

    async def fetch_channel(self, channel_id: int) -> ChannelInfo:
        """A channel's description; ``NotFoundError`` if Discord does not know it.

        A channel the bot may not even see (403) comes back with only its id, and
        its pages will say ``NO_ACCESS``.
        """
        route = discord.http.Route("GET", "/channels/{channel_id}", channel_id=channel_id)
        try:
            data = await self._request(route)
        except discord.Forbidden:
            return ChannelInfo(channel_id, self._guild_of.get(channel_id), None)
        except discord.NotFound:
            raise NotFoundError(f"Discord has no channel {channel_id} (404)") from None
        if not isinstance(data, Mapping):
            raise DiscordUnavailableError(f"channel {channel_id}: not a JSON object")
        info = _channel_info(data)
        self._guild_of[info.channel_id] = info.guild_id
        return info

    async def fetch_text_channels(self) -> AsyncIterator[ChannelInfo]:
        """Every text and announcement channel of every server the bot is in.

        Servers come in pages of 200 (``GET /users/@me/guilds``); each server's
        channels in one request, yielded in the server's own order (position).
        """
        after: int | None = None
        while True:
            params: dict[str, Any] = {"limit": _GUILDS_PAGE}
            if after is not None:
                params["after"] = after
            guilds = await self._request(discord.http.Route("GET", "/users/@me/guilds"), **params)
            if not isinstance(guilds, list):
                raise DiscordUnavailableError("GET /users/@me/guilds: not a JSON list")
            ids = sorted(i for i in (_snowflake(g.get("id")) for g in guilds) if i is not None)
            for guild_id in ids:
                route = discord.http.Route("GET", "/guilds/{guild_id}/channels", guild_id=guild_id)
                try:
                    channels = await self._request(route)
                except (discord.Forbidden, discord.NotFound):
                    continue  # left the server meanwhile
                if not isinstance(channels, list):
                    raise DiscordUnavailableError(f"{route.path}: not a JSON list")
                channels.sort(key=lambda c: (c.get("position") or 0, _snowflake(c.get("id")) or 0))
                for raw in channels:
                    info = _channel_info(raw)
                    if info.type not in TEXT_CHANNEL_TYPES:
                        continue
                    if info.guild_id is None:
                        info = ChannelInfo(
                            info.channel_id, guild_id, info.name, info.type, info.last_message_id
                        )
                    self._guild_of[info.channel_id] = info.guild_id
                    yield info
            if len(guilds) < _GUILDS_PAGE or not ids:
                return
            after = ids[-1]


def _message_id(message: StoredMessage) -> int:
    return message.message_id


def _read_message(item: object, guild_id: int | None) -> StoredMessage | MalformedMessage:
    """One message payload, or what is wrong with it (it is the same on every retry)."""
    if not isinstance(item, Mapping):
        return MalformedMessage(None, f"not a JSON object: {str(item)[:100]!r}")
    try:
        return message_from_payload(item, guild_id=guild_id)
    except InvalidInputError as exc:
        reason = str(exc)
    except (ValueError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    return MalformedMessage(_plausible_id(item.get("id")), reason[:300])


def _plausible_id(raw: object) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    value = _snowflake(raw)
    if value is None or not 0 < value <= MAX_SNOWFLAKE:
        return None
    if snowflake_time(value) > dt.datetime.now(dt.UTC) + _ID_CLOCK_SLACK:
        return None
    return value


def _check_page(
    channel_id: int,
    messages: list[StoredMessage],
    malformed: list[MalformedMessage],
    *,
    before: int | None,
    after: int | None,
    limit: int,
) -> None:
    """Refuse a page that breaks Discord's contract: a cursor built on it could skip messages."""
    problem = None
    ids = [m.message_id for m in messages]
    ids += [m.message_id for m in malformed if m.message_id is not None]
    if len(messages) + len(malformed) > limit:
        problem = f"{len(messages) + len(malformed)} messages for limit {limit}"
    elif any(m.channel_id != channel_id for m in messages):
        problem = "messages of another channel"
    elif len(set(ids)) != len(ids):
        problem = "the same message twice"
    elif ids and before is not None and max(ids) >= before:
        problem = f"a message not before {before}"
    elif ids and after is not None and min(ids) <= after:
        problem = f"a message not after {after}"
    if problem is not None:
        raise DiscordUnavailableError(f"channel {channel_id}: Discord sent {problem}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"broken JSON ({exc.msg})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
