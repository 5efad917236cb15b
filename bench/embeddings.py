"""Embedding throughput: texts per second for a batch of short chat messages.

Run: ``python bench/embeddings.py [--texts 256] [--rounds 5]``

Measures :class:`~barkeeper.embeddings.MiniLMEmbedder` (the local default)
at several batch sizes, against :class:`~barkeeper.embeddings.HashingEmbedder`
as the baseline measured in the same run, and the offline token counter. The
model load is timed separately and excluded from the throughput figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable

from barkeeper.embeddings import HashingEmbedder, MiniLMEmbedder
from barkeeper.llm import count_tokens

_WORDS = (
    "anyone up for the pub quiz tonight i think the stout is better than the lager "
    "my dog loves the beer garden did you see the match last night who is buying "
    "the next round the new barkeeper remembers everyone's usual order cheers mate"
).split()


def chat_messages(count: int, seed: int = 0) -> list[str]:
    """``count`` short chat-like messages of 4 to 24 words."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 24))).capitalize() + "!"
        for _ in range(count)
    ]


async def best_of(rounds: int, run: Callable[[], Awaitable[object]]) -> float:
    """The best wall time of ``rounds`` runs, in seconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return min(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256, help="messages per batch (256)")
    parser.add_argument("--rounds", type=int, default=5, help="runs per measurement (5)")
    args = parser.parse_args()
    texts = chat_messages(args.texts)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    mean_words = statistics.mean(len(t.split()) for t in texts)
    print(f"workload: {len(texts)} chat messages, {mean_words:.1f} words on average")

    hashing = HashingEmbedder()
    baseline = await best_of(args.rounds, lambda: hashing.embed(texts))
    print(f"baseline HashingEmbedder: {len(texts) / baseline:,.0f} texts/s")

    started = time.perf_counter()
    await MiniLMEmbedder().load()
    print(f"MiniLMEmbedder first load: {time.perf_counter() - started:.2f} s")
    for batch_size in (16, 32, 64, 256):
        embedder = MiniLMEmbedder(batch_size=batch_size)
        await embedder.embed(texts[:8])  # warm-up
        seconds = await best_of(args.rounds, functools.partial(embedder.embed, texts))
        print(
            f"MiniLMEmbedder batch_size={batch_size:>3}: {len(texts) / seconds:7.1f} texts/s "
            f"({seconds * 1000:.0f} ms per {len(texts)}; "
            f"{baseline / seconds:.4f}x the baseline's rate)"
        )

    count_tokens("warm up")
    started = time.perf_counter()
    tokens = sum(count_tokens(t) for t in texts)
    seconds = time.perf_counter() - started
    print(f"count_tokens: {len(texts) / seconds:,.0f} texts/s ({tokens} tokens)")


if __name__ == "__main__":
    asyncio.run(main())
