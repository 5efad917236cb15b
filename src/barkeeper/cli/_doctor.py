"""``barkeeper doctor``: what is configured, what works, what is missing."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from barkeeper.bot import CACHE_JOURNAL, missing_for_bot, read_cache_journal
from barkeeper.cli._common import console, run, settings_and_logging, styled
from barkeeper.db import Database, mask_url
from barkeeper.errors import BarkeeperError
from barkeeper.learning import build_outbox
from barkeeper.turns import ChannelIndexCounts, count_channel_index


def _history_index_line(on: bool, counts: ChannelIndexCounts | None) -> Text | str:
    """The ``history index`` line: on or off, and what the index holds of channels."""
    if counts is None:  # before schema v10: not counted
        return "on" if on else "off (BARKEEPER_INDEX_HISTORY=false)"
    held = f"{counts.turns} turn(s) of {counts.channels} channel(s)"
    if not on:
        return f"off (BARKEEPER_INDEX_HISTORY=false); {held} kept from before"
    if not counts.without_vector:
        return f"{held} indexed, none without a vector"
    return Text.assemble(
        f"{held} indexed, ",
        styled(f"{counts.without_vector} without a vector", "yellow"),
        " (the embedder failed; found by their words only until the bot's next sync of "
        "their channel re-embeds them)",
    )


def doctor() -> None:
    """Check the database and the settings; exit non-zero if the database does not work."""
    settings = settings_and_logging()
    table = Table("check", "result", show_header=False)
    mode = settings.effective_database_mode()
    source = settings.database_url_source()
    url = settings.configured_database_url()
    table.add_row("database mode", mode.value + (f" (from {source})" if source else ""))
    if url:
        table.add_row("database URL", mask_url(url))
    if mode.value in ("embedded",):
        table.add_row("data directory", str(settings.data_dir))

    async def probe() -> str | None:
        try:
            async with Database.connect(settings, min_size=1, max_size=1) as db:
                health = await db.health()
                outbox = None
                if health.ok and health.schema_version >= 3:
                    outbox = await build_outbox(db, settings).counts()
                turns = None
                if health.ok and health.schema_version >= 10:
                    turns = await count_channel_index(db)
        except BarkeeperError as exc:
            return str(exc)
        table.add_row("server", f"PostgreSQL {health.server_version} ({health.latency_ms:.1f} ms)")
        table.add_row("pgvector", "yes" if health.pgvector else "no (exact vector search per user)")
        schema_note = (
            "up to date"
            if health.schema_version == health.latest_version
            else "run `barkeeper db upgrade`"
            if health.schema_version < health.latest_version
            else "NEWER than this code: upgrade barkeeper"
        )
        table.add_row(
            "schema",
            f"{health.schema} at version {health.schema_version}/{health.latest_version} "
            f"({schema_note})",
        )
        if outbox is not None:
            line = outbox.summary()
            table.add_row(
                "memory outbox",
                Text.assemble(styled(line, "yellow")) if outbox.dead else line,
            )
        if health.ok:
            table.add_row("history index", _history_index_line(settings.index_history, turns))
        return None

    error = run(probe())
    if error:
        table.add_row("database", Text.assemble(styled("FAILED", "red"), f": {error}"))
    journal = read_cache_journal(settings.data_dir / CACHE_JOURNAL)
    if journal is not None:
        dropped, outages = journal.get("dropped", 0), journal.get("outages", 0)
        state = "stopped" if journal.get("closed") else f"running as pid {journal.get('pid')}"
        summary = (
            f"{outages} database outage(s) ridden out, {journal.get('pending', 0)} change(s) "
            f"waiting ({state}, {journal.get('updated_at')})"
        )
        table.add_row(
            "message cache",
            Text.assemble(styled(f"{dropped} dropped", "red"), ", " + summary)
            if dropped
            else "nothing dropped, " + summary,
        )
    missing = missing_for_bot(settings)
    table.add_row(
        "bot settings",
        "complete"
        if not missing
        else Text.assemble(styled("missing", "yellow"), ": " + "; ".join(missing)),
    )
    console.print(table)
    if error:
        raise typer.Exit(1)
