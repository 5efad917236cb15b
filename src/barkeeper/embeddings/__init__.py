"""Text embeddings: the :class:`Embedder` protocol and three implementations.

- :class:`MiniLMEmbedder`: the local default (all-MiniLM-L6-v2, int8 ONNX, no PyTorch).
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint.
- :class:`HashingEmbedder`: deterministic hashed bags of words, for tests.

Vectors from different embedders live in different spaces: store
:attr:`Embedder.name` next to them and never compare across names.

Example::

    from barkeeper.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    vector = await embedder.embed_query("what does she drink?")
"""

from barkeeper.embeddings._embedders import (
    MINILM_DIMENSION,
    MINILM_NAME,
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    SpinMode,
    cosine_similarity,
    hashed_embedding,
)

__all__ = [
    "MINILM_DIMENSION",
    "MINILM_NAME",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "SpinMode",
    "cosine_similarity",
    "hashed_embedding",
]
