"""``barkeeper privacy`` end to end, in a subprocess against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from barkeeper.config import load_settings
from barkeeper.db import Database
from tests.test_cli import barkeeper


async def _seed(database_url: str) -> None:
    async with Database.connect(load_settings(), url=database_url, min_size=1, upgrade=True) as db:
        async with db.transaction() as conn:
            for discord_id in (9001, 9002):
                uid = await conn.fetchval(
                    "INSERT INTO users (discord_id, discord_username) VALUES ($1, $2) RETURNING id",
                    discord_id,
                    f"user{discord_id}",
                )
                await conn.execute(
                    "INSERT INTO memories (user_id, content) VALUES ($1, 'likes tea')", uid
                )
                await conn.execute(
                    "INSERT INTO discord_messages (message_id, channel_id, author_id, "
                    "author_name, content) VALUES ($1, 5, $2, 'n', 'hello')",
                    discord_id * 10,
                    discord_id,
                )


async def test_privacy_show_export_forget(tmp_path: Path, database_url: str) -> None:
    await _seed(database_url)
    show = barkeeper(tmp_path, "privacy", "show", "9001", POSTGRES_URL=database_url)
    assert show.returncode == 0, show.stderr
    assert "memories" in show.stdout and "discord_messages" in show.stdout

    out = tmp_path / "export.json"
    export = barkeeper(
        tmp_path, "privacy", "export", "9001", "--out", str(out), POSTGRES_URL=database_url
    )
    assert export.returncode == 0, export.stderr
    document = json.loads(out.read_text())
    assert document["user"]["discord_id"] == "9001"
    assert [m["content"] for m in document["tables"]["memories"]] == ["likes tea"]
    assert "search" not in document["tables"]["memories"][0]  # generated column left out
    assert document["counts"]["discord_messages"] == 1
    streamed = barkeeper(tmp_path, "privacy", "export", "9001", POSTGRES_URL=database_url)
    assert streamed.returncode == 0, streamed.stderr
    assert json.loads(streamed.stdout)["tables"] == document["tables"]

    refused = barkeeper(tmp_path, "privacy", "forget", "9001", POSTGRES_URL=database_url)
    assert refused.returncode != 0  # no --yes and no stdin: nothing deleted
    forget = barkeeper(tmp_path, "privacy", "forget", "9001", "--yes", POSTGRES_URL=database_url)
    assert forget.returncode == 0, forget.stderr
    assert "Deleted" in forget.stdout
    said = " ".join(forget.stdout.split())
    assert "written before now are never stored again" in said
    assert "What they write from now on is a new relationship and is kept" in said
    # someone with nothing kept can still be recorded as forgotten
    nobody = barkeeper(tmp_path, "privacy", "forget", "9003", "--yes", POSTGRES_URL=database_url)
    assert nobody.returncode == 0, nobody.stderr
    assert "Nothing is kept about 9003 now" in nobody.stdout
    assert "never stored again" in " ".join(nobody.stdout.split())

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET search_path TO barkeeper")
        assert await conn.fetchval("SELECT count(*) FROM users WHERE discord_id = 9001") == 0
        assert (
            await conn.fetchval("SELECT count(*) FROM discord_messages WHERE author_id = 9001") == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM users WHERE discord_id = 9002") == 1
        assert await conn.fetchval("SELECT count(*) FROM memories") == 1
        assert await conn.fetchval("SELECT count(*) FROM forgotten") == 2
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM forgotten WHERE identity_hash = "
                "barkeeper_identity_hash('discord:9001')"
            )
            == 1
        )
    finally:
        await conn.close()

    bad = barkeeper(tmp_path, "privacy", "show", "not-a-number", POSTGRES_URL=database_url)
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
