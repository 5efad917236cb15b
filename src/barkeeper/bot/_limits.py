"""Per-user limits: a sliding-window message rate and a daily token budget (in memory).

Kept per process: a restart forgets them, which only ever gives a user more room.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

__all__ = ["LimitVerdict", "UserLimits"]

LimitVerdict = Literal["ok", "rate", "tokens"]


@dataclass
class _User:
    sent: deque[float] = field(default_factory=deque)
    day: date | None = None
    tokens: int = 0
    told: LimitVerdict | None = None  # the limit they were already told about


class UserLimits:
    """Who may get a reply now.

    Args:
        rate: Messages answered per user per 60 s (0: no limit).
        daily_tokens: Tokens (prompt + completion) per user per UTC day (0: no limit).
        clock: Monotonic seconds (for tests).
        today: The current UTC date (for tests).
    """

    def __init__(
        self,
        rate: int,
        daily_tokens: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.rate = rate
        self.daily_tokens = daily_tokens
        self._clock = clock
        self._today = today
        self._users: dict[int, _User] = {}

    def check(self, user: int) -> tuple[LimitVerdict, bool]:
        """Whether ``user`` may be answered now, counting this message if so.

        Returns:
            The verdict, and whether to tell them (only the first time a limit is hit,
            until they are under it again).
        """
        state = self._users.setdefault(user, _User())
        now = self._clock()
        while state.sent and now - state.sent[0] >= 60.0:
            state.sent.popleft()
        today = self._today()
        if state.day != today:
            state.day, state.tokens = today, 0
        verdict: LimitVerdict = "ok"
        if self.daily_tokens and state.tokens >= self.daily_tokens:
            verdict = "tokens"
        elif self.rate and len(state.sent) >= self.rate:
            verdict = "rate"
        if verdict == "ok":
            state.sent.append(now)
            state.told = None
            return verdict, False
        tell = state.told != verdict
        state.told = verdict
        return verdict, tell

    def spend(self, user: int, tokens: int) -> None:
        """Count the tokens a reply to ``user`` cost."""
        state = self._users.setdefault(user, _User())
        today = self._today()
        if state.day != today:
            state.day, state.tokens = today, 0
        state.tokens += max(0, tokens)

    def tokens_used(self, user: int) -> int:
        """Tokens ``user`` has used today."""
        state = self._users.get(user)
        return state.tokens if state is not None and state.day == self._today() else 0
