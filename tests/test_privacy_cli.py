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


async def test_forget_syncs_the_history_index_of_their_channels(
    tmp_path: Path, database_url: str
) -> None:
    from barkeeper.embeddings import HashingEmbedder
    from barkeeper.history import MessageStore, StoredMessage
    from barkeeper.turns import MessageIndex, discord_channel_scope

    base = 8_300_000_000_000_000
    said = [
        StoredMessage(base + 1, 6, 9002, "bob", "who wants the last slice of tart?"),
        StoredMessage(base + 2, 6, 9001, "ann", "me, the rhubarb one please"),
        StoredMessage(base + 3, 6, 9002, "bob", "it is yours, with cream"),
        StoredMessage(base + 4, 6, 9002, "bob", "and a coffee?"),
        StoredMessage(base + 5, 8, 9002, "bob", "another channel, untouched"),
    ]
    scope = discord_channel_scope(6)
    async with Database.connect(load_settings(), url=database_url, min_size=1, upgrade=True) as db:
        await MessageStore(db).store_many(said)
        index = MessageIndex(db, HashingEmbedder())
        assert await index.sync_discord_channel(6) == 4
        assert await index.sync_discord_channel(8) == 1

    forget = barkeeper(
        tmp_path,
        "privacy",
        "forget",
        "9001",
        "--yes",
        POSTGRES_URL=database_url,
        BARKEEPER_EMBEDDER="hashing",
    )
    assert forget.returncode == 0, forget.stderr
    # Her turn went, and Bob's answer's (its context came from hers): indexed again at
    # once, its context now the message before hers; those whose context quoted hers
    # (the one before, the one after next) are refreshed too.
    assert "History index: 1 channel(s) synced, 3 turn(s) indexed again." in forget.stdout
    async with Database.connect(load_settings(), url=database_url, min_size=1) as db:
        index = MessageIndex(db, HashingEmbedder())
        async with db.acquire() as conn:
            rows = {
                int(r["source_id"]): (r["context"], r["embedding"] is not None)
                for r in await conn.fetch(
                    "SELECT source_id, context, embedding FROM message_index WHERE scope = $1",
                    scope,
                )
            }
        assert sorted(rows) == [base + 1, base + 3, base + 4]
        assert all(has_vector for _, has_vector in rows.values())
        assert "last slice of tart" in rows[base + 3][0] and "rhubarb" not in rows[base + 3][0]
        assert "it is yours" in rows[base + 1][0] and "rhubarb" not in rows[base + 1][0]
        assert "rhubarb" not in rows[base + 4][0]
        assert await index.search(scope, "rhubarb", mode="fulltext") == []
        assert await index.count(discord_channel_scope(8)) == 1
