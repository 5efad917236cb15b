"""``barkeeper db``: apply and inspect schema migrations."""

from __future__ import annotations

import time

import typer
from rich.table import Table
from rich.text import Text

from barkeeper.cli._common import console, run, settings_and_logging, styled
from barkeeper.db import MIGRATIONS, Database, expected_tables

app = typer.Typer(help="Apply and inspect barkeeper's database schema.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run from several processes at once)."""
    settings = settings_and_logging()

    async def main() -> None:
        started = time.perf_counter()
        async with Database.connect(settings, min_size=1, max_size=2) as db:
            applied = await db.upgrade()
            status = await db.migration_status()
            elapsed = time.perf_counter() - started
            if applied:
                console.print(
                    f"Applied migration(s) {', '.join(map(str, applied))}; schema "
                    f"{db.schema} is at version {status.current_version} "
                    f"({db.mode.value} database, ready in {elapsed:.2f} s)."
                )
            else:
                console.print(
                    f"Schema {db.schema} is already at version {status.current_version}; "
                    f"nothing to do ({db.mode.value} database, ready in {elapsed:.2f} s)."
                )
            console.print(f"pgvector: {db.capabilities.pgvector_summary()}")

    run(main())


@app.command()
def status() -> None:
    """Show the schema version and the migrations applied and pending."""
    settings = settings_and_logging()

    async def main() -> None:
        async with Database.connect(settings, min_size=1, max_size=2) as db:
            st = await db.migration_status()
            console.print(f"Database: {db.url.masked()} ({db.mode.value} mode)")
            console.print(
                f"Schema {st.schema}: version {st.current_version} of {st.latest_version}"
            )
            table = Table("version", "name", "applied at")
            applied = {v: (n, at) for v, n, at in st.applied}
            for migration in MIGRATIONS:
                name, at = applied.get(migration.version, (migration.name, None))
                table.add_row(str(migration.version), name, at.isoformat() if at else "pending")
            console.print(table)

    run(main())


@app.command()
def check() -> None:
    """Exit 0 when the schema is at this code's version with every table present, else 1."""
    settings = settings_and_logging()

    async def main() -> int:
        async with Database.connect(settings, min_size=1, max_size=2) as db:
            st = await db.migration_status()
            async with db.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    db.schema,
                )
            present = {r["table_name"] for r in rows}
            missing = [t for t in expected_tables() if t not in present]
            if not st.up_to_date:
                console.print(
                    styled(
                        f"Schema {st.schema} is at version {st.current_version}, code expects "
                        f"{st.latest_version}.",
                        "red",
                    ),
                    "Run `barkeeper db upgrade`.",
                )
                return 1
            if missing:
                console.print(styled("Missing tables:", "red"), ", ".join(missing))
                return 1
            console.print(
                Text.assemble(
                    styled("OK", "green"),
                    f": schema {st.schema} at version {st.current_version}, "
                    f"{len(expected_tables())} tables present.",
                )
            )
            return 0

    code = run(main())
    if code:
        raise typer.Exit(code)
