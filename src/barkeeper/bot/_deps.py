"""The memory layer's names the bot uses, in this one place (the package is being split)."""

from __future__ import annotations

from barkeeper.memory import Memory, MemoryManager, MemoryStore, MemoryWorker, build_memory_manager

__all__ = ["Memory", "MemoryManager", "MemoryStore", "MemoryWorker", "build_memory_manager"]
