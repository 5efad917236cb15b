"""Pure parts of barkeeper.llm: token counts, JSON extraction, retry delays."""

from __future__ import annotations

import email.utils
import random
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from barkeeper.errors import InvalidInputError, LLMOutputError
from barkeeper.llm import (
    RetryPolicy,
    _tokens,
    count_message_tokens,
    count_tokens,
    encoding_for_model,
    extract_json,
    parse_json_reply,
    parse_retry_after,
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


@pytest.fixture
def fresh_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_encodings", {})


@pytest.mark.usefixtures("no_network", "fresh_encodings")
def test_token_tables_load_offline() -> None:
    assert count_tokens("hello world", model="gpt-4") == 2
    assert count_tokens("hello world", model="gpt-4o") == 2
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", model="llama-3.1-8b-instant") == 2
    assert all(_tokens._encodings.values())  # real tables, not the fallback


def test_count_tokens_exact_values() -> None:
    assert count_tokens("") == 0
    assert count_tokens("The quick brown fox jumps over the lazy dog.", model="gpt-4") == 10
    # Special-token strings in user text are ordinary text, never an error.
    assert count_tokens("<|endoftext|>", model="gpt-4") > 1
    assert count_tokens("<|start|>assistant<|message|>") > 3


def test_encoding_for_model() -> None:
    assert encoding_for_model(None) == "o200k_harmony"
    assert encoding_for_model("openai/gpt-oss-120b") == "o200k_harmony"
    assert encoding_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_for_model("gpt-4-turbo") == "cl100k_base"
    assert encoding_for_model("text-embedding-3-small") == "cl100k_base"
    assert encoding_for_model("llama-3.3-70b-versatile") == "llama3"
    assert encoding_for_model("qwen/qwen3-32b") == "qwen3"
    assert encoding_for_model("moonshotai/kimi-k2-instruct") == "o200k_harmony"
    assert encoding_for_model("cl100k_base") == "cl100k_base"


def test_count_message_tokens_adds_up() -> None:
    user = {"role": "user", "content": "hello world"}
    assert count_message_tokens([user]) == 3 + 1 + 2 + 3
    named = {**user, "name": "ada"}
    assert count_message_tokens([named]) == count_message_tokens([user]) + 1 + count_tokens("ada")
    parts = {"role": "user", "content": [{"type": "text", "text": "hello world"}]}
    assert count_message_tokens([parts]) == count_message_tokens([user])
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "function": {"name": "remember", "arguments": '{"x":1}'}}],
    }
    assert count_message_tokens([call]) > count_message_tokens([{"role": "assistant"}])
    tool = {"type": "function", "function": {"name": "remember", "parameters": {}}}
    assert count_message_tokens([user], tools=[tool]) > count_message_tokens([user])


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (no token table loaded yet)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_tokenizer_package_is_a_clear_error() -> None:
    result = _python(
        """
        import sys
        sys.modules["quicktok"] = None  # what Python does when quicktok-v1 is not installed
        from barkeeper.errors import ConfigError
        from barkeeper.llm import count_message_tokens, count_tokens, load_token_tables
        for call in (
            lambda: count_tokens("hello world"),
            lambda: count_message_tokens([{"role": "user", "content": "hi"}]),
            load_token_tables,
        ):
            try:
                print("counted", call())
            except ConfigError as exc:
                print("ConfigError:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:  # never an estimate
        assert line.startswith("ConfigError: counting tokens needs the package quicktok-v1")
        assert "pip install quicktok-v1" in line


_COUNT_ON_A_LOOP = """
    import asyncio, logging, sys
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
    from barkeeper.llm import count_tokens, load_token_tables
    if sys.argv[1] == "at-start-up":
        print(load_token_tables("gpt-4"))
    async def main():
        print(count_tokens("hello world", model="gpt-4"))
    asyncio.run(main())
"""


def test_token_tables_load_at_start_up_or_say_they_stall_the_loop() -> None:
    preloaded = _python(_COUNT_ON_A_LOOP, "at-start-up")
    assert preloaded.returncode == 0, preloaded.stderr
    assert preloaded.stdout.splitlines() == ["['cl100k_base']", "2"]
    lazy = _python(_COUNT_ON_A_LOOP, "lazily")
    assert lazy.returncode == 0, lazy.stderr
    warning, count = lazy.stdout.splitlines()
    assert warning.startswith("WARNING loading the cl100k_base token table on the running event")
    assert "load_token_tables() at start-up" in warning
    assert count == "2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  \n{"a": 1}\n', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```\nanything else', {"a": 1}),
        ('Sure! Here it is: {"a": {"b": [1, 2]}} Hope that helps {"no": 1}', {"a": {"b": [1, 2]}}),
        ('I think [1, 2] but really {"a": 1}', {"a": 1}),
        ("The list: [1, 2]", [1, 2]),
        ('{"broken": } then {"a": 1}', {"a": 1}),
    ],
)
def test_extract_json(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


def test_extract_json_without_json() -> None:
    with pytest.raises(LLMOutputError, match="no JSON"):
        extract_json("I cannot help with that.")


class Fact(BaseModel):
    subject: str
    confidence: float


def test_parse_json_reply_explains_validation_errors() -> None:
    assert parse_json_reply('{"subject": "ale", "confidence": 0.5}', Fact).subject == "ale"
    with pytest.raises(LLMOutputError, match=r"Fact: confidence: Field required"):
        parse_json_reply('{"subject": "ale"}', Fact)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4, multiplier=2, jitter=0)
    assert [policy.backoff(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert policy.backoff(10_000) == 4


def test_jitter_only_shortens_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay=1, jitter=0.25)
    rng = random.Random(3)
    delays = [policy.backoff(0, rng) for _ in range(200)]
    assert all(0.75 <= d <= 1 for d in delays)
    assert len(set(delays)) > 100


def test_retry_after_wins_unless_too_long() -> None:
    policy = RetryPolicy(initial_delay=5, max_retry_after=10)
    assert policy.delay(0, 0.25) == 0.25
    assert policy.delay(0, 11) is None
    assert 3.75 <= (policy.delay(0, None) or 0) <= 5


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"initial_delay": -1}, {"multiplier": 0.5}, {"jitter": 2}],
)
def test_policy_validation(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        RetryPolicy(**options)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (parse_retry_after({"retry-after": in_a_minute}) or 0) <= 61
