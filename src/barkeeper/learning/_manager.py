""":class:`MemoryManager`: from one user message to changes in that user's memories.

The pipeline of one message (:meth:`MemoryManager.process`):

1. an explicit request ("remember that …", "forget that …", "forget everything") is
   carried out at once, on the author's memories only;
2. cheap skips (:func:`~barkeeper.learning._extraction.skip_reason`) and sampling at the
   extraction rate (:func:`~barkeeper.learning._extraction.is_sampled`) need no model;
3. the memory model extracts typed facts (:class:`~barkeeper.learning._extraction.FactExtractor`);
4. they are consolidated against the author's most similar memories
   (:class:`~barkeeper.learning._consolidation.Consolidator`).

Isolation is structural: the only user id this module ever passes to the store is
the message's ``user_id`` (its author). Nothing in the text, and nothing the model
answers, can name another user. Model failures never escape :meth:`process`: they
are logged and reported in the :class:`MemoryOutcome` (``retryable`` for rate limits
and outages), and nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self

from barkeeper.errors import (
    ForgottenContentError,
    InvalidInputError,
    LLMError,
    LLMOutputError,
    LLMRateLimitError,
    LLMUnavailableError,
    NotFoundError,
)
from barkeeper.learning._commands import MemoryCommand, parse_memory_command
from barkeeper.learning._consolidation import (
    DEFAULT_K,
    Consolidator,
    MemoryChange,
    content_words,
    duplicate_kind,
)
from barkeeper.learning._extraction import (
    CandidateEvent,
    CandidateFact,
    FactExtractor,
    SkipReason,
    UserMessage,
    is_sampled,
    skip_reason,
)
from barkeeper.learning._reminders import birthday_event, parse_reminder
from barkeeper.llm import ChatModel
from barkeeper.memory import Memory, MemoryStore, MemoryType

__all__ = ["AsyncCloseable", "EventSink", "MemoryManager", "MemoryOutcome", "OutcomeStatus"]

_log = logging.getLogger(__name__)

OutcomeStatus = Literal["skipped", "not_sampled", "extracted", "remembered", "forgotten", "failed"]
"""What became of a message: see :class:`MemoryOutcome`."""

# Share of a topic's content words a memory must contain to be forgotten with it.
_FORGET_MATCH = 0.7
_MAX_CONTEXT_CHARS = 500


class AsyncCloseable(Protocol):
    """Something holding connections, released by ``await aclose()``."""

    async def aclose(self) -> None:
        """Release the connections."""
        ...


class EventSink(Protocol):
    """Where events found in a message go (the bot's follow-up scheduler)."""

    async def schedule_events(self, message: UserMessage, events: Sequence[CandidateEvent]) -> int:
        """Schedule ``events`` found in ``message`` for its author; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class MemoryOutcome:
    """What processing one message did.

    Attributes:
        status: ``skipped`` (a cheap rule), ``not_sampled`` (outside the extraction
            rate), ``extracted`` (the model was asked; see ``changes``),
            ``remembered`` / ``forgotten`` (an explicit request), ``failed``.
        skip_reason: Why it was skipped.
        command: The explicit request carried out, if any.
        facts: The candidate facts the model found.
        changes: The changes made to the author's memories.
        error: What went wrong, when ``failed``.
        retryable: The failure was a rate limit or an outage: trying later may work.
        events: The follow-ups, reminders and birthdays found (handed to the event
            sink, which resolves their days and may decline some).
    """

    status: OutcomeStatus
    skip_reason: SkipReason | None = None
    command: MemoryCommand | None = None
    facts: tuple[CandidateFact, ...] = ()
    changes: tuple[MemoryChange, ...] = ()
    error: str | None = None
    retryable: bool = False
    events: tuple[CandidateEvent, ...] = ()


class MemoryManager:
    """Extraction, consolidation and explicit requests for one memory store.

    Args:
        store: Where memories live.
        model: The memory model (a fast, cheap one; see ``BARKEEPER_MEMORY_MODEL``).
        extraction_rate: Share of eligible messages examined, 0..1
            (``BARKEEPER_FACT_EXTRACTION_RATE``, 0.4 by default).
        k: Similar memories each new fact is consolidated against.
        min_similarity: See :class:`~barkeeper.learning._consolidation.Consolidator`.
        extractor: A configured extractor instead of the default one.
        consolidator: A configured consolidator instead of the default one.
        owns: What :meth:`aclose` closes: clients opened *for* this manager
            (:func:`~barkeeper.learning.build_memory_manager` passes the model
            and embedder it built). Nothing else is closed: a model or store you
            pass in stays yours.

    Raises:
        InvalidInputError: ``extraction_rate`` is outside 0..1.

    Example::

        async with MemoryManager(MemoryStore(db, MiniLMEmbedder()), memory_model) as manager:
            outcome = await manager.process(
                UserMessage(user_id=7, text="I moved to Berlin last month", message_id=123)
            )
    """

    def __init__(
        self,
        store: MemoryStore,
        model: ChatModel,
        *,
        extraction_rate: float = 0.4,
        k: int = DEFAULT_K,
        min_similarity: float = 0.3,
        extractor: FactExtractor | None = None,
        consolidator: Consolidator | None = None,
        owns: Sequence[AsyncCloseable] = (),
        events: EventSink | None = None,
    ) -> None:
        if not 0.0 <= extraction_rate <= 1.0:
            raise InvalidInputError(f"extraction_rate must be within 0..1, not {extraction_rate}")
        self._owned = list(owns)
        self.events = events
        self.store = store
        self.extraction_rate = extraction_rate
        self.extractor = extractor or FactExtractor(model)
        self.consolidator = consolidator or Consolidator(
            store, model, k=k, min_similarity=min_similarity
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what this manager owns (see ``owns``); a second call does nothing.

        Each is closed even if closing another fails (that error is raised after).
        """
        owned, self._owned = self._owned, []
        async with AsyncExitStack() as stack:
            for resource in reversed(owned):  # closed in the order given
                stack.push_async_callback(resource.aclose)

    async def process(self, message: UserMessage) -> MemoryOutcome:
        """Learn from one message of ``message.user_id``; change only their memories.

        Returns:
            What was done. Model failures, and explicit requests that cannot be
            carried out (a fact too long to remember), are reported here, never raised.

        Raises:
            NotFoundError: No user has ``message.user_id``.
            DatabaseError: The database failed. A message's changes are written in
                one transaction, so none of them was kept.
        """
        command = parse_memory_command(message.text)
        reminder = parse_reminder(message.text) if self.events is not None else None
        found: list[CandidateEvent] = [reminder] if reminder is not None else []
        if reminder is not None:
            await self._schedule(message, found)
        if command is not None:
            try:
                outcome = await self.execute(message, command)
                births = self._birthdays(outcome.changes)
                await self._schedule(message, births)
                return outcome
            except InvalidInputError as exc:  # e.g. a fact too long to be one memory
                _log.info("memory request of message %s refused: %s", message.message_id, exc)
                return MemoryOutcome("failed", command=command, error=str(exc))
        reason = skip_reason(message.text)
        if reason is not None:
            return MemoryOutcome("skipped", skip_reason=reason, events=tuple(found))
        if not is_sampled(message.sampling_key, self.extraction_rate):
            return MemoryOutcome("not_sampled", events=tuple(found))
        facts: list[CandidateFact] = []
        try:
            facts, events = await self.extractor.extract_all(message)
            if reminder is not None:  # the request was scheduled already, by the rule
                events = [e for e in events if e.kind == "birthday"]
            if self.events is not None:
                await self._schedule(message, events)
                found.extend(events)
            if not facts:
                return MemoryOutcome("extracted", events=tuple(found))
            changes = await self.consolidator.consolidate(
                message.user_id,
                facts,
                source_message_id=message.message_id,
                guild_id=message.guild_id,
                extraction_context=message.text[:_MAX_CONTEXT_CHARS],
            )
        except LLMError as exc:
            return self._failed(message, exc, facts)
        except ForgottenContentError:
            # The author was forgotten after writing it (the database refused the facts).
            _log.info(
                "message %s: its author was forgotten since; nothing learnt", message.message_id
            )
            return MemoryOutcome("skipped", skip_reason="forgotten", facts=tuple(facts))
        births = self._birthdays(changes)
        await self._schedule(message, births)
        return MemoryOutcome(
            "extracted",
            facts=tuple(facts),
            changes=tuple(changes),
            events=tuple(found + births),
        )

    def _birthdays(self, changes: Sequence[MemoryChange]) -> list[CandidateEvent]:
        """Yearly birthday events from memories just added or updated."""
        if self.events is None:
            return []
        found = []
        for change in changes:
            if change.memory is not None and change.action in ("add", "update", "confirm"):
                event = birthday_event(change.memory.content)
                if event is not None:
                    found.append(event)
        return found[:1]

    async def _schedule(self, message: UserMessage, events: Sequence[CandidateEvent]) -> None:
        """Hand events to the sink; its failure never costs the memory work."""
        if self.events is None or not events:
            return
        try:
            await self.events.schedule_events(message, events)
        except Exception:
            _log.exception("scheduling events of message %s failed", message.message_id)

    @staticmethod
    def _failed(
        message: UserMessage, exc: LLMError, facts: Sequence[CandidateFact]
    ) -> MemoryOutcome:
        stage = "consolidation" if facts else "extraction"
        retryable = isinstance(exc, LLMRateLimitError | LLMUnavailableError)
        if isinstance(exc, LLMOutputError):
            _log.warning(
                "memory %s of message %s: the model's output was unusable (%s); nothing stored",
                stage,
                message.message_id,
                exc,
            )
        else:
            _log.warning(
                "memory %s of message %s failed (%s: %s); nothing stored",
                stage,
                message.message_id,
                type(exc).__name__,
                exc,
            )
        return MemoryOutcome(
            "failed", facts=tuple(facts), error=f"{type(exc).__name__}: {exc}", retryable=retryable
        )

    # --- explicit requests ----------------------------------------------------------------

    async def execute(self, message: UserMessage, command: MemoryCommand) -> MemoryOutcome:
        """Carry out an explicit request, on the author's memories only.

        Args:
            message: The message holding the request (its author is the only user
                whose memories are touched, whoever the text names).
            command: The request (from :func:`parse_memory_command`).
        """
        if command.kind == "remember":
            change = await self.remember(
                message.user_id,
                command.text,
                source_message_id=message.message_id,
                guild_id=message.guild_id,
            )
            return MemoryOutcome("remembered", command=command, changes=(change,))
        if command.kind == "forget_all":
            count = await self.store.forget_all(message.user_id)
            _log.info("forgot all %d memories of user %d at their request", count, message.user_id)
            return MemoryOutcome("forgotten", command=command)
        changes = await self.forget_matching(message.user_id, command.text)
        return MemoryOutcome("forgotten", command=command, changes=tuple(changes))

    async def remember(
        self,
        user_id: int,
        text: str,
        *,
        memory_type: MemoryType = "general",
        importance: float = 0.8,
        source_message_id: int | None = None,
        guild_id: int | None = None,
    ) -> MemoryChange:
        """Store what a user asked to be remembered (``changed_by="user"``, confidence 1).

        A live memory that already says it is confirmed instead of duplicated.

        Raises:
            InvalidInputError: The text is empty or too long.
            NotFoundError: No user has this id.
        """
        sources = [source_message_id] if source_message_id is not None else []
        for hit in await self.store.similar(user_id, text, k=5):
            if duplicate_kind(text, hit.item.content) is not None:
                try:
                    after = await self.store.update(
                        user_id,
                        hit.item.id,
                        confidence=1.0,
                        add_source_message_ids=sources,
                        changed_by="user",
                        reason="asked to remember it again",
                    )
                except NotFoundError:
                    break
                return MemoryChange("confirm", after.id, after, "user", "asked to remember")
        memory = await self.store.remember(
            user_id,
            text,
            memory_type=memory_type,
            importance=importance,
            source_message_ids=sources,
            guild_id=guild_id,
        )
        return MemoryChange("add", memory.id, memory, "user", "asked to remember")

    async def find_matching(self, user_id: int, topic: str, *, k: int = 20) -> list[Memory]:
        """The user's live memories that are about ``topic`` (most of its words in them).

        Args:
            user_id: Whose memories to look at (nobody else's are read).
            topic: What the user asked to forget, in their words.
            k: How many similar memories are examined.
        """
        wanted = content_words(topic)
        if not wanted:
            return []
        found = []
        for hit in await self.store.similar(user_id, topic, k=k):
            have = content_words(hit.item.content)
            shared = len(wanted & have) / len(wanted)
            if shared >= _FORGET_MATCH or duplicate_kind(hit.item.content, topic) is not None:
                found.append(hit.item)
        return found

    async def forget_matching(self, user_id: int, topic: str) -> list[MemoryChange]:
        """Forget (erase) the user's memories about ``topic``.

        Returns:
            One ``forget`` change per memory erased (none if nothing matched).
        """
        changes = []
        for memory in await self.find_matching(user_id, topic):
            try:
                await self.store.forget(
                    user_id, memory.id, changed_by="user", reason="asked to forget"
                )
            except NotFoundError:
                continue
            changes.append(MemoryChange("forget", memory.id, None, "user", "asked to forget"))
        _log.info("forgot %d memories of user %d at their request", len(changes), user_id)
        return changes
