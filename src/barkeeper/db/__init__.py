"""PostgreSQL for barkeeper: URLs, the embedded server, the pool, migrations, health.

Example::

    from barkeeper.db import Database

    async with Database.connect(upgrade=True) as db:   # embedded PostgreSQL by default
        health = await db.health()
"""

from barkeeper.db._capabilities import Capabilities
from barkeeper.db._embedded import EmbeddedServer, embedded_memory_settings, start_embedded_server
from barkeeper.db._engine import Database, Health
from barkeeper.db._migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    MigrationStatus,
    expected_tables,
)
from barkeeper.db._translate import translate_error
from barkeeper.db._url import DatabaseURL, mask_url, parse_database_url

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Capabilities",
    "Database",
    "DatabaseURL",
    "EmbeddedServer",
    "Health",
    "Migration",
    "MigrationStatus",
    "embedded_memory_settings",
    "expected_tables",
    "mask_url",
    "parse_database_url",
    "start_embedded_server",
    "translate_error",
]
