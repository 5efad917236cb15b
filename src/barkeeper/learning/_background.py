"""What both memory workers share: a fixed number of background tasks, started once and
closed by ``aclose`` (``async with`` does both), and the facts-learnt hook."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Self

from barkeeper.learning._manager import MemoryOutcome

__all__ = ["BackgroundTasks", "LearnedHook"]

#: Told of new facts: ``hook(guild_id, count)`` after a message added ``count`` memories
#: (``guild_id``: where it was said; ``None``: a DM). An awaitable it returns is awaited.
#: The companion's :meth:`~barkeeper.companion.Companion.count_learned` is one.
LearnedHook = Callable[[int | None, int], object]

_log = logging.getLogger(__name__)


class BackgroundTasks:
    """``concurrency`` tasks running :meth:`_run`; subclasses give ``_run``, ``aclose``
    and the tasks' name prefix."""

    _task_name: ClassVar[str]

    def __init__(self, concurrency: int, on_learned: LearnedHook | None) -> None:
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.on_learned = on_learned

    @property
    def running(self) -> bool:
        """Started and not closed."""
        return bool(self._tasks) and not self._closed

    def start(self) -> None:
        """Start the tasks (on the running event loop). Does nothing if started.

        Raises:
            RuntimeError: The worker was closed.
        """
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; make a new one")
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self._task_name}-{n}")
            for n in range(self._concurrency)
        ]

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the tasks."""
        raise NotImplementedError

    async def _tell_learned(self, guild_id: int | None, outcome: MemoryOutcome, what: str) -> None:
        """Tell :attr:`on_learned` how many memories ``outcome`` added; its failures are
        logged (naming ``what``), never raised."""
        added = sum(1 for change in outcome.changes if change.action == "add")
        if not added or self.on_learned is None:
            return
        try:
            result = self.on_learned(guild_id, added)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("the facts-learnt hook failed for %s", what)
