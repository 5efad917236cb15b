"""The embedded PostgreSQL's memory: sized from the machine, or as the operator sets it."""

from __future__ import annotations

import asyncpg
import pytest

from barkeeper.config import DatabaseMode, load_settings
from barkeeper.db import Database, embedded_memory_settings, start_embedded_server
from barkeeper.errors import InvalidInputError


@pytest.mark.parametrize(
    ("memory_mb", "shared_buffers", "cache"),
    [
        (24_000, "2048MB", "12000MB"),  # capped: the embedded server shares the machine
        (4_096, "512MB", "2048MB"),  # an eighth of the memory
        (512, "128MB", "256MB"),  # never below PostgreSQL's own default
        (100, "128MB", "128MB"),  # the cache hint never below the buffers
    ],
)
def test_shared_buffers_are_an_eighth_of_the_memory_within_bounds(
    memory_mb: int, shared_buffers: str, cache: str
) -> None:
    got = embedded_memory_settings(memory_mb=memory_mb)
    assert got == {"shared_buffers": shared_buffers, "effective_cache_size": cache}


def test_an_operators_size_wins() -> None:
    got = embedded_memory_settings(300, memory_mb=24_000)
    assert got == {"shared_buffers": "300MB", "effective_cache_size": "12000MB"}
    with pytest.raises(InvalidInputError, match="shared_buffers_mb"):
        embedded_memory_settings(0)


def test_the_machines_memory_is_read() -> None:
    got = embedded_memory_settings()
    assert got["shared_buffers"].endswith("MB")
    assert 128 <= int(got["shared_buffers"].removesuffix("MB")) <= 2048


async def _show(uri: str, name: str) -> str:
    conn = await asyncpg.connect(uri)
    try:
        return str(await conn.fetchval(f"SHOW {name}"))
    finally:
        await conn.close()


@pytest.mark.slow
async def test_the_server_starts_with_the_size_given() -> None:
    server = await start_embedded_server(None, ephemeral=True, shared_buffers_mb=200)
    try:
        assert await _show(server.uri, "shared_buffers") == "200MB"
    finally:
        await server.aclose()


@pytest.mark.slow
async def test_the_setting_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARKEEPER_EMBEDDED_SHARED_BUFFERS_MB", "144")
    settings = load_settings().model_copy(update={"database": DatabaseMode.EPHEMERAL})
    assert settings.embedded_shared_buffers_mb == 144
    async with Database.connect(settings) as db, db.acquire() as conn:
        assert await conn.fetchval("SHOW shared_buffers") == "144MB"
        auto = embedded_memory_settings(144)["effective_cache_size"]
        assert await conn.fetchval("SHOW effective_cache_size") == _pg_size(auto)


def _pg_size(value: str) -> str:
    """PostgreSQL shows whole gigabytes as GB (``12000MB`` stays, ``2048MB`` is ``2GB``)."""
    mb = int(value.removesuffix("MB"))
    return f"{mb // 1024}GB" if mb % 1024 == 0 else f"{mb}MB"
