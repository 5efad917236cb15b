""":class:`Agent`: the one reply pipeline the Discord bot and the terminal share.

A reply: read the stores (the author's memories, the channel's history strictly
before the message, the reply chain, the session's earlier runs) in parallel; lay
them out within the token budget; ask the model (streaming when asked, calling tools
bound to the author and channel); record the run; hand the message to the memory
worker without waiting for it. A model that fails after its retries gets a short
in-character apology and an ``error`` run; a store that cannot be read leaves its
part out and is noted in the run. Nothing here knows the transport.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from barkeeper.agent._context import BuiltContext, ContextBudget, ContextBuilder, HistoryLine
from barkeeper.agent._persona import CONTEXT_RULES, DEFAULT_PERSONA, apology
from barkeeper.agent._request import AgentReply, Place, QuotedMessage, ReplyRequest, RunRecord
from barkeeper.agent._tools import TOOL_DEFINITIONS, Toolbox
from barkeeper.companion import (
    CARE_INSTRUCTION,
    DEFAULT_CRISIS_RESOURCES,
    Companion,
    CompanionContext,
    GuildStore,
    UserStore,
    asks_for_reminder,
    load_persona,
    memory_types_for,
    reminder_notice,
    shows_risk,
)
from barkeeper.config import Settings
from barkeeper.conversations import AgentRun, SessionStore
from barkeeper.embeddings import Embedder
from barkeeper.errors import (
    BarkeeperError,
    InvalidInputError,
    LLMError,
    LLMRateLimitError,
    NotFoundError,
)
from barkeeper.history import MessageStore, snowflake_time
from barkeeper.learning import UserMessage
from barkeeper.llm import (
    ChatMessage,
    ChatModel,
    ChatResult,
    StreamingChatModel,
    TextCallback,
)
from barkeeper.memory import MEMORY_TYPES, Memory, MemoryStore
from barkeeper.retrieval import MAX_QUERY_CHARS, embed_query
from barkeeper.turns import MessageIndex
from barkeeper.validation import clean_text

__all__ = ["Agent", "AgentConfig", "MemorySink", "ReplyStream"]

_log = logging.getLogger(__name__)

#: Receives each answered message for memory work; must not wait (e.g.
#: ``MemoryWorker.submit``). An awaitable it returns runs in the background.
MemorySink = Callable[[UserMessage], object]

_EMPTY_REPLY = "the model answered with no text"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How the agent replies. :meth:`from_settings` reads it from the settings.

    Attributes:
        agent_id: The agent's name in the session store.
        model: The model to ask (``None``: the chat model's default) and whose
            tokenizer counts the context.
        budget: The context's token budget and shares.
        memories: Most memories in the context (``BARKEEPER_CONTEXT_MEMORIES``).
        history_lines: Channel messages shown (``TEAM_LEADER_CONTEXT_LIMIT``).
        history_runs: Earlier exchanges of the session read (``AGENT_HISTORY_RUNS``).
        timezone: IANA zone of the times shown (``DISCORD_TIMEZONE``).
        max_agents: Users whose state is cached (``MAX_AGENTS``).
        tools: Offer tools to the model (``BARKEEPER_LLM_TOOLS``).
        max_tool_rounds: Most rounds of tool calls in one reply.
        temperature: Sampling temperature (``BARKEEPER_LLM_TEMPERATURE``).
        reply_max_tokens: Longest reply (``BARKEEPER_REPLY_MAX_TOKENS``).
        reply_chain_depth: Most links of a reply chain read from the cache.
        persona: The system prompt (the Bartender by default).
        bot_name: How the bot's own messages are labelled.
        crisis_resources: Given, out of persona, to a message that shows a risk of
            self-harm or suicide (``BARKEEPER_CRISIS_RESOURCES``).
    """

    agent_id: str = "bartender"
    model: str | None = None
    budget: ContextBudget = field(default_factory=ContextBudget)
    memories: int = 8
    history_lines: int = 100
    history_runs: int = 10
    timezone: str = "UTC"
    max_agents: int = 10
    tools: bool = True
    max_tool_rounds: int = 3
    temperature: float | None = None
    reply_max_tokens: int | None = 1024
    reply_chain_depth: int = 10
    persona: str = DEFAULT_PERSONA
    bot_name: str = "Bartender"
    crisis_resources: str = DEFAULT_CRISIS_RESOURCES

    def __post_init__(self) -> None:
        if self.max_agents < 1:
            raise InvalidInputError(f"max_agents must be at least 1, not {self.max_agents}")
        for name in ("memories", "history_lines", "history_runs", "max_tool_rounds"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AgentConfig:
        """The configuration the settings describe; ``overrides`` win, by field name."""
        config = cls(
            model=settings.llm_model,
            budget=ContextBudget(
                total=settings.context_tokens,
                persona_share=settings.context_persona_share,
                memory_share=settings.context_memory_share,
                history_share=settings.context_history_share,
            ),
            memories=settings.context_memories,
            history_lines=settings.team_leader_context_limit,
            history_runs=settings.agent_history_runs,
            timezone=settings.discord_timezone,
            max_agents=settings.max_agents,
            tools=settings.llm_tools,
            temperature=settings.llm_temperature,
            reply_max_tokens=settings.reply_max_tokens,
        )
        if settings.crisis_resources:
            config = replace(config, crisis_resources=settings.crisis_resources.strip())
        if settings.persona_file:
            persona = load_persona(settings.persona_file)
            config = replace(config, persona=persona.system_prompt(), bot_name=persona.name)
        return replace(config, **overrides)


@dataclass(slots=True)
class _UserState:
    """What the agent keeps about one user between replies: a cache, never the truth."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sessions: dict[int | None, str] = field(default_factory=dict)


def _memory_query(text: str) -> str:
    """What a memory search looks for: the message, as long as a Discord message."""
    return text[:4000]


class _QueryVectors:
    """The query vectors of the latest messages: each embedded once, off the event loop.

    :meth:`Agent.prefetch` starts a message's embedding as it arrives; the reply's
    memory search then awaits the same task. A cache of tasks, never the truth: a
    miss embeds again, and a failed embedding is not kept (the search then ranks by
    full text, as without a vector).
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._tasks: OrderedDict[tuple[str, str], asyncio.Task[list[float] | None]] = OrderedDict()

    def get(self, embedder: Embedder, query: str) -> asyncio.Task[list[float] | None]:
        key = (embedder.name, query)
        task = self._tasks.get(key)
        if task is not None and not (task.done() and (task.cancelled() or task.result() is None)):
            self._tasks.move_to_end(key)
            return task
        task = asyncio.create_task(self._embed(embedder, query))
        self._tasks[key] = task
        while len(self._tasks) > self._size:
            self._tasks.popitem(last=False)
        return task

    def cancel(self) -> None:
        """Cancel the embeddings still running (nobody will wait for them)."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    @staticmethod
    async def _embed(embedder: Embedder, query: str) -> list[float] | None:
        try:
            # Cleaned as the search cleans it, so the vector is the one it would make.
            text = clean_text(query, "query", max_chars=MAX_QUERY_CHARS)
            return await embed_query(embedder, text)
        except Exception as exc:  # the search embeds it again, or ranks by full text
            _log.warning("query embedding failed early (%s)", type(exc).__name__)
            return None


class _Cached:
    """The transport's cache write a reply waits for before reading the cache (once)."""

    def __init__(self, write: Awaitable[object] | None) -> None:
        self._write = write
        self._done: asyncio.Future[object] | None = None

    async def wait(self) -> None:
        if self._write is None:
            return
        if self._done is None:
            self._done = asyncio.ensure_future(self._write)
        await asyncio.wait([self._done])
        if not self._done.cancelled() and self._done.exception() is not None:
            # The transport reports its own failure (the bot's cache logs it): go on.
            _log.warning("the message cache write failed: %r", self._done.exception())


class _Reads:
    """What the stores gave for one reply, and what they could not give."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.ms: dict[str, float] = {}

    async def guard(self, step: str, what: str, read: Awaitable[Any], empty: Any) -> Any:
        began = time.perf_counter()
        try:
            return await read
        except (BarkeeperError, OSError) as exc:
            _log.warning("reply goes on without %s: %s", what, exc)
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return empty
        finally:
            self.ms[f"context.{step}"] = round(_ms(began), 3)


class Agent:
    """Answers messages: context within a budget, the model, tools, runs, memory work.

    Args:
        model: The chat model; streaming is used when it is a
            :class:`~barkeeper.llm.StreamingChatModel` and a reply asks for it.
        sessions: Where runs are recorded and earlier exchanges read.
        messages: The channel message cache (history, reply chains); ``None``: none.
        memories: The memory store (the author's memories); ``None``: none.
        index: The turn index (the history-search tool); ``None``: no such tool.
        users: The user store (the member-profile tool).
        guilds: The guild store (nicknames and roles in profiles).
        memory_sink: Receives each answered message for memory work (e.g.
            ``MemoryWorker.submit``); called after the reply, never awaited by it.
        companion: Mood, relationship, style and opinions: read before the reply as
            prompt fragments (within the persona's share), moved after it in the
            background; ``None``: none (``BARKEEPER_COMPANION=false``).
        config: How to reply.
        clock: The current time (for tests); UTC now by default.
        close_model: Close ``model`` in :meth:`aclose` (when the agent built it).

    Raises:
        ConfigError: The persona does not fit its share of the budget, or the time
            zone is unknown.

    Example::

        agent = Agent(model, sessions=SessionStore(db), messages=MessageStore(db),
                      memories=memory_store, memory_sink=worker.submit)
        answer = await agent.reply(request)                 # all at once
        async for piece in agent.stream(request):           # or as it is written
            ...
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        sessions: SessionStore,
        messages: MessageStore | None = None,
        memories: MemoryStore | None = None,
        index: MessageIndex | None = None,
        users: UserStore | None = None,
        guilds: GuildStore | None = None,
        memory_sink: MemorySink | None = None,
        companion: Companion | None = None,
        config: AgentConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        close_model: bool = False,
    ) -> None:
        self.config = config or AgentConfig()
        self._model = model
        self._sessions = sessions
        self._messages = messages
        self._memories = memories
        self._index = index
        self._users = users
        self._guilds = guilds
        self._sink = memory_sink
        self._companion = companion
        self._clock = clock or (lambda: datetime.now(UTC))
        self._close_model = close_model
        try:
            self._zone = ZoneInfo(self.config.timezone)
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(f"unknown time zone {self.config.timezone!r}") from exc
        self._builder = self._new_builder(self.config.persona, self.config.bot_name)
        # The personas admins may choose per guild or channel (``/persona``): built now,
        # so one that does not fit its share of the budget stops the start-up.
        self._builders: dict[str, ContextBuilder] = {}
        if companion is not None:
            for persona in companion.personas.personas():
                if persona is not companion.personas.default:
                    self._builders[persona.name] = self._new_builder(
                        persona.system_prompt(), persona.name
                    )
        self._tools_on = self.config.tools
        self._states: OrderedDict[int, _UserState] = OrderedDict()
        self._vectors = _QueryVectors()
        self._background: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Agent {self.config.agent_id!r} model={self._model!r} cached={len(self._states)}>"

    def _new_builder(self, persona: str, bot_name: str) -> ContextBuilder:
        return ContextBuilder(
            persona=persona,
            rules=CONTEXT_RULES,
            budget=self.config.budget,
            model=self.config.model,
            timezone=self._zone,
            bot_name=bot_name,
        )

    @property
    def companion(self) -> Companion | None:
        """The companion (mood, relationships, settings…), or ``None`` when off."""
        return self._companion

    @property
    def index(self) -> MessageIndex | None:
        """The turn index the history-search tool reads (``None``: no such tool).

        The bot keeps its channels indexed with this same one (and its embedder).
        """
        return self._index

    @property
    def cached_users(self) -> int:
        """Users whose state is in the LRU cache (at most ``max_agents``)."""
        return len(self._states)

    @property
    def tools_enabled(self) -> bool:
        """Whether replies offer tools (off once the endpoint refused them)."""
        return self._tools_on

    # --- the public calls ----------------------------------------------------------------

    async def reply(
        self,
        request: ReplyRequest,
        *,
        on_text: TextCallback | None = None,
        deliver: Callable[[str], object] | None = None,
        cached: Awaitable[object] | None = None,
    ) -> AgentReply:
        """Answer one message.

        Args:
            request: The message and what the transport knows about it.
            on_text: Receives the reply's text piece by piece as the model writes it
                (then the apology, if the model fails). ``None``: no streaming.
            deliver: Receives the reply's whole, final text before the run is
                recorded (the bot sends it there), so the person does not wait for
                the bookkeeping. If it raises, the run is still recorded (with the
                error), then the exception propagates.
            cached: The transport's write of the message cache still under way (the
                bot's durable write of the message and its memory work): the channel
                history and the reply chain are read, and the model asked, only once
                it is done; the other reads (memories, earlier exchanges, companion)
                start meanwhile. Its failure is the transport's to report: the reply
                goes on. ``None``: nothing to wait for.

        Returns:
            The reply's text, its record, and the stored run.

        Raises:
            InvalidInputError: ``request`` is not a :class:`ReplyRequest`.
        """
        if not isinstance(request, ReplyRequest):
            raise InvalidInputError("reply() takes a ReplyRequest")
        state = self._state(request.author.user_id)
        async with state.lock:  # one user's replies in order (within this process)
            return await self._reply(request, state, on_text, deliver, _Cached(cached))

    def prefetch(self, text: str) -> None:
        """Start the work a reply to ``text`` can begin before anything else is known.

        Embeds the message for the memory search now, off the event loop, while the
        transport does its own work (caching the message, finding the author); the
        reply to the same text then uses that vector instead of embedding again.
        Optional: a reply without it embeds the message itself. Must be called with
        an event loop running.
        """
        if self._memories is not None and self._wants_memories(text):
            self._vectors.get(self._memories.embedder, _memory_query(text))

    def stream(self, request: ReplyRequest) -> ReplyStream:
        """Answer one message as an async iterator of text pieces.

        Must be called with an event loop running. After the iteration,
        ``await stream.result()`` gives the :class:`AgentReply`.
        """
        return ReplyStream(self, request)

    async def last_run(self, user_id: int, *, place: Place | None = None) -> AgentRun | None:
        """The user's newest run (in ``place``'s channel, or anywhere): what ``/why`` shows.

        Read :class:`RunRecord.from_metrics(run.metrics) <RunRecord>` for its details.
        """
        return await self._sessions.get_last_user_run(
            user_id,
            agent_id=self.config.agent_id,
            channel_id=place.channel_id if place is not None else None,
            any_channel=place is None,
        )

    async def drain(self) -> None:
        """Wait for the background work started by replies so far (memory hand-off)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish background work; close the model if the agent owns it."""
        await self.drain()
        self._vectors.cancel()
        if self._close_model:
            close = getattr(self._model, "aclose", None)
            if close is not None:
                await close()

    # --- one reply -----------------------------------------------------------------------

    async def _reply(
        self,
        request: ReplyRequest,
        state: _UserState,
        on_text: TextCallback | None,
        deliver: Callable[[str], object] | None,
        cached: _Cached,
    ) -> AgentReply:
        started = time.perf_counter()
        now = self._clock()
        reads = _Reads()
        at_risk = shows_risk(request.message.text)
        if at_risk:  # flagged without the message's text
            _log.warning("run flagged: crisis (user %s)", request.author.user_id)

        # The session's id is needed only to record the run, after the reply: the
        # earlier exchanges are read by the session's key, in the same round trip.
        session_id = state.sessions.get(request.place.channel_id)
        runs, memories, history, chain, inner = await asyncio.gather(
            reads.guard("runs", "earlier exchanges", self._read_runs(request), []),
            reads.guard("memories", "memories", self._read_memories(request, reads), []),
            reads.guard("history", "channel history", self._read_history(request, cached), []),
            reads.guard("chain", "the reply chain", self._read_chain(request, cached), []),
            self._read_companion(request, now, reads),
        )
        await cached.wait()  # the message is kept before the model is asked
        building = time.perf_counter()
        tools = list(TOOL_DEFINITIONS) if self._tools_on else None
        builder = self._builder
        if inner is not None and inner.persona is not None:
            builder = self._builders.get(inner.persona.name, builder)
        notice = self._reminder_notice(request)
        fragments = inner.fragments if inner is not None and not at_risk else ()
        if notice is not None and inner is not None and inner.reminder is not None:
            fragments = fragments[1:]  # the companion's reminder line (first): ours instead
        context = builder.build(
            request,
            now=now,
            memories=memories,
            history=history,
            history_complete=len(history) < self.config.history_lines,
            chain=chain,
            starter=request.thread_starter,
            runs=runs,
            tools=tools,
            # At risk: no mood, no banter, no style hints; the care instruction instead.
            companion=fragments,
            care=CARE_INSTRUCTION.format(resources=self.config.crisis_resources)
            if at_risk
            else None,
            associations=[a.describe() for a in inner.associations]
            if inner is not None and not at_risk
            else (),
            notice=notice,
        )
        context_ms = _ms(started)
        reads.ms["context.build"] = round(_ms(building), 3)

        answer = await self._answer(
            request, context, history, chain, tools, now, on_text, at_risk=at_risk
        )
        text = answer.text
        if at_risk:
            text = await self._with_care(text, answer.failed, on_text)
        errors = reads.errors + answer.errors
        record = RunRecord(
            model=answer.model or (self.config.model or ""),
            prompt_tokens=answer.prompt_tokens or context.tokens,
            completion_tokens=answer.completion_tokens,
            context_tokens=context.tokens,
            latency_ms={
                "context": round(context_ms, 3),
                "model": round(answer.model_ms, 3),
                "tools": round(answer.tools_ms, 3),
                "total": round(_ms(started), 3),
                **reads.ms,
            },
            memory_ids=tuple(context.memory_ids),
            message_ids=tuple(context.message_ids),
            run_ids=tuple(context.run_ids),
            cut=context.cut,
            tool_calls=tuple(answer.tool_records),
            errors=tuple(errors),
            channel_id=request.place.channel_id,
            guild_id=request.place.guild_id,
            message_id=request.message.id,
            streamed=on_text is not None,
            flags=("crisis",) if at_risk else (),
        )
        undelivered: Exception | None = None
        if deliver is not None:
            try:
                outcome = deliver(text)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # recorded below, then raised to the transport
                undelivered = exc
                record = replace(
                    record, errors=(*record.errors, f"delivery failed: {type(exc).__name__}")
                )
        run = None
        if not request.incognito:
            run = await self._record(state, request, session_id, text, answer, record)
            self._after(request, context)
            if self._companion is not None and not answer.failed:
                self._spawn(
                    self._companion.after_reply(
                        request.author.user_id,
                        request.place.guild_id,
                        request.message.text,
                        text,
                        features=inner.features if inner is not None else None,
                        now=now,
                    )
                )
        if undelivered is not None:
            raise undelivered
        return AgentReply(text=text, record=record, run=run, failed=answer.failed)

    async def _answer(
        self,
        request: ReplyRequest,
        context: BuiltContext,
        history: Sequence[HistoryLine],
        chain: Sequence[QuotedMessage],
        tools: list[dict[str, Any]] | None,
        now: datetime,
        on_text: TextCallback | None,
        *,
        at_risk: bool = False,
    ) -> _Answer:
        answer = _Answer()
        transcript: list[ChatMessage] = list(context.messages)
        rounds = self.config.max_tool_rounds if tools else 0
        toolbox: Toolbox | None = None
        parts: list[str] = []

        listener = on_text

        async def emit(piece: str) -> None:
            nonlocal listener
            parts.append(piece)
            if listener is None:
                return
            try:
                outcome = listener(piece)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # e.g. a Discord edit refused: the reply goes on
                _log.warning("on_text failed (%s); the rest of the reply is not streamed", exc)
                answer.errors.append(f"on_text failed: {type(exc).__name__}: {exc}")
                listener = None

        try:
            for round_ in range(rounds + 1):
                final = round_ == rounds
                began = time.perf_counter()
                result = await self._ask(
                    transcript,
                    tools if self._tools_on else None,
                    emit,
                    # the last round must answer: tools stay defined (the transcript
                    # holds tool messages) but may not be called
                    tool_choice="none" if final and tools and self._tools_on else None,
                    stream=on_text is not None,
                    first=round_ == 0,
                    answer=answer,
                )
                answer.model_ms += _ms(began)
                answer.add_usage(result)
                if not result.tool_calls or final or not self._tools_on:
                    break
                transcript.append(result.to_message())
                began = time.perf_counter()
                if toolbox is None:
                    toolbox = self._toolbox(request, history, chain, now)
                for call in result.tool_calls:
                    outcome = await toolbox.call(call)
                    answer.tool_records.append(outcome.record)
                    transcript.append(
                        {"role": "tool", "tool_call_id": call.id, "content": outcome.text}
                    )
                answer.tools_ms += _ms(began)
            if not "".join(parts).strip():
                raise _EmptyReply(_EMPTY_REPLY)
        except (LLMError, _EmptyReply) as exc:
            _log.warning("reply to user %s failed: %s", request.author.user_id, exc)
            answer.failed = True
            answer.errors.append(f"{type(exc).__name__}: {exc}")
            # At risk, no in-character apology: the care text with the resources follows
            # (``_with_care``), and nothing may come before it but what was written.
            if not at_risk:
                sorry = apology("rate" if isinstance(exc, LLMRateLimitError) else "other")
                await emit(("\n\n" if "".join(parts).strip() else "") + sorry)
        answer.text = "".join(parts)
        answer.transcript = transcript[len(context.messages) :]
        return answer

    async def _ask(
        self,
        messages: list[ChatMessage],
        tools: list[dict[str, Any]] | None,
        emit: Callable[[str], Awaitable[None]],
        *,
        tool_choice: str | None,
        stream: bool,
        first: bool,
        answer: _Answer,
    ) -> ChatResult:
        try:
            return await self._call_model(
                messages, tools, emit, tool_choice=tool_choice, stream=stream
            )
        except LLMError as exc:
            # A plain LLMError is the endpoint refusing the request (HTTP 400/404…): on
            # the first call with tools, most likely a model without function calling.
            if not (first and tools and type(exc) is LLMError):
                raise
            _log.warning("the endpoint refused tools (%s); replying without them from now", exc)
            self._tools_on = False
            answer.errors.append(f"tools refused, turned off: {exc}")
            return await self._call_model(messages, None, emit, tool_choice=None, stream=stream)

    async def _call_model(
        self,
        messages: list[ChatMessage],
        tools: list[dict[str, Any]] | None,
        emit: Callable[[str], Awaitable[None]],
        *,
        tool_choice: str | None,
        stream: bool,
    ) -> ChatResult:
        options: dict[str, Any] = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "max_tokens": self.config.reply_max_tokens,
            "tools": tools,
            "tool_choice": tool_choice if tools else None,
        }
        # Streaming costs a parsed chunk per few tokens: only when someone reads them.
        if stream and isinstance(self._model, StreamingChatModel):
            return await self._model.stream(messages, on_text=emit, **options)
        result = await self._model.complete(messages, **options)
        if result.content:
            await emit(result.content)
        return result

    def _toolbox(
        self,
        request: ReplyRequest,
        history: Sequence[HistoryLine],
        chain: Sequence[QuotedMessage],
        now: datetime,
    ) -> Toolbox:
        people: dict[int, str] = {}
        if request.place.kind == "guild":
            for line in history:
                people[line.author_id] = line.author_name
            for quoted in (*chain, *([request.thread_starter] if request.thread_starter else [])):
                people[quoted.author_id] = quoted.author_name
        if request.author.discord_id is not None:
            people[request.author.discord_id] = request.author.display_name
        return Toolbox(
            request,
            now=now,
            timezone=self._zone,
            people=people,
            memories=self._memories,
            index=self._index,
            users=self._users,
            guilds=self._guilds,
            max_tokens=max(200, self.config.budget.total // 10),
            model=self.config.model,
        )

    # --- reading -------------------------------------------------------------------------

    async def _session(self, state: _UserState, request: ReplyRequest) -> str:
        key = request.place.channel_id
        cached = state.sessions.get(key)
        if cached is not None:
            return cached
        session = await self._sessions.get_or_create_session(
            self.config.agent_id, request.author.user_id, key
        )
        state.sessions[key] = session.id
        return session.id

    def _wants_memories(self, text: str) -> bool:
        return self._memories is not None and self.config.memories > 0 and bool(text.strip())

    async def _read_memories(self, request: ReplyRequest, reads: _Reads) -> list[Memory]:
        text = request.message.text
        if self._memories is None or not self._wants_memories(text):
            return []
        budget = self.config.budget
        query = _memory_query(text)
        began = time.perf_counter()
        vector = await self._vectors.get(self._memories.embedder, query)
        reads.ms["context.embedding"] = round(_ms(began), 3)
        hits = await self._memories.search(
            request.author.user_id,
            query,
            k=min(self.config.memories, 200),
            token_budget=max(1, int(budget.total * budget.memory_share)),
            memory_types=memory_types_for(request.place.kind, MEMORY_TYPES),  # type: ignore[arg-type]
            query_embedding=vector,
        )
        return [hit.item for hit in hits]

    async def _read_history(self, request: ReplyRequest, cached: _Cached) -> list[HistoryLine]:
        channel = request.place.channel_id
        if self._messages is None or channel is None or self.config.history_lines == 0:
            return []
        await cached.wait()
        rows = await self._messages.get_context(
            channel, before=request.message.id, limit=self.config.history_lines
        )
        # By key rather than property: a hundred rows per reply, on its path.
        return [
            HistoryLine(
                r["message_id"],
                r["author_id"],
                r["author_name"],
                r["content"],
                snowflake_time(r["message_id"]),
                r["author_is_bot"],
            )
            for r in rows
        ]

    async def _read_chain(self, request: ReplyRequest, cached: _Cached) -> list[QuotedMessage]:
        if request.reply_chain:
            return list(request.reply_chain)
        parent = request.message.reply_to_id
        if self._messages is None or parent is None:
            return []
        await cached.wait()
        chain: list[QuotedMessage] = []
        seen: set[int] = set()
        while (
            parent is not None and parent not in seen and len(chain) < self.config.reply_chain_depth
        ):
            seen.add(parent)
            stored = await self._messages.get(parent)
            # Only links in the same channel: a reply cannot pull in another channel.
            if stored is None or stored.channel_id != request.place.channel_id:
                break
            chain.append(
                QuotedMessage(
                    stored.message_id,
                    stored.author_id,
                    stored.author_name,
                    stored.content,
                    snowflake_time(stored.message_id),
                    stored.author_is_bot,
                )
            )
            parent = stored.reply_to_id
        chain.reverse()
        return chain

    async def _read_runs(self, request: ReplyRequest) -> list[AgentRun]:
        if self.config.history_runs == 0:
            return []
        return await self._sessions.get_recent_runs_for(
            self.config.agent_id,
            request.author.user_id,
            request.place.channel_id,
            self.config.history_runs,
        )

    # --- after the reply -----------------------------------------------------------------

    async def _record(
        self,
        state: _UserState,
        request: ReplyRequest,
        session_id: str | None,
        text: str,
        answer: _Answer,
        record: RunRecord,
    ) -> AgentRun | None:
        transcript: list[Mapping[str, Any]] = [
            {"role": "user", "content": request.message.text},
            *answer.transcript,
            {"role": "assistant", "content": text},
        ]
        for attempt in range(2):
            try:
                if session_id is None:
                    state.sessions.pop(request.place.channel_id, None)
                    session_id = await self._session(state, request)
                return await self._sessions.add_run(
                    session_id,
                    input=request.message.text,
                    output=text,
                    messages=transcript,
                    metrics=record.to_metrics(),
                    status="error" if answer.failed else "completed",
                )
            except NotFoundError:
                # The cached session was deleted (the user was forgotten meanwhile):
                # find or make it again, once.
                session_id = None
                if attempt:
                    _log.warning("run not recorded: user %s is gone", request.author.user_id)
            except (BarkeeperError, OSError) as exc:
                _log.warning("run not recorded for user %s: %s", request.author.user_id, exc)
                return None
        return None

    async def _with_care(self, text: str, failed: bool, on_text: TextCallback | None) -> str:
        """The reply to a message at risk: never without the resources, never an
        in-character apology in place of care. When the model failed, the resources
        come first (before any word about the failure), and nothing in persona is said."""
        resources = self.config.crisis_resources
        if failed:
            addition = ("\n\n" if text.strip() else "") + (
                f"{resources}\n\nI'm having trouble answering properly right now, but I "
                "don't want to leave this unsaid: what you wrote matters, and you deserve "
                "support now. Please reach out to one of them, or to someone you trust, today."
            )
        elif resources not in text:
            addition = f"\n\n{resources}"
        else:
            return text
        if on_text is not None:
            try:
                outcome = on_text(addition)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                _log.warning("on_text failed while adding crisis resources: %s", exc)
        return text + addition

    async def _read_companion(
        self, request: ReplyRequest, now: datetime, reads: _Reads
    ) -> CompanionContext | None:
        if self._companion is None:
            return None
        read = self._companion.before_reply(
            request.author.user_id,
            request.place.guild_id,
            request.message.text,
            name=request.author.display_name,
            channel_id=request.place.channel_id,
            now=now,
        )
        inner: CompanionContext | None = await reads.guard("companion", "the companion", read, None)
        return inner

    def _reminder_notice(self, request: ReplyRequest) -> str | None:
        """The fixed line that a reminder the message asks for will not be set, when
        nothing would schedule it: an incognito message (nothing from it is kept), no
        companion (``BARKEEPER_COMPANION=false``: no follow-ups), or the terminal (nothing
        delivers there). Otherwise the companion's own fragment says why one will not be
        set (:func:`~barkeeper.companion.reminder_trouble`)."""
        if not asks_for_reminder(request.message.text):
            return None
        if request.incognito:
            return reminder_notice("incognito")
        if self._companion is None or request.place.kind == "terminal":
            return reminder_notice("off_here")
        return None

    def _after(self, request: ReplyRequest, context: BuiltContext) -> None:
        """Memory work and bookkeeping, in the background: the reply does not wait."""
        if self._sink is not None and request.message.text.strip():
            try:
                message = UserMessage(
                    user_id=request.author.user_id,
                    text=request.message.text,
                    message_id=request.message.id,
                    guild_id=request.place.guild_id,
                    author_name=request.author.display_name,
                    context=tuple(context.history_text[-5:]),
                    created_at=request.message.created_at,
                    channel_id=request.place.channel_id,
                )
                outcome = self._sink(message)
                if inspect.isawaitable(outcome):
                    self._spawn(outcome)
            except Exception:  # the sink is the caller's: its failure must not cost the reply
                _log.exception("memory hand-off failed for message %s", request.message.id)
        if self._memories is not None and context.memory_ids:
            self._spawn(self._memories.mark_referenced(request.author.user_id, context.memory_ids))

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                _log.exception("background work after a reply failed")

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _state(self, user_id: int) -> _UserState:
        state = self._states.get(user_id)
        if state is None:
            state = self._states[user_id] = _UserState()
            while len(self._states) > self.config.max_agents:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(user_id)
        return state


@dataclass(slots=True)
class _Answer:
    text: str = ""
    failed: bool = False
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_ms: float = 0.0
    tools_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    tool_records: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[ChatMessage] = field(default_factory=list)

    def add_usage(self, result: ChatResult) -> None:
        self.model = result.model or self.model
        if result.usage is not None:
            self.prompt_tokens += result.usage.prompt_tokens
            self.completion_tokens += result.usage.completion_tokens


class _EmptyReply(Exception):
    """The model answered without any text."""


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class ReplyStream:
    """A reply as an async iterator of text pieces (see :meth:`Agent.stream`).

    The reply runs in its own task: leaving the iteration early does not cancel it
    (the run is still recorded); :meth:`result` waits for it.
    """

    def __init__(self, agent: Agent, request: ReplyRequest) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._task = asyncio.create_task(agent.reply(request, on_text=self._queue.put_nowait))
        self._task.add_done_callback(lambda _: self._queue.put_nowait(None))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        while (piece := await self._queue.get()) is not None:
            yield piece
        await self._task  # raises what the reply raised

    async def result(self) -> AgentReply:
        """The whole reply, once it is done."""
        return await self._task
