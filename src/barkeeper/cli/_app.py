"""The ``barkeeper`` command: its sub-commands and the console-script entry point.

User mistakes (a bad setting, an unreachable database) are one clear line on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from barkeeper import __version__
from barkeeper.cli import _db as db_cli
from barkeeper.cli import _memories as memories_cli
from barkeeper.cli import _outbox as outbox_cli
from barkeeper.cli import _privacy as privacy_cli
from barkeeper.cli._backfill import backfill
from barkeeper.cli._chat import chat
from barkeeper.cli._common import err_console, styled
from barkeeper.cli._doctor import doctor
from barkeeper.cli._run import run_command
from barkeeper.errors import BarkeeperError, ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="barkeeper",
    help="barkeeper: a Discord companion bot and its PostgreSQL memory.\n\n"
    "With no database URL set, barkeeper starts its own embedded PostgreSQL "
    "(data under BARKEEPER_DATA_DIR). Settings come from the environment and .env.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_cli.app, name="db")
app.add_typer(privacy_cli.app, name="privacy")
app.add_typer(memories_cli.app, name="memories")
app.add_typer(outbox_cli.app, name="outbox")
app.command("backfill")(backfill)
app.command("chat")(chat)
app.command("doctor")(doctor)
app.command("run")(run_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"barkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """barkeeper: a Discord companion bot and its PostgreSQL memory."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:
        err_console.print(styled("Configuration error:", "red"), str(exc))
        sys.exit(2)
    except BarkeeperError as exc:
        err_console.print(styled("Error:", "red"), str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
