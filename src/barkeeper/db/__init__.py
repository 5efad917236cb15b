"""PostgreSQL for barkeeper: URLs, the embedded server, the pool, migrations, health.

Example::

    from barkeeper.db import Database

    async with Database.connect(upgrade=True) as db:   # embedded PostgreSQL by default
        health = await db.health()
"""

from barkeeper.db._translate import translate_error
from barkeeper.db.capabilities import Capabilities
from barkeeper.db.engine import Database, Health
from barkeeper.db.migrations import LATEST_VERSION, MigrationStatus
from barkeeper.db.url import DatabaseURL, mask_url, parse_database_url

__all__ = [
    "LATEST_VERSION",
    "Capabilities",
    "Database",
    "DatabaseURL",
    "Health",
    "MigrationStatus",
    "mask_url",
    "parse_database_url",
    "translate_error",
]
