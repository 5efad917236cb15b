"""The schema stays ready for Citus: the rules of ``docs/scaling.md``, on the migrated schema.

The distribution map and the known violations (planned work) are the two tables of
``docs/scaling.md``, read from there: the document is the one place they are declared.
The test reads the real schema from ``pg_catalog`` and checks, for what Citus imposes
and can be checked on plain PostgreSQL:

1. every table is in the map (a new table needs an entry), and every entry exists;
2. a distributed table's distribution column exists, is ``bigint`` and ``NOT NULL``;
3. every primary key and unique index of a distributed table includes that column;
4. a foreign key joins two distributed tables of one co-location group on their
   distribution columns, or points from any table to a reference table (never from a
   reference table to a distributed one);
5. integer ids (``id``, ``*_id``) are ``bigint``.

The violations found must be exactly the documented ones: a new violation fails, and
so does a documented one that was fixed (update the document).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from barkeeper.db import Database

DOC = Path(__file__).parent.parent / "docs" / "scaling.md"
_ROW = re.compile(r"^\|\s*`(?P<table>[a-z_0-9]+)`\s*\|(?P<rest>.*)\|\s*$")


@dataclass(frozen=True)
class Entry:
    kind: str  # "distributed" or "reference"
    column: str | None = None
    group: str | None = None


def _section(text: str, title: str) -> list[str]:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None].splitlines()


def _cells(rest: str) -> list[str]:
    return [c.strip().strip("`").strip() for c in rest.split("|")]


def read_map(text: str) -> dict[str, Entry]:
    """The distribution map: ``| `table` | kind | `column` | group | notes |``."""
    entries: dict[str, Entry] = {}
    for line in _section(text, "Distribution map"):
        match = _ROW.match(line)
        if match is None:
            continue
        kind, column, group, *_ = _cells(match["rest"])
        assert kind in ("distributed", "reference"), line
        assert match["table"] not in entries, f"{match['table']} is in the map twice"
        if kind == "distributed":
            assert column and group, line
            entries[match["table"]] = Entry(kind, column, group)
        else:
            entries[match["table"]] = Entry(kind)
    return entries


def read_exceptions(text: str) -> set[tuple[str, str, str]]:
    """Known violations: ``| `table` | `object` | rule | plan |``."""
    found = set()
    for line in _section(text, "Known violations (planned work)"):
        match = _ROW.match(line)
        if match is not None:
            obj, rule, *_ = _cells(match["rest"])
            found.add((match["table"], obj, rule))
    return found


async def violations(db: Database, dist: dict[str, Entry]) -> set[tuple[str, str, str]]:
    """What breaks Citus's rules in the schema, as ``(table, object, rule)``."""
    found: set[tuple[str, str, str]] = set()
    async with db.acquire() as conn:
        columns = await conn.fetch(
            """
            SELECT c.relname AS table, a.attname AS column, a.attnum AS num,
                   format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
            """,
            db.schema,
        )
        uniques = await conn.fetch(
            """
            SELECT c.relname AS table, i.relname AS index, x.indkey::int2[] AS keys
            FROM pg_index x
            JOIN pg_class c ON c.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND (x.indisunique OR x.indisprimary)
            """,
            db.schema,
        )
        fkeys = await conn.fetch(
            """
            SELECT f.conname AS name, c.relname AS table, r.relname AS target,
                   f.conkey AS keys, f.confkey AS target_keys
            FROM pg_constraint f
            JOIN pg_class c ON c.oid = f.conrelid
            JOIN pg_class r ON r.oid = f.confrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND f.contype = 'f'
            """,
            db.schema,
        )
    by_table: dict[str, dict[str, tuple[int, str, bool]]] = {}
    for c in columns:
        by_table.setdefault(c["table"], {})[c["column"]] = (c["num"], c["type"], c["not_null"])

    # 1. the map and the schema name the same tables
    for table in sorted(set(by_table) - set(dist)):
        found.add((table, table, "not in the map"))
    for table in sorted(set(dist) - set(by_table)):
        found.add((table, table, "no such table"))

    def dist_num(table: str) -> int | None:
        entry = dist.get(table)
        if entry is None or entry.kind != "distributed" or entry.column is None:
            return None
        column = by_table.get(table, {}).get(entry.column)
        return None if column is None else column[0]

    # 2. the distribution column
    for table, entry in dist.items():
        if entry.kind != "distributed" or table not in by_table:
            continue
        assert entry.column is not None
        column = by_table[table].get(entry.column)
        if column is None:
            found.add((table, entry.column, "column missing"))
            continue
        _, type_, not_null = column
        if type_ != "bigint":
            found.add((table, entry.column, "not bigint"))
        if not not_null:
            found.add((table, entry.column, "nullable"))

    # 3. unique indexes include it
    for u in uniques:
        entry = dist.get(u["table"])
        if entry is None or entry.kind != "distributed":
            continue
        num = dist_num(u["table"])
        if num is None or num not in list(u["keys"]):
            found.add((u["table"], u["index"], "unique"))

    # 4. foreign keys
    for f in fkeys:
        source, target = dist.get(f["table"]), dist.get(f["target"])
        if source is None or target is None:
            continue  # reported as "not in the map"
        if target.kind == "reference":
            continue
        if source.kind == "reference":
            found.add((f["table"], f["name"], "reference to distributed"))
            continue
        pairs = set(zip(f["keys"], f["target_keys"], strict=True))
        joined = (dist_num(f["table"]), dist_num(f["target"])) in pairs
        if source.group != target.group or not joined:
            found.add((f["table"], f["name"], "foreign key"))

    # 5. integer ids are bigint
    for table, cols in by_table.items():
        for name, (_, type_, _) in cols.items():
            is_id = name == "id" or name.endswith("_id")
            if is_id and type_ in ("integer", "smallint"):
                found.add((table, name, "not bigint"))
    return found


def test_the_document_declares_a_map_and_planned_work() -> None:
    text = DOC.read_text(encoding="utf-8")
    dist = read_map(text)
    assert dist["memories"] == Entry("distributed", "user_id", "user")
    assert dist["discord_messages"] == Entry("distributed", "channel_id", "channel")
    assert dist["guilds"].kind == "reference"
    exceptions = read_exceptions(text)
    assert exceptions and all(table in dist for table, _, _ in exceptions)


async def test_schema_follows_the_citus_rules(db: Database) -> None:
    text = DOC.read_text(encoding="utf-8")
    dist = read_map(text)
    found = await violations(db, dist)
    documented = read_exceptions(text)
    new = sorted(found - documented)
    fixed = sorted(documented - found)
    assert not new, f"breaks the rules of docs/scaling.md (fix it, or document it): {new}"
    assert not fixed, f"documented as planned work but no longer violated: {fixed}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "CREATE TABLE big_new (id bigint PRIMARY KEY, user_id bigint NOT NULL)",
            ("big_new", "big_new", "not in the map"),
        ),
        (
            "CREATE UNIQUE INDEX ux_pref_key ON user_preferences (preference_key, id)",
            ("user_preferences", "ux_pref_key", "unique"),
        ),
        (
            "ALTER TABLE bot_states ADD COLUMN owner_id bigint REFERENCES users (id)",
            ("bot_states", "bot_states_owner_id_fkey", "reference to distributed"),
        ),
        (
            "ALTER TABLE user_preferences ADD COLUMN other_id integer",
            ("user_preferences", "other_id", "not bigint"),
        ),
    ],
)
async def test_the_rules_catch_a_change(
    db: Database, change: str, expected: tuple[str, str, str]
) -> None:
    dist = read_map(DOC.read_text(encoding="utf-8"))
    before = await violations(db, dist)
    async with db.acquire() as conn:
        await conn.execute(change)
    after = await violations(db, dist)
    assert after - before == {expected}
