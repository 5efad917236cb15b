"""A local OpenAI-compatible server whose answers tests script.

:class:`LLMServer` serves ``/v1/chat/completions``, ``/v1/embeddings`` and
``/v1/models`` on 127.0.0.1, records every request with its prompt token count,
and injects faults (:class:`Fault`) on demand or at random rates. The real
``openai`` client, and so :class:`barkeeper.llm.OpenAIChatModel`, talks to it.

Example:
    >>> async def test_greeting() -> None:
    ...     async with LLMServer() as srv:
    ...         srv.script("Hello!")
    ...         async with OpenAIChatModel(base_url=srv.base_url) as llm:
    ...             result = await llm.complete([{"role": "user", "content": "Hi"}])
    ...         assert result.text == "Hello!"

Run it on its own with ``python -m barkeeper.testing.llm --port 8089``.
"""

from barkeeper.testing.llm._script import (
    Fault,
    FaultKind,
    Reply,
    ReplyLike,
    ToolCallReply,
    default_reply_text,
    example_for_schema,
    load_script,
    parse_reply,
)
from barkeeper.testing.llm._server import Endpoint, LLMServer, RecordedRequest, Responder

__all__ = [
    "Endpoint",
    "Fault",
    "FaultKind",
    "LLMServer",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "Responder",
    "ToolCallReply",
    "default_reply_text",
    "example_for_schema",
    "load_script",
    "parse_reply",
]
