"""``barkeeper outbox``: the memory outbox's dead letters: list, requeue, purge.

A message whose memory extraction failed ``BARKEEPER_MEMORY_MAX_ATTEMPTS`` times is
*dead*: kept with its reason, no longer tried, no longer holding its author's later
messages back. ``barkeeper doctor`` and ``/barkeeper status`` count them. Once the
cause is fixed (the model is back, its key renewed), ``retry`` gives them a fresh set
of attempts; each keeps its place, before its author's later messages still waiting.
``purge`` drops them for good.

``retry`` and ``purge`` need ``--user`` or ``--all`` (nothing is changed by accident);
``--reason`` narrows any of the three to the reasons containing a text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated

import typer
from rich.table import Table

from barkeeper.cli._common import (
    console,
    err_console,
    run,
    settings_and_logging,
    user_id_or_external,
)
from barkeeper.cli._memories import resolve_user
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.learning import DeadLetter, OutboxStore, build_outbox

__all__ = ["app"]

app = typer.Typer(
    help="The memory outbox's dead letters (messages whose memory extraction gave up): "
    "list them, requeue them once the cause is fixed, or purge them.",
    no_args_is_help=True,
)

UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        "-u",
        help="Only this user's: their Discord id (or, with --external, their external id).",
        show_default=False,
    ),
]
ExternalOpt = Annotated[
    bool, typer.Option("--external", help="--user is an external (non-Discord) user id.")
]
ReasonOpt = Annotated[
    str | None,
    typer.Option(
        "--reason",
        "-r",
        help="Only those whose reason contains this text (any case), e.g. LLMUnavailableError.",
        show_default=False,
    ),
]
AllOpt = Annotated[
    bool, typer.Option("--all", help="Every user's dead letters (instead of --user).")
]


def _scope(user: str | None, external: bool, every: bool, *, needed: bool) -> int | str | None:
    """The --user as typed (``None``: everyone), refusing a missing or double choice."""
    if user is not None and every:
        raise typer.BadParameter("give --user or --all, not both", param_hint="'--all'")
    if user is None:
        if needed and not every:
            raise typer.BadParameter(
                "say whose dead letters: --user ID, or --all for everyone's",
                param_hint="'--user' / '--all'",
            )
        return None
    return user_id_or_external(user, external=external)


async def _user(db: Database, who: int | str | None) -> int | None:
    return None if who is None else await resolve_user(db, who, create=False)


def _connect(settings: Settings) -> AbstractAsyncContextManager[Database]:
    return Database.connect(settings, min_size=1, max_size=2, upgrade=True)


def _change(
    settings: Settings,
    who: int | str | None,
    method: Callable[[OutboxStore], Callable[..., Awaitable[int]]],
    reason: str | None,
) -> int:
    """Requeue or purge (``method`` of the outbox) the chosen dead letters; how many."""

    async def main() -> int:
        async with _connect(settings) as db:
            change = method(build_outbox(db, settings))
            return await change(user_id=await _user(db, who), reason=reason)

    return run(main())


def _table(letters: list[DeadLetter]) -> Table:
    table = Table("id", "user", "message", "attempts", "dead since", "reason")
    for d in letters:
        who = str(d.discord_id) if d.discord_id is not None else f"#{d.user_id}"
        table.add_row(
            str(d.id),
            who,
            str(d.message_id) if d.message_id is not None else "",
            str(d.attempts),
            d.dead_at.strftime("%Y-%m-%d %H:%M"),
            d.reason,
        )
    return table


@app.command("list")
def list_(
    user: UserOpt = None,
    external: ExternalOpt = False,
    reason: ReasonOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10_000, help="Show at most this many.")
    ] = 50,
) -> None:
    """List dead letters, oldest first: their user, message, attempts and reason."""
    who = _scope(user, external, False, needed=False)
    settings = settings_and_logging()

    async def main() -> tuple[list[DeadLetter], int]:
        async with _connect(settings) as db:
            outbox = build_outbox(db, settings)
            whose = await _user(db, who)
            letters = await outbox.list_dead(user_id=whose, reason=reason, limit=limit)
            return letters, (await outbox.counts(reasons=0)).dead

    letters, total = run(main())
    if not letters:
        console.print("No dead letters" + (" match." if user or reason else "."))
        return
    console.print(_table(letters))
    shown = f"{len(letters)} shown of {total} dead"
    console.print(f"{shown}. `barkeeper outbox retry` requeues them, `purge` drops them.")


@app.command()
def retry(
    user: UserOpt = None,
    external: ExternalOpt = False,
    every: AllOpt = False,
    reason: ReasonOpt = None,
) -> None:
    """Requeue dead letters with a fresh set of attempts (fix their cause first).

    Each keeps its place: it is examined before its user's later messages still
    waiting. A running bot picks them up at its next poll.
    """
    who = _scope(user, external, every, needed=True)
    done = _change(settings_and_logging(), who, lambda outbox: outbox.requeue_dead, reason)
    console.print(f"Requeued {done} dead letter{'s' if done != 1 else ''}.")


@app.command()
def purge(
    user: UserOpt = None,
    external: ExternalOpt = False,
    every: AllOpt = False,
    reason: ReasonOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good: their messages are never examined for memories."""
    who = _scope(user, external, every, needed=True)
    settings = settings_and_logging()
    whose = f"user {user}" if user is not None else "every user"
    which = f" whose reason contains {reason!r}" if reason else ""
    question = f"Delete the dead letters of {whose}{which} permanently?"
    if not yes and not typer.confirm(question, default=False):
        err_console.print("Nothing deleted.")
        raise typer.Exit(1)

    done = _change(settings, who, lambda outbox: outbox.purge_dead, reason)
    console.print(f"Purged {done} dead letter{'s' if done != 1 else ''}.")
