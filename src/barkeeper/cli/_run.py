"""``barkeeper run``: the Discord bot, until Ctrl-C or SIGTERM."""

from __future__ import annotations

from barkeeper.bot import missing_for_bot, run_bot
from barkeeper.cli._common import run, settings_and_logging
from barkeeper.errors import ConfigError


def run_command() -> None:
    """Run the Discord bot (needs DISCORD_TOKEN and an LLM key; see .env.example).

    Migrates the database, connects to Discord, answers mentions, replies and DMs,
    and backfills channel history in the background. Ctrl-C or SIGTERM stops it
    cleanly (replies in flight finish, the memory queue drains).
    """
    settings = settings_and_logging()
    missing = missing_for_bot(settings)
    if missing:
        raise ConfigError(
            "cannot start the bot; set these in the environment or .env (see .env.example):"
            + "".join(f"\n  - {item}" for item in missing)
        )
    run(run_bot(settings))
