"""The embedded PostgreSQL: only its owner gets in, and it stops when its last user goes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.db import _embedded as emb
from barkeeper.db import _migrations as mig
from barkeeper.db._embedded import PASSWORD_FILE, EmbeddedServer, start_embedded_server
from barkeeper.errors import EmbeddedServerError, SchemaTooNewError

pytestmark = pytest.mark.slow

IS_ROOT = os.geteuid() == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _server_of(db: Database) -> EmbeddedServer:
    server = db._server
    assert server is not None
    return server


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _running(pid: int) -> bool:
    return emb._alive(pid)  # a zombie (the server exited, nobody reaped it) is not running


async def _works(db: Database) -> int:
    """Round-trip on a new connection (not one the pool kept from before)."""
    await db.pool.expire_connections()
    async with db.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM users"))


async def _refused(server: EmbeddedServer, password: str | None) -> str:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as info:
        await asyncpg.connect(
            host=str(server.socket_dir), user="postgres", password=password, database="postgres"
        )
    return str(info.value)


# --- who can connect -------------------------------------------------------------------------


async def test_only_the_password_opens_the_embedded_server(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(data_dir=data_dir)
    db = await Database.open(settings, min_size=1, upgrade=True)
    try:
        server = _server_of(db)
        password = (server.pgdata / PASSWORD_FILE).read_text().strip()
        assert len(password) >= 40  # 256 random bits
        # files and directories: the owner's only; nothing above the data directory changed
        assert _mode(server.pgdata) == 0o700
        assert _mode(server.pgdata / PASSWORD_FILE) == 0o600
        assert _mode(server.socket_dir) == 0o700
        assert _mode(data_dir.parent) == 0o711  # as the data_dir fixture left it
        # the server's own view of who may connect, and how
        async with db.acquire() as conn:
            rules = await conn.fetch("SELECT type, auth_method, error FROM pg_hba_file_rules")
            socket_permissions = await conn.fetchval("SHOW unix_socket_permissions")
            listen = await conn.fetchval("SHOW listen_addresses")
            verifier = await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'"
            )
        assert rules and {r["auth_method"] for r in rules} == {"scram-sha-256"}
        assert all(r["error"] is None for r in rules)
        assert socket_permissions == "0700"
        assert listen == ""  # no TCP at all
        assert verifier.startswith("SCRAM-SHA-256$")
        # no password, or a wrong one: refused
        assert "password authentication failed" in await _refused(server, None)
        await _refused(server, "not-the-password")
        # the password is shown nowhere
        for shown in (repr(server), str(server), repr(server.url), str(server.url), repr(db)):
            assert password not in shown
        health = await db.health()
        assert health.ok and password not in repr(health)
        assert password not in caplog.text
    finally:
        await db.close()


@pytest.fixture
def other_os_user() -> Iterator[str]:
    """A second local account, created for the test and deleted after it."""
    if not IS_ROOT or shutil.which("useradd") is None:
        pytest.skip("creating an OS user needs root and useradd")
    name = f"bk{uuid.uuid4().hex[:10]}"
    made = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/bin/sh", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed here: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


async def test_a_second_os_user_cannot_connect(data_dir: Path, other_os_user: str) -> None:
    settings = load_settings(data_dir=data_dir)
    db = await Database.open(settings, min_size=1, upgrade=True)
    try:
        server = _server_of(db)
        password = (server.pgdata / PASSWORD_FILE).read_text().strip()

        def as_other(
            *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                list(args),
                user=other_os_user,
                extra_groups=[],
                cwd="/",
                env={"PATH": "/usr/bin:/bin", **(env or {})},
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )

        psql = [emb._bin("psql"), "-X", "-w", "-h", str(server.socket_dir), "-U", "postgres"]
        psql += ["-d", "postgres", "-c", "SELECT 1"]
        # without the password
        denied = as_other(*psql)
        assert denied.returncode != 0, denied.stdout
        # it cannot read the password file
        assert as_other("cat", str(server.pgdata / PASSWORD_FILE)).returncode != 0
        # and even holding the password it cannot reach the socket
        with_password = as_other(*psql, env={"PGPASSWORD": password})
        assert with_password.returncode != 0, with_password.stdout
        assert "Permission denied" in with_password.stderr
        # while the owner, with it, can
        assert await _works(db) == 0
    finally:
        await db.close()


async def test_a_data_path_too_long_for_a_socket_gets_a_private_socket_directory(
    data_dir: Path,
) -> None:
    long_dir = data_dir / ("d" * 60) / ("e" * 60)
    assert len(str(long_dir / "postgres" / ".s.PGSQL.5432")) > 107
    db = await Database.open(load_settings(data_dir=long_dir), min_size=1, upgrade=True)
    try:
        server = _server_of(db)
        socket_dir = server.socket_dir
        assert socket_dir != server.pgdata
        assert socket_dir.name.startswith("barkeeper-pg-")
        assert _mode(socket_dir) == 0o700
        assert socket_dir.stat().st_uid == emb._server_owner().uid
        assert await _works(db) == 0
        await _refused(server, None)
    finally:
        await db.close()
    assert not socket_dir.exists()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
async def test_a_closed_directory_above_the_data_directory_is_not_opened(data_dir: Path) -> None:
    closed = data_dir.parent / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    settings = load_settings(data_dir=closed / "barkeeper")
    with pytest.raises(EmbeddedServerError) as info:
        await Database.open(settings, min_size=1)
    message = str(info.value)
    assert str(closed) in message
    assert "BARKEEPER_DATA_DIR" in message and "setfacl" in message
    assert _mode(closed) == 0o700


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
def test_binaries_out_of_the_servers_reach_are_linked_not_opened(data_dir: Path) -> None:
    closed = data_dir.parent / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    source = closed / "pginstall"  # the wheel, as if installed in root's home
    shutil.copytree(emb._pginstall(), source, symlinks=True, copy_function=os.link)
    owner = emb._prepare(data_dir, data_dir / "postgres", emb._server_owner())
    assert emb._run([str(source / "bin" / "postgres"), "--version"], owner)[0] != 0
    linked = emb._linked_install(source, data_dir, owner)
    assert linked.pginstall.parent == data_dir
    code, output = emb._run([linked.tool("postgres"), "--version"], linked)
    assert code == 0 and "PostgreSQL" in output, output
    assert _mode(closed) == 0o700  # nothing above was opened
    assert emb._linked_install(source, data_dir, owner) == linked  # made once


async def test_a_trust_cluster_is_upgraded_to_a_password(data_dir: Path) -> None:
    """A data directory made by an older barkeeper (trust for everyone) keeps working, locked."""
    pgdata = data_dir / "postgres"
    owner = emb._prepare(data_dir, pgdata, emb._server_owner())
    code, output = emb._run(
        [owner.tool("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres"], owner
    )
    assert code == 0, output
    assert emb._trusting(pgdata)
    settings = load_settings(data_dir=data_dir)
    db = await Database.open(settings, min_size=1, upgrade=True)
    try:
        server = _server_of(db)
        assert not emb._trusting(pgdata)
        assert _mode(pgdata / PASSWORD_FILE) == 0o600
        await _refused(server, None)
        async with db.acquire() as conn:
            await conn.execute("INSERT INTO users (discord_id) VALUES (5)")
    finally:
        await db.close()
    # restarted under the new rules, the data is there
    again = await Database.open(settings, min_size=1)
    try:
        assert await _works(again) == 1
        await _refused(_server_of(again), None)
    finally:
        await again.close()


# --- who stops it ----------------------------------------------------------------------------


@pytest.mark.parametrize("closed_first", ["older", "newer"])
async def test_closing_either_database_leaves_the_other_working(
    data_dir: Path, closed_first: str
) -> None:
    settings = load_settings(data_dir=data_dir)
    older = await Database.open(settings, min_size=1, upgrade=True)
    newer = await Database.open(settings, min_size=1)
    pgdata = _server_of(older).pgdata
    pid = _postmaster_pid(pgdata)
    gone, kept = (older, newer) if closed_first == "older" else (newer, older)
    await gone.close()
    try:
        assert _running(pid)
        assert await _works(kept) == 0
    finally:
        await kept.close()
    assert not _running(pid)
    assert not (pgdata / "postmaster.pid").exists()


async def test_a_failed_open_leaves_the_server_running(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    first = await Database.open(settings, min_size=1, upgrade=True)
    try:
        async with first.acquire() as conn:
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
                mig.LATEST_VERSION + 1,
            )
        with pytest.raises(SchemaTooNewError):
            await Database.open(settings, min_size=1)
        assert await _works(first) == 0
    finally:
        await first.close()


async def test_another_process_leaving_does_not_stop_it(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    db = await Database.open(settings, min_size=1, upgrade=True)
    try:
        pid = _postmaster_pid(_server_of(db).pgdata)
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "barkeeper",
            "db",
            "status",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(other.communicate(), timeout=120)
        assert other.returncode == 0, (out, err)
        assert _running(pid)
        assert await _works(db) == 0
    finally:
        await db.close()
    assert not _running(pid)


async def test_stopping_runs_off_the_event_loop(data_dir: Path) -> None:
    server = await start_embedded_server(data_dir)
    pid = _postmaster_pid(server.pgdata)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await server.aclose()  # the last user: pg_ctl stop, which waits for the server
    during = ticks - before
    task.cancel()
    assert not _running(pid)
    assert during >= 3, "the event loop stood still while the server stopped"
    await server.aclose()  # idempotent
