"""Point the real discord.py at the emulator (REST and gateway) and run clients against it.

discord.py has no base-URL option: every request's URL is ``Route.BASE + path``,
built when the :class:`discord.http.Route` is created, and ``Route.BASE`` is a
class attribute (``https://discord.com/api/v10``). A plain ``Client`` never asks
``GET /gateway`` either: it dials ``DiscordWebSocket.DEFAULT_GATEWAY`` (and falls
back to it after an op 9), so that class attribute is set too. Both are process-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import discord
import discord.gateway
import discord.http
import yarl

if TYPE_CHECKING:
    from barkeeper.testing.discord._server import DiscordEmulator

__all__ = [
    "api_base",
    "discord_py_pointed_at",
    "logged_in_client",
    "point_discord_py_at",
    "running_client",
]

_ClientT = TypeVar("_ClientT", bound=discord.Client)

_DEFAULT_API_PATH = "/api/v10"


def api_base(url: str) -> str:
    """Normalise ``url`` to a REST API base ending in ``/api/v<N>``.

    ``http://127.0.0.1:8080`` becomes ``http://127.0.0.1:8080/api/v10``; a URL that
    already has an ``/api`` path is kept (without a trailing slash).

    Raises:
        ValueError: ``url`` is not an absolute http(s) URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    url = url.rstrip("/")
    if "/api" not in parts.path:
        url += _DEFAULT_API_PATH
    return url


def point_discord_py_at(base_url: str) -> str:
    """Make every later discord.py REST request go to ``base_url``.

    Sets ``discord.http.Route.BASE``. It affects the whole process (every client),
    and discord.py's own ``_set_api_version`` would overwrite it.

    Example:
        >>> previous = point_discord_py_at("http://127.0.0.1:8080/api/v10")
        >>> point_discord_py_at(previous)  # back to https://discord.com/api/v10
        'http://127.0.0.1:8080/api/v10'

    Args:
        base_url: The ``DISCORD_API_BASE`` value, e.g. ``http://127.0.0.1:8080/api/v10``;
            a bare origin gets ``/api/v10`` appended.

    Returns:
        The previous base, to restore later.

    Raises:
        ValueError: ``base_url`` is not an absolute http(s) URL.
    """
    previous = discord.http.Route.BASE
    discord.http.Route.BASE = api_base(base_url)
    return previous


@contextlib.contextmanager
def discord_py_pointed_at(base_url: str, *, gateway_url: str | None = None) -> Iterator[str]:
    """Point discord.py at ``base_url`` for the ``with`` block, then restore the old base.

    Args:
        base_url: The REST API base (see :func:`point_discord_py_at`).
        gateway_url: The websocket URL (``DiscordEmulator.gateway_url``); sets
            ``DiscordWebSocket.DEFAULT_GATEWAY`` too when given.

    Yields:
        The normalised API base in effect inside the block.
    """
    previous = point_discord_py_at(base_url)
    previous_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    if gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield discord.http.Route.BASE
    finally:
        discord.http.Route.BASE = previous
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = previous_gateway


@contextlib.asynccontextmanager
async def running_client(
    emulator: DiscordEmulator,
    client: _ClientT,
    *,
    token: str | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[_ClientT]:
    """Start ``client`` against ``emulator`` (REST and gateway) and wait until it is ready.

    The client runs in a task of the current event loop; on exit it is closed and
    discord.py's REST base and default gateway are restored. Pass
    ``guild_ready_timeout=0.1`` to the client to skip discord.py's 2 s wait for
    guilds before ``on_ready``.

    Example:
        >>> async def demo(emu: DiscordEmulator) -> None:
        ...     client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)
        ...     async with running_client(emu, client):
        ...         assert client.guilds

    Args:
        emulator: A started emulator.
        client: Any ``discord.Client`` (``commands.Bot``, ``AutoShardedBot``, …), not started.
        token: The token to start with (default: the emulator's).
        timeout: Seconds to wait for ``on_ready``.

    Yields:
        The ready client.

    Raises:
        TimeoutError: Not ready within ``timeout``.
        discord.LoginFailure: The token was refused (and whatever else ``start`` raises).
    """
    with discord_py_pointed_at(emulator.base_url, gateway_url=emulator.gateway_url):
        task = asyncio.create_task(client.start(token or emulator.token))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()  # start() ended before ready: raise its error
                raise RuntimeError("the client stopped before it was ready")
            if ready not in done:
                raise TimeoutError(f"the client was not ready within {timeout:g}s")
            yield client
        finally:
            ready.cancel()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def logged_in_client(
    base_url: str,
    token: str,
    *,
    intents: discord.Intents | None = None,
    **client_options: Any,
) -> AsyncIterator[discord.Client]:
    """A :class:`discord.Client` logged in (REST only, no gateway) against ``base_url``.

    The client is closed and ``Route.BASE`` restored on exit.

    Example:
        >>> async def demo(emu: DiscordEmulator) -> None:
        ...     async with logged_in_client(emu.base_url, emu.token) as client:
        ...         channel = await client.fetch_channel(emu.channel_ids()[0])

    Args:
        base_url: The API base (see :func:`point_discord_py_at`).
        token: The bot token.
        intents: Gateway intents; ``Intents.none()`` by default.
        **client_options: More :class:`discord.Client` options
            (``max_ratelimit_timeout``, ``http_trace``, …).

    Yields:
        The logged-in client.

    Raises:
        discord.LoginFailure: The token was refused (401).
    """
    with discord_py_pointed_at(base_url):
        client = discord.Client(
            intents=intents if intents is not None else discord.Intents.none(), **client_options
        )
        try:
            await client.login(token)
            yield client
        finally:
            await client.close()
