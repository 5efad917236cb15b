"""The test LLM server itself: endpoints, recording, faults, scripts and its CLI."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import struct
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from pydantic import BaseModel, Field

import barkeeper.testing.llm
from barkeeper.embeddings import hashed_embedding
from barkeeper.llm import OpenAIChatModel, count_tokens
from barkeeper.testing.llm import (
    Fault,
    FaultKind,
    LLMServer,
    RecordedRequest,
    Reply,
    example_for_schema,
    load_script,
    parse_reply,
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_public_names_are_exactly_all() -> None:
    public = {n for n in vars(barkeeper.testing.llm) if not n.startswith("_")}
    assert public == set(barkeeper.testing.llm.__all__)


async def test_listens_on_a_free_local_port() -> None:
    async with LLMServer() as one, LLMServer() as two:
        assert one.port != two.port
        assert one.base_url == f"http://127.0.0.1:{one.port}/v1"
    with pytest.raises(RuntimeError, match="not started"):
        _ = one.base_url


async def test_models_endpoint_through_the_openai_client() -> None:
    async with LLMServer(models=("m1", "m2")) as srv:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        try:
            models = [m.id async for m in client.models.list()]
        finally:
            await client.close()
    assert models == ["m1", "m2"]
    assert srv.requests[0].method == "GET"


async def test_records_path_headers_body_and_tokens() -> None:
    seen: list[RecordedRequest] = []
    async with LLMServer(on_request=seen.append) as srv:
        async with OpenAIChatModel(base_url=srv.base_url, api_key="sk-abc") as llm:
            await llm.complete([{"role": "user", "content": "one two three"}])
    [request] = srv.requests
    assert seen == [request]
    assert request.path == "/v1/chat/completions"
    assert request.status == 200
    assert request.headers["Authorization"] == "[redacted]"
    assert "sk-abc" not in json.dumps(request.headers)
    assert request.messages == [{"role": "user", "content": "one two three"}]
    assert request.prompt_tokens == 3 + 1 + 3 + 3  # framing, role, text, reply priming
    assert request.response["choices"][0]["message"]["content"] == "one two three"


async def _post(srv: LLMServer, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        async with session.post(f"{srv.url}{path}", data=data, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text


async def test_bad_requests_get_openai_error_bodies() -> None:
    async with LLMServer() as srv:
        status, body = await _post(srv, "/v1/chat/completions", "not json")
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        status, body = await _post(srv, "/v1/chat/completions", {"model": "m", "messages": []})
        assert (status, body["error"]["param"]) == (400, "messages")
        status, body = await _post(srv, "/v1/chat/completions", {"messages": [{}], "stream": True})
        assert (status, body["error"]["param"]) == (400, "model")
        status, body = await _post(srv, "/v1/embeddings", {"model": "m", "input": [[1, 2]]})
        assert (status, body["error"]["param"]) == (400, "input")


async def test_wrong_key_gets_openai_401_body() -> None:
    async with LLMServer(api_key="sk-right-key-123456") as srv:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        status, answer = await _post(
            srv, "/v1/chat/completions", body, Authorization="Bearer sk-wrong-key-987654"
        )
        assert status == 401
        assert answer["error"]["code"] == "invalid_api_key"
        assert "sk-****7654" in answer["error"]["message"]
        status, answer = await _post(srv, "/v1/chat/completions", body)
        assert status == 401
        assert "didn't provide" in answer["error"]["message"]


async def test_embeddings_float_and_base64() -> None:
    async with LLMServer(embedding_dimension=16) as srv:
        status, body = await _post(srv, "/v1/embeddings", {"model": "e", "input": ["a b", "c"]})
        assert status == 200
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert body["data"][0]["embedding"] == hashed_embedding("a b", 16)
        assert body["usage"]["prompt_tokens"] == count_tokens("a b") + count_tokens("c")

        request = {"model": "e", "input": "a b", "encoding_format": "base64", "dimensions": 8}
        status, body = await _post(srv, "/v1/embeddings", request)
        raw = base64.b64decode(body["data"][0]["embedding"])
        assert struct.unpack("<8f", raw) == pytest.approx(hashed_embedding("a b", 8))


async def test_one_off_faults_target_an_endpoint() -> None:
    async with LLMServer() as srv:
        srv.inject(FaultKind.SERVER_ERROR, endpoint="embeddings")
        chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        assert (await _post(srv, "/v1/chat/completions", chat))[0] == 200
        assert (await _post(srv, "/v1/embeddings", {"model": "e", "input": "x"}))[0] == 500
        assert (await _post(srv, "/v1/embeddings", {"model": "e", "input": "x"}))[0] == 200
        assert [r.fault for r in srv.requests] == [None, FaultKind.SERVER_ERROR, None]


async def test_rate_limit_fault_sends_retry_after_headers() -> None:
    async with LLMServer() as srv:
        srv.inject(Fault.rate_limit(retry_after=1.5))
        chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{srv.base_url}/chat/completions", json=chat) as response,
        ):
            assert response.status == 429
            assert response.headers["Retry-After"] == "1.5"
            assert response.headers["retry-after-ms"] == "1500"
            body = await response.json()
    assert body["error"]["code"] == "rate_limit_exceeded"


async def test_fault_rates_are_seeded_and_validated() -> None:
    async def run(seed: int) -> list[int]:
        async with LLMServer(fault_rates={"server_error": 0.5}, seed=seed) as srv:
            chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            return [(await _post(srv, "/v1/chat/completions", chat))[0] for _ in range(12)]

    first = await run(1)
    assert first == await run(1)
    assert set(first) == {200, 500}
    with pytest.raises(ValueError, match="sum to at most 1"):
        LLMServer(fault_rates={"rate_limit": 0.6, "timeout": 0.6})
    with pytest.raises(ValueError):
        LLMServer(fault_rates={"gremlins": 0.1})


async def test_stop_does_not_wait_for_held_requests() -> None:
    srv = LLMServer()
    await srv.start()
    srv.inject(Fault.timeout(delay=60))
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    pending = asyncio.ensure_future(_post(srv, "/v1/chat/completions", chat))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(srv.stop(), timeout=5)
    # The held request is released (answered or cut off), not left hanging for 60 s.
    await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), timeout=5)


def test_parse_reply_forms() -> None:
    assert parse_reply("hi") == Reply(content="hi")
    assert parse_reply({"json": [1]}) == Reply(content="[1]")
    assert parse_reply({"a": 1}) == Reply(content='{"a": 1}')
    assert parse_reply({"fault": "rate_limit", "retry_after": 2}) == Fault.rate_limit(2)
    reply = parse_reply({"tool_calls": [{"name": "f", "arguments": {"x": 1}}]})
    assert isinstance(reply, Reply)
    assert reply.tool_calls[0].name == "f"
    with pytest.raises(ValueError):
        parse_reply({"tool_calls": [{"arguments": {}}]})


def test_load_script(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "replies": ["hello", {"content": "bye", "delay": 0.1}],
                "faults": [{"fault": "server_error", "times": 2, "status": 502}],
            }
        )
    )
    replies, faults = load_script(path)
    assert replies == [Reply(content="hello"), Reply(content="bye", delay=0.1)]
    assert faults == [(Fault.server_error(502), 2)]
    path.write_text('["only", "replies"]')
    assert len(load_script(path)[0]) == 2
    path.write_text('{"replys": []}')
    with pytest.raises(ValueError, match="replys"):
        load_script(path)


class Mood(Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


class Drink(BaseModel):
    name: str = Field(min_length=2)
    strength: float = Field(gt=0, le=100)


class Order(BaseModel):
    drinks: list[Drink] = Field(min_length=1)
    mood: Mood
    when: dt.datetime
    note: str | None
    tip: int = 5


def test_example_for_schema_validates() -> None:
    example = example_for_schema(Order.model_json_schema())
    order = Order.model_validate(example)
    assert order.mood is Mood.HAPPY
    assert len(order.drinks) == 1
    assert "tip" not in example  # only required properties


def _run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barkeeper.testing.llm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def test_cli_help_documents_every_flag() -> None:
    result = _run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--port",
        "--host",
        "--api-key",
        "--fault-rate",
        "--script",
        "--seed",
        "--retry-after",
        "--timeout-delay",
        "--embedding-dimension",
        "--model",
    ):
        assert flag in result.stdout
    assert "rate_limit" in result.stdout


def test_cli_usage_error_is_one_line_and_exit_2() -> None:
    result = _run_cli("--fault-rate", "gremlins=0.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("python -m barkeeper.testing.llm:")
    assert "Traceback" not in result.stderr


async def test_cli_serves_a_script_until_terminated(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": ["scripted hello"]}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "barkeeper.testing.llm",
        "--port",
        "0",
        "--api-key",
        "k",
        "--script",
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        async with OpenAIChatModel(base_url=base_url, api_key="k") as llm:
            result = await llm.complete([{"role": "user", "content": "hi"}])
        assert result.text == "scripted hello"
    finally:
        process.terminate()
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    assert b"POST /v1/chat/completions -> 200" in err
