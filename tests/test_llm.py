"""OpenAIChatModel against the local test server, through the real ``openai`` client."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

import barkeeper.llm
from barkeeper.errors import (
    InvalidInputError,
    LLMAuthenticationError,
    LLMError,
    LLMOutputError,
    LLMRateLimitError,
    LLMUnavailableError,
)
from barkeeper.llm import (
    ChatMessage,
    ChatModel,
    OpenAIChatModel,
    RetryPolicy,
    count_message_tokens,
)
from barkeeper.testing.llm import Fault, LLMServer, Reply

KEY = "sk-test-0123456789abcdef"
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)
HELLO: list[ChatMessage] = [{"role": "user", "content": "Hello there"}]
REMEMBER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "remember",
        "description": "Store a fact about the user.",
        "parameters": {
            "type": "object",
            "properties": {"fact": {"type": "string"}},
            "required": ["fact"],
        },
    },
}


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's proxy settings must not route 127.0.0.1 elsewhere."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest_asyncio.fixture
async def srv() -> AsyncIterator[LLMServer]:
    async with LLMServer(api_key=KEY) as server:
        yield server


@pytest_asyncio.fixture
async def llm(srv: LLMServer) -> AsyncIterator[OpenAIChatModel]:
    async with OpenAIChatModel(
        base_url=srv.base_url, api_key=KEY, timeout=5.0, retry_policy=FAST
    ) as model:
        yield model


def test_public_names_are_exactly_all() -> None:
    public = {name for name in vars(barkeeper.llm) if not name.startswith("_")}
    assert public == set(barkeeper.llm.__all__)


def test_openai_chat_model_satisfies_the_protocol() -> None:
    model: ChatModel = OpenAIChatModel(api_key="k")
    assert model is not None


async def test_complete_echoes_by_default_and_reports_usage(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    result = await llm.complete(HELLO, temperature=0.2, max_tokens=50)
    assert result.text == "Hello there"
    assert result.finish_reason == "stop"
    assert result.model == "openai/gpt-oss-120b"
    assert result.attempts == 1
    [request] = srv.requests
    assert request.body["temperature"] == 0.2
    assert request.body["max_tokens"] == 50
    assert request.prompt_tokens == count_message_tokens(HELLO) > 0
    assert result.usage is not None
    assert result.usage.prompt_tokens == request.prompt_tokens


async def test_scripted_replies_come_in_order(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.script("first", "second")
    assert (await llm.complete(HELLO)).text == "first"
    assert (await llm.complete(HELLO, model="other-model")).text == "second"
    assert srv.requests[1].body["model"] == "other-model"
    assert srv.pending == 0


async def test_responder_answers_from_the_prompt(srv: LLMServer, llm: OpenAIChatModel) -> None:
    async def responder(request: dict[str, Any]) -> str | None:
        last = request["messages"][-1]["content"]
        return f"you said {len(last)} characters" if "count" in last else None

    srv.responder = responder
    assert (await llm.complete([{"role": "user", "content": "count me"}])).text == (
        "you said 8 characters"
    )
    assert (await llm.complete(HELLO)).text == "Hello there"  # None: the default answer


async def test_tool_call_round_trip(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.script(Reply.call("remember", {"fact": "likes stout"}, id="call_1"), "Noted!")
    result = await llm.complete(HELLO, tools=[REMEMBER_TOOL], tool_choice="auto")
    assert result.content is None
    assert result.finish_reason == "tool_calls"
    [call] = result.tool_calls
    assert (call.id, call.name) == ("call_1", "remember")
    assert call.parsed_arguments() == {"fact": "likes stout"}
    assert srv.requests[0].body["tools"] == [REMEMBER_TOOL]

    follow_up: list[ChatMessage] = [
        *HELLO,
        result.to_message(),
        {"role": "tool", "tool_call_id": call.id, "content": "stored"},
    ]
    assert (await llm.complete(follow_up, tools=[REMEMBER_TOOL])).text == "Noted!"
    sent = srv.requests[1].messages
    assert sent[1]["tool_calls"][0]["function"]["name"] == "remember"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "stored"}


async def test_broken_tool_arguments_raise_output_error(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.script(Reply.call("remember", '{"fact": '))
    [call] = (await llm.complete(HELLO, tools=[REMEMBER_TOOL])).tool_calls
    with pytest.raises(LLMOutputError, match="remember"):
        call.parsed_arguments()


async def test_complete_json_validates_with_schema(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.script('Here you go:\n```json\n{"name": "Ada", "age": 36}\n```')
    person = await llm.complete_json(HELLO, Person)
    assert person == Person(name="Ada", age=36)
    [request] = srv.requests
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Person"
    assert response_format["json_schema"]["schema"] == Person.model_json_schema()


async def test_complete_json_default_answer_is_a_minimal_instance(llm: OpenAIChatModel) -> None:
    assert await llm.complete_json(HELLO, Person) == Person(name="", age=0)


async def test_malformed_json_is_retried_with_the_error(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.script(Fault.malformed_json(), {"name": "Ada", "age": 36})
    assert await llm.complete_json(HELLO, Person) == Person(name="Ada", age=36)
    first, second = srv.requests
    assert len(second.messages) == len(first.messages) + 2
    assert second.messages[-2]["role"] == "assistant"
    assert second.messages[-1]["role"] == "user"
    assert "not valid" in second.messages[-1]["content"]


async def test_invalid_json_twice_raises_output_error(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.script(Fault.malformed_json(), {"name": "Ada", "age": -1})
    with pytest.raises(LLMOutputError, match=r"Person in 2 attempt") as caught:
        await llm.complete_json(HELLO, Person)
    assert "age" in str(caught.value)
    assert len(srv.requests) == 2


async def test_json_object_mode_puts_the_schema_in_the_prompt(srv: LLMServer) -> None:
    srv.script('{"name": "Bo", "age": 3}')
    async with OpenAIChatModel(base_url=srv.base_url, api_key=KEY, json_mode="json_object") as llm:
        system: ChatMessage = {"role": "system", "content": "You are a barkeeper."}
        assert await llm.complete_json([system, *HELLO], Person) == Person(name="Bo", age=3)
    [request] = srv.requests
    assert request.body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "system", "user"]
    assert '"age"' in request.messages[1]["content"]


async def test_rate_limit_is_retried_honouring_retry_after(srv: LLMServer) -> None:
    srv.inject(Fault.rate_limit(retry_after=0.05), times=2)
    # A backoff of 30 s would time the test out: only Retry-After gets it through.
    slow_backoff = RetryPolicy(max_retries=3, initial_delay=30, jitter=0)
    async with OpenAIChatModel(
        base_url=srv.base_url, api_key=KEY, retry_policy=slow_backoff
    ) as llm:
        started = time.perf_counter()
        result = await llm.complete(HELLO)
        elapsed = time.perf_counter() - started
    assert result.text == "Hello there"
    assert result.attempts == 3
    assert elapsed >= 0.1
    assert [r.status for r in srv.requests] == [429, 429, 200]


async def test_rate_limit_exhausted_raises_rate_limit_error(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.inject(Fault.rate_limit(retry_after=None), times=10)
    with pytest.raises(LLMRateLimitError, match=r"429.*after 4 attempts"):
        await llm.complete(HELLO)
    assert len(srv.requests) == FAST.max_retries + 1


async def test_retry_after_longer_than_allowed_fails_at_once(srv: LLMServer) -> None:
    srv.inject(Fault.rate_limit(retry_after=3600))
    async with OpenAIChatModel(base_url=srv.base_url, api_key=KEY, retry_policy=FAST) as llm:
        with pytest.raises(LLMRateLimitError, match="3600"):
            await llm.complete(HELLO)
    assert len(srv.requests) == 1


async def test_server_errors_are_retried(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.inject(Fault.server_error(503))
    srv.inject(Fault.server_error(500))
    result = await llm.complete(HELLO)
    assert result.attempts == 3
    assert [r.status for r in srv.requests] == [503, 500, 200]


async def test_server_errors_exhausted_raise_unavailable(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.inject(Fault.server_error(), times=10)
    with pytest.raises(LLMUnavailableError, match="HTTP 500") as caught:
        await llm.complete(HELLO)
    assert srv.base_url in str(caught.value)
    assert len(srv.requests) == 4


async def test_timeout_raises_unavailable(srv: LLMServer) -> None:
    srv.inject(Fault.timeout(delay=10))
    policy = RetryPolicy(max_retries=0)
    async with OpenAIChatModel(
        base_url=srv.base_url, api_key=KEY, timeout=0.3, retry_policy=policy
    ) as llm:
        started = time.perf_counter()
        with pytest.raises(LLMUnavailableError, match=r"timeout of 0\.3 s"):
            await llm.complete(HELLO)
    assert time.perf_counter() - started < 5


async def test_timeout_then_success(srv: LLMServer) -> None:
    srv.script(Fault.timeout(delay=10), "made it")
    async with OpenAIChatModel(
        base_url=srv.base_url, api_key=KEY, timeout=0.3, retry_policy=FAST
    ) as llm:
        result = await llm.complete(HELLO)
    assert (result.text, result.attempts) == ("made it", 2)


async def test_invalid_body_is_retried_then_unavailable(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.inject(Fault.invalid_body())
    assert (await llm.complete(HELLO)).attempts == 2
    srv.inject(Fault.invalid_body(), times=10)
    with pytest.raises(LLMUnavailableError, match="not valid OpenAI JSON"):
        await llm.complete(HELLO)


async def test_bad_key_raises_authentication_error_without_the_key(srv: LLMServer) -> None:
    wrong = "sk-wrong-key-fedcba9876543210"
    async with OpenAIChatModel(base_url=srv.base_url, api_key=wrong, retry_policy=FAST) as llm:
        assert wrong not in repr(llm)
        with pytest.raises(LLMAuthenticationError) as caught:
            await llm.complete(HELLO)
    message = str(caught.value)
    assert "401" in message
    assert srv.base_url in message
    for secret in (wrong, wrong[:3] + "****" + wrong[-4:], wrong[-4:]):
        assert secret not in message
        assert secret not in repr(caught.value)
    assert len(srv.requests) == 1  # not retried
    assert srv.requests[0].headers["Authorization"] == "[redacted]"


async def test_missing_key_raises_authentication_error(srv: LLMServer) -> None:
    async with OpenAIChatModel(base_url=srv.base_url, api_key=None) as llm:
        with pytest.raises(LLMAuthenticationError):
            await llm.complete(HELLO)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_endpoint_raises_unavailable_naming_the_url() -> None:
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    policy = RetryPolicy(max_retries=1, initial_delay=0.01)
    async with OpenAIChatModel(base_url=base_url, api_key=KEY, retry_policy=policy) as llm:
        with pytest.raises(LLMUnavailableError, match="could not connect") as caught:
            await llm.complete(HELLO)
    assert base_url in str(caught.value)
    assert KEY not in str(caught.value)


async def test_wrong_path_gives_a_hint(srv: LLMServer) -> None:
    async with OpenAIChatModel(base_url=srv.url, api_key=KEY, retry_policy=FAST) as llm:
        with pytest.raises(LLMError, match="/v1") as caught:
            await llm.complete(HELLO)
    assert not isinstance(caught.value, LLMUnavailableError)


async def test_empty_messages_are_refused(llm: OpenAIChatModel) -> None:
    with pytest.raises(InvalidInputError):
        await llm.complete([])


async def test_random_faults_are_survived_by_retries() -> None:
    rates = {"rate_limit": 0.2, "server_error": 0.2}
    async with LLMServer(fault_rates=rates, seed=7, retry_after=0.01) as srv:
        policy = RetryPolicy(max_retries=8, initial_delay=0.005, max_delay=0.02)
        async with OpenAIChatModel(base_url=srv.base_url, retry_policy=policy) as llm:
            results = await asyncio.gather(*(llm.complete(HELLO) for _ in range(20)))
    assert all(r.text == "Hello there" for r in results)
    faults = [r.fault for r in srv.requests if r.fault is not None]
    assert faults  # the seed makes some requests fail
    assert len(srv.requests) == 20 + len(faults)


async def test_prompt_tokens_are_recorded_for_benchmarks(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    long: list[ChatMessage] = [
        {"role": "system", "content": "You are a friendly barkeeper. " * 20},
        *HELLO,
    ]
    await llm.complete(HELLO)
    await llm.complete(long)
    short_tokens, long_tokens = (r.prompt_tokens for r in srv.requests)
    assert long_tokens > short_tokens + 100
    assert srv.prompt_tokens == short_tokens + long_tokens


# --- streaming ---------------------------------------------------------------------------


async def test_stream_hands_on_the_text_piece_by_piece(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    text = "Evening. The usual, or something new tonight? I have a fresh pot of tea."
    srv.script(text)
    pieces: list[str] = []
    result = await llm.stream(HELLO, on_text=pieces.append)
    assert isinstance(llm, barkeeper.llm.StreamingChatModel)
    assert len(pieces) > 3
    assert "".join(pieces) == text == result.text
    assert result.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens == srv.chat_requests[-1].prompt_tokens
    assert srv.chat_requests[-1].body["stream"] is True


async def test_stream_collects_tool_calls_and_awaits_async_callbacks(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.script(Reply.call("remember", {"fact": "likes tea"}))
    seen: list[str] = []

    async def on_text(piece: str) -> None:
        await asyncio.sleep(0)
        seen.append(piece)

    result = await llm.stream(HELLO, on_text=on_text, tools=[REMEMBER_TOOL])
    assert seen == []
    assert result.content is None
    assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [
        ("remember", {"fact": "likes tea"})
    ]


async def test_stream_retries_failures_before_the_first_piece(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.script(Fault.server_error(503), Fault.rate_limit(retry_after=0.01), "Here you are.")
    pieces: list[str] = []
    result = await llm.stream(HELLO, on_text=pieces.append)
    assert "".join(pieces) == "Here you are."
    assert result.attempts == 3


async def test_stream_gives_up_with_our_error(srv: LLMServer, llm: OpenAIChatModel) -> None:
    srv.inject(Fault.server_error(500), times=10)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.stream(HELLO, on_text=lambda _: None)
    assert KEY not in str(info.value)


async def test_a_stream_broken_mid_reply_is_not_retried(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    srv.script(Reply(content="one two three four five six seven eight nine", break_after=2))
    pieces: list[str] = []
    with pytest.raises(LLMUnavailableError, match="broke off"):
        await llm.stream(HELLO, on_text=pieces.append)
    assert "".join(pieces) == "one two three four five six "
    assert len(srv.chat_requests) == 1  # a retry would have repeated the text


async def test_a_callback_error_reaches_the_caller_unchanged(
    srv: LLMServer, llm: OpenAIChatModel
) -> None:
    def refuse(piece: str) -> None:
        raise KeyError("the caller's own bug")

    with pytest.raises(KeyError, match="own bug"):
        await llm.stream(HELLO, on_text=refuse)
    assert len(srv.chat_requests) == 1
