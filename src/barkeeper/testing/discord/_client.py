"""Point the real discord.py at another REST base (the emulator) and log a client in.

discord.py has no base-URL option: every request's URL is ``Route.BASE + path``,
built when the :class:`discord.http.Route` is created, and ``Route.BASE`` is a
class attribute (``https://discord.com/api/v10``). Setting it is process-wide.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import discord
import discord.http

__all__ = ["api_base", "discord_py_pointed_at", "logged_in_client", "point_discord_py_at"]

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
def discord_py_pointed_at(base_url: str) -> Iterator[str]:
    """Point discord.py at ``base_url`` for the ``with`` block, then restore the old base.

    Yields:
        The normalised API base in effect inside the block.
    """
    previous = point_discord_py_at(base_url)
    try:
        yield discord.http.Route.BASE
    finally:
        discord.http.Route.BASE = previous


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
