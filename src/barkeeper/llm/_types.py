"""The chat-model interface: messages in, a :class:`ChatResult` out.

Everything here is plain data and a :class:`typing.Protocol`; nothing talks to a
network. Implementations live in sibling modules (:mod:`barkeeper.llm._openai`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    Any,
    Literal,
    NotRequired,
    Protocol,
    Required,
    TypeAlias,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

from pydantic import BaseModel

from barkeeper.errors import LLMOutputError

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatResult",
    "ModelT",
    "Role",
    "StreamingChatModel",
    "TextCallback",
    "ToolCall",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool", "developer"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class ChatMessage(TypedDict, total=False):
    """One OpenAI-format chat message.

    Only ``role`` is required; ``content`` is text (or a list of content parts),
    ``tool_calls`` appears on assistant messages that called tools and
    ``tool_call_id`` on the ``tool`` messages that answer them.
    """

    role: Required[Role]
    content: NotRequired[str | list[dict[str, Any]] | None]
    name: NotRequired[str]
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for.

    Attributes:
        id: The call's id, to quote in the ``tool`` message that answers it.
        name: The function's name.
        arguments: The arguments as the model wrote them (a JSON text).
    """

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """Decode :attr:`arguments` as a JSON object.

        Returns:
            The arguments; ``{}`` when the model sent none.

        Raises:
            LLMOutputError: The arguments are not a JSON object.
        """
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError as exc:
            raise LLMOutputError(
                f"the model called {self.name!r} with arguments that are not JSON ({exc}); "
                "ask again or use a model that supports tool calls"
            ) from exc
        if not isinstance(value, dict):
            raise LLMOutputError(
                f"the model called {self.name!r} with arguments that are not a JSON object"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """This call in the OpenAI wire format (for an assistant message)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the endpoint reported for one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ChatResult:
    """What the model answered to one request.

    Attributes:
        content: The text of the reply; ``None`` when the model only called tools.
        tool_calls: The function calls the model asked for, in order.
        finish_reason: ``"stop"``, ``"length"``, ``"tool_calls"``, … as reported.
        model: The model that answered, as the endpoint named it.
        usage: Token counts, when the endpoint reported them.
        attempts: How many HTTP requests it took (1 plus the retries).
    """

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str = ""
    usage: Usage | None = None
    attempts: int = field(default=1, compare=False)

    @property
    def text(self) -> str:
        """:attr:`content`, or ``""`` when there is none."""
        return self.content or ""

    def to_message(self) -> ChatMessage:
        """This reply as an assistant message, to append to the conversation.

        Returns:
            ``{"role": "assistant", "content": ..., "tool_calls": [...]}`` (the
            ``tool_calls`` key only when there are calls).
        """
        message: ChatMessage = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message


class ChatModel(Protocol):
    """A chat model behind any API: the one interface the rest of barkeeper uses.

    Implementations translate their driver's errors into :mod:`barkeeper.errors`:
    :class:`~barkeeper.errors.LLMUnavailableError`,
    :class:`~barkeeper.errors.LLMAuthenticationError`,
    :class:`~barkeeper.errors.LLMRateLimitError` and
    :class:`~barkeeper.errors.LLMOutputError`.
    """

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
            model: Another model than the implementation's default.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length; ``None`` leaves the endpoint's default.
            tools: OpenAI-format tool definitions the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a named function.
            response_format: ``{"type": "json_object"}`` or a ``json_schema`` format.

        Returns:
            The reply.
        """
        ...

    async def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelT:
        """Ask for a reply that is a JSON object matching ``schema``, and validate it.

        Args:
            messages: The conversation so far, oldest first.
            schema: The pydantic model the reply must validate against.
            model: Another model than the implementation's default.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length.

        Returns:
            The validated reply.

        Raises:
            LLMOutputError: The reply did not validate, even after one retry.
        """
        ...


#: Receives each piece of text as the model streams it (may be async).
TextCallback: TypeAlias = Callable[[str], Awaitable[None] | None]


@runtime_checkable
class StreamingChatModel(ChatModel, Protocol):
    """A :class:`ChatModel` that can also stream its reply as it is written."""

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
        """Ask for the next message, handing its text to ``on_text`` piece by piece.

        Failures before the first piece are retried like :meth:`ChatModel.complete`;
        once text has been handed on, a failure is raised at once (a retry would
        repeat it).

        Args:
            messages: The conversation so far, oldest first.
            on_text: Called with each new piece of the reply's text, in order.
            model: Another model than the implementation's default.
            temperature: Sampling temperature; ``None`` leaves the endpoint's default.
            max_tokens: Cap on the reply's length.
            tools: OpenAI-format tool definitions the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a named function.

        Returns:
            The whole reply, as :meth:`ChatModel.complete` returns it.
        """
        ...
