"""Privacy requests (:class:`Privacy`): show, export and forget one user's rows.

The rows are found from the catalog by :mod:`barkeeper.privacy._graph`; see
:mod:`barkeeper.privacy` for what counts as a user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError
from barkeeper.privacy._graph import WHO, UserRowsPlan, plan_user_rows, quote_ident

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
    """Rows per table (only tables with rows), and the total."""

    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All rows."""
        return sum(self.rows.values())


# Search indexes derived from other tables: deleted with the user, counted by show(),
# but not exported. Their rows repeat the user's messages and carry neighbouring
# messages (other people's words) as context.
DERIVED_TABLES = frozenset({"message_index"})

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

    async def export(self, who: UserRef) -> dict[str, Any]:
        """Everything kept about the user as one JSON-ready document.

        Generated columns (e.g. full-text vectors) and search indexes
        (:data:`DERIVED_TABLES`) are left out: they are derived from what is exported.
        """
        plan = await self._plan()
        tables: dict[str, list[Any]] = {}
        async with self._db.transaction() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            generated: dict[str, list[str]] = {}
            for r in await conn.fetch(_GENERATED_COLUMNS, self._db.schema):
                generated.setdefault(r["table_name"], []).append(r["column_name"])
            for table in plan.order:
                if table in DERIVED_TABLES:
                    continue
                drop = "".join(f" - '{c}'" for c in generated.get(table, []))
                rows = await conn.fetchval(
                    WHO + f"SELECT coalesce(jsonb_agg(to_jsonb(t){drop}), '[]'::jsonb) "  # noqa: S608
                    f"FROM {quote_ident(table)} t WHERE {plan.where[table]}",
                    who.user_id,
                    who.discord_id,
                )
                if rows:
                    tables[table] = rows
        return {
            "format": "barkeeper-export/1",
            "exported_at": datetime.now(UTC).isoformat(),
            "user": {
                "user_id": who.user_id,
                "discord_id": str(who.discord_id) if who.discord_id is not None else None,
                "external_id": who.external_id,
            },
            "counts": {table: len(rows) for table, rows in tables.items()},
            "tables": tables,
        }

    async def forget(self, who: UserRef) -> PrivacyReport:
        """Delete every row about the user, in every table, in one transaction.

        Children are deleted before parents, so the result does not depend on each
        foreign key's ``ON DELETE`` rule. The user's row is locked first, so nothing
        can be attached to them while this runs.
        """
        plan = await self._plan()
        report = PrivacyReport()
        async with self._db.transaction() as conn:
            if who.user_id is not None:
                await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", who.user_id)
            for table in reversed(plan.order):
                status = await conn.execute(
                    WHO + f"DELETE FROM {quote_ident(table)} WHERE {plan.where[table]}",  # noqa: S608
                    who.user_id,
                    who.discord_id,
                )
                n = int(status.rsplit(" ", 1)[-1])
                if n:
                    report.rows[table] = n
        return report
