"""Privacy requests (:class:`Privacy`): show, export and forget one user's rows.

The rows are found from the catalog by :mod:`barkeeper.privacy._graph`; see
:mod:`barkeeper.privacy` for what counts as a user's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError
from barkeeper.privacy._graph import WHO, UserRowsPlan, plan_user_rows, quote_ident
from barkeeper.privacy._tombstones import identities, write_tombstones

__all__ = ["DERIVED_TABLES", "Privacy", "PrivacyReport", "UserRef"]


@dataclass(frozen=True)
class UserRef:
    """Who a privacy request is about.

    Attributes:
        user_id: barkeeper's internal id (``users.id``), or None when the person never
            talked to the bot but wrote messages it cached.
        discord_id: their Discord id, if any.
        external_id: their id in a non-Discord agent, if any.
    """

    user_id: int | None
    discord_id: int | None = None
    external_id: str | None = None


@dataclass
class PrivacyReport:
    """Rows per table (only tables with rows), and the total; for a forget, its tombstones."""

    rows: dict[str, int] = field(default_factory=dict)
    tombstones: int = 0
    """Identities recorded as forgotten (by :meth:`Privacy.forget`)."""
    forgotten_at: datetime | None = None
    """When (by :meth:`Privacy.forget`): their content created before it is refused."""
    channels: dict[int, int] = field(default_factory=dict)
    """For a forget: the Discord channels whose cached messages were deleted, each with
    the lowest deleted message id. A turn index of the channel is stale from there (the
    turn after each deleted message went with it): sync it from the message before
    (:meth:`barkeeper.turns.MessageIndex.sync_discord_channel`)."""

    @property
    def total(self) -> int:
        """All rows."""
        return sum(self.rows.values())


# The channels of a person's cached messages, each with the lowest (through
# ix_discord_messages_author): where a forget leaves a channel's turn index stale.
_THEIR_CHANNELS = """
SELECT channel_id, min(message_id) AS lowest FROM discord_messages WHERE author_id = $1
GROUP BY channel_id
"""

# Search indexes derived from other tables: deleted with the user, counted by show(),
# but not exported. Their rows repeat the user's messages and carry neighbouring
# messages (other people's words) as context.
DERIVED_TABLES = frozenset({"message_index"})

# Rows of a derived table that are the only copy of what the user said, so exported:
# transcript turns they spoke (``message_index.user_id``).
_OWN_ROWS = {"message_index": "user_id = (SELECT user_id FROM _who)"}

# Columns of those rows that are not the user's: the searched context quotes the turns
# around theirs (other people's words) and names them.
_NOT_THEIRS = {"message_index": ("context", "context_source_ids", "context_message_id")}

_GENERATED_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND a.attgenerated <> '' AND a.attnum > 0 AND NOT a.attisdropped
"""


class Privacy:
    """Show, export and forget everything kept about one user."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find_user(
        self,
        *,
        discord_id: int | None = None,
        user_id: int | None = None,
        external_id: str | None = None,
    ) -> UserRef:
        """Resolve a user by exactly one of their ids.

        A Discord id with no ``users`` row still resolves (their cached messages are
        theirs); an internal or external id that matches nobody raises.

        Raises:
            InvalidInputError: not exactly one id given.
            NotFoundError: no user with that internal or external id.
        """
        given = [x for x in (discord_id, user_id, external_id) if x is not None]
        if len(given) != 1:
            raise InvalidInputError("give exactly one of discord_id, user_id, external_id")
        async with self._db.acquire() as conn:
            if discord_id is not None:
                row = await conn.fetchrow(
                    "SELECT id, discord_id, external_id FROM users WHERE discord_id = $1",
                    discord_id,
                )
                if row is None:
                    return UserRef(user_id=None, discord_id=discord_id)
            elif user_id is not None:
                row = await conn.fetchrow(
                    "SELECT id, discord_id, external_id FROM users WHERE id = $1", user_id
                )
            else:
                row = await conn.fetchrow(
                    "SELECT id, discord_id, external_id FROM users WHERE external_id = $1",
                    external_id,
                )
        if row is None:
            raise NotFoundError(f"no user with id {given[0]!r}")
        return UserRef(row["id"], row["discord_id"], row["external_id"])

    async def _plan(self) -> UserRowsPlan:
        async with self._db.acquire() as conn:
            return await plan_user_rows(conn, self._db.schema)

    async def show(self, who: UserRef) -> PrivacyReport:
        """Count the user's rows in every table that holds any."""
        plan = await self._plan()
        report = PrivacyReport()
        async with self._db.transaction() as conn:
            for table in plan.order:
                n = await conn.fetchval(
                    WHO + f"SELECT count(*) FROM {quote_ident(table)} WHERE {plan.where[table]}",  # noqa: S608 - catalog identifiers, values are parameters
                    who.user_id,
                    who.discord_id,
                )
                if n:
                    report.rows[table] = int(n)
        return report

    async def iter_export(
        self, who: UserRef, *, batch_size: int = 500
    ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
        """Everything kept about the user, one table at a time, rows in batches.

        Yields ``(table, rows)`` with at most ``batch_size`` rows each, tables in
        :attr:`UserRowsPlan.order`, from one consistent snapshot; only one batch is in
        memory at a time. Generated columns (e.g. full-text vectors) and search indexes
        (:data:`DERIVED_TABLES`) are left out: they are derived from what is exported
        (except transcript turns the user spoke: those are the only copy).

        Raises:
            InvalidInputError: ``batch_size`` is not a positive int.
        """
        if type(batch_size) is not int or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        plan = await self._plan()
        async with self._db.transaction() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            generated: dict[str, list[str]] = {}
            for r in await conn.fetch(_GENERATED_COLUMNS, self._db.schema):
                generated.setdefault(r["table_name"], []).append(r["column_name"])
            for table in plan.order:
                where = plan.where[table]
                if table in DERIVED_TABLES:
                    if table not in _OWN_ROWS:
                        continue
                    where = _OWN_ROWS[table]
                omitted = [*generated.get(table, []), *_NOT_THEIRS.get(table, ())]
                # Column names to drop travel as a parameter (jsonb - text[]), never as SQL.
                cursor = conn.cursor(
                    WHO + "SELECT to_jsonb(t) - $3::text[] "  # noqa: S608 - catalog identifiers
                    f"FROM {quote_ident(table)} t WHERE {where}",
                    who.user_id,
                    who.discord_id,
                    omitted,
                    prefetch=batch_size,
                )
                batch: list[dict[str, Any]] = []
                async for record in cursor:
                    value = record[0]
                    batch.append(json.loads(value) if isinstance(value, str) else value)
                    if len(batch) == batch_size:
                        yield table, batch
                        batch = []
                if batch:
                    yield table, batch

    def _export_head(self, who: UserRef) -> dict[str, Any]:
        return {
            "format": "barkeeper-export/1",
            "exported_at": datetime.now(UTC).isoformat(),
            "user": {
                "user_id": who.user_id,
                "discord_id": str(who.discord_id) if who.discord_id is not None else None,
                "external_id": who.external_id,
            },
        }

    async def export(self, who: UserRef) -> dict[str, Any]:
        """Everything kept about the user as one JSON-ready document (in memory).

        For a large history use :meth:`write_export`, which streams.
        """
        tables: dict[str, list[Any]] = {}
        async for table, rows in self.iter_export(who):
            tables.setdefault(table, []).extend(rows)
        return {
            **self._export_head(who),
            "counts": {table: len(rows) for table, rows in tables.items()},
            "tables": tables,
        }

    async def write_export(self, who: UserRef, out: TextIO, *, batch_size: int = 500) -> int:
        """Write the export document (as :meth:`export`'s) to ``out`` while reading it.

        One table at a time, ``batch_size`` rows at a time: memory stays bounded
        however much is kept. ``counts`` comes last. Returns the number of rows.
        """

        def dump(value: Any) -> str:
            return json.dumps(value, ensure_ascii=False, default=str)

        head = self._export_head(who)
        out.write("{\n" + "".join(f"  {dump(k)}: {dump(v)},\n" for k, v in head.items()))
        out.write('  "tables": {')
        counts: dict[str, int] = {}
        current: str | None = None
        for_table = 0
        async for table, rows in self.iter_export(who, batch_size=batch_size):
            if table != current:
                if current is not None:
                    out.write("\n    ],")
                out.write(f"\n    {dump(table)}: [")
                current, for_table = table, 0
            for row in rows:
                out.write(("," if for_table else "") + "\n      " + dump(row))
                for_table += 1
            counts[table] = for_table
        if current is not None:
            out.write("\n    ]\n  ")
        out.write("},\n" + f'  "counts": {dump(counts)}\n' + "}\n")
        return sum(counts.values())

    async def forget(self, who: UserRef) -> PrivacyReport:
        """Delete every row about the user, in every table, and remember that they asked.

        One transaction deletes the rows and writes a tombstone per identity of theirs
        (Discord id, external id): a keyed hash and the instant (see
        :mod:`barkeeper.privacy._tombstones`). From then on every write path refuses
        their content created *before* that instant (a backfill, a catch-up, the live
        cache, the message index, memory extraction), while what they write *after* it
        is a new relationship and is kept.

        Children are deleted before parents, so the result does not depend on each
        foreign key's ``ON DELETE`` rule. The user's row is locked first, so nothing
        can be attached to them while this runs. The report names the Discord channels
        that lost cached messages (:attr:`PrivacyReport.channels`): their turn index
        needs a sync.
        """
        plan = await self._plan()
        report = PrivacyReport()
        async with self._db.transaction() as conn:
            discord_id, external_id = who.discord_id, who.external_id
            if who.user_id is not None:
                row = await conn.fetchrow(
                    "SELECT discord_id, external_id FROM users WHERE id = $1 FOR UPDATE",
                    who.user_id,
                )
                if row is not None:
                    discord_id = discord_id if discord_id is not None else row["discord_id"]
                    external_id = external_id if external_id is not None else row["external_id"]
            if discord_id is not None:
                report.channels = {
                    r["channel_id"]: r["lowest"]
                    for r in await conn.fetch(_THEIR_CHANNELS, discord_id)
                }
            for table in reversed(plan.order):
                status = await conn.execute(
                    WHO + f"DELETE FROM {quote_ident(table)} WHERE {plan.where[table]}",  # noqa: S608
                    who.user_id,
                    discord_id,
                )
                n = int(status.rsplit(" ", 1)[-1])
                if n:
                    report.rows[table] = n
            names = identities(discord_id, external_id)
            report.forgotten_at = await write_tombstones(conn, names)
            report.tombstones = len(names)
        return report
