"""The memory layer's names the bot uses, imported in this one place."""

from __future__ import annotations

from barkeeper.learning import MemoryManager, MemoryWorker, build_memory_manager
from barkeeper.memory import Memory, MemoryStore

__all__ = ["Memory", "MemoryManager", "MemoryStore", "MemoryWorker", "build_memory_manager"]
