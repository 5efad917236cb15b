"""Language models: one small interface, one implementation for OpenAI-compatible APIs.

- :class:`ChatModel` is the protocol the rest of barkeeper codes against:
  :meth:`~ChatModel.complete` for text and tool calls, :meth:`~ChatModel.complete_json`
  for output validated by a pydantic model; :class:`StreamingChatModel` adds
  :meth:`~StreamingChatModel.stream`, the reply handed on piece by piece.
- :class:`OpenAIChatModel` implements it for Groq, OpenAI, Ollama, vLLM and
  llama.cpp, with retries (:class:`RetryPolicy`) and errors from :mod:`barkeeper.errors`.
- :func:`count_tokens` and :func:`count_message_tokens` count tokens offline;
  :func:`load_token_tables` loads their tables at start-up.
- :func:`call_openai` runs any ``openai`` client call with the same retries and
  error translation (the embeddings client uses it).

Tests point :class:`OpenAIChatModel` at :class:`barkeeper.testing.llm.LLMServer`.

Example:
    >>> from barkeeper.llm import OpenAIChatModel
    >>> llm = OpenAIChatModel(base_url="http://localhost:11434/v1", model="llama3.2")
"""

from barkeeper.llm._openai import DEFAULT_BASE_URL, DEFAULT_MODEL, OpenAIChatModel
from barkeeper.llm._retry import RetryPolicy, call_openai, parse_retry_after
from barkeeper.llm._structured import JsonMode, extract_json, parse_json_reply
from barkeeper.llm._tokens import (
    DEFAULT_ENCODING,
    count_message_tokens,
    count_tokens,
    encoding_for_model,
    load_token_tables,
)
from barkeeper.llm._types import (
    ChatMessage,
    ChatModel,
    ChatResult,
    Role,
    StreamingChatModel,
    TextCallback,
    ToolCall,
    Usage,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_ENCODING",
    "DEFAULT_MODEL",
    "ChatMessage",
    "ChatModel",
    "ChatResult",
    "JsonMode",
    "OpenAIChatModel",
    "RetryPolicy",
    "Role",
    "StreamingChatModel",
    "TextCallback",
    "ToolCall",
    "Usage",
    "call_openai",
    "count_message_tokens",
    "count_tokens",
    "encoding_for_model",
    "extract_json",
    "load_token_tables",
    "parse_json_reply",
    "parse_retry_after",
]
