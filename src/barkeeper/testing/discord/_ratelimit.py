""":class:`RateLimiter`: Discord-style per-route and global rate limits.

Per route (``"GET /channels/{channel_id}/messages"``) and per major parameter
(the channel or guild id) a fixed window allows ``route_limit`` requests every
``route_window`` seconds; across all routes ``global_limit`` requests every
``global_window`` seconds. Every decision carries the ``X-RateLimit-*`` headers
Discord sends. Decides only; it never sleeps and never answers a request itself.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = ["RateDecision", "RateLimiter", "RateScope"]

#: ``user``: the route bucket is exhausted; ``global``: the global limit is;
#: ``shared``: an unexpected 429 although the bucket had requests remaining.
RateScope: TypeAlias = Literal["user", "global", "shared"]

# Large enough that discord.py never waits pre-emptively when limits are off.
_UNLIMITED = 1_000_000


@dataclass(slots=True)
class RateDecision:
    """The rate limiter's verdict on one request.

    Attributes:
        headers: ``X-RateLimit-*`` headers to send whatever the verdict.
        scope: ``None`` when the request may proceed, else why it is refused.
        retry_after: Seconds the client must wait (only meaningful when refused).
    """

    headers: dict[str, str] = field(default_factory=dict)
    scope: RateScope | None = None
    retry_after: float = 0.0


@dataclass(slots=True)
class _Window:
    count: int
    resets_at: float


def bucket_hash(route_key: str) -> str:
    """The ``X-RateLimit-Bucket`` value of a route (stable, like Discord's opaque hashes)."""
    return hashlib.md5(route_key.encode(), usedforsecurity=False).hexdigest()


def _ceil_ms(seconds: float) -> float:
    # Round up so a client sleeping for the advertised time never wakes early.
    return math.ceil(max(seconds, 0.0) * 1000) / 1000


class RateLimiter:
    """Counts requests in fixed windows and decides on 429s.

    Args:
        route_limit: Requests per window per route and major parameter; 0 = no limit.
        route_window: Seconds per route window.
        global_limit: Requests per global window; 0 = no limit.
        global_window: Seconds per global window.
        enabled: When ``False`` nothing is refused (headers still come).
        shared_429_rate: Probability of an unexpected ``shared`` 429 while requests remain.
        shared_retry_after: ``retry_after`` of those.
        seed: Seeds the unexpected 429s.
        clock: Monotonic clock (injectable for tests).
        wall_clock: Unix clock for ``X-RateLimit-Reset``.
    """

    def __init__(
        self,
        *,
        route_limit: int,
        route_window: float,
        global_limit: int,
        global_window: float = 1.0,
        enabled: bool = True,
        shared_429_rate: float = 0.0,
        shared_retry_after: float = 0.25,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.route_limit = route_limit
        self.route_window = route_window
        self.global_limit = global_limit
        self.global_window = global_window
        self.enabled = enabled
        self.shared_429_rate = shared_429_rate
        self.shared_retry_after = shared_retry_after
        self._rng = random.Random(f"barkeeper-discord:ratelimit:{seed}")
        self._clock = clock
        self._wall_clock = wall_clock
        self._routes: dict[tuple[str, str], _Window] = {}
        self._global: _Window | None = None

    def check(self, route_key: str, major: str) -> RateDecision:
        """Count one request of ``route_key`` for ``major`` unless it is refused.

        Args:
            route_key: ``"METHOD /path/{template}"``.
            major: The major parameter (channel or guild id), ``""`` if none.

        Returns:
            The decision with the headers to send.
        """
        now = self._clock()
        limit = self.route_limit if self.route_limit > 0 else _UNLIMITED
        key = (route_key, major)
        window = self._routes.get(key)
        if window is None or now >= window.resets_at:
            window = self._routes[key] = _Window(0, now + self.route_window)
            if len(self._routes) > 10_000:
                self._forget_expired(now)
        reset_after = _ceil_ms(window.resets_at - now)
        decision = RateDecision()

        def headers(remaining: int) -> dict[str, str]:
            return {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(remaining, 0)),
                "X-RateLimit-Reset": f"{self._wall_clock() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": bucket_hash(route_key),
            }

        remaining = limit - window.count
        if self.enabled and self.global_limit > 0:
            glob = self._global
            if glob is None or now >= glob.resets_at:
                glob = self._global = _Window(0, now + self.global_window)
            if glob.count >= self.global_limit:
                decision.headers = headers(remaining)
                decision.headers["X-RateLimit-Global"] = "true"
                decision.scope = "global"
                decision.retry_after = _ceil_ms(glob.resets_at - now)
                return decision
        if self.enabled and remaining <= 0:
            decision.headers = headers(0)
            decision.scope = "user"
            decision.retry_after = reset_after
            return decision
        if self.enabled and self.shared_429_rate and self._rng.random() < self.shared_429_rate:
            decision.headers = headers(remaining)
            decision.scope = "shared"
            decision.retry_after = self.shared_retry_after
            return decision
        window.count += 1
        if self._global is not None:
            self._global.count += 1
        if not self.enabled:
            # Never let a client think it must wait.
            remaining = max(limit - window.count, 1)
        else:
            remaining = limit - window.count
        decision.headers = headers(remaining)
        return decision

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, w in self._routes.items() if now >= w.resets_at]:
            del self._routes[key]
