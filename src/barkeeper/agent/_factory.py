""":func:`build_agent`: the reply pipeline on a database, configured by the settings."""

from __future__ import annotations

from typing import Any

from barkeeper.agent._agent import Agent, AgentConfig, MemorySink
from barkeeper.companion import Companion, GuildStore, UserStore, load_catalog, load_persona
from barkeeper.config import Settings
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.history import MessageStore
from barkeeper.learning import build_embedder
from barkeeper.llm import ChatModel, OpenAIChatModel, load_token_tables
from barkeeper.memory import MemoryStore
from barkeeper.turns import MessageIndex

__all__ = ["build_agent", "build_chat_model"]


def build_chat_model(settings: Settings) -> OpenAIChatModel:
    """The chat model the settings name.

    Endpoint: ``BARKEEPER_LLM_BASE_URL``, else ``OPENAI_BASE_URL``, else Groq's; key:
    see :meth:`~barkeeper.config.Settings.chat_llm_api_key`; model
    ``BARKEEPER_LLM_MODEL``; ``BARKEEPER_LLM_TIMEOUT`` and ``BARKEEPER_LLM_MAX_RETRIES``.
    """
    return OpenAIChatModel(
        base_url=settings.llm_base_url,
        api_key=settings.chat_llm_api_key(),
        model=settings.llm_model,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
    )


def build_agent(
    db: Database,
    settings: Settings,
    *,
    model: ChatModel | None = None,
    memories: MemoryStore | None = None,
    memory_sink: MemorySink | None = None,
    **config: Any,
) -> Agent:
    """An :class:`Agent` on ``db`` with every store, configured by ``settings``.

    Args:
        db: The database (migrated).
        settings: The settings (``BARKEEPER_CONTEXT_*``, ``TEAM_LEADER_CONTEXT_LIMIT``,
            ``AGENT_HISTORY_RUNS``, ``MAX_AGENTS``, ``DISCORD_TIMEZONE``, the LLM's;
            ``BARKEEPER_INDEX_HISTORY=false``: no turn index, the history-search tool
            finds nothing; ``BARKEEPER_INDEX_PIECES=false``: the index embeds no
            sentences).
        model: The chat model if already built (else :func:`build_chat_model`, which
            the agent then closes in :meth:`Agent.aclose`).
        memories: The memory store if already built (its embedder is shared with the
            turn index); else one with the configured embedder.
        memory_sink: Where answered messages go for memory work
            (e.g. ``MemoryWorker.submit``).
        **config: :class:`AgentConfig` fields that win over the settings.

    Raises:
        ConfigError: A setting is invalid (an unknown time zone, a persona over its share),
            or the token tables cannot be loaded.
    """
    # Load the token tables now, at start-up: the context is counted with the model's
    # and search with the default one, and building a table holds the GIL for a second.
    load_token_tables(settings.llm_model, None)
    store = memories if memories is not None else MemoryStore(db, build_embedder(settings))
    return Agent(
        model if model is not None else build_chat_model(settings),
        sessions=SessionStore.from_settings(db, settings),
        messages=MessageStore(db),
        memories=store,
        # BARKEEPER_INDEX_HISTORY=false: no channel is indexed, so none is searched.
        index=(
            MessageIndex(db, store.embedder, pieces=settings.index_pieces)
            if settings.index_history
            else None
        ),
        users=UserStore(db),
        guilds=GuildStore(db),
        memory_sink=memory_sink,
        companion=_companion(db, settings) if settings.companion else None,
        config=AgentConfig.from_settings(settings, **config),
        close_model=model is None,
    )


def _companion(db: Database, settings: Settings) -> Companion:
    persona = load_persona(settings.persona_file)
    return Companion(
        db,
        persona,
        mood_decay=settings.mood_decay,
        features=settings.companion_features(),
        personas=load_catalog(persona, settings.personas_dir),
    )
