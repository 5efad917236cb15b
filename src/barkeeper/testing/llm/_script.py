"""What the test LLM server answers: scripted replies, faults, and the defaults.

Plain data and pure functions; the server in :mod:`._server` consumes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeAlias

__all__ = [
    "Fault",
    "FaultKind",
    "Reply",
    "ReplyLike",
    "ToolCallReply",
    "default_reply_text",
    "example_for_schema",
    "load_script",
    "parse_reply",
]

#: Model output used by the ``malformed_json`` fault: prose and a broken object.
MALFORMED_JSON_CONTENT = 'Sure! Here is the JSON you asked for: {"answer": "unfinished, '


class FaultKind(StrEnum):
    """A failure the server can produce instead of a normal answer."""

    RATE_LIMIT = "rate_limit"
    """HTTP 429 with OpenAI's error body and ``Retry-After``."""
    SERVER_ERROR = "server_error"
    """HTTP 500 (or another 5xx) with OpenAI's error body."""
    TIMEOUT = "timeout"
    """No answer for ``delay`` seconds (longer than the client's timeout)."""
    MALFORMED_JSON = "malformed_json"
    """A normal 200 completion whose content is not valid JSON."""
    INVALID_BODY = "invalid_body"
    """HTTP 200 whose body is not JSON at all (a broken proxy)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure.

    Attributes:
        kind: What goes wrong.
        status: The HTTP status of a ``server_error`` (500 by default).
        retry_after: Seconds sent in ``Retry-After`` with a ``rate_limit``
            (fractions allowed; ``None`` sends no header).
        delay: Seconds a ``timeout`` holds the request before answering.
        content: The model output of a ``malformed_json`` fault.
    """

    kind: FaultKind
    status: int = 500
    retry_after: float | None = 1.0
    delay: float = 30.0
    content: str = MALFORMED_JSON_CONTENT

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> Fault:
        """HTTP 429, asking the client to wait ``retry_after`` seconds."""
        return cls(FaultKind.RATE_LIMIT, status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """An HTTP 5xx with OpenAI's error body."""
        return cls(FaultKind.SERVER_ERROR, status=status)

    @classmethod
    def timeout(cls, delay: float = 30.0) -> Fault:
        """Hold the request for ``delay`` seconds, then give the default answer."""
        return cls(FaultKind.TIMEOUT, delay=delay)

    @classmethod
    def malformed_json(cls, content: str = MALFORMED_JSON_CONTENT) -> Fault:
        """A completion whose content is not valid JSON."""
        return cls(FaultKind.MALFORMED_JSON, status=200, content=content)

    @classmethod
    def invalid_body(cls) -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls(FaultKind.INVALID_BODY, status=200)

    @classmethod
    def of(cls, kind: FaultKind | str, **options: Any) -> Fault:
        """The fault of kind ``kind`` with its defaults, overridden by ``options``.

        Raises:
            ValueError: ``kind`` is not a :class:`FaultKind` value.
        """
        kind = FaultKind(kind)
        factories: dict[FaultKind, Callable[..., Fault]] = {
            FaultKind.RATE_LIMIT: cls.rate_limit,
            FaultKind.SERVER_ERROR: cls.server_error,
            FaultKind.TIMEOUT: cls.timeout,
            FaultKind.MALFORMED_JSON: cls.malformed_json,
            FaultKind.INVALID_BODY: cls.invalid_body,
        }
        return factories[kind](**options)


@dataclass(frozen=True, slots=True)
class ToolCallReply:
    """A tool call the scripted model makes.

    Attributes:
        name: The function to call.
        arguments: Its arguments: a mapping (sent as JSON) or a raw string
            (sent as is, e.g. to test broken arguments).
        id: The call id; ``call_<n>`` when omitted.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted chat completion.

    Attributes:
        content: The assistant's text (``None`` for a pure tool call).
        tool_calls: Tool calls to return.
        finish_reason: Defaults to ``"tool_calls"`` when there are calls, else ``"stop"``.
        delay: Seconds to wait before answering (to test slowness without a fault).
        break_after: When streamed, drop the connection after this many pieces of
            text (a stream that breaks mid-reply); ``None`` streams it whole.
        pace: When streamed, seconds between pieces of text (a model writing at a
            visible speed, so a test sees the first words before the last).
    """

    content: str | None = None
    tool_calls: Sequence[ToolCallReply] = ()
    finish_reason: str | None = None
    delay: float = 0.0
    break_after: int | None = None
    pace: float = 0.0

    @classmethod
    def json(cls, value: Any) -> Reply:
        """A reply whose content is ``value`` serialised as JSON."""
        return cls(content=json.dumps(value))

    @classmethod
    def call(
        cls, name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None
    ) -> Reply:
        """A reply that calls one tool."""
        return cls(tool_calls=(ToolCallReply(name, arguments or {}, id),))


#: What a test may script: text, a JSON object (sent as JSON text), a full
#: :class:`Reply`, or a :class:`Fault` (that request fails).
ReplyLike: TypeAlias = str | Mapping[str, Any] | Reply | Fault


def parse_reply(item: ReplyLike) -> Reply | Fault:
    """Normalise a scripted item into a :class:`Reply` or a :class:`Fault`.

    Mappings are read as in script files: ``{"fault": "rate_limit", ...}`` is a
    fault; ``{"content": ...}`` and/or ``{"tool_calls": [{"name", "arguments"}]}``
    a reply; ``{"json": value}`` a reply whose content is ``value`` as JSON; any
    other mapping is itself sent as JSON content.

    Raises:
        ValueError: A mapping names an unknown fault or has malformed tool calls.
    """
    if isinstance(item, Reply | Fault):
        return item
    if isinstance(item, str):
        return Reply(content=item)
    if "fault" in item:
        options = {k: v for k, v in item.items() if k not in ("fault", "times")}
        return Fault.of(str(item["fault"]), **options)
    if "json" in item and len(item) == 1:
        return Reply.json(item["json"])
    if "content" in item or "tool_calls" in item:
        calls = []
        for call in item.get("tool_calls") or ():
            if not isinstance(call, Mapping) or "name" not in call:
                raise ValueError(f"a scripted tool call needs a name: {call!r}")
            calls.append(
                ToolCallReply(str(call["name"]), call.get("arguments") or {}, call.get("id"))
            )
        return Reply(
            content=item.get("content"),
            tool_calls=tuple(calls),
            finish_reason=item.get("finish_reason"),
            delay=float(item.get("delay", 0.0)),
            break_after=item.get("break_after"),
            pace=float(item.get("pace", 0.0)),
        )
    return Reply.json(dict(item))


def load_script(path: str | Path) -> tuple[list[Reply | Fault], list[tuple[Fault, int]]]:
    """Read a script file for the standalone server.

    The file is JSON: either a list of replies, or an object with ``"replies"``
    (a list) and ``"faults"`` (one-off faults, each
    ``{"fault": kind, "times": n, ...options}``, applied to the next ``n`` requests).
    Replies are as in :func:`parse_reply`.

    Example file::

        {"replies": ["Hello!", {"tool_calls": [{"name": "remember", "arguments": {"x": 1}}]}],
         "faults": [{"fault": "rate_limit", "times": 2, "retry_after": 0.5}]}

    Args:
        path: The file.

    Returns:
        The replies, and the faults with how many requests each applies to.

    Raises:
        ValueError: The file is not valid JSON or not in this shape.
        OSError: The file cannot be read.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {"replies": data}
    if not isinstance(data, dict):
        raise ValueError("a script is a JSON list of replies or an object with 'replies'")
    unknown = set(data) - {"replies", "faults"}
    if unknown:
        raise ValueError(f"unknown keys in the script: {', '.join(sorted(unknown))}")
    replies = [parse_reply(item) for item in data.get("replies", [])]
    faults = []
    for spec in data.get("faults", []):
        if not isinstance(spec, dict) or "fault" not in spec:
            raise ValueError(f"a scripted fault needs a 'fault' kind: {spec!r}")
        fault = parse_reply(spec)
        assert isinstance(fault, Fault)
        faults.append((fault, int(spec.get("times", 1))))
    return replies, faults


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def default_reply_text(request: Mapping[str, Any]) -> str:
    """What the server answers when nothing is scripted.

    - ``response_format`` ``json_schema``: a minimal instance of the schema, as JSON
      (see :func:`example_for_schema`);
    - ``response_format`` ``json_object``: ``{}``;
    - otherwise the text of the last user message, echoed back unchanged.

    Args:
        request: The chat-completion request body.

    Returns:
        The reply's content.
    """
    response_format = request.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            if isinstance(schema, Mapping):
                return json.dumps(example_for_schema(schema))
            return "{}"
        if kind == "json_object":
            return "{}"
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return _message_text(message)
    return ""


_FORMAT_EXAMPLES = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "someone@example.com",
    "uri": "https://example.com/",
}


def example_for_schema(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A minimal value that validates against a JSON schema (as pydantic writes them).

    Objects get their required properties only; arrays their ``minItems``; strings,
    numbers and booleans their ``default``, first ``enum`` value, ``const``, a
    value for a known ``format``, or an empty/zero value within bounds.

    Args:
        schema: The (sub)schema.
        root: The document ``$ref`` pointers resolve against (``schema`` itself
            at the top).

    Returns:
        A JSON-compatible value.
    """
    return _example(schema, root or schema, 0)


def _example(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if depth > 32:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _example(target, root, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if o.get("type") != "null"), options[0])
            return _example(chosen, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties", {})
        return {
            name: _example(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        items = schema.get("items", {})
        return [_example(items, root, depth + 1) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMAT_EXAMPLES:
            return _FORMAT_EXAMPLES[fmt]
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 0 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None
