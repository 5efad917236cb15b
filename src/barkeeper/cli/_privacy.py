"""``barkeeper privacy``: show, export or forget everything kept about a user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
from barkeeper.db import Database
from barkeeper.privacy import Privacy, UserRef

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
    """Export everything kept about the user as one JSON document."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()

    async def main() -> dict[str, object]:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            privacy = Privacy(db)
            return await privacy.export(await _resolve(privacy, who))

    document = run(main())
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"Wrote {out} ({len(text)} characters).")


@app.command()
def forget(
    user_id: UserIdArg,
    external: ExternalOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete everything kept about the user, in every table, in one transaction."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()

    async def count() -> dict[str, int]:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            privacy = Privacy(db)
            return (await privacy.show(await _resolve(privacy, who))).rows

    rows = run(count())
    if not rows:
        console.print(f"Nothing is kept about {user_id}.")
        return
    _print_counts(f"Will delete, for {user_id}", rows)
    if not yes and not typer.confirm("Delete all of this permanently?", default=False):
        err_console.print("Nothing deleted.")
        raise typer.Exit(1)

    async def delete() -> dict[str, int]:
        async with Database.connect(settings, min_size=1, max_size=2) as db:
            privacy = Privacy(db)
            return (await privacy.forget(await _resolve(privacy, who))).rows

    _print_counts(f"Deleted, for {user_id}", run(delete()))
