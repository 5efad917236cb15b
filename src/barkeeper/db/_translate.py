"""Translation of asyncpg and socket errors into barkeeper's error hierarchy."""

from __future__ import annotations

import asyncio
import socket
import urllib.parse

import asyncpg

from barkeeper.db._schema.v0002_tombstones import FORGOTTEN_SQLSTATE
from barkeeper.db._url import DatabaseURL
from barkeeper.errors import (
    AuthenticationFailedError,
    DatabaseError,
    DatabaseMissingError,
    DatabaseUnreachableError,
    DiskFullError,
    ForgottenContentError,
    QueryError,
)

__all__ = ["translate_error"]


def _scrub(text: str, url: DatabaseURL | None) -> str:
    if url is None:
        return text
    secrets = [url.password] if url.password else []
    secrets += [value for key, value in url.params if key in ("password", "sslpassword") and value]
    for secret in secrets:
        # the driver may quote the DSN it was given, where the password is percent-encoded
        for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)):
            text = text.replace(form, "***")
    return text


def translate_error(
    exc: BaseException, url: DatabaseURL | None = None
) -> DatabaseError | ForgottenContentError:
    """Return the barkeeper error for a driver or socket error (the password scrubbed)."""
    where = url.address if url is not None else "the database server"
    shown = f" ({url.masked()})" if url is not None else ""
    detail = _scrub(str(exc) or type(exc).__name__, url)
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        user = url.user if url is not None and url.user else "the configured user"
        return AuthenticationFailedError(
            f"PostgreSQL at {where} refused {user!r}: {detail}. "
            f"Check the user name and password in the database URL{shown}."
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        name = url.database if url is not None and url.database else "the configured database"
        return DatabaseMissingError(
            f"database {name!r} does not exist on {where}{shown}. "
            f"Create it (e.g. `createdb {name}`) or point the URL at an existing database."
        )
    if isinstance(exc, asyncpg.DiskFullError) or (
        isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == "53100"
    ):
        return DiskFullError(
            f"PostgreSQL at {where} ran out of disk space: {detail}. Free space and retry; "
            "nothing of the failed write was kept."
        )
    if isinstance(exc, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return DatabaseUnreachableError(
            f"PostgreSQL at {where} is not accepting connections now: {detail}. "
            "Retry shortly, or lower DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW."
        )
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == FORGOTTEN_SQLSTATE:
        return ForgottenContentError(
            f"{detail}: a forgotten person's earlier words are never stored again; "
            "what they write after being forgotten is."
        )
    if isinstance(exc, asyncpg.PostgresError):
        return QueryError(
            _scrub(f"PostgreSQL error {exc.sqlstate}: {detail}", url), sqlstate=exc.sqlstate
        )
    if isinstance(
        exc,
        OSError
        | socket.gaierror
        | TimeoutError
        | asyncio.TimeoutError
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError,
    ):
        return DatabaseUnreachableError(
            f"cannot reach PostgreSQL at {where}{shown}: {detail}. "
            "Is the server running and the host and port right?"
        )
    return DatabaseError(f"database error at {where}: {type(exc).__name__}: {detail}")
