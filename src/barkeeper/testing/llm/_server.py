""":class:`LLMServer`: a local OpenAI-compatible HTTP server whose answers tests script.

It serves ``POST /v1/chat/completions``, ``POST /v1/embeddings`` and
``GET /v1/models`` on 127.0.0.1, records every request, and injects faults on
demand. It never calls out to any network and never stores an API key it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import random
import re
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeAlias

from aiohttp import web

from barkeeper.embeddings import hashed_embedding
from barkeeper.llm import count_message_tokens, count_tokens, load_token_tables
from barkeeper.testing.llm._script import (
    Fault,
    FaultKind,
    Reply,
    ReplyLike,
    default_reply_text,
    parse_reply,
)

__all__ = ["Endpoint", "LLMServer", "RecordedRequest", "Responder"]

#: A function that answers a chat-completion request (its JSON body), or returns
#: ``None`` to fall through to the default answer. May be async.
Responder: TypeAlias = Callable[[dict[str, Any]], "ReplyLike | Awaitable[ReplyLike | None] | None"]
Endpoint = Literal["any", "chat", "embeddings"]

_CHAT_PATH = "/v1/chat/completions"
_EMBEDDINGS_PATH = "/v1/embeddings"
_MODELS_PATH = "/v1/models"
_REDACTED = "[redacted]"


@dataclass(slots=True)
class RecordedRequest:
    """One request the server received, as it received it.

    Attributes:
        method: ``"POST"`` or ``"GET"``.
        path: The URL path (``/v1/chat/completions``, …).
        headers: Request headers; the ``Authorization`` value is replaced by
            ``"[redacted]"``.
        body: The decoded JSON body (``None`` for GET or an undecodable body).
        prompt_tokens: Prompt tokens by barkeeper's offline counter: the messages
            (and tools) of a chat request, the inputs of an embeddings request.
        status: The HTTP status answered (set once the answer is decided).
        fault: The fault injected into this request, if any.
        response: The JSON body answered, if any.
        received_at: ``time.time()`` at arrival.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    prompt_tokens: int = 0
    status: int = 0
    fault: FaultKind | None = None
    response: Any = None
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the request (``[]`` for other endpoints)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []


_RECORD_KEY = web.RequestKey("barkeeper_record", RecordedRequest)


def _pieces(text: str, words: int = 3) -> list[str]:
    """``text`` cut into pieces of a few words (spaces kept), as a model streams it."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _mask(key: str) -> str:
    """How OpenAI quotes a wrong key back: the first and last few characters."""
    return f"{key[:3]}{'*' * 4}{key[-4:]}" if len(key) > 8 else "*" * 4


class LLMServer:
    """A local OpenAI-compatible server for tests and benchmarks.

    Chat answers come, in order of precedence, from: one-off faults
    (:meth:`inject`), random faults (``fault_rates``), the script queue
    (:meth:`script`), the :attr:`responder`, and finally the default answer
    (see :func:`~barkeeper.testing.llm.default_reply_text`: the last user message
    echoed, ``{}`` in ``json_object`` mode, a minimal schema instance in
    ``json_schema`` mode). Embeddings are deterministic hashed bags of words
    (:func:`barkeeper.embeddings.hashed_embedding`), so they equal
    :class:`~barkeeper.embeddings.HashingEmbedder`'s.

    Args:
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        api_key: When set, requests without ``Authorization: Bearer <api_key>``
            get 401 with OpenAI's error body.
        models: Model ids listed by ``GET /v1/models``.
        embedding_dimension: Vector size when a request names no ``dimensions``.
        responder: Answers chat requests nothing else answered.
        fault_rates: Probability per request of each fault kind (summing to at
            most 1), e.g. ``{"rate_limit": 0.1}``; applied to chat and embeddings.
        seed: Seed of the random fault draws, for reproducible runs.
        retry_after: ``Retry-After`` seconds of rate-limit faults drawn at random.
        timeout_delay: Seconds a timeout fault drawn at random holds a request.
        on_request: Called with each request once it has been answered (or has
            failed), e.g. to log it.

    Example:
        >>> async def test_hello() -> None:
        ...     async with LLMServer() as srv:
        ...         srv.script("Hello!", Fault.rate_limit(retry_after=0.01))
        ...         ...  # point OpenAIChatModel(base_url=srv.base_url) at it
        ...         assert srv.requests[0].prompt_tokens > 0
    """

    #: Model ids ``GET /v1/models`` lists unless told otherwise.
    DEFAULT_MODELS: ClassVar[tuple[str, ...]] = ("openai/gpt-oss-120b", "text-embedding-3-small")

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: tuple[str, ...] | None = None,
        embedding_dimension: int = 384,
        responder: Responder | None = None,
        fault_rates: Mapping[FaultKind | str, float] | None = None,
        seed: int | None = 0,
        retry_after: float | None = 1.0,
        timeout_delay: float = 30.0,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        if embedding_dimension < 1:
            raise ValueError(f"embedding_dimension must be positive, not {embedding_dimension}")
        self.host = host
        self._requested_port = port
        self._api_key = api_key
        self.models = models if models is not None else self.DEFAULT_MODELS
        self.embedding_dimension = embedding_dimension
        self.responder: Responder | None = responder
        self.retry_after = retry_after
        self.timeout_delay = timeout_delay
        self.on_request = on_request
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply | Fault] = deque()
        self._faults: deque[tuple[Fault, Endpoint]] = deque()
        self._rates: dict[FaultKind, float] = {}
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = asyncio.Event()
        self.set_fault_rates(fault_rates or {})

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._port is not None else "stopped"
        return f"LLMServer({state}, requests={len(self.requests)})"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Does nothing if already started."""
        if self._runner is not None:
            return
        # The default model's token table, for counting prompts: loaded now rather
        # than on the first request (building it stalls the loop for a second or so).
        load_token_tables()
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._notify])
        app.router.add_post(_CHAT_PATH, self._handle_chat)
        app.router.add_post(_EMBEDDINGS_PATH, self._handle_embeddings)
        app.router.add_get(_MODELS_PATH, self._handle_models)
        # Cancel a handler when its client goes away (a timed-out request), and do
        # not wait long on shutdown for handlers still sleeping in a timeout fault.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._closing.clear()
        self._runner = runner
        address = runner.addresses[0] if runner.addresses else None
        self._port = int(address[1]) if address else self._requested_port

    async def stop(self) -> None:
        """Stop listening and release the port; requests in flight are abandoned."""
        if self._runner is None:
            return
        self._closing.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0).

        Raises:
            RuntimeError: The server is not started.
        """
        if self._port is None:
            raise RuntimeError("the LLMServer is not started: use 'async with' or start()")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``, without a path."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root to give clients: ``http://host:port/v1``."""
        return f"{self.url}/v1"

    # -- scripting -----------------------------------------------------------

    def script(self, *replies: ReplyLike) -> None:
        """Queue answers for the next chat requests, one each, in order.

        Args:
            *replies: Text, a mapping (sent as JSON content, or read as in
                :func:`~barkeeper.testing.llm.parse_reply`), a :class:`Reply`, or
                a :class:`Fault` (that request fails).
        """
        self._queue.extend(parse_reply(reply) for reply in replies)

    def inject(
        self, fault: Fault | FaultKind | str, *, times: int = 1, endpoint: Endpoint = "any"
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` fail with ``fault``.

        One-off faults come before everything else, in the order injected.

        Args:
            fault: A :class:`Fault`, or a kind for the kind's defaults.
            times: How many requests fail.
            endpoint: ``"chat"``, ``"embeddings"`` or ``"any"`` of the two.
        """
        if not isinstance(fault, Fault):
            fault = Fault.of(fault)
        self._faults.extend([(fault, endpoint)] * times)

    def set_fault_rates(self, rates: Mapping[FaultKind | str, float]) -> None:
        """Set the probability per request of each fault (replacing earlier rates).

        Args:
            rates: Fault kind to probability; ``{}`` turns random faults off.

        Raises:
            ValueError: A rate is outside 0–1, the rates sum to more than 1, or
                a kind is unknown.
        """
        parsed = {FaultKind(kind): float(rate) for kind, rate in rates.items()}
        if any(not 0 <= rate <= 1 for rate in parsed.values()) or sum(parsed.values()) > 1:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {rates}")
        self._rates = parsed

    def reset(self) -> None:
        """Forget scripted replies, one-off faults and recorded requests."""
        self._queue.clear()
        self._faults.clear()
        self.requests.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat-completion requests."""
        return [r for r in self.requests if r.path == _CHAT_PATH]

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of all recorded requests, by the offline counter."""
        return sum(r.prompt_tokens for r in self.requests)

    # -- request handling ----------------------------------------------------

    @web.middleware
    async def _notify(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            record = request.get(_RECORD_KEY)
            if self.on_request is not None and record is not None:
                self.on_request(record)

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, Any, bool]:
        headers = {
            name: (_REDACTED if name.lower() == "authorization" else value)
            for name, value in request.headers.items()
        }
        body: Any = None
        valid = True
        if request.method == "POST":
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                valid = False
            if not isinstance(body, dict):
                valid = False
        record = RecordedRequest(request.method, request.path, headers, body)
        self.requests.append(record)
        request[_RECORD_KEY] = record
        return record, body, valid

    def _respond(
        self, record: RecordedRequest, payload: Any, status: int = 200, **headers: str
    ) -> web.Response:
        record.status = status
        record.response = payload
        all_headers = {"x-request-id": f"req_{next(self._ids)}", **headers}
        return web.json_response(payload, status=status, headers=all_headers)

    def _check_key(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        if self._api_key is None:
            return None
        sent = request.headers.get("Authorization", "")
        if sent == f"Bearer {self._api_key}":
            return None
        given = sent.removeprefix("Bearer ").strip()
        message = (
            f"Incorrect API key provided: {_mask(given)}. You can find your API key "
            "at https://platform.openai.com/account/api-keys."
            if given
            else "You didn't provide an API key."
        )
        return self._respond(
            record, _error_body(message, "invalid_request_error", "invalid_api_key"), 401
        )

    def _next_fault(self, endpoint: Endpoint) -> Fault | None:
        for index, (fault, where) in enumerate(self._faults):
            if where in ("any", endpoint):
                del self._faults[index]
                return fault
        if self._rates:
            draw = self._rng.random()
            for kind, rate in self._rates.items():
                if draw < rate:
                    if kind is FaultKind.RATE_LIMIT:
                        return Fault.rate_limit(self.retry_after)
                    if kind is FaultKind.TIMEOUT:
                        return Fault.timeout(self.timeout_delay)
                    return Fault.of(kind)
                draw -= rate
        return None

    async def _hold(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _fault_response(self, record: RecordedRequest, fault: Fault) -> web.StreamResponse | None:
        """The response for a transport-level fault (None for timeout and malformed JSON)."""
        record.fault = fault.kind
        if fault.kind is FaultKind.RATE_LIMIT:
            headers: dict[str, str] = {}
            wait = ""
            if fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
                headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
                wait = f" Please try again in {fault.retry_after:g}s."
            model = record.body.get("model", "") if isinstance(record.body, dict) else ""
            body = _error_body(
                f"Rate limit reached for model `{model}` on tokens per minute (TPM).{wait}",
                "tokens",
                "rate_limit_exceeded",
            )
            return self._respond(record, body, 429, **headers)
        if fault.kind is FaultKind.SERVER_ERROR:
            body = _error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
            )
            return self._respond(record, body, fault.status)
        if fault.kind is FaultKind.INVALID_BODY:
            record.status = 200
            return web.Response(
                status=200,
                text='{"id": "chatcmpl-garbled", "choices": [{"message": <html>Bad Gateway',
                content_type="application/json",
            )
        return None

    def _bad_request(
        self, record: RecordedRequest, message: str, param: str | None
    ) -> web.Response:
        return self._respond(
            record, _error_body(message, "invalid_request_error", None, param), 400
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        record, body, valid = await self._record(request)
        refused = self._check_key(request, record)
        if refused is not None:
            return refused
        if not valid:
            return self._bad_request(record, "The request body is not a JSON object.", None)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._bad_request(record, "'messages' must be a non-empty array.", "messages")
        if not isinstance(body.get("model"), str):
            return self._bad_request(record, "'model' is required.", "model")
        tools = body.get("tools") if isinstance(body.get("tools"), list) else None
        record.prompt_tokens = count_message_tokens(
            [m for m in messages if isinstance(m, Mapping)], model=body["model"], tools=tools
        )

        reply = self._next_fault("chat") or await self._scripted_reply(body)
        if isinstance(reply, Fault):
            response = self._fault_response(record, reply)
            if response is not None:
                return response
            if reply.kind is FaultKind.TIMEOUT:
                # The client has given up by now; answer without consuming the script,
                # whose next reply belongs to the client's retry.
                await self._hold(reply.delay)
                return await self._answer(request, record, body, Reply(default_reply_text(body)))
            return await self._answer(request, record, body, Reply(content=reply.content))
        if reply.delay:
            await self._hold(reply.delay)
        return await self._answer(request, record, body, reply)

    async def _answer(
        self, request: web.Request, record: RecordedRequest, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        response = self._completion(record, body, reply)
        if not body.get("stream"):
            return response
        return await self._stream(request, record, body, reply.break_after, reply.pace)

    async def _stream(
        self,
        request: web.Request,
        record: RecordedRequest,
        body: dict[str, Any],
        break_after: int | None = None,
        pace: float = 0.0,
    ) -> web.StreamResponse:
        """Send the completion already decided (``record.response``) as server-sent events.

        The content goes in pieces of a few words, each tool call in one chunk, then
        the finish reason and, when ``stream_options.include_usage`` asks, the usage.
        """
        payload = record.response
        choice = payload["choices"][0]
        message = choice["message"]
        head = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint")}
        head["object"] = "chat.completion.chunk"
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "x-request-id": f"req_{next(self._ids)}"}
        )
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {
                **head,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        content = message.get("content") or ""
        for index, piece in enumerate(_pieces(content)):
            if break_after is not None and index >= break_after:
                if request.transport is not None:
                    request.transport.close()  # mid-reply: no [DONE], no clean end
                return response
            await send({"content": piece})
            await asyncio.sleep(pace)
        for index, call in enumerate(message.get("tool_calls") or ()):
            await send({"tool_calls": [{"index": index, **call}]})
        await send({}, choice["finish_reason"])
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            usage = {**head, "choices": [], "usage": payload["usage"]}
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _scripted_reply(self, body: dict[str, Any]) -> Reply | Fault:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            answer = self.responder(body)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                return parse_reply(answer)
        return Reply(content=default_reply_text(body))

    def _completion(
        self, record: RecordedRequest, body: dict[str, Any], reply: Reply
    ) -> web.Response:
        model = str(body.get("model", ""))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        completion_tokens = count_tokens(reply.content or "", model=model)
        if reply.tool_calls:
            calls = []
            for call in reply.tool_calls:
                arguments = (
                    call.arguments
                    if isinstance(call.arguments, str)
                    else json.dumps(call.arguments)
                )
                completion_tokens += count_tokens(call.name + arguments, model=model)
                calls.append(
                    {
                        "id": call.id or f"call_{next(self._ids)}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": arguments},
                    }
                )
            message["tool_calls"] = calls
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        payload = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "barkeeper-testing",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": record.prompt_tokens + completion_tokens,
            },
        }
        return self._respond(record, payload)

    async def _handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        record, body, valid = await self._record(request)
        refused = self._check_key(request, record)
        if refused is not None:
            return refused
        if not valid:
            return self._bad_request(record, "The request body is not a JSON object.", None)
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._bad_request(
                record,
                "'input' must be a string or a non-empty array of strings "
                "(token arrays are not supported by barkeeper's test server).",
                "input",
            )
        dimension = body.get("dimensions", self.embedding_dimension)
        if not isinstance(dimension, int) or dimension < 1:
            return self._bad_request(
                record, "'dimensions' must be a positive integer.", "dimensions"
            )
        model = str(body.get("model", ""))
        record.prompt_tokens = sum(count_tokens(text, model=model) for text in texts)

        fault = self._next_fault("embeddings")
        if fault is not None:
            response = self._fault_response(record, fault)
            if response is not None:
                return response
            if fault.kind is FaultKind.TIMEOUT:
                await self._hold(fault.delay)
            else:  # malformed JSON has no meaning here: send a garbled body instead
                return self._fault_response(record, Fault.invalid_body()) or web.Response()

        base64_format = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = hashed_embedding(text, dimension)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode("ascii")
                if base64_format
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": record.prompt_tokens, "total_tokens": record.prompt_tokens},
        }
        return self._respond(record, payload)

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        record, _body, _valid = await self._record(request)
        refused = self._check_key(request, record)
        if refused is not None:
            return refused
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "barkeeper-testing"}
            for model in self.models
        ]
        return self._respond(record, {"object": "list", "data": data})
