"""Structured output: find the JSON in a model's reply and validate it with pydantic.

Models wrap JSON in code fences or lead with a sentence even when told not to, so
:func:`parse_json_reply` looks past both. :func:`complete_structured` is the
ask-validate-retry-once loop every :class:`~barkeeper.llm.ChatModel` can share.
Nothing here performs I/O of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from barkeeper.errors import LLMOutputError
from barkeeper.llm._types import ChatMessage, ChatResult, ModelT

__all__ = [
    "JsonMode",
    "complete_structured",
    "extract_json",
    "parse_json_reply",
    "response_format_for",
]

JsonMode = Literal["json_schema", "json_object", "prompt"]

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_SCAN_STARTS = 64
_MAX_QUOTED_OUTPUT = 500


def extract_json(text: str) -> Any:
    """Find the JSON value in a model's reply.

    Tries, in order: the whole text; each fenced code block; then every ``{`` or
    ``[`` from the left, decoding the longest JSON value starting there (so
    ``"Sure! {...} Hope this helps"`` works). Objects are preferred to arrays.

    Args:
        text: The model's reply.

    Returns:
        The decoded value.

    Raises:
        LLMOutputError: No JSON value could be found.

    Example:
        >>> extract_json('Here you go:\\n```json\\n{"a": 1}\\n```')
        {'a': 1}
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block)
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    first_array: Any = None
    starts = [i for i, ch in enumerate(stripped) if ch in "{["][:_MAX_SCAN_STARTS]
    for start in starts:
        try:
            value, _end = decoder.raw_decode(stripped, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
        if first_array is None:
            first_array = value
    if first_array is not None:
        return first_array
    raise LLMOutputError(f"the reply contains no JSON value: {_quote(text)}")


def parse_json_reply(text: str, schema: type[ModelT]) -> ModelT:
    """Validate the JSON in a model's reply against a pydantic model.

    Args:
        text: The model's reply (code fences and surrounding prose are tolerated).
        schema: The pydantic model to validate against.

    Returns:
        The validated instance.

    Raises:
        LLMOutputError: There is no JSON, or it does not validate; the message
            carries pydantic's explanation.
    """
    value = extract_json(text)
    try:
        return schema.model_validate(value)
    except ValidationError as exc:
        raise LLMOutputError(
            f"the reply does not match {schema.__name__}: {_errors(exc)}; reply was {_quote(text)}"
        ) from exc


def response_format_for(schema: type[BaseModel], mode: JsonMode) -> dict[str, Any] | None:
    """The ``response_format`` to send for ``schema`` in ``mode``.

    Args:
        schema: The pydantic model the reply must match.
        mode: ``"json_schema"`` (the endpoint constrains the output to the schema),
            ``"json_object"`` (any JSON object; the schema goes in the prompt) or
            ``"prompt"`` (no ``response_format`` at all, for endpoints without it).

    Returns:
        The request field, or ``None`` for ``"prompt"``.
    """
    if mode == "json_schema":
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "reply"
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema.model_json_schema(), "strict": False},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _instruction(schema: type[BaseModel]) -> ChatMessage:
    schema_text = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    return {
        "role": "system",
        "content": (
            "Reply with one JSON object and nothing else (no prose, no code fences). "
            f"It must validate against this JSON schema: {schema_text}"
        ),
    }


def _with_instruction(
    messages: Sequence[ChatMessage], schema: type[BaseModel]
) -> list[ChatMessage]:
    """Insert the schema instruction after the leading system messages."""
    result = list(messages)
    at = 0
    while at < len(result) and result[at].get("role") in ("system", "developer"):
        at += 1
    result.insert(at, _instruction(schema))
    return result


CompleteFn = Callable[..., Awaitable[ChatResult]]


async def complete_structured(
    complete: CompleteFn,
    messages: Sequence[ChatMessage],
    schema: type[ModelT],
    *,
    mode: JsonMode = "json_schema",
    retries: int = 1,
    **options: Any,
) -> ModelT:
    """Ask for JSON matching ``schema``, validate it, and retry with the error if not.

    On a malformed reply the conversation is extended with that reply and a user
    message quoting the validation error, and the model is asked again, up to
    ``retries`` more times.

    Args:
        complete: A :meth:`~barkeeper.llm.ChatModel.complete` method.
        messages: The conversation so far.
        schema: The pydantic model the reply must validate against.
        mode: How to ask for JSON (see :func:`response_format_for`).
        retries: How many times to ask again after a malformed reply.
        **options: Passed on to ``complete`` (``model``, ``temperature``, …).

    Returns:
        The validated reply.

    Raises:
        LLMOutputError: Every attempt produced a malformed reply.
    """
    conversation = list(messages) if mode == "json_schema" else _with_instruction(messages, schema)
    response_format = response_format_for(schema, mode)
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        reply_text: str | None = None
        try:
            result = await complete(conversation, response_format=response_format, **options)
            reply_text = result.text
            parsed = parse_json_reply(reply_text, schema)
        except LLMOutputError as exc:
            if attempt == attempts:
                hint = ""
                if reply_text is not None and result.finish_reason == "length":
                    hint = " (the reply was cut off at max_tokens: raise it)"
                raise LLMOutputError(
                    f"no valid {schema.__name__} in {attempts} attempt(s){hint}: {exc}"
                ) from exc
            if reply_text:
                conversation.append({"role": "assistant", "content": reply_text})
            conversation.append(
                {
                    "role": "user",
                    "content": (
                        f"That reply was not valid: {exc}. Answer again with only the JSON "
                        f"object, matching the {schema.__name__} schema exactly."
                    ),
                }
            )
            continue
        return parsed
    raise AssertionError("unreachable")  # pragma: no cover


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _quote(text: str) -> str:
    if len(text) > _MAX_QUOTED_OUTPUT:
        text = text[:_MAX_QUOTED_OUTPUT] + "…"
    return json.dumps(text, ensure_ascii=False)
