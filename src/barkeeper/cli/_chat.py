"""``barkeeper chat``: the Bartender in a terminal, on the same agent and stores as the bot.

One line typed is one message (or one of the commands ``/help`` lists); the reply is
printed as the model writes it. The person is the external user ``terminal:NAME``
(``--as NAME``, the login name by default) with one session, so the conversation and
the memories carry over from one run to the next. Each answered line's memory work
is queued in the durable memory outbox (PostgreSQL, as the bot's is) and processed by
an :class:`~barkeeper.learning.OutboxWorker` in this process: what is ready when the
chat ends is finished before the process exits, and what a killed session left (or a
second Ctrl-C gave up) is picked up by the next start.

Must never: interpret what a person or the model wrote. It is printed as typed: no
rich markup, no emoji codes, and terminal control characters shown as escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from barkeeper.agent import (
    Agent,
    Author,
    IncomingMessage,
    Place,
    ReplyRequest,
    RunRecord,
    build_agent,
)
from barkeeper.bot import FollowupSink, build_followups
from barkeeper.cli._common import err_console, run, settings_and_logging, styled
from barkeeper.companion import SENSITIVE_MEMORY_TYPES, CompanionSettings, UserStore
from barkeeper.config import Settings
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.errors import BarkeeperError, InvalidInputError, NotFoundError
from barkeeper.learning import (
    CandidateEvent,
    EventSink,
    MemoryManager,
    OutboxEntry,
    OutboxStore,
    OutboxWorker,
    UserMessage,
    build_memory_manager,
    build_outbox,
    build_outbox_worker,
)
from barkeeper.memory import Memory, MemoryStore

__all__ = ["chat", "missing_llm_settings"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

#: The external id prefix of terminal users (``terminal:NAME``).
EXTERNAL_PREFIX = "terminal:"
_MAX_NAME = 64
_SHOWN = 20  # memories listed by /memories
_BOT = "Bartender"

# C0 controls except tab and newline, DEL, and C1 controls: a model (or a paste) could
# otherwise move the cursor, retitle the window or clear the screen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_HELP = """\
Type a message and press Enter to talk to the Bartender. Commands:
  /memories [words]  what I remember about you (newest first, or the best matches)
  /remember TEXT     remember this about you, in your words
  /forget ID|WORDS   forget one memory (by its id), or those about WORDS; asks first
  /why               what my last reply to you was based on
  /help              this list
  /quit              leave (Ctrl-D and Ctrl-C too)
A message that starts with / is sent as is if you double it: //like this."""


def missing_llm_settings(settings: Settings) -> str | None:
    """What to set for the chat model when no API key is configured, else ``None``."""
    if settings.chat_llm_api_key() is not None:
        return None
    return (
        "barkeeper chat needs a language model, and no API key is set. Set GROQ_API_KEY "
        "(Groq, the default endpoint; keys at https://console.groq.com/keys), or "
        "OPENAI_API_KEY with OPENAI_BASE_URL for any OpenAI-compatible server (OpenAI, "
        "OpenRouter, Ollama, vLLM, llama.cpp; any value for a local server that needs no "
        "key), in the environment or in a .env file (see .env.example)."
    )


def printable(text: str) -> str:
    """``text`` with terminal control characters shown as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _check_name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > _MAX_NAME or not name.isprintable():
        raise typer.BadParameter(
            f"{printable(value)!r} is not a name: give 1 to {_MAX_NAME} printable characters",
            param_hint="'--as'",
        )
    return name


def _login_name() -> str:
    try:
        return getpass.getuser() or "you"
    except (KeyError, OSError):  # no login name (a container's uid without passwd entry)
        return "you"


def chat(
    as_name: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="NAME",
            help="Who you are: your conversation and memories are kept under this "
            "name (default: your login name).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Talk to the Bartender in the terminal: same agent, memory and commands as on Discord."""
    name = _check_name(as_name if as_name is not None else _login_name())
    settings = settings_and_logging()
    if "log_level" not in settings.model_fields_set:
        # INFO lines (the memory layer's bookkeeping) would interleave with the chat.
        logging.getLogger().setLevel(logging.WARNING)
    missing = missing_llm_settings(settings)
    if missing is not None:
        err_console.print(styled("Cannot start the chat", "red"), ": ", missing, sep="")
        raise typer.Exit(2)
    terminal = _Terminal()
    try:
        run(_Chat(settings, name, terminal).main())
    finally:
        terminal.restore()
    if terminal.reading:
        # A thread still blocked reading stdin (the chat ended on Ctrl-C or a signal)
        # cannot be interrupted, and interpreter shutdown would wait on its lock:
        # everything is closed and flushed, so end the process here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class _Terminal:
    """Lines in (``input()`` in a daemon thread, line editing by readline when there is
    one), text out (written as is, never parsed)."""

    def __init__(self) -> None:
        self.console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None
        self._tty = sys.stdin.isatty()
        if self._tty:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401 - gives input() editing and history
            with contextlib.suppress(ImportError, OSError):
                import termios

                self._saved = termios.tcgetattr(sys.stdin.fileno())

    @property
    def reading(self) -> bool:
        """Whether a thread is still waiting for a line."""
        return self._thread is not None and self._thread.is_alive()

    def restore(self) -> None:
        """Put the terminal's modes back as they were (readline may be mid-line)."""
        if self._saved is not None:
            with contextlib.suppress(ImportError, OSError):
                import termios

                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)

    async def read_line(self, prompt: str) -> str | None:
        """The next line typed (without its newline), or ``None`` at end of input."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def deliver(value: str | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        def read() -> None:
            line: str | None
            try:
                if self._tty:
                    line = input(prompt)
                else:
                    line = self._read_piped(prompt)
            except EOFError:
                line = None
            except BaseException as exc:  # handed to the loop, which reports it
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(deliver, None, exc)
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, line, None)

        # A daemon thread, not the loop's executor: asyncio.run joins the executor's
        # threads, and one blocked in input() would never return.
        self._thread = threading.Thread(target=read, name="barkeeper-chat-input", daemon=True)
        self._thread.start()
        return await future

    @staticmethod
    def _read_piped(prompt: str) -> str | None:
        """A line of piped input, bytes that are not UTF-8 replaced by U+FFFD.

        ``input()`` would raise on them and lose the rest of its buffer with the line.
        """
        sys.stdout.write(prompt)
        sys.stdout.flush()
        raw = sys.stdin.buffer.readline()
        if not raw:
            return None
        return raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")

    def write(self, text: str) -> None:
        """Write a person's or the model's text exactly (control characters escaped)."""
        sys.stdout.write(printable(text))
        sys.stdout.flush()

    def say(self, *parts: str | Text) -> None:
        """Print a line of ours; ``str`` parts are printed as is."""
        self.console.print(
            Text.assemble(*(printable(p) if isinstance(p, str) else p for p in parts))
        )


class _Chat:
    """One chat session: the database, the agent, the memory worker and the loop."""

    def __init__(self, settings: Settings, name: str, terminal: _Terminal) -> None:
        self.settings = settings
        self.name = name
        self.term = terminal
        self._stop = asyncio.Event()
        self._interrupts = 0
        self._current: asyncio.Task[Any] | None = None
        self.user_id = 0
        self.agent: Agent
        self.memories: MemoryStore
        self.manager: MemoryManager
        self.outbox: OutboxStore
        self.worker: OutboxWorker

    # --- signals -------------------------------------------------------------------------

    def _interrupt(self) -> None:
        self._interrupts += 1
        self._stop.set()
        if self._interrupts == 1 and self._current is not None:
            self.term.write("\n")
            self.term.say(styled("(finishing this first; Ctrl-C again to stop at once)", "dim"))
        elif self._interrupts > 1 and self._current is not None:
            self._current.cancel()

    async def _guarded(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Run ``work`` so that a second Ctrl-C cancels it (``None`` then)."""
        task = asyncio.ensure_future(work)
        self._current = task
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this coroutine itself is being cancelled
            return None
        finally:
            self._current = None

    # --- the session ---------------------------------------------------------------------

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._interrupt)
        if self.settings.effective_database_mode().value == "embedded":
            self.term.say(styled("Starting the embedded database…", "dim"))
        async with Database.connect(self.settings, min_size=1, max_size=6, upgrade=True) as db:
            user = await UserStore(db).get_or_create_external_user(EXTERNAL_PREFIX + self.name)
            self.user_id = user.id
            followups = build_followups(db, self.settings)
            events = (
                _DiscordEvents(
                    FollowupSink(
                        followups, CompanionSettings(db, self.settings.companion_features())
                    )
                )
                if followups is not None
                else None
            )
            manager = self.manager = build_memory_manager(db, self.settings, events=events)
            self.memories = manager.store
            # No memory sink: each answered line is queued in the outbox (``_reply``).
            self.agent = build_agent(db, self.settings, memories=manager.store)
            self.outbox = build_outbox(db, self.settings)
            self.worker = build_outbox_worker(manager, self.outbox, db, self.settings)
            if self.agent.companion is not None:  # bot_states' facts learnt (DMs' row)
                self.worker.on_learned = self.agent.companion.count_learned
            self.worker.start()  # also what a session killed earlier left in the outbox
            try:
                await self._greet(SessionStore.from_settings(db, self.settings))
                await self._loop()
            finally:
                await self._finish()
                await self.agent.aclose()
                await manager.aclose()
        self.term.say("Bye, ", self.name, ".")

    async def _greet(self, sessions: SessionStore) -> None:
        self.term.say(
            styled("barkeeper chat", "bold"),
            " — you are ",
            styled(printable(self.name), "bold"),
            ". Type /help for the commands, Ctrl-D to leave.",
        )
        session = await sessions.get_or_create_session(
            self.agent.config.agent_id, self.user_id, None
        )
        earlier = await sessions.get_recent_runs(session.id, 2)
        if earlier:
            self.term.say(styled("Last time:", "dim"))
            for past in earlier:
                self.term.say(styled(f"  {self.name}: ", "dim"), _short(past.input or ""))
                self.term.say(styled(f"  {_BOT}: ", "dim"), _short(past.output or ""))

    async def _loop(self) -> None:
        prompt = f"{printable(self.name)}> "
        while not self._stop.is_set():
            try:
                line = await self._read(prompt)
            except UnicodeDecodeError:  # a Latin-1 terminal without readline
                self.term.say("That line was not UTF-8 text; nothing was sent.")
                continue
            if line is None:
                if not self._stop.is_set():
                    self.term.write("\n")  # after Ctrl-D, the prompt's line is still open
                return
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/") and not text.startswith("//"):
                    if not await self._command(text):
                        return
                else:
                    await self._guarded(self._reply(text[1:] if text.startswith("//") else text))
            except BarkeeperError as exc:  # a store or the model failed: say so, go on
                self.term.say(styled("Error: ", "red"), str(exc))

    async def _read(self, prompt: str) -> str | None:
        """The next line, or ``None`` at end of input or when asked to stop."""
        reading = asyncio.ensure_future(self.term.read_line(prompt))
        stopping = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reading in done:
            return reading.result()
        reading.cancel()
        self.term.write("\n")
        return None

    async def _finish(self) -> None:
        """Let the memory worker finish what is ready in the outbox (a second Ctrl-C
        gives up: what is left stays queued for the next start)."""
        try:
            busy = self.worker.in_flight > 0 or await self.outbox.has_ready()
        except BarkeeperError as exc:  # the database went away: the worker cannot either
            _log.warning("memory outbox unreadable at exit: %s", exc)
            busy = False
        if busy:
            self.term.say(styled("Saving what I learned…", "dim"))
            try:
                await self._guarded(self.worker.drain())
            except BarkeeperError as exc:
                self.term.say(styled("Not all saved (kept for next time): ", "yellow"), str(exc))
        # After a second Ctrl-C, an item in progress is given back, not waited for.
        await self.worker.aclose(grace_period=0 if self._interrupts > 1 else 30.0)

    # --- a message -------------------------------------------------------------------------

    async def _reply(self, text: str) -> None:
        request = ReplyRequest(
            author=Author(self.user_id, self.name),
            place=Place.terminal(),
            message=IncomingMessage(text, created_at=datetime.now(UTC)),
        )
        self.term.console.print(styled(f"{_BOT}: ", "bold cyan"), end="")
        try:
            await self.agent.reply(request, on_text=self.term.write)
        finally:
            self.term.write("\n")
        await self._queue_memory_work(request)

    async def _queue_memory_work(self, request: ReplyRequest) -> None:
        """Queue the answered line in the memory outbox (committed before the next prompt,
        so a killed chat loses none of it); nothing for an incognito message."""
        if request.incognito or not request.message.text.strip():
            return
        entry = OutboxEntry(
            user_id=self.user_id, content=request.message.text, author_name=self.name
        )
        await self.outbox.enqueue([entry])
        self.worker.wake()

    # --- commands ----------------------------------------------------------------------------

    async def _command(self, text: str) -> bool:
        """Carry out a command line; ``False`` to leave."""
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("/quit", "/exit", "/q"):
            return False
        if word == "/help":
            self.term.say(_HELP)
        elif word == "/memories":
            await self._show_memories(rest)
        elif word == "/remember":
            await self._remember(rest)
        elif word == "/forget":
            await self._forget(rest)
        elif word == "/why":
            await self._why()
        else:
            self.term.say("No command ", word, ": /help lists them.")
        return True

    def _memory_line(self, memory: Memory) -> Text:
        learned = memory.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        return Text.assemble(
            styled(f"  #{memory.id}", "bold"),
            f" [{memory.memory_type}"
            + (", sensitive: DMs only" if memory.memory_type in SENSITIVE_MEMORY_TYPES else "")
            + "] ",
            printable(memory.content),
            styled(f"  (learned {learned})", "dim"),
        )

    async def _show_memories(self, query: str) -> None:
        if query:
            found = [h.item for h in await self.memories.search(self.user_id, query, k=_SHOWN)]
            if not found:
                self.term.say("Nothing I remember about you matches ", repr(query), ".")
                return
            self.term.say("What I remember about you, best matches for ", repr(query), ":")
        else:
            found = await self.memories.list_memories(self.user_id, limit=_SHOWN)
            if not found:
                self.term.say("I don't remember anything about you yet.")
                return
            total = await self.memories.count(self.user_id)
            shown = f"{len(found)} of {total}" if total > len(found) else str(total)
            self.term.say(f"What I remember about you ({shown}, newest first):")
        for memory in found:
            self.term.say(self._memory_line(memory))
        if not query and len(found) < await self.memories.count(self.user_id):
            self.term.say(styled("(/memories WORDS finds the others)", "dim"))

    async def _remember(self, text: str) -> None:
        if not text:
            self.term.say("Usage: /remember TEXT (a fact about you, in your words)")
            return
        change = await self.manager.remember(self.user_id, text)
        content = change.memory.content if change.memory is not None else text
        if change.action == "confirm":
            self.term.say(f"I knew that already (#{change.memory_id}): ", content)
        else:
            self.term.say(f"I'll remember that (#{change.memory_id}): ", content)

    async def _forget(self, what: str) -> None:
        if not what:
            self.term.say("Usage: /forget ID (see /memories), or /forget WORDS")
            return
        number = what.removeprefix("#")  # as /memories shows it
        if number.isascii() and number.isdigit():
            try:
                doomed = [await self.memories.get(self.user_id, int(number))]
            except (NotFoundError, InvalidInputError):  # not theirs, gone, or past bigint
                self.term.say(f"You have no memory #{number} (see /memories).")
                return
        else:
            doomed = await self.manager.find_matching(self.user_id, what)
            if not doomed:
                self.term.say("Nothing I remember about you matches ", repr(what), ".")
                return
        self.term.say("This will be forgotten for good:")
        for memory in doomed:
            self.term.say(self._memory_line(memory))
        question = "Forget it? [y/N] " if len(doomed) == 1 else "Forget them? [y/N] "
        answer = await self._read(question)
        if answer is None or answer.strip().lower() not in ("y", "yes"):
            self.term.say("Nothing forgotten.")
            return
        gone = 0
        for memory in doomed:
            with contextlib.suppress(NotFoundError):  # forgotten meanwhile
                await self.memories.forget(
                    self.user_id, memory.id, changed_by="user", reason="forgotten in barkeeper chat"
                )
                gone += 1
        self.term.say(f"Forgotten ({gone} {'memory' if gone == 1 else 'memories'}).")

    async def _why(self) -> None:
        run_ = await self.agent.last_run(self.user_id, place=Place.terminal())
        if run_ is None:
            self.term.say("I haven't replied to you yet.")
            return
        record = RunRecord.from_metrics(run_.metrics)
        when = run_.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        self.term.say("My last reply (", when, ") answered: ", _short(run_.input or ""))
        latency = record.latency_ms
        self.term.say(
            f"Model {record.model or '?'}: {record.prompt_tokens} prompt and "
            f"{record.completion_tokens} completion tokens, "
            f"{latency.get('total', 0):.0f} ms ({latency.get('model', 0):.0f} ms in the model)."
        )
        if record.memory_ids:
            self.term.say(f"Memories of yours it used ({len(record.memory_ids)}):")
            for mid in record.memory_ids:
                try:
                    self.term.say(self._memory_line(await self.memories.get(self.user_id, mid)))
                except NotFoundError:
                    self.term.say(styled(f"  #{mid} (forgotten since)", "dim"))
        else:
            self.term.say("It used none of your memories.")
        if record.run_ids:
            self.term.say(f"Earlier exchanges it saw: {len(record.run_ids)}.")
        if record.message_ids:
            self.term.say(f"Chat messages it saw: {len(record.message_ids)}.")
        cut = _describe_cut(record.cut)
        self.term.say("Cut to fit the context budget: ", cut or "nothing", ".")
        for error in record.errors:
            self.term.say(styled("Went wrong: ", "yellow"), error)


class _DiscordEvents:
    """The bot's follow-up scheduler, for the Discord messages this process's outbox worker
    takes (it claims any ready item, the bot's too, on a shared database). A terminal
    line's events (queued without a channel) are not scheduled: nothing can deliver them
    to a terminal (the reply was told so, see ``Agent``)."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    async def schedule_events(self, message: UserMessage, events: Sequence[CandidateEvent]) -> int:
        if message.channel_id is None:
            return 0
        return await self._sink.schedule_events(message, events)


def _describe_cut(cut: dict[str, Any] | Any) -> str:
    parts = []
    names = {
        "memory_ids": "memories",
        "message_ids": "chat messages",
        "run_ids": "earlier exchanges",
    }
    for key, label in names.items():
        if cut.get(key):
            parts.append(f"{len(cut[key])} {label}")
    if cut.get("current_message_chars"):
        parts.append(f"{cut['current_message_chars']} characters of your message")
    return ", ".join(parts)


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
