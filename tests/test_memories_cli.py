"""``barkeeper memories`` end to end, in a subprocess against a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.test_cli import barkeeper


async def _rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET search_path TO barkeeper")
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _one_line_error(result: Any, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # one error, on one line (typer draws a box around usage errors)
    assert len([line for line in result.stderr.splitlines() if "Error" in line]) == 1
    for word in words:
        assert word in result.stderr, result.stderr


async def test_memories_cli(tmp_path: Path, database_url: str) -> None:
    def cli(*args: str) -> Any:
        return barkeeper(
            tmp_path, "memories", *args, POSTGRES_URL=database_url, BARKEEPER_EMBEDDER="hashing"
        )

    _one_line_error(cli("list", "5555"), "no user with Discord id 5555")

    added = cli("add", "5555", "Likes green tea", "--type", "preference", "--importance", "0.7")
    assert added.returncode == 0, added.stderr
    assert "Added memory" in added.stdout
    assert cli("add", "5555", "Lives in Paris", "-t", "location").returncode == 0
    assert cli("add", "agent-7", "Prefers short answers", "--external").returncode == 0

    (user,) = await _rows(database_url, "SELECT * FROM users WHERE discord_id = 5555")
    assert user["discord_username"] is None  # the bot fills names in when it sees them
    memories = {
        r["content"]: r for r in await _rows(database_url, "SELECT * FROM memories ORDER BY id")
    }
    assert set(memories) == {"Likes green tea", "Lives in Paris", "Prefers short answers"}
    tea, agent = memories["Likes green tea"], memories["Prefers short answers"]
    assert (tea["user_id"], tea["memory_type"]) == (user["id"], "preference")
    assert tea["importance"] == pytest.approx(0.7)
    assert tea["source"] == "cli" and tea["embedding_model"] == "hashing-384"
    assert agent["user_id"] != user["id"]

    listed = cli("list", "5555")
    assert listed.returncode == 0, listed.stderr
    assert "Likes green tea" in listed.stdout and "Lives in Paris" in listed.stdout
    assert "sensitive" not in listed.stdout
    assert cli("add", "5555", "Misses her dad", "-t", "grief_context").returncode == 0
    marked = cli("list", "5555")
    assert "grief_context*" in marked.stdout
    assert "* sensitive: used only in a DM with this person" in marked.stdout
    assert "Prefers short answers" not in listed.stdout
    only_places = cli("list", "5555", "--type", "location")
    assert "Lives in Paris" in only_places.stdout and "green tea" not in only_places.stdout
    assert "Prefers short answers" in cli("list", "agent-7", "--external").stdout

    found = cli("search", "5555", "what tea do they like", "-k", "1")
    assert found.returncode == 0, found.stderr
    assert "Likes green tea" in found.stdout and "Paris" not in found.stdout

    history = cli("history", "5555", str(tea["id"]))
    assert history.returncode == 0, history.stderr
    assert "add" in history.stdout and "cli" in history.stdout

    # another user's memory id is not found, and stays
    _one_line_error(cli("forget", "5555", str(agent["id"]), "--yes"), f"memory {agent['id']}")
    forgot = cli("forget", "5555", str(tea["id"]), "--yes")
    assert forgot.returncode == 0, forgot.stderr
    assert "Forgot 1 memory" in forgot.stdout
    (row,) = await _rows(database_url, "SELECT * FROM memories WHERE id = $1", tea["id"])
    assert (row["is_active"], row["content"]) == (False, "")
    assert "green tea" not in cli("list", "5555", "--all").stdout

    refused = cli("forget", "5555", "--all")  # no --yes, no terminal: nothing forgotten
    assert refused.returncode != 0
    assert "Aborted" in refused.stderr or "Nothing forgotten" in refused.stderr
    assert len(await _rows(database_url, "SELECT 1 FROM memories WHERE user_id = $1", user["id"]))
    everything = cli("forget", "5555", "--all", "--yes")
    assert everything.returncode == 0, everything.stderr
    assert await _rows(database_url, "SELECT 1 FROM memories WHERE user_id = $1", user["id"]) == []
    assert len(await _rows(database_url, "SELECT 1 FROM memories")) == 1  # agent-7's
    assert "No memories of 5555" in cli("list", "5555").stdout


async def test_memories_cli_refuses_bad_input(tmp_path: Path, database_url: str) -> None:
    def cli(*args: str) -> Any:
        return barkeeper(
            tmp_path, "memories", *args, POSTGRES_URL=database_url, BARKEEPER_EMBEDDER="hashing"
        )

    _one_line_error(cli("add", "5555", "Is a Leo", "--type", "astrology"), "not a memory type")
    _one_line_error(cli("list", "not-a-number"), "not a Discord id")
    _one_line_error(cli("add", "5555", "   "), "content")
    _one_line_error(cli("forget", "5555"), "MEMORY_ID or --all")
    _one_line_error(cli("search", "nobody", "tea", "--external"), "no user with external id")
    assert await _rows(database_url, "SELECT 1 FROM memories") == []
    assert cli("add", "5555", "x" * 2001).returncode != 0
