"""``barkeeper privacy``: show, export or forget everything kept about a user."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TextIO

import asyncpg
import typer
from rich.table import Table

from barkeeper.cli._common import (
    console,
    err_console,
    run,
    settings_and_logging,
    styled,
    user_id_or_external,
)
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import BarkeeperError
from barkeeper.learning import build_embedder
from barkeeper.privacy import Privacy, PrivacyReport, UserRef
from barkeeper.turns import MessageIndex

app = typer.Typer(
    help="Show, export or delete everything barkeeper keeps about one user.",
    no_args_is_help=True,
)

UserIdArg = Annotated[
    str, typer.Argument(help="The user's Discord id (or, with --external, their external id).")
]
ExternalOpt = Annotated[
    bool, typer.Option("--external", help="USER_ID is an external (non-Discord) user id.")
]


async def _resolve(privacy: Privacy, who: int | str) -> UserRef:
    if isinstance(who, str):
        return await privacy.find_user(external_id=who)
    return await privacy.find_user(discord_id=who)


def _print_counts(title: str, rows: dict[str, int]) -> None:
    table = Table("table", "rows", title=title)
    for name, n in sorted(rows.items()):
        table.add_row(name, str(n))
    table.add_row(styled("total", "bold"), styled(str(sum(rows.values())), "bold"))
    console.print(table)


@app.command()
def show(user_id: UserIdArg, external: ExternalOpt = False) -> None:
    """Count what is kept about the user, per table."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()

    async def main() -> dict[str, int]:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            privacy = Privacy(db)
            return (await privacy.show(await _resolve(privacy, who))).rows

    rows = run(main())
    _print_counts(f"Kept about {user_id}", rows)


@app.command()
def export(
    user_id: UserIdArg,
    external: ExternalOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here instead of stdout.")
    ] = None,
) -> None:
    """Export everything kept about the user as one JSON document (streamed)."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()

    async def main(stream: TextIO) -> int:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            privacy = Privacy(db)
            return await privacy.write_export(await _resolve(privacy, who), stream)

    if out is None:
        run(main(sys.stdout))
        sys.stdout.flush()
        return
    # Written next to the target and renamed when complete: no half export on failure.
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            rows = run(main(stream))
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    err_console.print(f"Wrote {out} ({rows} rows).")


# Shown after every forget: what the tombstone does and does not do (Red-DiscordBot's
# `mydata forgetme` warns its users the same way).
FORGET_NOTE = (
    "Recorded that they are forgotten (a keyed hash of their id, not the id). Their "
    "messages written before now are never stored again: not by a backfill, a catch-up, "
    "the live bot, the message index or memory extraction. What they write from now on is "
    "a new relationship and is kept; if they want nothing kept, stop them using the bot "
    "(or forget them again)."
)


async def _sync_history_index(db: Database, settings: Settings, channels: dict[int, int]) -> str:
    """Sync the turn index of the channels a forget deleted cached messages from, each
    from the message before the lowest deleted (as the bot does after a delete: the turn
    after each deleted message went with it); what to print."""
    if not settings.index_history or not channels:
        return ""
    synced = 0
    try:
        index = MessageIndex(db, build_embedder(settings))
        for channel_id, lowest in sorted(channels.items()):
            synced += await index.sync_discord_channel(
                channel_id, after_message_id=max(lowest - 1, 0)
            )
    except (BarkeeperError, asyncpg.PostgresError, OSError) as exc:
        return (
            f"The history index of {len(channels)} channel(s) was not refreshed ({exc}); "
            "the bot refreshes it at its next start."
        )
    return f"History index: {len(channels)} channel(s) synced, {synced} turn(s) indexed again."


@app.command()
def forget(
    user_id: UserIdArg,
    external: ExternalOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete everything kept about the user, and refuse their earlier messages from now on."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()

    async def count() -> dict[str, int]:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            privacy = Privacy(db)
            return (await privacy.show(await _resolve(privacy, who))).rows

    rows = run(count())
    if rows:
        _print_counts(f"Will delete, for {user_id}", rows)
        question = "Delete all of this permanently?"
    else:
        console.print(f"Nothing is kept about {user_id} now.")
        question = "Record that they are forgotten, so that their past messages are never stored?"
    if not yes and not typer.confirm(question, default=False):
        err_console.print("Nothing deleted.")
        raise typer.Exit(1)

    async def delete() -> tuple[PrivacyReport, str]:
        async with Database.connect(settings, min_size=1, max_size=2) as db:
            privacy = Privacy(db)
            report = await privacy.forget(await _resolve(privacy, who))
            return report, await _sync_history_index(db, settings, report.channels)

    report, synced = run(delete())
    _print_counts(f"Deleted, for {user_id}", report.rows)
    if report.forgotten_at is not None:
        console.print(f"Forgotten at {report.forgotten_at.isoformat()}.")
    if synced:
        console.print(synced)
    console.print(FORGET_NOTE)
