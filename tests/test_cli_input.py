"""Every ``barkeeper`` command against hostile input: markup-looking text and bad ids.

Commands run in-process through :func:`barkeeper.cli.main` (the console-script entry
point, with its error handling) inside click's test isolation, against a real
database; the backfill's progress bars need a terminal, so that one runs as a
subprocess with rich told it has one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner
from rich.console import Console

from barkeeper.backfill import BackfillResult, ChannelResult
from barkeeper.cli import app, main
from barkeeper.cli._backfill import _summary
from barkeeper.cli._common import parse_id
from barkeeper.config import Settings
from barkeeper.db import Database, parse_database_url
from barkeeper.testing.discord import DiscordEmulator
from barkeeper.validation import BIGINT_MAX
from tests._backfill import spec
from tests.test_backfill_process import _cli, _env
from tests.test_cli import _commands

# An unmatched closing tag (rich raises MarkupError on it) and a pair rich would
# silently swallow: both must come out exactly as typed.
MARKUP = "[/nope] [bold]x[/bold]"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def flat(self) -> str:
        """Everything printed, with table and panel borders gone and whitespace collapsed."""
        return _flat(self.text)


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│┃╭╮╰╯─━┏┓┗┛┡┩└┘┌┐├┤┼╇╈┳┻╋┬┴]", " ", text).split())


def barkeeper(*args: str, stdin: str = "", **env: str) -> Ran:
    """``barkeeper ARGS`` in this process, as the console script runs it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    runner = CliRunner()
    code = 0
    with runner.isolation(input=stdin, env={"COLUMNS": "250", **env}) as (out, err, _):
        old_argv = sys.argv
        sys.argv = ["barkeeper", *args]
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.argv = old_argv
            root.handlers[:] = handlers
            root.setLevel(level)
    return Ran(code, out.getvalue().decode(), err.getvalue().decode())


async def _dead_letter(database_url: str, external_id: str, reason: str) -> None:
    """A dead memory-outbox item of the external user ``external_id``."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'SET search_path TO "{Settings().db_schema}", public')
        await conn.execute(
            """INSERT INTO memory_outbox (user_id, message_id, content, state, attempts,
                                          last_error)
               SELECT id, 1, 'a message', 'dead', 3, $2 FROM users WHERE external_id = $1""",
            external_id,
            reason,
        )
    finally:
        await conn.close()


def _leaf_commands() -> set[tuple[str, ...]]:
    paths = _commands(app)
    return {p for p in paths if p and not any(q[: len(p)] == p and q != p for q in paths)}


def test_every_command_prints_markup_looking_text_as_typed(
    tmp_path: Path, database_url: str, server_url: str
) -> None:
    exercised: set[tuple[str, ...]] = set()

    def cli(*args: str, code: int, **env: str) -> Ran:
        exercised.add(tuple(a for a in args[:2] if not a.startswith("-")))
        ran = barkeeper(
            *args, **{"POSTGRES_URL": database_url, "BARKEEPER_EMBEDDER": "hashing", **env}
        )
        assert ran.code == code, ran
        assert "Traceback" not in ran.text and "MarkupError" not in ran.text
        # and no markup of our own printed as text (the consoles do not parse it)
        ours = ran.flat.replace(MARKUP, "").replace("[red]export[red]", "")
        assert not re.search(r"\[/\]|\[(red|green|yellow|dim|bold)\b", ours), ran
        return ran

    ext = ("--external", MARKUP)
    added = cli("memories", "add", *ext, f"{MARKUP} likes tea", code=0)
    assert f"for {MARKUP}: {MARKUP} likes tea" in added.out
    match = re.search(r"Added memory (\d+)", added.out)
    assert match is not None
    mid = match.group(1)
    listed = cli("memories", "list", *ext, code=0)
    assert f"Memories of {MARKUP}" in listed.flat and f"{MARKUP} likes tea" in listed.flat
    found = cli("memories", "search", *ext, f"{MARKUP} tea", code=0)
    assert f"for '{MARKUP} tea'" in found.flat and f"{MARKUP} likes tea" in found.flat
    assert f"{MARKUP} likes tea" in cli("memories", "history", *ext, mid, code=0).flat
    asked = cli("memories", "forget", *ext, mid, code=1)  # no --yes, no answer
    assert f"Forget memory {mid} of {MARKUP} permanently?" in asked.out
    # a markup-looking error message, through main's error handler
    wrong_type = cli("memories", "list", *ext, "--type", MARKUP, code=2)
    assert MARKUP in wrong_type.flat

    assert f"Kept about {MARKUP}" in cli("privacy", "show", *ext, code=0).flat
    assert f"{MARKUP} likes tea" in cli("privacy", "export", *ext, code=0).out
    out = tmp_path / "[red]export[red].json"
    assert str(out) in cli("privacy", "export", *ext, "--out", str(out), code=0).err
    assert f"{MARKUP} likes tea" in out.read_text()
    assert f"Will delete, for {MARKUP}" in cli("privacy", "forget", *ext, code=1).flat

    # dead memory work of that person, whose reason looks like markup
    asyncio.run(_dead_letter(database_url, MARKUP, f"LLMOutputError: {MARKUP}"))
    dead = cli("outbox", "list", "--user", MARKUP, "--external", code=0)
    assert f"LLMOutputError: {MARKUP}" in dead.flat, dead
    retried = cli("outbox", "retry", "--all", "--reason", "nothing like it", code=0)
    assert "Requeued 0 dead letters." in retried.out
    purged = cli(
        "outbox", "purge", "--user", MARKUP, "--external", "--reason", MARKUP, "-y", code=0
    )
    assert "Purged 1 dead letter." in purged.out
    unknown = cli("outbox", "list", "--user", f"{MARKUP}!", "--external", code=1)
    assert f"{MARKUP}!" in unknown.flat

    assert (
        f"Forgot 1 memory of {MARKUP}" in cli("memories", "forget", *ext, "--all", "-y", code=0).out
    )
    assert f"Deleted, for {MARKUP}" in cli("privacy", "forget", *ext, "--yes", code=0).flat
    gone = cli("memories", "list", *ext, code=1)
    assert f"no user with external id '{MARKUP}'" in gone.flat
    assert f"'{MARKUP}'" in cli("privacy", "show", *ext, code=1).flat

    # a database whose name looks like markup: every command's error says it as is
    missing = parse_database_url(server_url).with_database(f"{MARKUP} db").dsn()
    for command in (("db", "upgrade"), ("db", "status"), ("db", "check"), ("doctor",)):
        ran = cli(*command, code=1, POSTGRES_URL=missing)
        assert f"{MARKUP} db" in ran.flat, ran
    assert MARKUP in cli("backfill", "--channel", MARKUP, code=2).flat
    # Discord is a closed local port here (no network in tests): one clear error, and
    # neither secret shows.
    bot = cli(
        "run",
        code=1,
        DISCORD_TOKEN=MARKUP,
        GROQ_API_KEY=MARKUP,
        DISCORD_API_BASE="http://127.0.0.1:9/api/v10",
        DISCORD_GATEWAY_URL="ws://127.0.0.1:9",
    )
    assert "cannot reach Discord" in bot.err and "Traceback" not in bot.text, bot
    assert MARKUP not in bot.text  # secrets
    chat = cli("chat", "--as", MARKUP, code=2)  # no LLM key: says which to set
    assert "GROQ_API_KEY" in chat.flat and "OPENAI_API_KEY" in chat.flat

    assert exercised == _leaf_commands()


async def test_backfill_shows_channel_names_and_errors_as_typed(
    db: Database, server_url: str, tmp_path: Path
) -> None:
    async with DiscordEmulator(spec(channels=2, messages_per_channel=20)) as emu:
        first, second = emu.channel_ids()
        emu.world.channel(first).name = MARKUP
        env = _env(
            db,
            server_url,
            tmp_path,
            token=emu.token,
            api_base=emu.base_url,
            TTY_COMPATIBLE="1",  # the progress bars draw only on a terminal
        )
        code, out, err = await _cli(env, "--channel", str(first), "--channel", str(second))
    assert code == 0, err
    assert "Traceback" not in err
    assert f"#{MARKUP}" in _flat(out)


def test_backfill_summary_shows_error_text_as_typed() -> None:
    from barkeeper.cli import _common

    result = BackfillResult(
        channels=[ChannelResult(7, name=MARKUP, error=f"Discord said {MARKUP}")]
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=250, markup=False)
    console.print(_summary(result, 100))
    assert f"#{MARKUP}" in _flat(buffer.getvalue())
    assert f"failed: Discord said {MARKUP}" in _flat(buffer.getvalue())
    # the CLI's own consoles never parse markup either
    assert not _common.console._markup and not _common.err_console._markup


BAD_IDS = [
    "-1",
    "0",
    "00",
    "１２３",  # full-width digits: int() would take them
    "٣",  # Arabic-Indic digit three
    str(BIGINT_MAX + 1),
    "99999999999999999999",
    "+5",
    "1e3",
    "0x10",
    "12a",
    "1 2",
    "",
    " ",
    MARKUP,
]

# Every command taking an id, with "{id}" where the id goes ("--" lets "-1" through
# to the parser instead of being read as an option).
ID_COMMANDS = [
    ("memories", "list", "--", "{id}"),
    ("memories", "add", "--", "{id}", "likes tea"),
    ("memories", "forget", "--all", "--", "{id}"),
    ("memories", "search", "--", "{id}", "tea"),
    ("memories", "history", "--", "{id}", "5"),
    ("memories", "forget", "--yes", "--", "5", "{id}"),
    ("memories", "history", "--", "5", "{id}"),
    ("privacy", "show", "--", "{id}"),
    ("privacy", "export", "--", "{id}"),
    ("privacy", "forget", "--", "{id}"),
    ("backfill", "--channel", "{id}"),
]


@pytest.mark.parametrize("template", ID_COMMANDS, ids=" ".join)
def test_every_command_refuses_bad_ids_alike(template: tuple[str, ...]) -> None:
    # An unreachable server: a bad id must be refused before anything connects.
    env = {"POSTGRES_URL": "postgresql://u@127.0.0.1:1/x", "DISCORD_TOKEN": "t"}
    for bad in BAD_IDS:
        ran = barkeeper(*(a.replace("{id}", bad) for a in template), **env)
        assert ran.code == 2, (bad, ran)
        assert "Traceback" not in ran.text and "PostgreSQL" not in ran.text
        assert ran.err.count("Invalid value for") == 1, (bad, ran.err)
        flat = _flat(ran.err)
        assert f"{bad!r} is not a" in flat, (bad, flat)
        assert f"from 1 to {BIGINT_MAX} in ASCII digits" in flat


@pytest.mark.parametrize("good", ["1", "42", " 42 ", str(BIGINT_MAX)])
def test_parse_id_takes_positive_bigints(good: str) -> None:
    assert parse_id(good) == int(good)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_parse_id_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        parse_id(bad)


def test_privacy_and_memories_agree_on_ids(database_url: str) -> None:
    """The ids privacy once took ("total 0") are refused by both, in the same words."""
    env = {"POSTGRES_URL": database_url}
    for bad in ("-1", "0", "１２３"):
        answers = [
            barkeeper(group, command, "--", bad, **env)
            for group, command in (("privacy", "show"), ("memories", "list"))
        ]
        assert [a.code for a in answers] == [2, 2]
        errors = [_flat(a.err) for a in answers]
        messages = [e[e.index("Invalid value") :] for e in errors]
        assert messages[0] == messages[1], messages
    ok = barkeeper("privacy", "show", "123", **env)
    assert ok.code == 0 and "total" in ok.out
