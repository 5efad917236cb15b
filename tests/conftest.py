"""Test harness: a real PostgreSQL for every test.

``TEST_DATABASE_URL`` set: tests use that server (CI: PostgreSQL 15, no pgvector).
Unset: one ephemeral embedded PostgreSQL (18, with pgvector) for the whole session.
Each test gets its own schema (``db`` fixture) or its own database
(``database_url`` fixture), dropped afterwards. The environment is cleaned of
barkeeper's variables so a developer's shell cannot change results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from barkeeper.config import Settings, load_settings
from barkeeper.db import Database, parse_database_url, start_embedded_server

_TEST_URL = os.environ.get("TEST_DATABASE_URL") or None


def _setting_env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()):
            names.add(str(choice))
    return names


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh directory for an embedded PostgreSQL's data, removed after the test.

    Not under pytest's ``tmp_path``: as root the embedded server runs as another system
    user that must traverse the path, and a second pytest session starting on the
    machine resets the permissions of pytest's temporary root to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="barkeeper-test-"))
    # As root the server runs as another user, and barkeeper opens no directory above
    # BARKEEPER_DATA_DIR to it: let it pass through this one (traverse, not list).
    path.chmod(0o711)
    try:
        yield path / "data"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path) -> Iterator[None]:
    """No barkeeper variable from the outer shell; no stray ``.env`` in the cwd."""
    for name in list(os.environ):
        if name in _setting_env_names() or name.startswith("BARKEEPER_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BARKEEPER_DATA_DIR", str(data_dir))
    yield


@pytest_asyncio.fixture(scope="session")
async def server_url() -> AsyncIterator[str]:
    """Admin URL of the PostgreSQL the tests run on."""
    if _TEST_URL:
        yield _TEST_URL
        return
    server = await start_embedded_server(None, ephemeral=True)
    try:
        yield server.uri
    finally:
        await server.aclose()


@pytest_asyncio.fixture(scope="session")
async def has_pgvector_server(server_url: str) -> bool:
    """Whether the test server ships pgvector (embedded: yes; CI's PostgreSQL 15: no)."""
    conn = await asyncpg.connect(parse_database_url(server_url).dsn())
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
            )
        )
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database on the test server; dropped after the test."""
    admin = parse_database_url(server_url)
    name = f"test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.with_database(name).dsn()
    finally:
        conn = await asyncpg.connect(admin.dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def settings() -> Settings:
    """Settings from the cleaned environment."""
    return load_settings()


@pytest_asyncio.fixture
async def db(server_url: str, settings: Settings) -> AsyncIterator[Database]:
    """A migrated barkeeper schema of its own on the test server; dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    database = await Database.open(
        settings, url=server_url, schema=schema, min_size=1, max_size=4, upgrade=True
    )
    try:
        yield database
    finally:
        try:
            async with database.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await database.close()
