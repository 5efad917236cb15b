"""Retries with exponential backoff, and the translation of ``openai`` errors into ours.

The ``openai`` client's own retries are switched off (``max_retries=0``) so that
every attempt, delay and final error is decided here, where it can be tested:
:class:`RetryPolicy` computes the delays, :func:`call_openai` runs an operation and
maps the driver's exceptions onto :mod:`barkeeper.errors`. Error messages name
the endpoint and never contain the API key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import openai

from barkeeper.errors import (
    InvalidInputError,
    LLMAuthenticationError,
    LLMError,
    LLMOutputError,
    LLMRateLimitError,
    LLMUnavailableError,
)

__all__ = ["RetryPolicy", "call_openai", "parse_retry_after"]

T = TypeVar("T")

_log = logging.getLogger("barkeeper.llm")

#: Status codes worth another attempt besides 429: request timeout, conflict
#: (lock timeout) and every 5xx.
_RETRYABLE_STATUS = frozenset((408, 409))
#: Error codes with which Groq (and others) report output that failed its own
#: JSON or tool-call validation; that is the model's output, not the transport.
_OUTPUT_ERROR_CODES = frozenset(("json_validate_failed", "tool_use_failed"))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed request again, and how long to wait first.

    The n-th retry (0-based) waits ``min(max_delay, initial_delay * multiplier**n)``
    less a random fraction of up to ``jitter`` of it, unless the server sent
    ``Retry-After`` (or ``retry-after-ms``): then exactly that. A ``Retry-After``
    longer than ``max_retry_after`` is not waited for; the error is raised at once.

    Attributes:
        max_retries: Attempts after the first; 0 disables retries.
        initial_delay: Seconds before the first retry.
        max_delay: Cap on the computed backoff, in seconds.
        multiplier: Growth of the backoff per retry.
        jitter: Fraction (0–1) of each backoff removed at random, so that many
            clients do not retry in lockstep.
        max_retry_after: The longest server-requested wait to honour, in seconds.

    Example:
        >>> RetryPolicy(initial_delay=1, jitter=0).backoff(3)
        8.0
    """

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise InvalidInputError(f"max_retries must be 0 or more, not {self.max_retries}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise InvalidInputError("retry delays must not be negative")
        if self.multiplier < 1:
            raise InvalidInputError(f"multiplier must be at least 1, not {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise InvalidInputError(f"jitter must be between 0 and 1, not {self.jitter}")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The computed wait before retry number ``retry`` (0-based), in seconds.

        Args:
            retry: How many retries came before this one.
            rng: The random source for the jitter (the module's by default).

        Returns:
            The delay, jitter applied.
        """
        exponent = min(retry, 64)  # no overflow however long a caller loops
        delay = min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        fraction = (rng or random).random() * self.jitter
        return delay * (1 - fraction)

    def delay(
        self, retry: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float | None:
        """The wait before retry number ``retry``, honouring the server's request.

        Args:
            retry: How many retries came before this one.
            retry_after: Seconds the server asked for, if it did.
            rng: The random source for the jitter.

        Returns:
            Seconds to wait, or ``None`` when the server asked for longer than
            :attr:`max_retry_after` (do not retry).
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            if retry_after > self.max_retry_after:
                return None
            return retry_after
        return self.backoff(retry, rng)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response asks the client to wait, from its headers.

    Reads ``retry-after-ms`` (OpenAI's), then ``Retry-After`` as seconds (fractions
    allowed) or as an HTTP date.

    Args:
        headers: Response headers (case-insensitively readable, like httpx's).

    Returns:
        Seconds (never negative), or ``None`` when absent or unreadable.
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isnan(seconds):
            return None
        return max(0.0, seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret in it replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message


class _Retryable(Exception):
    """An attempt failed in a way worth another try; carries the final error to raise."""

    def __init__(self, final: LLMError, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


def _translate(exc: Exception, *, endpoint: str, timeout: float | None, what: str) -> Exception:
    """Our error for a driver error; a :class:`_Retryable` when worth another try."""
    if isinstance(exc, openai.APITimeoutError):
        limit = f" of {timeout:g} s" if timeout is not None else ""
        return _Retryable(
            LLMUnavailableError(
                f"the model endpoint at {endpoint} did not answer {what} within the timeout"
                f"{limit}; check that it is up and not overloaded, or raise the timeout"
            )
        )
    if isinstance(exc, openai.APIConnectionError):
        return _Retryable(
            LLMUnavailableError(
                f"could not connect to the model endpoint at {endpoint} ({exc.message}); "
                "check the base URL and that the server is running"
            )
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        # The server's message may quote (part of) the key: leave it out entirely.
        return LLMAuthenticationError(
            f"the model endpoint at {endpoint} refused the API key (HTTP {exc.status_code}); "
            "check that the key is set, current and valid for this endpoint"
        )
    if isinstance(exc, openai.RateLimitError):
        return _Retryable(
            LLMRateLimitError(
                f"the model endpoint at {endpoint} kept answering 429 (rate limited): "
                f"{_server_message(exc)}; wait, lower the request rate or raise the quota"
            ),
            retry_after=parse_retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _server_message(exc)
        if status >= 500 or status in _RETRYABLE_STATUS:
            return _Retryable(
                LLMUnavailableError(
                    f"the model endpoint at {endpoint} kept failing (HTTP {status}: {message}); "
                    "try again later or use another endpoint"
                ),
                retry_after=parse_retry_after(exc.response.headers),
            )
        if exc.code in _OUTPUT_ERROR_CODES:
            return LLMOutputError(f"the endpoint rejected the model's output: {message}")
        if status == 404:
            return LLMError(
                f"the model endpoint at {endpoint} answered 404 for {what} ({message}); "
                "check the model name and that the base URL ends with /v1"
            )
        return LLMError(
            f"the model endpoint at {endpoint} refused {what} (HTTP {status}): {message}"
        )
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return _Retryable(
            LLMUnavailableError(
                f"the model endpoint at {endpoint} sent a response that is not valid "
                f"OpenAI JSON for {what}; check that the base URL points at an "
                "OpenAI-compatible API"
            )
        )
    return LLMError(f"calling the model endpoint at {endpoint} failed: {exc}")


async def call_openai(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    endpoint: str,
    secrets: Sequence[str] = (),
    request_timeout: float | None = None,
    what: str = "the request",
    validate: Callable[[T], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Run an ``openai`` call, retrying transient failures; translate errors into ours.

    Args:
        operation: Makes one request (a fresh coroutine per call).
        policy: When and how long to retry.
        endpoint: The base URL, for messages.
        secrets: Strings scrubbed from every message (the API key).
        request_timeout: The per-request timeout in seconds, for messages.
        what: What is being asked for, for messages (``"a chat completion"``).
        validate: Checks a response and raises :class:`json.JSONDecodeError` or
            ``APIResponseValidationError`` when it is not what was asked for.
        sleep: Waits between attempts (``asyncio.sleep``).
        rng: Random source for the jitter.

    Returns:
        The response and the number of attempts it took.

    Raises:
        LLMUnavailableError: Unreachable, timed out, 5xx or garbage after every retry.
        LLMRateLimitError: 429 after every retry (or a ``Retry-After`` too long).
        LLMAuthenticationError: 401 or 403.
        LLMOutputError: The endpoint rejected the model's own output.
        LLMError: Any other refusal (400, 404, …), with the server's message.
    """
    retry = 0
    while True:
        try:
            response = await operation()
            if validate is not None:
                validate(response)
            return response, retry + 1
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            error = _translate(exc, endpoint=endpoint, timeout=request_timeout, what=what)
            if not isinstance(error, _Retryable):
                raise type(error)(redact(str(error), secrets)) from None
            wait = (
                policy.delay(retry, error.retry_after, rng) if retry < policy.max_retries else None
            )
            if wait is None:
                final = error.final
                attempts = retry + 1
                detail = f" (after {attempts} attempts)" if attempts > 1 else ""
                if error.retry_after is not None and retry < policy.max_retries:
                    detail = (
                        f" (it asked to wait {error.retry_after:g} s, more than the "
                        f"{policy.max_retry_after:g} s allowed)"
                    )
                raise type(final)(redact(f"{final}{detail}", secrets)) from None
            _log.info(
                "retrying %s at %s in %.2f s (retry %d of %d): %s",
                what,
                endpoint,
                wait,
                retry + 1,
                policy.max_retries,
                type(error.final).__name__,
            )
        await sleep(wait)
        retry += 1
