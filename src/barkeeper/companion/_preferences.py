"""User preferences: one text value per (user, key), Loyal Companion's ``user_preferences``."""

from __future__ import annotations

from barkeeper.db import Database
from barkeeper.errors import NotFoundError, QueryError
from barkeeper.validation import check_bigint, check_name

__all__ = ["MAX_PREFERENCE_KEY", "MAX_PREFERENCE_VALUE", "PreferenceStore"]

MAX_PREFERENCE_KEY = 100
MAX_PREFERENCE_VALUE = 10_000

_SET = """
INSERT INTO user_preferences (user_id, preference_key, preference_value) VALUES ($1, $2, $3)
ON CONFLICT (user_id, preference_key) DO UPDATE SET
    preference_value = EXCLUDED.preference_value,
    updated_at = now()
"""


def _key(key: object) -> str:
    return check_name(key, "preference key", max_length=MAX_PREFERENCE_KEY)


class PreferenceStore:
    """Key/value preferences per user (unique key per user; setting again replaces).

    Keys are 1–100 characters, values up to 10,000; neither may contain NUL
    (:class:`~barkeeper.errors.InvalidInputError`). Every query is served by the unique
    (user_id, preference_key) index.

    Example::

        prefs = PreferenceStore(db)
        await prefs.set_preference(user.id, "tone", "gentle")
        await prefs.get_preferences(user.id)   # {"tone": "gentle"}
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_preference(self, user_id: int, key: str, value: str) -> None:
        """Set ``key`` to ``value`` for the user (insert or replace).

        Raises:
            InvalidInputError: a malformed key or value.
            NotFoundError: no such user.
        """
        user_id = check_bigint(user_id, "user_id")
        key = _key(key)
        value = check_name(
            value, "preference value", max_length=MAX_PREFERENCE_VALUE, allow_blank=True
        )
        try:
            async with self._db.acquire() as conn:
                await conn.execute(_SET, user_id, key, value)
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise

    async def get_preference(self, user_id: int, key: str) -> str | None:
        """The value of ``key`` for the user, or None."""
        user_id = check_bigint(user_id, "user_id")
        key = _key(key)
        async with self._db.acquire() as conn:
            value = await conn.fetchval(
                "SELECT preference_value FROM user_preferences "
                "WHERE user_id = $1 AND preference_key = $2",
                user_id,
                key,
            )
        return None if value is None else str(value)

    async def get_preferences(self, user_id: int) -> dict[str, str]:
        """Every preference of the user, by key."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT preference_key, preference_value FROM user_preferences "
                "WHERE user_id = $1 ORDER BY preference_key",
                user_id,
            )
        return {r["preference_key"]: r["preference_value"] for r in rows}

    async def delete_preference(self, user_id: int, key: str) -> bool:
        """Delete one preference; False if it was not set."""
        user_id = check_bigint(user_id, "user_id")
        key = _key(key)
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM user_preferences WHERE user_id = $1 AND preference_key = $2",
                user_id,
                key,
            )
        return bool(status != "DELETE 0")

    async def delete_user_preferences(self, user_id: int) -> int:
        """Delete every preference of the user; returns how many."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM user_preferences WHERE user_id = $1", user_id)
        return int(status.rsplit(" ", 1)[-1])
