"""Build the memory layer's parts from :class:`~barkeeper.config.Settings`.

- :func:`build_embedder`: ``BARKEEPER_EMBEDDER`` = ``local`` (MiniLM, the default),
  ``openai`` (the memory model's endpoint, ``BARKEEPER_EMBEDDING_MODEL``) or
  ``hashing`` (tests).
- :func:`build_memory_model`: the memory model (``BARKEEPER_MEMORY_*``, falling back
  to the chat model's endpoint and key).
- :func:`build_memory_manager`: a :class:`MemoryManager` on a database with both,
  at ``BARKEEPER_FACT_EXTRACTION_RATE``.
- :func:`build_outbox`: the memory outbox with ``BARKEEPER_MEMORY_*`` attempts,
  lease, backoff and hold; :func:`build_outbox_worker` its worker.

The caller owns what :func:`build_embedder`, :func:`build_memory_model` and
:func:`build_memory_store` build: close the model (and an OpenAI embedder) when done.
A manager from :func:`build_memory_manager` owns what was opened for it: close the
manager (``await manager.aclose()`` or ``async with``).
"""

from __future__ import annotations

from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.embeddings import (
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
)
from barkeeper.errors import ConfigError
from barkeeper.history import MessageStore
from barkeeper.learning._manager import AsyncCloseable, EventSink, MemoryManager
from barkeeper.learning._outbox import OutboxStore
from barkeeper.learning._outbox_worker import OutboxWorker
from barkeeper.llm import OpenAIChatModel, load_token_tables
from barkeeper.memory import MemoryStore

__all__ = [
    "build_embedder",
    "build_memory_manager",
    "build_memory_model",
    "build_memory_store",
    "build_outbox",
    "build_outbox_worker",
]

# Vector sizes of the OpenAI embedding models people configure most.
_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def build_embedder(settings: Settings) -> Embedder:
    """The embedder ``BARKEEPER_EMBEDDER`` names.

    Raises:
        ConfigError: The setting names no known embedder.
    """
    kind = settings.embedder
    if kind == "local":
        return MiniLMEmbedder(spin=settings.embedding_spin)
    if kind == "hashing":
        return HashingEmbedder()
    if kind == "openai":
        model = settings.embedding_model
        return OpenAIEmbedder(
            base_url=settings.memory_base_url or settings.llm_base_url,
            api_key=settings.memory_llm_api_key(),
            model=model,
            dimension=_OPENAI_DIMENSIONS.get(model, 1536),
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )
    raise ConfigError(f"BARKEEPER_EMBEDDER: unknown embedder {kind!r} (local, openai, hashing)")


def build_memory_model(settings: Settings) -> OpenAIChatModel:
    """The memory model: its own endpoint, key and model, else the chat model's."""
    return OpenAIChatModel(
        base_url=settings.memory_base_url or settings.llm_base_url,
        api_key=settings.memory_llm_api_key(),
        model=settings.memory_model,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
    )


def build_memory_store(db: Database, settings: Settings) -> MemoryStore:
    """A :class:`MemoryStore` on ``db`` with the configured embedder.

    Also loads the token table its searches count budgets with (a second or so of
    CPU, once per process), so that no search stalls the event loop loading it.

    Raises:
        ConfigError: The embedder setting is invalid, or the tokenizer package
            (quicktok-v1) is not installed.
    """
    load_token_tables()
    return MemoryStore(db, build_embedder(settings))


def build_memory_manager(
    db: Database,
    settings: Settings,
    *,
    model: OpenAIChatModel | None = None,
    events: EventSink | None = None,
) -> MemoryManager:
    """A :class:`MemoryManager` with the configured store, model and extraction rate.

    The manager owns what this opens for it, the model (unless given) and an OpenAI
    embedder, and closes them in :meth:`MemoryManager.aclose`; a ``model`` passed in
    stays open, and so does ``db``.

    Args:
        db: The database (migrated).
        settings: The settings.
        model: The memory model if already built (else :func:`build_memory_model`).
        events: Where follow-ups, reminders and birthdays found go (``None``: not looked for).

    Raises:
        ConfigError: A setting is invalid, or the tokenizer package is missing.

    Example::

        async with build_memory_manager(db, load_settings()) as manager:
            outcome = await manager.process(UserMessage(7, "I moved to Porto in May", 1))
    """
    store = build_memory_store(db, settings)
    owned: list[AsyncCloseable] = []
    if isinstance(store.embedder, OpenAIEmbedder):
        owned.append(store.embedder)
    if model is None:
        model = build_memory_model(settings)
        owned.append(model)
    return MemoryManager(
        store, model, extraction_rate=settings.fact_extraction_rate, owns=owned, events=events
    )


def build_outbox(db: Database, settings: Settings) -> OutboxStore:
    """The memory outbox with the configured attempts, lease, backoff and hold."""
    return OutboxStore(
        db,
        max_attempts=settings.memory_max_attempts,
        lease=settings.memory_lease_seconds,
        backoff=settings.memory_backoff_seconds,
        backoff_max=max(settings.memory_backoff_max_seconds, settings.memory_backoff_seconds),
        hold=settings.memory_hold_seconds,
    )


def build_outbox_worker(
    manager: MemoryManager, outbox: OutboxStore, db: Database, settings: Settings
) -> OutboxWorker:
    """An :class:`OutboxWorker` with ``BARKEEPER_MEMORY_WORKERS`` tasks (not started)."""
    return OutboxWorker(
        manager,
        outbox,
        history=MessageStore(db),
        concurrency=settings.memory_workers,
        poll_interval=settings.memory_poll_seconds,
    )
