"""Database URLs as users paste them, and masking."""

from __future__ import annotations

import urllib.parse

import pytest

from barkeeper.db import mask_url, parse_database_url
from barkeeper.errors import ConfigError

CASES = [
    # (url, user, password, host, port, database, params)
    (
        "postgresql://user:pass@localhost:5432/junkie",
        "user",
        "pass",
        "localhost",
        5432,
        "junkie",
        {},
    ),
    ("postgres://user:pass@db.example.com/app", "user", "pass", "db.example.com", 5432, "app", {}),
    ("postgresql+asyncpg://u:pw12@h:6543/d", "u", "pw12", "h", 6543, "d", {}),
    ("postgresql+psycopg_async://u:pw12@h/d", "u", "pw12", "h", 5432, "d", {}),
    ("postgresql+psycopg://u:pw12@h/d", "u", "pw12", "h", 5432, "d", {}),
    ("postgresql://u:p%40ss%2Fw%3Ard@h/d", "u", "p@ss/w:rd", "h", 5432, "d", {}),
    ("postgresql://u@h/d?sslmode=require", "u", None, "h", 5432, "d", {"sslmode": "require"}),
    (
        "postgresql://postgres@/barkeeper?host=/var/run/postgresql",
        "postgres",
        None,
        "/var/run/postgresql",
        5432,
        "barkeeper",
        {"host": "/var/run/postgresql"},
    ),
    (
        "postgresql://u:pw12@h/d?application_name=bot&sslmode=disable",
        "u",
        "pw12",
        "h",
        5432,
        "d",
        {"application_name": "bot", "sslmode": "disable"},
    ),
    ("postgresql://u:pw12@[::1]:5433/d", "u", "pw12", "::1", 5433, "d", {}),
    ("postgresql://h1:5432,h2:5433/d", None, None, "h1", 5432, "d", {}),
    ("postgresql://localhost", None, None, "localhost", 5432, None, {}),
    ("postgresql://u:pw12@h?sslmode=require", "u", "pw12", "h", 5432, None, {"sslmode": "require"}),
    ("  postgresql://u:pw12@h/d  ", "u", "pw12", "h", 5432, "d", {}),
    # passwords pasted unencoded from a provider's console: read from the right
    ("postgresql://bob:s3cr/et@db/app", "bob", "s3cr/et", "db", 5432, "app", {}),
    ("postgresql://bob:p@ss@db/app", "bob", "p@ss", "db", 5432, "app", {}),
    ("postgresql://bob:wh?at@db:6000/app", "bob", "wh?at", "db", 6000, "app", {}),
    (
        "postgresql://bob:ha#sh@db/app?sslmode=require",
        "bob",
        "ha#sh",
        "db",
        5432,
        "app",
        {"sslmode": "require"},
    ),
    ("postgres://bob:a/b?c#d@e@db/app", "bob", "a/b?c#d@e", "db", 5432, "app", {}),
    (
        "postgresql://bob:Zq7/Xw9?Kp3#Mv5@Rt1%:Üñí€@db/app",
        "bob",
        "Zq7/Xw9?Kp3#Mv5@Rt1%:Üñí€",
        "db",
        5432,
        "app",
        {},
    ),
]

# A password holding every character that breaks naive parsing, plus non-ASCII text.
# Its fragments between those characters are what must never be shown.
HARD_PASSWORD = "Zq7/Xw9?Kp3#Mv5@Rt1%:Üñí€"
FRAGMENTS = ["Zq7", "Xw9", "Kp3", "Mv5", "Rt1", "Üñí€", "%:Ü"]


def assert_hidden(text: str) -> None:
    """No fragment of ``HARD_PASSWORD`` (raw or percent-encoded) is in ``text``."""
    for fragment in FRAGMENTS:
        assert fragment not in text, (fragment, text)
        assert urllib.parse.quote(fragment) not in text, (fragment, text)


@pytest.mark.parametrize(("url", "user", "password", "host", "port", "database", "params"), CASES)
def test_parse(
    url: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int,
    database: str | None,
    params: dict[str, str],
) -> None:
    parsed = parse_database_url(url)
    assert parsed.user == user
    assert parsed.password == password
    assert parsed.host == host
    assert parsed.port == port
    assert parsed.database == database
    assert dict(parsed.params) == params
    # the driver DSN is plain postgresql:// and round-trips
    dsn = parsed.dsn()
    assert dsn.startswith("postgresql://")
    again = parse_database_url(dsn)
    assert (again.user, again.password, again.host, again.port, again.database) == (
        user,
        password,
        host,
        port,
        database,
    )


@pytest.mark.parametrize("url", [c[0] for c in CASES if c[2]])
def test_masked_never_shows_password(url: str) -> None:
    parsed = parse_database_url(url)
    assert parsed.password
    assert parsed.password not in parsed.masked()
    assert parsed.password not in repr(parsed)
    assert parsed.password not in str(parsed)
    assert "***" in parsed.masked()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@h/d", "postgresql://u:***@h/d"),
        ("postgresql+asyncpg://u:s%40cret@h:1/d?x=1", "postgresql+asyncpg://u:***@h:1/d?x=1"),
        ("postgresql://h/d?user=u&password=secret", "postgresql://h/d?user=u&password=***"),
        ("not a url but :secret@ inside", "not a url but :***@ inside"),
        ("u:secret@h/d", "u:***@h/d"),
        ("mysql://u:secret@h/d", "mysql://u:***@h/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://bob:s3cr/et@db/app", "postgresql://bob:***@db/app"),
        ("postgresql://bob:p@ss@db/app", "postgresql://bob:***@db/app"),
        (
            "postgresql://bob:wh?at@db/app?sslmode=require",
            "postgresql://bob:***@db/app?sslmode=require",
        ),
        ("postgresql://bob:ha#sh@db/app", "postgresql://bob:***@db/app"),
        ("postgresql://bob:a/b?c#d@e@db/app", "postgresql://bob:***@db/app"),
        (f"postgresql://bob:{HARD_PASSWORD}@db/app", "postgresql://bob:***@db/app"),
        ("postgresql://bob:s3cr/et@/app?host=/run/pg", "postgresql://bob:***@/app?host=/run/pg"),
    ],
)
def test_mask_url_text(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_password_in_query_is_masked_when_parsed() -> None:
    parsed = parse_database_url("postgresql://u@h/d?password=hunter2")
    assert "hunter2" not in parsed.masked()
    assert "hunter2" in parsed.dsn()


@pytest.mark.parametrize(
    "url",
    ["mysql://u:secret@h/d", "sqlite:///x.db", "localhost:5432", "", "postgresql://h:99999/d"],
)
def test_rejects_non_postgres_without_leaking(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_database_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{HARD_PASSWORD}",  # no host: the password's tail looks like one
        f"postgresql://bob:{HARD_PASSWORD}@db:99999/app",
        f"postgresql://db:{HARD_PASSWORD}/app",
        f"mysql://bob:{HARD_PASSWORD}@db/app",
        f"bob:{HARD_PASSWORD}@db/app",
        f"postgresql://bob:{HARD_PASSWORD}@[db/app",
    ],
)
def test_parse_errors_never_echo_url_parts(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_database_url(url)
    assert_hidden(str(info.value))
    assert_hidden(repr(info.value))
    assert_hidden(mask_url(url))


def test_hard_password_is_hidden_everywhere_it_is_shown() -> None:
    # an @ after the host must be percent-encoded (the price of reading from the right)
    encoded = urllib.parse.quote(HARD_PASSWORD, safe="")
    url = f"postgresql://bob:{HARD_PASSWORD}@db/app?password={encoded}&sslpassword=x"
    parsed = parse_database_url(url)
    assert parsed.password == HARD_PASSWORD
    for shown in (parsed.masked(), str(parsed), repr(parsed), f"{parsed}", mask_url(url)):
        assert_hidden(shown)
    assert_hidden(repr(parsed.with_database("other")))
    # the driver gets it, encoded so that it survives the trip
    assert parse_database_url(parsed.dsn()).password == HARD_PASSWORD
