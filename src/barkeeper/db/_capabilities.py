"""What the PostgreSQL server in use can do: its version and whether pgvector is there."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

__all__ = ["Capabilities", "detect_capabilities", "ensure_pgvector"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capabilities:
    """Facts about the server, detected at connection time.

    Attributes:
        server_version: e.g. ``"18.6"``.
        server_version_num: e.g. ``180006``.
        pgvector: the ``vector`` extension is installed in this database.
        pgvector_available: the server ships the extension (it may not be installed).
        pgvector_version: the installed extension's version, if any.
    """

    server_version: str
    server_version_num: int
    pgvector: bool
    pgvector_available: bool
    pgvector_version: str | None = None

    def pgvector_summary(self) -> str:
        """pgvector's state in words, e.g. ``"yes (0.8.1)"``, for logs and command output."""
        if self.pgvector:
            return f"yes ({self.pgvector_version})"
        if self.pgvector_available:
            return "available, not installed yet (barkeeper db upgrade installs it)"
        return "no (not on this server: exact vector search per user)"


async def detect_capabilities(conn: asyncpg.Connection) -> Capabilities:
    """Read the server's version and pgvector status (no side effects)."""
    row = await conn.fetchrow(
        """
        SELECT current_setting('server_version') AS version,
               current_setting('server_version_num')::int AS version_num,
               (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector_version,
               EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available
        """
    )
    assert row is not None
    version = str(row["version"]).split(" ")[0]
    return Capabilities(
        server_version=version,
        server_version_num=int(row["version_num"]),
        pgvector=row["vector_version"] is not None,
        pgvector_available=bool(row["available"]),
        pgvector_version=row["vector_version"],
    )


async def ensure_pgvector(conn: asyncpg.Connection) -> Capabilities:
    """Install pgvector into the ``public`` schema when the server has it; carry on if refused.

    The extension goes to ``public`` (not barkeeper's schema) so that dropping one
    barkeeper schema never drops the type another one uses.
    """
    caps = await detect_capabilities(conn)
    if caps.pgvector or not caps.pgvector_available:
        if not caps.pgvector_available:
            _log.info(
                "pgvector is not available on this server: vector search runs exactly, per user"
            )
        return caps
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
    except asyncpg.UniqueViolationError:
        pass  # another process created it at the same instant
    except asyncpg.DuplicateObjectError:
        pass
    except asyncpg.PostgresError as exc:
        _log.warning(
            "pgvector is available but CREATE EXTENSION vector was refused (%s: %s); "
            "carrying on without it: vector search runs exactly, per user. "
            "Ask a superuser to run CREATE EXTENSION vector in this database to enable it.",
            exc.sqlstate,
            exc,
        )
    return await detect_capabilities(conn)
