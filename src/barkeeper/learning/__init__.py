"""Learning about users: extraction of typed facts, their consolidation, and the worker.

- :class:`FactExtractor`: the memory model reads a user's message (after cheap skips
  and sampling, :func:`skip_reason`, :func:`is_sampled`) and proposes
  :class:`CandidateFact` values.
- :class:`Consolidator`: each candidate is compared with the user's most similar
  memories and becomes an add, an update, an invalidation or nothing
  (:class:`MemoryChange`).
- :class:`MemoryManager`: both steps, plus explicit commands ("remember that …",
  :func:`parse_memory_command`).
- :class:`OutboxStore` and :class:`OutboxWorker`: the durable queue of messages
  waiting for the manager (PostgreSQL's ``memory_outbox``, written with the message
  cache; claimed with ``SKIP LOCKED`` by any number of processes, in order per user,
  retried with backoff, dead-lettered with the reason (:class:`DeadLetter`: listed,
  requeued in order or purged, ``barkeeper outbox``); each item's memories and its
  removal commit together). The bot and the terminal chat use them.
- :class:`MemoryWorker`: an in-memory queue (lost with the process), for library use
  (an agent's ``memory_sink``); the bot and the terminal chat do not use it.
- Events for follow-ups (:class:`CandidateEvent`): upcoming things the extraction
  finds, reminders asked for (:func:`parse_reminder`), birthdays in memories
  (:func:`birthday_event`), handed to an :class:`EventSink`.
- :func:`build_memory_manager`: all of it from settings.

Memories themselves are :mod:`barkeeper.memory`'s; this package writes them only
through :class:`barkeeper.memory.MemoryStore`.

Example::

    from barkeeper.learning import MemoryWorker, UserMessage, build_memory_manager

    manager = build_memory_manager(db, load_settings())
    async with MemoryWorker(manager) as worker:
        worker.submit(UserMessage(user_id=7, text="I moved to Porto in May"))
"""

from barkeeper.learning._background import LearnedHook
from barkeeper.learning._commands import CommandKind, MemoryCommand, parse_memory_command
from barkeeper.learning._consolidation import (
    Consolidator,
    DuplicateKind,
    MemoryChange,
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
from barkeeper.learning._factory import (
    build_embedder,
    build_memory_manager,
    build_memory_model,
    build_memory_store,
    build_outbox,
    build_outbox_worker,
)
from barkeeper.learning._manager import EventSink, MemoryManager, MemoryOutcome, OutcomeStatus
from barkeeper.learning._outbox import (
    DeadLetter,
    OutboxCounts,
    OutboxEntry,
    OutboxItem,
    OutboxStore,
)
from barkeeper.learning._outbox_worker import OutboxStats, OutboxWorker
from barkeeper.learning._reminders import birthday_event, parse_reminder
from barkeeper.learning._worker import MemoryWorker, WorkerStats

__all__ = [
    "CandidateEvent",
    "CandidateFact",
    "CommandKind",
    "Consolidator",
    "DeadLetter",
    "DuplicateKind",
    "EventSink",
    "FactExtractor",
    "LearnedHook",
    "MemoryChange",
    "MemoryCommand",
    "MemoryManager",
    "MemoryOutcome",
    "MemoryWorker",
    "OutboxCounts",
    "OutboxEntry",
    "OutboxItem",
    "OutboxStats",
    "OutboxStore",
    "OutboxWorker",
    "OutcomeStatus",
    "SkipReason",
    "UserMessage",
    "WorkerStats",
    "birthday_event",
    "build_embedder",
    "build_memory_manager",
    "build_memory_model",
    "build_memory_store",
    "build_outbox",
    "build_outbox_worker",
    "duplicate_kind",
    "is_sampled",
    "parse_memory_command",
    "parse_reminder",
    "skip_reason",
]
