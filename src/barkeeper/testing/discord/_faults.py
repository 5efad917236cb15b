""":class:`FaultInjector`: seeded, per-request decisions to misbehave.

For each eligible request it draws whether to inject a fault and which kind
(weighted), and for server errors which status. The same seed and the same order
of requests give the same faults. Decides only; the server carries faults out.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from barkeeper.testing.discord._spec import RestFaultKind

__all__ = ["LOGIN_ROUTES", "Fault", "FaultInjector"]

#: Routes a client needs to log in; exempt from faults unless asked for.
LOGIN_ROUTES = frozenset(
    {
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        "GET /gateway",
        "GET /gateway/bot",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject.

    Attributes:
        kind: What goes wrong.
        status: The status of a ``server_error`` (0 otherwise).
    """

    kind: RestFaultKind
    status: int = 0


class FaultInjector:
    """Draws faults for requests.

    Args:
        rate: Probability that an eligible request gets a fault.
        kinds: Relative weight of each kind (kinds with weight 0 never happen).
        statuses: Statuses a ``server_error`` picks from.
        routes: Route keys eligible for faults; ``None`` means all but the login routes.
        include_login: Make the login routes eligible too.
        max_faults: Stop after this many faults (``None``: never).
        seed: Seeds every draw.
    """

    def __init__(
        self,
        *,
        rate: float,
        kinds: Mapping[RestFaultKind, float],
        statuses: Sequence[int],
        routes: Collection[str] | None = None,
        include_login: bool = False,
        max_faults: int | None = None,
        seed: int = 0,
    ) -> None:
        self.rate = rate
        self._kinds = [kind for kind, weight in kinds.items() if weight > 0]
        self._weights = [kinds[kind] for kind in self._kinds]
        self._statuses = list(statuses)
        self._routes = None if routes is None else frozenset(routes)
        self._include_login = include_login
        self._max_faults = max_faults
        self._rng = random.Random(f"barkeeper-discord:faults:{seed}")
        self.injected = 0

    def eligible(self, route_key: str) -> bool:
        """Whether faults may hit ``route_key`` at all."""
        if route_key in LOGIN_ROUTES and not self._include_login:
            return False
        return self._routes is None or route_key in self._routes

    def draw(self, route_key: str) -> Fault | None:
        """Decide the fault for one request of ``route_key`` (``None``: behave)."""
        if self.rate <= 0 or not self._kinds or not self.eligible(route_key):
            return None
        if self._max_faults is not None and self.injected >= self._max_faults:
            return None
        if self._rng.random() >= self.rate:
            return None
        kind = self._rng.choices(self._kinds, self._weights)[0]
        status = self._rng.choice(self._statuses) if kind == "server_error" else 0
        self.injected += 1
        return Fault(kind, status)
