"""Settings: seed names, precedence, validation messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from barkeeper.config import DatabaseMode, load_settings
from barkeeper.errors import ConfigError
from tests.test_url import HARD_PASSWORD, assert_hidden


def test_defaults_are_embedded_mode() -> None:
    s = load_settings()
    assert s.effective_database_mode() is DatabaseMode.EMBEDDED
    assert s.configured_database_url() is None
    assert s.db_schema == "barkeeper"
    assert s.agent_history_runs == 10
    assert s.max_agents == 10
    assert s.context_agent_max_messages == 50_000
    assert s.message_sync_limit == 200
    assert s.fact_extraction_rate == 0.4
    assert s.conversation_timeout_minutes == 60
    assert s.pool_max_size == 15


@pytest.mark.parametrize(
    ("env", "winner", "source"),
    [
        ({"DATABASE_URL": "postgresql://a@h/d"}, "postgresql://a@h/d", "DATABASE_URL"),
        (
            {"DATABASE_URL": "postgresql://a@h/d", "POSTGRES_URL": "postgresql://b@h/d"},
            "postgresql://b@h/d",
            "POSTGRES_URL",
        ),
        (
            {"POSTGRES_URL": "postgresql://b@h/d", "BARKEEPER_DATABASE_URL": "postgresql://c@h/d"},
            "postgresql://c@h/d",
            "BARKEEPER_DATABASE_URL",
        ),
        (
            {
                "DB_HOST": "db",
                "DB_USER": "bot",
                "DB_PASSWORD": "p@ss",
                "DB_NAME": "mem",
                "DB_PORT": "6000",
                "DB_SSL": "true",
            },
            "postgresql://bot:p%40ss@db:6000/mem?sslmode=require",
            "DB_HOST",
        ),
        (
            {"DB_HOST": "db", "DATABASE_URL": "postgresql://a@h/d"},
            "postgresql://a@h/d",
            "DATABASE_URL",
        ),
    ],
)
def test_url_precedence(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], winner: str, source: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert s.configured_database_url() == winner
    assert s.database_url_source() == source
    assert s.effective_database_mode() is DatabaseMode.SERVER


def test_explicit_mode_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "postgresql://a@h/d")
    monkeypatch.setenv("BARKEEPER_DATABASE", "ephemeral")
    assert load_settings().effective_database_mode() is DatabaseMode.EPHEMERAL


def test_empty_values_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "")
    monkeypatch.setenv("DISCORD_TOKEN", "  ")
    s = load_settings()
    assert s.configured_database_url() is None
    assert s.discord_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_POOL_SIZE", "many"),
        ("DATABASE_POOL_SIZE", "0"),
        ("BACKFILL_CONCURRENCY", "-1"),
        ("BARKEEPER_FACT_EXTRACTION_RATE", "1.5"),
        ("BARKEEPER_DATABASE", "cloud"),
        ("BARKEEPER_DB_SCHEMA", "Robert'); DROP TABLE students;--"),
        ("DB_PORT", "70000"),
        ("BACKFILL_MAX_FETCH_LIMIT", "101"),
        ("DATABASE_ECHO", "perhaps"),
        ("BARKEEPER_INDEX_PIECES", "perhaps"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert value not in str(info.value) or len(value) < 3


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("true", True), ("false", False), ("0", False)]
)
def test_index_pieces_is_a_switch(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is not None:
        monkeypatch.setenv("BARKEEPER_INDEX_PIECES", value)
    assert load_settings().index_pieces is expected


def test_a_bad_switch_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARKEEPER_INDEX_PIECES", "sometimes")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid setting(s): BARKEEPER_INDEX_PIECES: Input should be a valid boolean, "
        "unable to interpret input"
    )


def test_secret_values_not_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "postgresql://u:supersecret@h/d")
    monkeypatch.setenv("GROQ_API_KEY", "gsk_supersecret")
    s = load_settings()
    assert "supersecret" not in repr(s)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "supersecret" not in str(info.value)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENT_HISTORY_RUNS=7\nMAX_AGENTS=3\n")
    s = load_settings()  # the clean_env fixture chdir'd into tmp_path
    assert s.agent_history_runs == 7
    assert s.max_agents == 3


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    from tests.conftest import _setting_env_names

    missing = sorted(n for n in _setting_env_names() if n not in example)
    assert not missing, f".env.example lacks {missing}"


def test_hard_secrets_not_in_repr_str_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POSTGRES_URL", "DATABASE_URL", "BARKEEPER_DATABASE_URL"):
        monkeypatch.setenv(name, f"postgresql://bob:{HARD_PASSWORD}@db/app")
    for name in (
        "DB_PASSWORD",
        "DISCORD_TOKEN",
        "GROQ_API_KEY",
        "BARKEEPER_LLM_API_KEY",
        "BARKEEPER_MEMORY_API_KEY",
    ):
        monkeypatch.setenv(name, HARD_PASSWORD)
    monkeypatch.setenv("DB_HOST", "db")
    s = load_settings()
    for shown in (repr(s), str(s), f"{s!r}"):
        assert_hidden(shown)
    monkeypatch.setenv("DB_PORT", "not a port")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert_hidden(str(info.value))


def test_default_data_dir_as_root_avoids_the_closed_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BARKEEPER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    user_dir = tmp_path / "share" / "barkeeper"
    if os.geteuid() != 0:
        assert load_settings().data_dir == user_dir
        return
    # root: the embedded server's user cannot pass through root's home, so not there
    assert load_settings().data_dir == Path("/var/lib/barkeeper")
    # unless an older barkeeper already keeps a cluster there
    (user_dir / "postgres").mkdir(parents=True)
    (user_dir / "postgres" / "PG_VERSION").write_text("18\n")
    assert load_settings().data_dir == user_dir
