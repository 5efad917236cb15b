"""The agent's settings: the ecosystem's LLM names, the context budget, and build_agent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from barkeeper.agent import (
    AgentConfig,
    Author,
    ContextBudget,
    IncomingMessage,
    Place,
    ReplyRequest,
    build_agent,
    build_chat_model,
)
from barkeeper.companion import UserStore
from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.errors import ConfigError
from barkeeper.testing.llm import LLMServer
from barkeeper.turns import Turn


def test_openai_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openrouter.ai/api/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-or-secret")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-secret")
    settings = load_settings()
    assert settings.llm_base_url == "https://openrouter.ai/api/v1"
    assert settings.chat_llm_api_key() == "sk-or-secret"  # the Groq key stays with Groq
    assert "secret" not in repr(settings)
    model = build_chat_model(settings)
    assert model.base_url == "https://openrouter.ai/api/v1"
    assert "secret" not in repr(model)


def test_ours_win_over_the_ecosystems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("BARKEEPER_LLM_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("BARKEEPER_LLM_API_KEY", "ours")
    settings = load_settings()
    assert settings.llm_base_url == "http://localhost:11434/v1"
    assert settings.chat_llm_api_key() == "ours"


def test_groq_stays_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-key")
    settings = load_settings()
    assert settings.llm_base_url == "https://api.groq.com/openai/v1"
    assert settings.chat_llm_api_key() == "gsk-key"
    assert settings.memory_llm_api_key() == "gsk-key"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISCORD_TIMEZONE", "Mars/Olympus_Mons"),
        ("BARKEEPER_CONTEXT_TOKENS", "10"),
        ("TEAM_LEADER_CONTEXT_LIMIT", "-1"),
        ("BARKEEPER_LLM_TEMPERATURE", "3"),
        ("BARKEEPER_CONTEXT_MEMORY_SHARE", "0.9"),
    ],
)
def test_bad_agent_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_agent_config_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BARKEEPER_CONTEXT_TOKENS": "4000",
        "TEAM_LEADER_CONTEXT_LIMIT": "30",
        "AGENT_HISTORY_RUNS": "4",
        "MAX_AGENTS": "2",
        "DISCORD_TIMEZONE": "Asia/Kolkata",
        "BARKEEPER_LLM_TOOLS": "false",
        "BARKEEPER_LLM_TEMPERATURE": "0.7",
    }.items():
        monkeypatch.setenv(name, value)
    config = AgentConfig.from_settings(load_settings(), max_agents=3)
    assert config.budget == ContextBudget(total=4000, persona_share=0.15, memory_share=0.2)
    assert (config.history_lines, config.history_runs, config.max_agents) == (30, 4, 3)
    assert (config.timezone, config.tools, config.temperature) == ("Asia/Kolkata", False, 0.7)


async def test_a_persona_over_its_share_is_a_config_error(db: Database) -> None:
    with pytest.raises(ConfigError, match="BARKEEPER_CONTEXT_PERSONA_SHARE"):
        build_agent(db, load_settings(), budget=ContextBudget(total=1000, persona_share=0.1))


async def test_build_agent_replies_from_settings(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await UserStore(db).get_or_create_discord_user(77, username="sam")
    async with LLMServer(api_key="sk-local") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        monkeypatch.setenv("BARKEEPER_EMBEDDER", "hashing")
        monkeypatch.setenv("BARKEEPER_LLM_MAX_RETRIES", "0")
        agent = build_agent(db, load_settings())
        srv.script("Evening, Sam.")
        request = ReplyRequest(
            Author(user.id, "Sam", discord_id=77),
            Place.dm(888),
            IncomingMessage("evening", datetime.now(UTC), id=2**40),
        )
        answer = await agent.reply(request)
        await agent.aclose()
    assert answer.text == "Evening, Sam." and answer.run is not None
    assert answer.record.model == "openai/gpt-oss-120b"


@pytest.mark.parametrize(("value", "stored"), [("true", 1), ("false", 0)])
async def test_index_pieces_reaches_the_agents_index(
    db: Database, monkeypatch: pytest.MonkeyPatch, value: str, stored: int
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    monkeypatch.setenv("BARKEEPER_EMBEDDER", "hashing")
    monkeypatch.setenv("BARKEEPER_INDEX_PIECES", value)
    agent = build_agent(db, load_settings())
    try:
        assert agent.index is not None
        await agent.index.add_turns("s", [Turn("1", "Ana", "My dog Rex is a beagle. He naps.")])
    finally:
        await agent.aclose()
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(piece_embeddings) FROM message_index") == stored
