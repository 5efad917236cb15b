"""Helpers shared by the benchmarks in ``bench/``: a database to measure on, percentiles, JSON.

Every benchmark is one command, ``python bench/<name>.py --out FILE [--quick]
[--database-url URL]``. Without ``--database-url`` it runs on an ephemeral embedded
PostgreSQL (a fresh cluster in a temporary directory, deleted afterwards), so nothing
of the user's data is touched and runs do not inherit each other's bloat. Each run
works in a schema of its own (``bench_<random>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from barkeeper.config import DatabaseMode, load_settings
from barkeeper.db import Database

__all__ = [
    "bench_database",
    "environment",
    "parse_args",
    "percentile",
    "summarize_ms",
    "write_json",
]


# Junkie's messages table and indexes exactly as seed 000 gives them (the baseline of
# ingest.py and context.py), under a name that does not collide with ours.
JUNKIE_DDL = """
CREATE TABLE junkie_messages (
    message_id BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    timestamp_str TEXT NOT NULL
);
CREATE INDEX idx_junkie_messages_channel_created ON junkie_messages (channel_id, created_at DESC);
CREATE INDEX idx_junkie_messages_message_id ON junkie_messages (message_id);
"""


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    *,
    default_out: str | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every benchmark takes: ``--out``, ``--quick``, ``--database-url``
    (and those ``extra`` adds to the parser)."""
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument(
        "--out", type=Path, required=default_out is None, default=default_out,
        help="where to write the JSON results",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to run on (default: an ephemeral embedded PostgreSQL)",
    )
    return parser.parse_args(argv)


@asynccontextmanager
async def bench_database(
    database_url: str | None, *, prefix: str = "bench", min_size: int = 2, max_size: int = 8
) -> AsyncIterator[Database]:
    """A migrated schema of its own on an ephemeral embedded PostgreSQL (or ``database_url``).

    The schema is dropped and the pool closed on exit (the embedded cluster is deleted).
    """
    settings = load_settings()
    if database_url is None:
        settings = settings.model_copy(update={"database": DatabaseMode.EPHEMERAL})
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    db = await Database.open(
        settings,
        url=database_url,
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        upgrade=True,
    )
    try:
        yield db
    finally:
        try:
            async with db.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await db.close()


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) of ``samples``, by linear interpolation."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean of durations given in seconds, in milliseconds (3 decimals)."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(sum(ms) / len(ms), 3) if ms else float("nan"),
        "n": len(ms),
    }


async def environment(db: Database) -> dict[str, Any]:
    """Where the figures were measured: server, machine, Python, time."""
    async with db.acquire() as conn:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("shared_buffers", "synchronous_commit", "fsync", "max_wal_size")
        }
    return {
        "database_mode": db.mode.value,
        "server_version": db.capabilities.server_version,
        "server_settings": settings,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # other work on the machine skews timings: recorded so a reader can judge
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
