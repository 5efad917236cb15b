"""``barkeeper backfill``: fetch channel history from Discord into the message cache.

Uses ``DISCORD_TOKEN`` and ``DISCORD_API_BASE`` (a local emulator or a
Discord-compatible server; Discord itself when unset). Exit status 0 when every
channel succeeded, 1 when any failed, 2 for a configuration error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from barkeeper.backfill import Backfill, BackfillResult, DiscordHistorySource, ProgressEvent
from barkeeper.cli._common import (
    console,
    err_console,
    id_argument,
    run,
    settings_and_logging,
    styled,
)
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import ConfigError


class _Bars:
    """Rich progress bars: one overall, one per channel being worked on."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._overall: TaskID | None = None
        self._channels: dict[int, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        progress = self._progress
        if event.kind == "found":
            self._overall = progress.add_task("channels", total=event.total)
            return
        channel = event.channel
        if channel is None:
            return
        task = self._channels.get(channel.channel_id)
        if event.kind == "start" and task is None:
            self._channels[channel.channel_id] = progress.add_task(
                channel.label, total=event.target, completed=event.count
            )
        elif event.kind == "page" and task is not None:
            description = channel.label
            if event.malformed:
                description += f" ({event.malformed} unreadable skipped)"
            progress.update(task, completed=min(event.count, event.target), description=description)
        elif event.kind == "done":
            if task is not None:
                progress.remove_task(task)
                del self._channels[channel.channel_id]
            if self._overall is not None:
                progress.advance(self._overall)


def _summary(result: BackfillResult, target: int) -> Table:
    table = Table(title=f"Backfill: {result.successes}/{len(result.channels)} channels successful")
    columns = ("channel", "cached", "fetched", "stored", "deleted", "pages", "retries", "malformed")
    for column in columns:
        table.add_column(column, justify="left" if column == "channel" else "right")
    table.add_column("outcome")
    for c in result.channels:
        outcome: str | Text
        if c.error is not None:
            outcome = Text.assemble(styled("failed", "red"), f": {c.error}")
        elif c.skipped:
            outcome = "done by another process"
        else:
            outcome = (c.completion.value if c.completion else "in progress").replace("_", " ")
            if c.synced:
                outcome += ", synced"
        table.add_row(
            f"#{c.name}" if c.name else str(c.channel_id),
            f"{c.count}/{target}",
            str(c.fetched),
            str(c.stored),
            str(c.deleted),
            str(c.pages),
            str(c.retries),
            str(c.malformed),
            outcome,
        )
    return table


def _verify_summary(result: BackfillResult) -> Table:
    table = Table(title=f"Verify: {result.successes}/{len(result.channels)} channels successful")
    columns = ("channel", "compared", "corrected", "deleted", "requests", "retries", "whole range")
    for column in columns:
        table.add_column(column, justify="left" if column == "channel" else "right")
    table.add_column("outcome")
    for c in result.channels:
        outcome: str | Text = "ok"
        if c.error is not None:
            outcome = Text.assemble(styled("failed", "red"), f": {c.error}")
        elif c.no_access:
            outcome = "no access"
        table.add_row(
            f"#{c.name}" if c.name else str(c.channel_id),
            str(c.verified),
            str(c.verify_updated),
            str(c.verify_deleted),
            str(c.verify_pages),
            str(c.retries),
            "yes" if c.verify_done else "no",
            outcome,
        )
    return table


def _malformed_note(result: BackfillResult) -> str | None:
    """One line on the messages skipped because they could not be read, if any."""
    total = result.totals()["malformed"]
    if not total:
        return None
    ids = [i for c in result.channels for i in c.malformed_ids]
    shown = ", ".join(str(i) for i in ids[:10]) + (", …" if len(ids) > 10 else "")
    return (
        f"{total} message(s) could not be read and were skipped"
        + (f" (ids {shown})" if ids else "")
        + "; the log says why for each"
    )


async def _backfill(
    settings: Settings,
    channels: list[int] | None,
    target: int | None,
    concurrency: int | None,
    sync: bool,
    bars: _Bars | None,
    verify: bool = False,
) -> BackfillResult:
    token = settings.discord_token.get_secret_value() if settings.discord_token else ""
    if not token.strip():
        raise ConfigError(
            "DISCORD_TOKEN is not set: put the bot's token (Discord developer portal) in "
            "the environment or .env"
        )
    workers = concurrency or settings.backfill_concurrency
    async with (
        Database.connect(settings, min_size=1, max_size=workers + 2, upgrade=True) as db,
        DiscordHistorySource.connect(token, api_base=settings.discord_api_base) as source,
    ):
        engine = Backfill.from_settings(
            db, source, settings, target=target, concurrency=concurrency, sync=sync, progress=bars
        )
        if verify:
            return await engine.verify(channels)
        return await engine.run(channels)


def backfill(
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            metavar="ID",
            help="A channel id to backfill; repeat for several. "
            "Default: every text channel of every server the bot is in.",
        ),
    ] = None,
    target: Annotated[
        int | None,
        typer.Option(
            "--target",
            min=1,
            metavar="N",
            help="Messages to hold per channel (default CONTEXT_AGENT_MAX_MESSAGES).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            metavar="N",
            help="Channels worked on at once (default BACKFILL_CONCURRENCY).",
        ),
    ] = None,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync/--no-sync",
            help="Afterwards re-fetch each channel's newest MESSAGE_SYNC_LIMIT messages to "
            "pick up edits and deletes made while the bot was offline.",
        ),
    ] = True,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Instead of backfilling, re-read the whole cached range of the channels "
            "from Discord and reconcile edits and deletes (one request per 100 cached "
            "messages; the summary shows what it cost).",
        ),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the per-channel results to this JSON file."),
    ] = None,
) -> None:
    """Fetch channel history from Discord into the message cache.

    Catches up on new messages, deepens to the target, reconciles offline edits and
    deletes (the newest MESSAGE_SYNC_LIMIT, and BACKFILL_VERIFY_PAGES older pages per
    run; --verify re-reads everything cached). Resumable (stop it at any moment, run
    it again) and safe to run from several processes at once. Uses DISCORD_TOKEN and
    DISCORD_API_BASE.
    """
    channels = [id_argument(c, "--channel", "Discord id") for c in channel or ()]
    settings = settings_and_logging()
    show_bars = err_console.is_terminal
    progress = Progress(
        TextColumn("{task.description}", markup=False),  # channel names are Discord's
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_bars,
    )
    if show_bars:
        # The bars show per-page progress; keep the per-channel log lines only.
        logging.getLogger("barkeeper.backfill.pages").setLevel(logging.WARNING)
    with progress:
        result = run(
            _backfill(
                settings,
                channels or None,
                target,
                concurrency,
                sync,
                _Bars(progress) if show_bars else None,
                verify,
            )
        )
    if verify:
        console.print(_verify_summary(result))
        totals = result.totals()
        console.print(
            f"Verification: {totals['verified']} messages compared, "
            f"{totals['verify_updated']} corrected, {totals['verify_deleted']} deleted, "
            f"{totals['verify_pages']} requests",
            markup=False,
            highlight=False,
        )
    else:
        console.print(_summary(result, target or settings.context_agent_max_messages))
    note = _malformed_note(result)
    if note is not None:
        console.print(note, markup=False, highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
    if not result.ok:
        err_console.print(
            f"Backfill failed for {result.failures} of {len(result.channels)} channel(s)",
            style="red",
        )
        raise typer.Exit(1)
