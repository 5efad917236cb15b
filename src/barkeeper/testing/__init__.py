"""Test doubles barkeeper ships for its own tests and for yours.

- :mod:`barkeeper.testing.discord`: a local Discord REST API the real discord.py talks to.
- :mod:`barkeeper.testing.llm`: a local OpenAI-compatible server whose answers tests script.
- :mod:`barkeeper.testing.embeddings`: an embedder that fails while told to (an endpoint
  that is down).
"""

__all__: list[str] = []
