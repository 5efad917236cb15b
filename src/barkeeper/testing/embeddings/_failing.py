""":class:`FailingEmbedder`: an embedder that fails while told to, as an endpoint that is down."""

from __future__ import annotations

from collections.abc import Sequence

from barkeeper.embeddings import Embedder, HashingEmbedder
from barkeeper.errors import LLMUnavailableError

__all__ = ["FailingEmbedder"]


class FailingEmbedder:
    """Wraps an embedder; while :attr:`failing` is true every call raises
    :class:`~barkeeper.errors.LLMUnavailableError`, as :class:`~barkeeper.embeddings.OpenAIEmbedder`
    does when its endpoint is unreachable. Its :attr:`name` is the wrapped one's, so the
    vectors it makes once working are the wrapped embedder's.

    Args:
        inner: The embedder used while working (:class:`~barkeeper.embeddings.HashingEmbedder`
            by default).
        failing: Whether it starts failing.

    Example::

        embedder = FailingEmbedder(failing=True)
        index = MessageIndex(db, embedder)  # turns written now get no vector
        embedder.failing = False  # the endpoint is back
    """

    def __init__(self, inner: Embedder | None = None, *, failing: bool = False) -> None:
        self._inner = inner if inner is not None else HashingEmbedder()
        #: Whether calls fail now.
        self.failing = failing
        #: Calls refused so far.
        self.failures = 0

    def __repr__(self) -> str:
        return f"FailingEmbedder({self._inner!r}, failing={self.failing})"

    @property
    def name(self) -> str:
        """The wrapped embedder's name."""
        return self._inner.name

    @property
    def dimension(self) -> int:
        """The wrapped embedder's vector size."""
        return self._inner.dimension

    def _check(self) -> None:
        if self.failing:
            self.failures += 1
            raise LLMUnavailableError("the embeddings endpoint is unreachable (FailingEmbedder)")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The wrapped embedder's vectors, or :class:`LLMUnavailableError` while failing."""
        self._check()
        return await self._inner.embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        """The wrapped embedder's vector, or :class:`LLMUnavailableError` while failing."""
        self._check()
        return await self._inner.embed_query(text)
