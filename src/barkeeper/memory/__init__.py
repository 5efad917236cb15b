"""barkeeper's memory layer: what the bot remembers, stored in PostgreSQL.

:mod:`barkeeper.memory.embeddings` turns texts into vectors for it.
"""
