"""``barkeeper chat`` end to end: the real process in a pseudo-terminal, the real
``openai`` client against the scripted LLM server, a real PostgreSQL.

Each test types lines into the terminal and reads what the process printed (ANSI
styling removed), and checks what the model was really sent.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from barkeeper.companion import UserStore, reminder_notice
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.learning import OutboxEntry, OutboxStore
from barkeeper.testing.llm import LLMServer, Reply, ReplyLike
from tests.test_extraction import decisions_reply, fact, facts_reply

KEY = "sk-test-chat"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x01\x02]")


def _controlling_tty() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A ``barkeeper chat`` process on a pseudo-terminal: type lines, read the screen."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.raw = ""
        self.pos = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._on_output)

    @classmethod
    async def spawn(cls, env: dict[str, str], *args: str) -> Terminal:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "barkeeper",
            "chat",
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_tty,
        )
        os.close(slave)
        return cls(proc, master)

    def _on_output(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed its side
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += self._decoder.decode(data, final=not data)
        self._changed.set()

    @property
    def screen(self) -> str:
        """Everything printed so far, without styling, with plain newlines."""
        return _ANSI.sub("", self.raw).replace("\r\n", "\n").replace("\r", "")

    async def expect(self, wanted: str | re.Pattern[str], within: float = 60) -> str:
        """Wait until ``wanted`` is printed after what was expected before; return it all.

        A string is matched literally, a compiled pattern as a regular expression.
        """

        async def found() -> str:
            while True:
                rest = self.screen[self.pos :]
                if isinstance(wanted, str):
                    at = rest.find(wanted)
                    end = at + len(wanted)
                else:
                    match = wanted.search(rest)
                    at, end = (match.start(), match.end()) if match else (-1, -1)
                if at >= 0:
                    self.pos += end
                    return rest[:end]
                if self.proc.returncode is not None and not self._changed.is_set():
                    raise AssertionError(f"exited before printing {wanted!r}:\n{self.screen}")
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 1)
                except TimeoutError:
                    pass

        try:
            return await asyncio.wait_for(found(), within)
        except TimeoutError:
            raise AssertionError(
                f"{wanted!r} not printed within {within}s:\n{self.screen}"
            ) from None

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def exit_code(self, within: float = 60) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"still running after {within}s:\n{self.screen}") from None
        await asyncio.sleep(0.1)  # the last output
        with_output = self.screen
        assert "Traceback" not in with_output, with_output
        return code

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        os.close(self.master)
        if self.proc.returncode is None:
            self.proc.kill()


def _said(body: dict[str, Any]) -> str:
    """The text of the request's last message."""
    return str(body["messages"][-1].get("content") or "")


def _is_memory_call(body: dict[str, Any]) -> bool:
    return body.get("response_format") is not None


def _message_of(body: dict[str, Any]) -> str:
    """What the author wrote, in an extraction request."""
    return _said(body).split("<message>\n", 1)[1].split("\n</message>", 1)[0]


class Model:
    """The scripted model: chat replies by what the person said, memory calls alike."""

    def __init__(self) -> None:
        self.replies: dict[str, ReplyLike] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.extraction_delay = 0.0
        self.extraction_gate: asyncio.Event | None = None  # extraction waits for it if set
        self.extracted: list[str] = []  # the messages extraction was asked about, in order
        self.asked = asyncio.Event()  # set at each extraction request

    async def __call__(self, body: dict[str, Any]) -> ReplyLike | None:
        if _is_memory_call(body):
            text = _said(body)
            if "<facts>" in text:  # consolidation: keep the new fact
                return decisions_reply({"fact": 1, "action": "add"})
            said = _message_of(body)
            self.extracted.append(said)
            self.asked.set()
            found = [f for word, f in self.facts.items() if word in said]
            if self.extraction_delay:
                await asyncio.sleep(self.extraction_delay)
            if self.extraction_gate is not None:
                await self.extraction_gate.wait()
            return facts_reply(*found)
        said = _said(body).rsplit("<current_message>", 1)[-1]
        for word, reply in self.replies.items():
            if word in said:
                return reply
        return "Coming right up."


@pytest_asyncio.fixture
async def model() -> AsyncIterator[tuple[LLMServer, Model]]:
    script = Model()
    async with LLMServer(api_key=KEY) as srv:
        srv.responder = script
        yield srv, script


def _env(database_url: str, srv: LLMServer | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BARKEEPER_", "POSTGRES_", "DATABASE_", "DB_", "OPENAI_", "GROQ_"))
    }
    env.update(
        POSTGRES_URL=database_url,
        BARKEEPER_DATA_DIR=str(tmp_path / "data"),
        BARKEEPER_EMBEDDER="hashing",
        BARKEEPER_FACT_EXTRACTION_RATE="1",
        BARKEEPER_LLM_MAX_RETRIES="1",
        TERM="xterm",
        **extra,
    )
    if srv is not None:
        env.update(OPENAI_BASE_URL=srv.base_url, OPENAI_API_KEY=KEY)
    return env


def _chat_requests(srv: LLMServer) -> list[str]:
    """Each chat-reply request's whole prompt, in order (memory calls left out)."""
    return [
        "\n".join(str(m.get("content") or "") for m in r.messages)
        for r in srv.chat_requests
        if not _is_memory_call(r.body)
    ]


async def test_a_fact_told_is_remembered_across_restarts_used_shown_and_forgotten(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, script = model
    env = _env(database_url, srv, tmp_path)
    told = "I keep bees on my roof in Lisbon"
    answer = "Bees on a Lisbon roof, now that is a story worth a pint. Tell me about the hive!"
    script.replies[told] = Reply(answer, pace=0.3)
    script.facts["bees"] = fact("Keeps bees on the roof", "hobby")
    script.extraction_delay = 1.5  # still learning when the person leaves

    term = await Terminal.spawn(env, "--as", "Ada")
    try:
        await term.expect("Ada> ")
        term.type(told + "\n")
        await term.expect("Bartender: Bees on a")
        assert "the hive!" not in term.screen  # the first words came before the last
        await term.expect("Tell me about the hive!\n")
        await term.expect("Ada> ")
        term.type("/quit\n")
        assert await term.exit_code() == 0
        await term.expect("Bye, Ada.")
    finally:
        term.close()
    first = _chat_requests(srv)
    assert len(first) == 1 and told in first[0]
    assert any(r.body.get("stream") for r in srv.chat_requests)

    script.replies["what do I keep"] = "Bees, if memory serves."
    term = await Terminal.spawn(env, "--as", "Ada")
    try:
        await term.expect("Last time:")
        await term.expect(f"Ada: {told}")
        await term.expect("Ada> ")
        term.type("/memories\n")
        listed = await term.expect(re.compile(r"#(\d+) \[hobby\] Keeps bees on the roof"))
        memory_id = re.findall(r"#(\d+) \[hobby\]", listed)[-1]
        await term.expect("Ada> ")

        term.type("what do I keep up there?\n")
        await term.expect("Bees, if memory serves.")
        later = _chat_requests(srv)[-1]
        assert "Keeps bees on the roof" in later  # the memory is in the context
        assert told in later and answer in later  # and the earlier exchange, after a restart

        await term.expect("Ada> ")
        term.type("/why\n")
        why = await term.expect("Cut to fit the context budget")
        assert "what do I keep up there?" in why
        assert f"#{memory_id} [hobby] Keeps bees on the roof" in why
        assert "Earlier exchanges it saw: 1." in why

        await term.expect("Ada> ")
        term.type("/forget #99999999999999999999\n")  # past bigint: not theirs either
        await term.expect("You have no memory #99999999999999999999 (see /memories).")
        await term.expect("Ada> ")
        term.type(f"/forget #{memory_id}\n")
        await term.expect("Forget it? [y/N] ")
        term.type("y\n")
        await term.expect("Forgotten (1 memory).")
        await term.expect("Ada> ")
        term.type("/memories\n")
        await term.expect("I don't remember anything about you yet.")
        await term.expect("Ada> ")
        term.type("/why\n")
        await term.expect(f"#{memory_id} (forgotten since)")
        await term.expect("Ada> ")
        term.type("\x04")  # Ctrl-D
        assert await term.exit_code() == 0
        await term.expect("Bye, Ada.")
    finally:
        term.close()


async def _extractions(script: Model, text: str, count: int, within: float = 60) -> None:
    """Wait until the model has been asked to extract from ``text`` ``count`` times."""

    async def wait() -> None:
        while script.extracted.count(text) < count:
            script.asked.clear()
            await script.asked.wait()

    try:
        await asyncio.wait_for(wait(), within)
    except TimeoutError:
        raise AssertionError(
            f"{count} extraction(s) of {text!r} not asked within {within}s: {script.extracted}"
        ) from None


async def test_memory_work_of_a_killed_chat_is_done_by_the_next_start(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, script = model
    # A killed process's claim is taken over once its lease ends: 1 s here.
    env = _env(database_url, srv, tmp_path, BARKEEPER_MEMORY_LEASE_SECONDS="1")
    told = "I brew cider in the garden shed"
    script.facts["cider"] = fact("Brews cider in the garden shed", "hobby")
    script.extraction_gate = gate = asyncio.Event()  # the first extraction never answers

    term = await Terminal.spawn(env, "--as", "Fay")
    try:
        await term.expect("Fay> ")
        term.type(told + "\n")
        await term.expect("Bartender: Coming right up.")
        await term.expect("Fay> ")
        await _extractions(script, told, 1)
        term.proc.kill()  # SIGKILL mid-extraction: no drain, no clean-up, the claim held
        await term.proc.wait()
    finally:
        term.close()
    script.extraction_gate = None
    gate.set()  # the dead process's request may end now; nobody reads its answer

    term = await Terminal.spawn(env, "--as", "Fay")
    try:
        await term.expect("Fay> ")  # nothing typed: the worker takes the item over
        await _extractions(script, told, 2)
        term.type("/quit\n")
        assert await term.exit_code() == 0
        await term.expect("Bye, Fay.")
    finally:
        term.close()

    term = await Terminal.spawn(env, "--as", "Fay")
    try:
        await term.expect("Fay> ")
        term.type("/memories\n")
        listed = await term.expect("Fay> ")
        assert listed.count("[hobby] Brews cider in the garden shed") == 1, listed
        term.type("/quit\n")
        assert await term.exit_code() == 0
    finally:
        term.close()
    assert script.extracted == [told, told]  # taken over once, not again


async def test_markup_and_control_characters_are_printed_as_typed(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, script = model
    markup = "[/nope] [bold]x[/bold] :beer:"
    script.replies["hello"] = f"You said {markup} \x1b[2J\x07 fine"
    term = await Terminal.spawn(_env(database_url, srv, tmp_path), "--as", "[red]Bo[/red]")
    try:
        await term.expect("you are [red]Bo[/red].")
        prompt = "[red]Bo[/red]> "
        await term.expect(prompt)
        term.type(f"hello {markup}\n")
        await term.expect(f"Bartender: You said {markup} \\x1b[2J\\x07 fine")
        await term.expect(prompt)
        term.type(f"/remember {markup} stout\n")
        await term.expect(re.compile(r"I'll remember that \(#\d+\): " + re.escape(markup)))
        await term.expect(prompt)
        term.type("/memories\n")
        await term.expect(f"[general] {markup} stout")
        await term.expect(prompt)
        term.type("/forget stout\n")  # by words: shown, then declined
        await term.expect(f"[general] {markup} stout")
        await term.expect("Forget it? [y/N] ")
        term.type("n\n")
        await term.expect("Nothing forgotten.")
        await term.expect(prompt)
        term.type("/nope[b]\n")
        await term.expect("No command /nope[b]: /help lists them.")
        await term.expect(prompt)
        term.type("\x03")  # Ctrl-C at the prompt: leave, cleanly
        assert await term.exit_code() == 0
        await term.expect("Bye, [red]Bo[/red].")
    finally:
        term.close()
    assert f"hello {markup}" in _chat_requests(srv)[0]


async def test_ctrl_c_during_a_reply_finishes_it_and_saves_what_was_learned(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, script = model
    script.replies["allotment"] = Reply("An allotment! " + "Lovely. " * 12, pace=0.5)
    script.facts["allotment"] = fact("Has an allotment", "hobby")
    env = _env(database_url, srv, tmp_path)
    term = await Terminal.spawn(env, "--as", "Cy")
    try:
        await term.expect("Cy> ")
        term.type("I just got an allotment by the river\n")
        await term.expect("Bartender: An allotment!")
        term.type("\x03")
        await term.expect("Ctrl-C again to stop at once")
        assert await term.exit_code() == 0
        assert term.screen.count("Lovely.") == 12  # the reply was finished
    finally:
        term.close()
    term = await Terminal.spawn(env, "--as", "Cy")
    try:
        await term.expect("Cy> ")
        term.type("/memories allotment\n")
        await term.expect("[hobby] Has an allotment")
        term.type("/quit\n")
        assert await term.exit_code() == 0
    finally:
        term.close()


async def test_a_second_ctrl_c_stops_the_reply_at_once(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, script = model
    script.replies["story"] = Reply("Once " * 60, pace=0.5)  # 30 s if let finish
    term = await Terminal.spawn(_env(database_url, srv, tmp_path), "--as", "Di")
    try:
        await term.expect("Di> ")
        term.type("tell me a story\n")
        await term.expect("Bartender: Once")
        term.type("\x03")
        await term.expect("Ctrl-C again to stop at once")
        term.type("\x03")
        assert await term.exit_code(within=20) == 0
        await term.expect("Bye, Di.")
        assert term.screen.count("Once") < 60
        assert "WARNING" not in term.screen and "ERROR" not in term.screen
    finally:
        term.close()


async def test_piped_lines_work_and_bytes_that_are_not_text_lose_nothing(
    model: tuple[LLMServer, Model], database_url: str, tmp_path: Path
) -> None:
    srv, _ = model
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper",
        "chat",
        "--as",
        "Eve",
        # strict, as in a UTF-8 locale, where input() would raise and drop its buffer
        env=_env(database_url, srv, tmp_path, PYTHONIOENCODING="utf-8:strict"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"caf\xe9 au lait\nhello there\n"), 120)
    printed = _ANSI.sub("", out.decode())
    assert proc.returncode == 0, (printed, err)
    assert printed.count("Bartender: Coming right up.") == 2 and "Bye, Eve." in printed
    assert "Traceback" not in err.decode()
    sent = _chat_requests(srv)
    assert "caf\ufffd au lait" in sent[0] and "hello there" in sent[1]  # nothing lost


def test_without_llm_settings_it_says_which_variable_and_exits_2(tmp_path: Path) -> None:
    env = _env("postgresql://nobody@127.0.0.1:1/none", None, tmp_path)
    ran = subprocess.run(
        [sys.executable, "-m", "barkeeper", "chat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 2, ran
    assert "GROQ_API_KEY" in ran.stderr and "OPENAI_API_KEY" in ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout


def test_a_name_that_is_not_printable_is_refused(tmp_path: Path) -> None:
    env = _env("postgresql://nobody@127.0.0.1:1/none", None, tmp_path, OPENAI_API_KEY=KEY)
    ran = subprocess.run(
        [sys.executable, "-m", "barkeeper", "chat", "--as", "bad\x1bname"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 2, ran
    assert "'bad\\\\x1bname' is not a name" in ran.stderr or "is not a name" in ran.stderr
    assert "\x1b" not in ran.stderr.replace("\x1b[", "")  # our escape, not the raw one


async def test_the_chat_worker_schedules_a_discord_messages_reminder_never_a_terminal_one(
    model: tuple[LLMServer, Model], database_url: str, settings: Settings, tmp_path: Path
) -> None:
    """The chat's outbox worker takes any ready item, the bot's too (a shared database):
    a Discord message's reminder is scheduled as the bot's worker would; a terminal
    line's is not (nothing could deliver it), and the reply was told so."""
    srv, _ = model
    env = _env(database_url, srv, tmp_path)
    db = await Database.open(settings, url=database_url, min_size=1, max_size=2, upgrade=True)
    try:
        users = UserStore(db)
        gus = await users.get_or_create_discord_user(4242, username="gus")
        fay = await users.get_or_create_external_user("terminal:Fay")
        discord_said = "remind me on Friday to call mum"
        await OutboxStore(db).enqueue(
            [OutboxEntry(gus.id, discord_said, message_id=77, channel_id=88, author_name="gus")]
        )
        term = await Terminal.spawn(env, "--as", "Fay")
        try:
            await term.expect("Fay> ")
            term.type("remind me on Friday to water the plants\n")
            await term.expect("Bartender: Coming right up.")
            await term.expect("Fay> ")
            term.type("/quit\n")  # drains both items
            assert await term.exit_code() == 0
        finally:
            term.close()
        [prompt] = _chat_requests(srv)
        assert reminder_notice("off_here") in prompt
        async with db.acquire() as conn:
            rows = await conn.fetch("SELECT user_id, event_type FROM scheduled_events ORDER BY id")
            left = await conn.fetchval("SELECT count(*) FROM memory_outbox")
        assert [(r["user_id"], r["event_type"]) for r in rows] == [(gus.id, "reminder")]
        assert fay.id != gus.id and left == 0
    finally:
        await db.close()
