"""The ``barkeeper`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from barkeeper.cli import app
from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.db import _migrations as mig
from tests.test_url import HARD_PASSWORD, assert_hidden


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BARKEEPER_", "POSTGRES_", "DATABASE_", "DB_", "DISCORD_", "GROQ_"))
    }
    env["BARKEEPER_DATA_DIR"] = os.environ["BARKEEPER_DATA_DIR"]  # set by clean_env
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def barkeeper(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barkeeper", *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        timeout=120,
    )


def _commands(typer_app: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import typer.main

    group = typer.main.get_command(typer_app)  # type: ignore[arg-type]
    found: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        found.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(group, prefix)
    return found


def test_every_command_has_help(tmp_path: Path) -> None:
    import typer.main

    root = typer.main.get_command(app)
    for path in _commands(app):
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), f"`barkeeper {' '.join(path)}` has no help text"
    result = barkeeper(tmp_path, "--help")
    assert result.returncode == 0
    for word in ("db", "doctor", "run"):
        assert word in result.stdout


def test_doctor_with_unreachable_server_hides_password(tmp_path: Path) -> None:
    result = barkeeper(tmp_path, "doctor", POSTGRES_URL="postgresql://u:secret@127.0.0.1:1/x")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "secret" not in out
    assert "127.0.0.1:1" in out
    assert "POSTGRES_URL" in out


def test_doctor_hides_a_password_pasted_unencoded(tmp_path: Path) -> None:
    url = f"postgresql://u:{HARD_PASSWORD}@127.0.0.1:1/x"
    result = barkeeper(tmp_path, "doctor", POSTGRES_URL=url)
    assert result.returncode == 1
    assert "postgresql://u:***@127.0.0.1:1/x" in result.stdout.replace("\n", "")
    assert_hidden(result.stdout)
    assert_hidden(result.stderr)


def test_invalid_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = barkeeper(tmp_path, "db", "status", DATABASE_POOL_SIZE="lots")
    assert result.returncode == 2
    assert "DATABASE_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_token_says_what_is_missing(tmp_path: Path) -> None:
    result = barkeeper(tmp_path, "run")
    assert result.returncode != 0
    assert "DISCORD_TOKEN" in result.stderr


def test_db_commands_against_server(tmp_path: Path, database_url: str) -> None:
    check = barkeeper(tmp_path, "db", "check", POSTGRES_URL=database_url)
    assert check.returncode == 1
    assert "db upgrade" in check.stdout
    up = barkeeper(tmp_path, "db", "upgrade", POSTGRES_URL=database_url)
    assert up.returncode == 0, up.stderr
    assert f"version {mig.LATEST_VERSION}" in up.stdout
    assert "pgvector: " in up.stdout  # what the database has after migrating
    status = barkeeper(tmp_path, "db", "status", POSTGRES_URL=database_url)
    assert status.returncode == 0
    assert f"version {mig.LATEST_VERSION} of {mig.LATEST_VERSION}" in status.stdout
    check = barkeeper(tmp_path, "db", "check", POSTGRES_URL=database_url)
    assert check.returncode == 0, check.stdout
    doctor = barkeeper(tmp_path, "doctor", POSTGRES_URL=database_url)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "DISCORD_TOKEN" in doctor.stdout


def test_two_processes_migrate_one_server_at_once(tmp_path: Path, database_url: str) -> None:
    env = _env(tmp_path, POSTGRES_URL=database_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "barkeeper", "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    applied = [o for o, _ in outs if "Applied migration" in o]
    nothing = [o for o, _ in outs if "nothing to do" in o]
    assert len(applied) == 1 and len(nothing) == 1, outs


@pytest.mark.slow
def test_embedded_two_processes_share_one_server(tmp_path: Path) -> None:
    """Two processes on the same data directory at once: one server, one migration."""
    env = _env(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "barkeeper", "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("Applied migration" in o for o, _ in outs) == 1, outs
    status = barkeeper(tmp_path, "db", "status")
    assert status.returncode == 0
    assert f"version {mig.LATEST_VERSION} of {mig.LATEST_VERSION}" in status.stdout
    assert "embedded" in status.stdout


@pytest.mark.slow
def test_ephemeral_upgrade_needs_no_server(tmp_path: Path) -> None:
    result = barkeeper(tmp_path, "db", "upgrade", BARKEEPER_DATABASE="ephemeral")
    assert result.returncode == 0, result.stderr
    assert "ephemeral" in result.stdout
    # the embedded server ships pgvector: after migrating, the database has it
    assert "pgvector: yes (" in result.stdout
    assert "pgvector no" not in result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    last = [line for line in lines if "pgvector" in line][-1]
    assert "yes (" in last, lines
    assert not Path(os.environ["BARKEEPER_DATA_DIR"]).exists()


async def test_doctor_shows_the_history_index(tmp_path: Path, database_url: str) -> None:
    from barkeeper.embeddings import HashingEmbedder
    from barkeeper.history import MessageStore, StoredMessage
    from barkeeper.testing.embeddings import FailingEmbedder
    from barkeeper.turns import MessageIndex, Turn

    base = 8_400_000_000_000_000
    async with Database.connect(load_settings(), url=database_url, min_size=1, upgrade=True) as db:
        await MessageStore(db).store_many(
            StoredMessage(base + n, 10 + n % 2, 7, "cy", f"note {n}") for n in range(5)
        )
        await MessageIndex(db, HashingEmbedder()).sync_discord_channel(10)
        await MessageIndex(db, FailingEmbedder(failing=True)).sync_discord_channel(11)
        # a transcript's turns are not a channel's
        await MessageIndex(db, HashingEmbedder()).add_turns("transcript:1", [Turn("1", "A", "x")])

    doctor = barkeeper(tmp_path, "doctor", POSTGRES_URL=database_url)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "│ history index │ 5 turn(s) of 2 channel(s) indexed, 2 without a vector" in (
        doctor.stdout
    )
    off = barkeeper(tmp_path, "doctor", POSTGRES_URL=database_url, BARKEEPER_INDEX_HISTORY="false")
    assert "│ history index │ off (BARKEEPER_INDEX_HISTORY=false); 5 turn(s) of 2 channel(s)" in (
        off.stdout
    )
    async with Database.connect(load_settings(), url=database_url, min_size=1) as db:
        assert await MessageIndex(db, HashingEmbedder()).reembed(only_missing=True) == 2
    doctor = barkeeper(tmp_path, "doctor", POSTGRES_URL=database_url)
    assert "5 turn(s) of 2 channel(s) indexed, none without a vector" in doctor.stdout
