"""Test doubles barkeeper ships for its own tests and for yours.

- :mod:`barkeeper.testing.discord`: a local Discord REST API the real discord.py talks to.
- :mod:`barkeeper.testing.llm`: a local OpenAI-compatible server whose answers tests script.
- :class:`FailingEmbedder`: an embedder that fails while told to (an endpoint that is down).
"""

from barkeeper.testing._embedders import FailingEmbedder

__all__ = ["FailingEmbedder"]
