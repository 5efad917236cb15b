"""Where a user's rows are: found from the catalog, so a table added later cannot be missed.

A user's rows are the ``users`` row itself, every row that references it through a
chain of foreign keys (``user_id``, ``conversation_id`` → ``conversations`` …), the
Discord messages they wrote (``discord_messages.author_id``) and every row that
references those. The walk reads ``pg_constraint`` for barkeeper's schema each time,
so a table added by a later migration is covered the day it is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

__all__ = ["WHO", "Root", "UserRowsPlan", "plan_user_rows", "quote_ident"]


def quote_ident(name: str) -> str:
    """Quote a catalog identifier for SQL (identifiers come from the catalog, not input)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Root:
    """A table whose rows belong to the user by a column equal to a parameter."""

    table: str
    column: str
    value: str  # a column of the _who CTE every query starts with


@dataclass
class UserRowsPlan:
    """For each table, a ``WHERE`` clause selecting the user's rows.

    The clauses read the ``_who`` CTE: start each query with :data:`WHO`. ``order``
    lists tables parents before children.
    """

    where: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


_FOREIGN_KEYS = """
SELECT child.relname AS child, parent.relname AS parent,
       array_agg(ca.attname ORDER BY k.n) AS child_cols,
       array_agg(pa.attname ORDER BY k.n) AS parent_cols
FROM pg_constraint c
JOIN pg_class child ON child.oid = c.conrelid
JOIN pg_class parent ON parent.oid = c.confrelid
JOIN pg_namespace ns ON ns.oid = child.relnamespace
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child_att, parent_att, n)
JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.child_att
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent_att
WHERE c.contype = 'f' AND ns.nspname = $1
GROUP BY c.oid, child.relname, parent.relname
"""

ROOTS = (Root("users", "id", "user_id"), Root("discord_messages", "author_id", "discord_id"))

WHO = "WITH _who (user_id, discord_id) AS (VALUES ($1::bigint, $2::bigint)) "
"""Prefix of every query using a plan: ``$1`` the internal user id, ``$2`` the Discord id."""

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
"""


async def plan_user_rows(conn: asyncpg.Connection, schema: str) -> UserRowsPlan:
    """Build the per-table selection of one user's rows from the schema's foreign keys."""
    parents: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for fk in await conn.fetch(_FOREIGN_KEYS, schema):
        if fk["child"] != fk["parent"]:
            parents.setdefault(fk["child"], []).append(
                (fk["parent"], list(fk["child_cols"]), list(fk["parent_cols"]))
            )
    tables = {r["relname"] for r in await conn.fetch(_TABLES, schema)}
    memo: dict[str, str | None] = {}

    def clause(table: str, depth: int = 0) -> str | None:
        # A table's rows are the user's when a root column matches or any FK path
        # leads to a parent row of the user's; ORing every path keeps the walk complete.
        if table in memo:
            return memo[table]
        if depth > 32:
            raise RuntimeError(f"foreign keys too deep (a cycle?) at {table}")
        parts = [
            f"{quote_ident(root.column)} = (SELECT {root.value} FROM _who)"  # noqa: S608
            for root in ROOTS
            if root.table == table
        ]
        for parent, child_cols, parent_cols in parents.get(table, []):
            parent_where = clause(parent, depth + 1)
            if parent_where is None:
                continue
            cols = ", ".join(quote_ident(c) for c in child_cols)
            pcols = ", ".join(quote_ident(c) for c in parent_cols)
            parts.append(
                f"({cols}) IN (SELECT {pcols} FROM {quote_ident(parent)} "  # noqa: S608 - catalog identifiers
                f"WHERE {parent_where})"
            )
        memo[table] = " OR ".join(f"({p})" for p in parts) if parts else None
        return memo[table]

    plan = UserRowsPlan()
    for table in sorted(tables):
        where = clause(table)
        if where is not None:
            plan.where[table] = where

    def visit(table: str, seen: set[str]) -> None:
        if table in seen or table not in plan.where:
            return
        seen.add(table)
        for parent, _, _ in parents.get(table, []):
            visit(parent, seen)
        plan.order.append(table)

    visited: set[str] = set()
    for table in sorted(plan.where):
        visit(table, visited)
    return plan
