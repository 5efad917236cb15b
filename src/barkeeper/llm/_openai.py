""":class:`OpenAIChatModel`: the chat model for any OpenAI-compatible endpoint.

Groq, OpenAI, Ollama, vLLM and llama.cpp's server all speak ``/v1/chat/completions``.
This module is the only one that talks to it through the ``openai`` package; it
never logs or repeats the API key.
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, cast

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import SecretStr

from barkeeper.errors import InvalidInputError, LLMUnavailableError
from barkeeper.llm._retry import RetryPolicy, call_openai, redact
from barkeeper.llm._structured import JsonMode, complete_structured
from barkeeper.llm._types import (
    ChatMessage,
    ChatResult,
    ModelT,
    TextCallback,
    ToolCall,
    Usage,
)

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "OpenAIChatModel"]

#: Groq's OpenAI-compatible API.
DEFAULT_BASE_URL = "https://api.groq.com/openai/v1"
#: The model barkeeper uses unless told otherwise.
DEFAULT_MODEL = "openai/gpt-oss-120b"

# Sent when no key is configured: local servers (Ollama, llama.cpp) ignore it, and
# a hosted API answers 401, which becomes a clear LLMAuthenticationError.
_NO_KEY = "no-key"


def _secret(value: str | SecretStr | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


class OpenAIChatModel:
    """A :class:`~barkeeper.llm.ChatModel` on an OpenAI-compatible HTTP endpoint.

    Transient failures (429, 5xx, 408, timeouts, refused connections, garbled
    responses) are retried with exponential backoff and jitter, honouring
    ``Retry-After``; see :class:`~barkeeper.llm.RetryPolicy`. Use it as an async
    context manager, or call :meth:`aclose`, to release its connections.

    Args:
        base_url: The API root, ending in ``/v1`` (Groq's by default).
        api_key: The bearer token; ``None`` for local servers that need none.
        model: The model used when a call names none.
        timeout: Seconds to wait for each HTTP request.
        max_retries: Attempts after the first for transient failures.
        retry_policy: Full control over the backoff; its ``max_retries`` wins
            over the ``max_retries`` argument when given.
        json_mode: How :meth:`complete_json` asks for JSON: ``"json_schema"``
            (constrained decoding; Groq, OpenAI, vLLM, llama.cpp, Ollama),
            ``"json_object"`` or ``"prompt"`` (the schema in a system message only).
        default_headers: Extra headers sent with every request.

    Raises:
        InvalidInputError: ``timeout`` is not positive or ``base_url`` is empty.

    Example:
        >>> async def main() -> None:
        ...     async with OpenAIChatModel(api_key="gsk_...") as llm:
        ...         result = await llm.complete([{"role": "user", "content": "Hi!"}])
        ...         print(result.text)
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | SecretStr | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        max_retries: int = 4,
        retry_policy: RetryPolicy | None = None,
        json_mode: JsonMode = "json_schema",
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url.strip():
            raise InvalidInputError("base_url must not be empty")
        if not timeout > 0:
            raise InvalidInputError(f"timeout must be positive, not {timeout}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.json_mode: JsonMode = json_mode
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self._api_key = _secret(api_key) or None
        self._rng = random.Random()
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key or _NO_KEY,
            timeout=timeout,
            max_retries=0,  # we retry ourselves (see barkeeper.llm._retry)
            default_headers=dict(default_headers) if default_headers else None,
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(base_url={self.base_url!r}, model={self.model!r})"

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
        """Close the HTTP connections. The model cannot be used afterwards."""
        await self._client.close()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """Ask the model for the next message of a conversation.

        Args:
            messages: The conversation so far, oldest first.
            model: Another model than :attr:`model`.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length; ``None`` leaves the endpoint's default.
            tools: OpenAI-format tool definitions the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a named function.
            response_format: ``{"type": "json_object"}`` or a ``json_schema`` format.

        Returns:
            The reply, with its tool calls and token usage.

        Raises:
            InvalidInputError: ``messages`` is empty.
            LLMUnavailableError: The endpoint is unreachable or kept failing.
            LLMAuthenticationError: The endpoint refused the API key.
            LLMRateLimitError: Still rate limited after every retry.
            LLMOutputError: The endpoint rejected the model's output as malformed.
            LLMError: The endpoint refused the request (bad model name, too long, …).
        """
        request = _request(
            messages, model or self.model, temperature, max_tokens, tools, tool_choice
        )
        if response_format is not None:
            request["response_format"] = dict(response_format)

        async def attempt() -> ChatCompletion:
            return cast(ChatCompletion, await self._client.chat.completions.create(**request))

        completion, attempts = await call_openai(
            attempt,
            policy=self.retry_policy,
            endpoint=self.base_url,
            secrets=[self._api_key] if self._api_key else [],
            request_timeout=self.timeout,
            what="a chat completion",
            validate=_check_completion,
            rng=self._rng,
        )
        return _to_result(completion, attempts)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextCallback,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """Ask for the next message and hand its text to ``on_text`` as it arrives.

        The request is sent with ``stream: true`` (and ``stream_options.include_usage``
        for the token counts). Failures before the first piece of text are retried as
        in :meth:`complete`; a stream that breaks after text was handed on raises
        :class:`~barkeeper.errors.LLMUnavailableError` at once, since a retry would
        hand the same text on twice.

        Args:
            messages: The conversation so far, oldest first.
            on_text: Called (or awaited) with each new piece of text, in order.
            model: Another model than :attr:`model`.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length.
            tools: OpenAI-format tool definitions the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a named function.

        Returns:
            The whole reply, with its tool calls and (when reported) token usage.

        Raises:
            InvalidInputError: ``messages`` is empty.
            LLMUnavailableError: Unreachable, kept failing, or broke mid-stream.
            LLMError: As for :meth:`complete`.
        """
        request = _request(
            messages, model or self.model, temperature, max_tokens, tools, tool_choice
        )
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        secrets = [self._api_key] if self._api_key else []
        delivered = 0

        async def emit(text: str) -> None:
            nonlocal delivered
            delivered += len(text)
            try:
                outcome = on_text(text)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                raise _CallbackFailed(exc) from exc

        async def attempt() -> ChatResult:
            chunks = cast(
                AsyncIterator[ChatCompletionChunk],
                await self._client.chat.completions.create(**request),
            )
            try:
                return await _collect(chunks, emit)
            except _CallbackFailed as failed:
                raise failed.error from None  # the caller's own error, unchanged
            except Exception as exc:
                # The transport's own errors (a dropped connection) surface raw here.
                retryable = isinstance(exc, openai.OpenAIError | json.JSONDecodeError)
                if delivered or not retryable:
                    raise LLMUnavailableError(
                        redact(
                            f"the model endpoint at {self.base_url} broke off a streamed "
                            f"reply after {delivered} characters ({type(exc).__name__}); "
                            "try again",
                            secrets,
                        )
                    ) from exc
                raise

        result, attempts = await call_openai(
            attempt,
            policy=self.retry_policy,
            endpoint=self.base_url,
            secrets=secrets,
            request_timeout=self.timeout,
            what="a streamed chat completion",
            rng=self._rng,
        )
        return ChatResult(
            content=result.content,
            tool_calls=result.tool_calls,
            finish_reason=result.finish_reason,
            model=result.model,
            usage=result.usage,
            attempts=attempts,
        )

    async def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelT:
        """Ask for a JSON reply matching ``schema``; validate it, retrying once.

        The reply may be wrapped in code fences or prose; the JSON is found and
        validated with pydantic. If it does not validate, the model is shown the
        error and asked once more.

        Args:
            messages: The conversation so far, oldest first.
            schema: The pydantic model the reply must validate against.
            model: Another model than :attr:`model`.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length.

        Returns:
            The validated reply.

        Raises:
            LLMOutputError: Both replies were malformed.
            LLMUnavailableError: As for :meth:`complete` (and the other errors it raises).
        """
        return await complete_structured(
            self.complete,
            messages,
            schema,
            mode=self.json_mode,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
        )


def _check_completion(completion: object) -> None:
    """Reject what the client returns for a body that is not a chat completion."""
    choices = (
        getattr(completion, "choices", None) if isinstance(completion, ChatCompletion) else None
    )
    if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
        body = completion if isinstance(completion, str) else type(completion).__name__
        raise json.JSONDecodeError("not a chat completion", str(body)[:200], 0)


def _to_result(completion: ChatCompletion, attempts: int) -> ChatResult:
    choice = completion.choices[0]
    message = choice.message
    calls: list[ToolCall] = []
    for call in message.tool_calls or ():
        function = getattr(call, "function", None)
        if function is None:  # a custom (non-function) tool call: not used by barkeeper
            continue
        calls.append(ToolCall(id=call.id, name=function.name, arguments=function.arguments or ""))
    usage = None
    reported = getattr(completion, "usage", None)
    if reported is not None:
        # Some servers leave fields out; the client does not validate, so read defensively.
        prompt = int(getattr(reported, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(reported, "completion_tokens", 0) or 0)
        total = int(getattr(reported, "total_tokens", 0) or 0) or prompt + completion_tokens
        usage = Usage(prompt, completion_tokens, total)
    return ChatResult(
        content=message.content,
        tool_calls=tuple(calls),
        finish_reason=getattr(choice, "finish_reason", None),
        model=getattr(completion, "model", "") or "",
        usage=usage,
        attempts=attempts,
    )


class _CallbackFailed(Exception):
    """Carries an exception raised by the caller's ``on_text`` past our error handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _request(
    messages: Sequence[ChatMessage],
    model: str,
    temperature: float | None,
    max_tokens: int | None,
    tools: Sequence[Mapping[str, Any]] | None,
    tool_choice: str | Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not messages:
        raise InvalidInputError("messages must not be empty")
    request: dict[str, Any] = {"model": model, "messages": list(messages)}
    if temperature is not None:
        request["temperature"] = temperature
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    if tools:
        request["tools"] = list(tools)
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    return request


async def _collect(
    chunks: AsyncIterator[ChatCompletionChunk], emit: Callable[[str], Awaitable[None]]
) -> ChatResult:
    """Read a stream of chunks into one result, emitting the text as it comes."""
    parts: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    finish: str | None = None
    model = ""
    usage: Usage | None = None
    async for chunk in chunks:
        model = getattr(chunk, "model", "") or model
        reported = getattr(chunk, "usage", None)
        if reported is not None:
            prompt = int(getattr(reported, "prompt_tokens", 0) or 0)
            completion = int(getattr(reported, "completion_tokens", 0) or 0)
            total = int(getattr(reported, "total_tokens", 0) or 0) or prompt + completion
            usage = Usage(prompt, completion, total)
        for choice in getattr(chunk, "choices", None) or ():
            delta = choice.delta
            if delta is not None and delta.content:
                parts.append(delta.content)
                await emit(delta.content)
            for call in (delta.tool_calls if delta is not None else None) or ():
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                function = call.function
                if function is not None:
                    slot["name"] += function.name or ""
                    slot["arguments"] += function.arguments or ""
            if choice.finish_reason:
                finish = choice.finish_reason
    tool_calls = tuple(
        ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], arguments=slot["arguments"])
        for index, slot in sorted(calls.items())
        if slot["name"]
    )
    return ChatResult(
        content="".join(parts) if parts or not tool_calls else None,
        tool_calls=tool_calls,
        finish_reason=finish,
        model=model,
        usage=usage,
    )
