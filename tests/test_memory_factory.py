"""build_memory_manager: the manager it returns closes the clients opened for it, and
only those (a model passed in, and the database, stay the caller's)."""

from __future__ import annotations

import pytest

from barkeeper.config import load_settings
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder, OpenAIEmbedder
from barkeeper.learning import UserMessage, build_memory_manager
from barkeeper.llm import OpenAIChatModel
from barkeeper.testing.llm import LLMServer
from tests.test_extraction import fact, facts_reply, new_user

_BEES = "my bees survived the winter up on the roof"


async def test_the_manager_closes_the_model_and_embedder_it_opened(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LLMServer(embedding_dimension=1536) as server:
        monkeypatch.setenv("BARKEEPER_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("BARKEEPER_EMBEDDER", "openai")
        monkeypatch.setenv("BARKEEPER_FACT_EXTRACTION_RATE", "1")
        alice = await new_user(db, 111)
        server.script(facts_reply(fact("Keeps bees on the roof", "hobby")))
        async with build_memory_manager(db, load_settings()) as manager:
            assert isinstance(manager.store.embedder, OpenAIEmbedder)
            outcome = await manager.process(UserMessage(alice, _BEES, message_id=1))
            assert [c.memory.content for c in outcome.changes if c.memory] == [
                "Keeps bees on the roof"
            ]
        with pytest.raises(RuntimeError, match="client has been closed"):
            await manager.store.embedder.embed(["bees"])
        with pytest.raises(RuntimeError, match="client has been closed"):  # the model's
            await manager.process(UserMessage(alice, _BEES + " again", message_id=2))
        await manager.aclose()  # a second close does nothing
        assert await manager.store.count(alice) == 1  # the database is still open


async def test_a_model_passed_in_stays_open(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with LLMServer() as server:
        monkeypatch.setenv("BARKEEPER_EMBEDDER", "hashing")
        monkeypatch.setenv("BARKEEPER_FACT_EXTRACTION_RATE", "1")
        alice = await new_user(db, 111)
        server.script(facts_reply(fact("Keeps bees on the roof", "hobby")), "still here")
        async with OpenAIChatModel(base_url=server.base_url, model="mine") as mine:
            async with build_memory_manager(db, load_settings(), model=mine) as manager:
                assert isinstance(manager.store.embedder, HashingEmbedder)
                await manager.process(UserMessage(alice, _BEES, message_id=1))
            reply = await mine.complete([{"role": "user", "content": "are you there?"}])
            assert reply.content == "still here"
        assert [r.body["model"] for r in server.chat_requests] == ["mine", "mine"]
