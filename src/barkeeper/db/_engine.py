"""The database engine: one asyncpg pool on PostgreSQL, in server, embedded or ephemeral mode.

Every store takes a :class:`Database`. Its connections have ``search_path`` set to
barkeeper's schema (then ``public``, where pgvector lives), so store SQL names tables
without a schema and several bots can share one database under different schemas.
Driver errors are translated into :mod:`barkeeper.errors` by :meth:`Database.acquire`
and :meth:`Database.transaction`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from barkeeper.config import SCHEMA_NAME_PATTERN, DatabaseMode, Settings, load_settings
from barkeeper.db import _migrations as migrations
from barkeeper.db._capabilities import Capabilities, detect_capabilities
from barkeeper.db._embedded import EMBEDDED_DATABASE, EmbeddedServer, start_embedded_server
from barkeeper.db._translate import translate_error
from barkeeper.db._url import DatabaseURL, parse_database_url
from barkeeper.errors import BarkeeperError, ConfigError, DatabaseError

__all__ = ["Database", "Health"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """The result of :meth:`Database.health`."""

    ok: bool
    latency_ms: float
    mode: DatabaseMode
    url: str
    server_version: str
    pgvector: bool
    schema: str
    schema_version: int
    latest_version: int
    error: str | None = None


def _echo(record: Any) -> None:
    _log.info("SQL %s", record.query)


def _connection_initializer(echo: bool) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    async def init(conn: asyncpg.Connection) -> None:
        for typename in ("jsonb", "json"):
            await conn.set_type_codec(
                typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        if echo:
            conn.add_query_logger(_echo)

    return init


class Database:
    """A pool of connections to barkeeper's PostgreSQL schema.

    Open it with :meth:`open` (or ``async with Database.connect(...)``), call
    :meth:`upgrade` once to apply migrations, hand it to the stores, :meth:`close` it.

    Example::

        async with Database.connect(load_settings(), upgrade=True) as db:
            print((await db.health()).server_version)
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        url: DatabaseURL,
        mode: DatabaseMode,
        schema: str,
        capabilities: Capabilities,
        server: EmbeddedServer | None = None,
    ) -> None:
        self._pool = pool
        self.url = url
        self.mode = mode
        self.schema = schema
        self.capabilities = capabilities
        self._server = server
        self._releasing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Database mode={self.mode.value} url={self.url.masked()} schema={self.schema}>"

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        schema: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        upgrade: bool = False,
    ) -> Database:
        """Open the database the settings name (starting the embedded server if needed).

        Args:
            settings: defaults to :func:`barkeeper.config.load_settings`.
            url: a URL that wins over the settings (server mode).
            schema: a schema that wins over ``BARKEEPER_DB_SCHEMA``.
            min_size: pool size kept open; defaults to ``DATABASE_POOL_SIZE``.
            max_size: largest pool; defaults to pool size + ``DATABASE_MAX_OVERFLOW``.
            upgrade: apply pending migrations before returning.

        Raises:
            DatabaseError: a subclass saying what is wrong (unreachable, authentication,
                missing database, embedded server failure, schema too new).
        """
        settings = settings or load_settings()
        schema = schema or settings.db_schema
        if re.fullmatch(SCHEMA_NAME_PATTERN, schema) is None:
            raise ConfigError(f"BARKEEPER_DB_SCHEMA: {schema!r} is not a valid schema name")
        mode = DatabaseMode.SERVER if url else settings.effective_database_mode()
        server: EmbeddedServer | None = None
        if mode is DatabaseMode.SERVER:
            raw = url or settings.configured_database_url()
            if not raw:
                raise ConfigError(
                    "BARKEEPER_DATABASE=server needs a URL: set POSTGRES_URL or DATABASE_URL"
                )
            parsed = parse_database_url(raw)
        else:
            server = await start_embedded_server(
                settings.data_dir,
                ephemeral=mode is DatabaseMode.EPHEMERAL,
                shared_buffers_mb=settings.embedded_shared_buffers_mb or None,
            )
            try:
                parsed = await _ensure_embedded_database(server.url)
            except BaseException:
                await server.aclose()
                raise
        pool_min = settings.database_pool_size if min_size is None else min_size
        pool_max = max(pool_min, settings.pool_max_size if max_size is None else max_size)
        server_settings = {
            "search_path": f'"{schema}", public',
            "timezone": "UTC",
        }
        if not any(k == "application_name" for k, _ in parsed.params):
            server_settings["application_name"] = "barkeeper"
        try:
            pool = await asyncpg.create_pool(
                parsed.dsn(),
                min_size=pool_min,
                max_size=pool_max,
                timeout=settings.database_connect_timeout,
                server_settings=server_settings,
                init=_connection_initializer(settings.database_echo),
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if server is not None:
                await server.aclose()
            raise translate_error(exc, parsed) from None
        try:
            async with pool.acquire() as conn:
                caps = await detect_capabilities(conn)
        except BaseException:
            await pool.close()
            if server is not None:
                await server.aclose()
            raise
        db = cls(pool, url=parsed, mode=mode, schema=schema, capabilities=caps, server=server)
        try:
            if upgrade:
                await db.upgrade()
            else:
                await db.check_not_too_new()
        except BaseException:
            await db.close()
            raise
        _log.info(
            "database ready: %s mode, %s, PostgreSQL %s, pgvector %s, schema %s",
            mode.value,
            parsed.masked(),
            db.capabilities.server_version,
            db.capabilities.pgvector_summary(),
            schema,
        )
        return db

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, settings: Settings | None = None, **kwargs: Any
    ) -> AsyncIterator[Database]:
        """``async with`` form of :meth:`open`; closes the pool (and embedded server) on exit."""
        db = await cls.open(settings, **kwargs)
        try:
            yield db
        finally:
            await db.close()

    async def close(self) -> None:
        """Close the pool and release the embedded server (its last user stops it).

        Each ``Database`` holds its own claim on the embedded server: closing one leaves
        the others on the same data directory working. Stopping runs in a worker thread.
        """
        try:
            if self._releasing:
                await asyncio.gather(*list(self._releasing), return_exceptions=True)
            await self._pool.close()
        finally:
            if self._server is not None:
                server, self._server = self._server, None
                await server.aclose()

    # --- using -----------------------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for stores that need it directly."""
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors come out as :class:`DatabaseError` subclasses
        (a write refused by a tombstone as :class:`ForgottenContentError`).

        The connection goes back to the pool in the background: the pool resets it
        (one round trip) before anyone else gets it, but the caller, whose work on it
        is done, does not wait for that.
        """
        try:
            conn = await self._pool.acquire()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise translate_error(exc, self.url) from exc
        try:
            yield conn
        except BarkeeperError:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise translate_error(exc, self.url) from exc
        finally:
            task = asyncio.create_task(self._pool.release(conn))
            self._releasing.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # asyncpg has already terminated a connection it could not reset.
            _log.debug("a connection could not be reset: %r", task.exception())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction, committed on success."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    # --- schema ----------------------------------------------------------------------------

    async def upgrade(self) -> list[int]:
        """Apply pending migrations; returns the versions this call applied.

        :attr:`capabilities` is read again afterwards, so it says what the database has
        after migrating (pgvector is installed by the first migration when available).
        """
        async with self.acquire() as conn:
            status, applied = await migrations.upgrade(conn, self.schema)
            self.capabilities = await detect_capabilities(conn)
        if applied:
            _log.info(
                "schema %s migrated to version %d; pgvector %s",
                self.schema,
                status.current_version,
                self.capabilities.pgvector_summary(),
            )
        return applied

    async def migration_status(self) -> migrations.MigrationStatus:
        """Which migrations the database has."""
        async with self.acquire() as conn:
            return await migrations.migration_status(conn, self.schema)

    async def check_not_too_new(self) -> None:
        """Refuse to go on against a schema migrated by newer code."""
        migrations.check_not_too_new(await self.migration_status())

    async def health(self) -> Health:
        """Round-trip the server and report mode, version, pgvector and schema version."""
        started = time.perf_counter()
        try:
            status = await self.migration_status()
            async with self.acquire() as conn:
                await conn.fetchval("SELECT 1")
            error = None
            ok = not status.too_new
        except DatabaseError as exc:
            status = migrations.MigrationStatus(self.schema, 0, migrations.LATEST_VERSION)
            error, ok = str(exc), False
        return Health(
            ok=ok,
            latency_ms=(time.perf_counter() - started) * 1000,
            mode=self.mode,
            url=self.url.masked(),
            server_version=self.capabilities.server_version,
            pgvector=self.capabilities.pgvector,
            schema=self.schema,
            schema_version=status.current_version,
            latest_version=status.latest_version,
            error=error,
        )


async def _ensure_embedded_database(admin: DatabaseURL) -> DatabaseURL:
    """Create barkeeper's database inside the embedded cluster on first use."""
    target = admin.with_database(EMBEDDED_DATABASE)
    try:
        conn = await asyncpg.connect(admin.dsn(), timeout=30)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise translate_error(exc, admin) from None
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DATABASE
        )
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # a second process created it at the same instant
            except asyncpg.UniqueViolationError:
                pass
    finally:
        await conn.close()
    return target
