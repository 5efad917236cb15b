"""Embedders for tests: :class:`FailingEmbedder` fails while told to, as an endpoint that is down.

Example::

    from barkeeper.testing.embeddings import FailingEmbedder

    embedder = FailingEmbedder(failing=True)
    index = MessageIndex(db, embedder)  # turns written now get no vector
    embedder.failing = False  # the endpoint is back
"""

from barkeeper.testing.embeddings._failing import FailingEmbedder

__all__ = ["FailingEmbedder"]
