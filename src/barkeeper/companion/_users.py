"""Users: Discord users and non-Discord agents' users, one internal id for both.

``users.id`` is barkeeper's own id, referenced by every row about a person. Discord
users are found by ``discord_id``; other agents' users (VoltAgent's string ids such as
``"user-123"``) by ``external_id``. Seeing a user again is one upsert statement that
also records when and under which names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.db import Database
from barkeeper.errors import NotFoundError
from barkeeper.validation import check_bigint, check_name

__all__ = ["User", "UserStore"]

# Names given as None keep what is stored: a caller that only knows the username (e.g.
# from a cached message) must not erase a display name learnt earlier.
_SEEN_DISCORD_USER = """
INSERT INTO users (discord_id, discord_username, discord_display_name)
VALUES ($1, $2, $3)
ON CONFLICT (discord_id) DO UPDATE SET
    discord_username = EXCLUDED.discord_username,
    discord_display_name = coalesce(EXCLUDED.discord_display_name, users.discord_display_name),
    last_seen_at = now(),
    updated_at = CASE
        WHEN (users.discord_username, users.discord_display_name) IS DISTINCT FROM
             (EXCLUDED.discord_username,
              coalesce(EXCLUDED.discord_display_name, users.discord_display_name))
        THEN now() ELSE users.updated_at END
RETURNING *
"""

_SEEN_EXTERNAL_USER = """
INSERT INTO users (external_id) VALUES ($1)
ON CONFLICT (external_id) DO UPDATE SET last_seen_at = now()
RETURNING *
"""


@dataclass(frozen=True, slots=True)
class User:
    """A person the bot (or an agent) knows.

    Attributes:
        id: barkeeper's internal id; what every other table references.
        discord_id: their Discord id, if a Discord user.
        external_id: their id in a non-Discord agent, if any.
        discord_username: their Discord username.
        discord_display_name: their Discord display (global) name.
        custom_name: a name they or an admin chose; wins over the others.
        first_seen_at: first time seen.
        last_seen_at: last time seen.
        is_active: False once deactivated.
        created_at: when the row was created.
        updated_at: when a name last changed.
    """

    id: int
    discord_id: int | None
    external_id: str | None
    discord_username: str | None
    discord_display_name: str | None
    custom_name: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @property
    def display_name(self) -> str:
        """The name to address them by: custom name, else Discord display name, else username.

        Users without any name (non-Discord agents) fall back to their external id.
        """
        for name in (self.custom_name, self.discord_display_name, self.discord_username):
            if name:
                return name
        if self.external_id:
            return self.external_id
        return str(self.discord_id)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> User:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            discord_id=row["discord_id"],
            external_id=row["external_id"],
            discord_username=row["discord_username"],
            discord_display_name=row["discord_display_name"],
            custom_name=row["custom_name"],
            first_seen_at=row["first_seen_at"],
            last_seen_at=row["last_seen_at"],
            is_active=row["is_active"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class UserStore:
    """The ``users`` table.

    Example::

        users = UserStore(db)
        me = await users.get_or_create_discord_user(
            1234, username="john_doe", global_name="John"
        )
        print(me.display_name)   # "John"
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_or_create_discord_user(
        self,
        discord_id: int,
        *,
        username: str,
        display_name: str | None = None,
        global_name: str | None = None,
    ) -> User:
        """The user with this Discord id, created if new; records last seen and names.

        One statement (``INSERT … ON CONFLICT … RETURNING``), so concurrent calls for one
        person yield one row.

        Args:
            discord_id: their Discord id.
            username: their Discord username (``user.name``).
            display_name: the name Discord shows (discord.py's ``display_name``).
            global_name: their global display name (``user.global_name``); preferred
                over ``display_name`` for the stored display name, since a guild
                nickname (which ``display_name`` may be) belongs to the guild membership.
                When both are None the stored display name is kept.

        Raises:
            InvalidInputError: a malformed id or name (empty, over 255 characters, NUL).
        """
        discord_id = check_bigint(discord_id, "discord_id")
        username = check_name(username, "username")
        shown = global_name if global_name is not None else display_name
        if shown is not None:
            shown = check_name(shown, "display_name")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_SEEN_DISCORD_USER, discord_id, username, shown)
        assert row is not None
        return User.from_row(row)

    async def get_or_create_external_user(self, external_id: str) -> User:
        """The user with this non-Discord id (e.g. VoltAgent's ``"user-123"``), created if new."""
        external_id = check_name(external_id, "external_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_SEEN_EXTERNAL_USER, external_id)
        assert row is not None
        return User.from_row(row)

    async def get(self, user_id: int) -> User | None:
        """The user with this internal id, or None."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        return None if row is None else User.from_row(row)

    async def get_by_discord_id(self, discord_id: int) -> User | None:
        """The user with this Discord id, or None (nothing is created)."""
        discord_id = check_bigint(discord_id, "discord_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM users WHERE discord_id = $1", discord_id)
        return None if row is None else User.from_row(row)

    async def get_by_external_id(self, external_id: str) -> User | None:
        """The user with this non-Discord id, or None (nothing is created)."""
        external_id = check_name(external_id, "external_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM users WHERE external_id = $1", external_id)
        return None if row is None else User.from_row(row)

    async def set_custom_name(self, user_id: int, name: str | None) -> User:
        """Set (or with None, clear) the name the user is addressed by.

        Raises:
            InvalidInputError: an empty, too long (over 255) or NUL-containing name.
            NotFoundError: no such user.
        """
        user_id = check_bigint(user_id, "user_id")
        if name is not None:
            name = check_name(name, "custom_name")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                "UPDATE users SET custom_name = $2, updated_at = now() WHERE id = $1 RETURNING *",
                user_id,
                name,
            )
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        return User.from_row(row)

    async def delete(self, user_id: int) -> bool:
        """Delete the user and, by cascade, every row about them; False if there was none.

        :class:`barkeeper.privacy.Privacy` ``forget`` also removes their cached Discord
        messages (which are keyed by Discord id, not by this row).
        """
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM users WHERE id = $1", user_id)
        return bool(status != "DELETE 0")
