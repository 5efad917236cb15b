"""Guilds (Discord servers) and their members (a user's nickname and roles in a guild)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError
from barkeeper.validation import (
    check_aware,
    check_bigint,
    check_count,
    check_json,
    check_name,
)

__all__ = ["Guild", "GuildMember", "GuildStore"]

_MAX_ROLES = 1000

# Settings given as None keep what is stored (a rename must not reset them).
_UPSERT_GUILD = """
INSERT INTO guilds (discord_id, name, settings) VALUES ($1, $2, coalesce($3::jsonb, '{}'))
ON CONFLICT (discord_id) DO UPDATE SET
    name = EXCLUDED.name,
    settings = coalesce($3::jsonb, guilds.settings),
    is_active = true,
    updated_at = now()
RETURNING *
"""

# Nickname and roles are Discord's current truth: each upsert replaces them.
_UPSERT_MEMBER = """
INSERT INTO guild_members (guild_id, user_id, guild_nickname, roles, joined_guild_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (guild_id, user_id) DO UPDATE SET
    guild_nickname = EXCLUDED.guild_nickname,
    roles = EXCLUDED.roles,
    joined_guild_at = coalesce(EXCLUDED.joined_guild_at, guild_members.joined_guild_at),
    updated_at = now()
RETURNING *
"""


@dataclass(frozen=True, slots=True)
class Guild:
    """A Discord guild the bot is in.

    Attributes:
        id: barkeeper's internal id (what ``guild_members`` references).
        discord_id: the guild's Discord id.
        name: its name.
        joined_at: when the bot joined.
        is_active: False once the bot left.
        settings: guild-specific settings (a JSON object).
        created_at: when the row was created.
        updated_at: when it last changed.
    """

    id: int
    discord_id: int
    name: str
    joined_at: datetime
    is_active: bool
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Guild:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            discord_id=row["discord_id"],
            name=row["name"],
            joined_at=row["joined_at"],
            is_active=row["is_active"],
            settings=row["settings"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class GuildMember:
    """A user's membership of a guild.

    Attributes:
        id: internal id.
        guild_id: the guild's internal id.
        user_id: the user's internal id.
        guild_nickname: their nickname there, if any.
        roles: their role names there.
        joined_guild_at: when they joined the guild, if known.
        created_at: when the row was created.
        updated_at: when it last changed.
    """

    id: int
    guild_id: int
    user_id: int
    guild_nickname: str | None
    roles: list[str]
    joined_guild_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GuildMember:
        """Build from a database row holding every column."""
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            user_id=row["user_id"],
            guild_nickname=row["guild_nickname"],
            roles=list(row["roles"]),
            joined_guild_at=row["joined_guild_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class GuildStore:
    """The ``guilds`` and ``guild_members`` tables.

    Example::

        guilds = GuildStore(db)
        guild = await guilds.upsert_guild(1111, "The Bar")
        await guilds.upsert_member(guild.id, user.id, nickname="Johnny", roles=["regular"])
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_guild(
        self, discord_id: int, name: str, *, settings: Mapping[str, Any] | None = None
    ) -> Guild:
        """Record a guild (created, or renamed and marked active again).

        Args:
            discord_id: the guild's Discord id.
            name: its current name.
            settings: replaces the stored settings; None keeps them (``{}`` for a new guild).

        Raises:
            InvalidInputError: a malformed id, name or settings.
        """
        discord_id = check_bigint(discord_id, "discord_id")
        name = check_name(name, "name")
        value = None
        if settings is not None:
            if not isinstance(settings, Mapping):
                raise InvalidInputError("settings must be a JSON object (a mapping)")
            value = check_json(settings, "settings")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_UPSERT_GUILD, discord_id, name, value)
        assert row is not None
        return Guild.from_row(row)

    async def get_guild(self, guild_id: int) -> Guild | None:
        """The guild with this internal id, or None."""
        guild_id = check_bigint(guild_id, "guild_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM guilds WHERE id = $1", guild_id)
        return None if row is None else Guild.from_row(row)

    async def get_guild_by_discord_id(self, discord_id: int) -> Guild | None:
        """The guild with this Discord id, or None."""
        discord_id = check_bigint(discord_id, "discord_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM guilds WHERE discord_id = $1", discord_id)
        return None if row is None else Guild.from_row(row)

    async def set_guild_active(self, guild_id: int, active: bool) -> bool:
        """Mark the bot as in (True) or out of (False) a guild; False if no such guild."""
        guild_id = check_bigint(guild_id, "guild_id")
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "UPDATE guilds SET is_active = $2, updated_at = now() WHERE id = $1",
                guild_id,
                bool(active),
            )
        return bool(status != "UPDATE 0")

    async def upsert_member(
        self,
        guild_id: int,
        user_id: int,
        nickname: str | None = None,
        roles: Sequence[str] = (),
        *,
        joined_at: datetime | None = None,
    ) -> GuildMember:
        """Record a user's membership of a guild; nickname and roles replace the stored ones.

        Args:
            guild_id: the guild's internal id (:attr:`Guild.id`).
            user_id: the user's internal id.
            nickname: their nickname in the guild, None for none.
            roles: their role names.
            joined_at: when they joined the guild; None keeps what is stored.

        Raises:
            InvalidInputError: a malformed argument.
            NotFoundError: no such guild or user.
        """
        guild_id = check_bigint(guild_id, "guild_id")
        user_id = check_bigint(user_id, "user_id")
        if nickname is not None:
            nickname = check_name(nickname, "nickname")
        if isinstance(roles, str):
            raise InvalidInputError("roles must be a list of role names, not one string")
        if len(roles) > _MAX_ROLES:
            raise InvalidInputError(f"at most {_MAX_ROLES} roles, not {len(roles)}")
        role_names = [check_name(r, "roles[]") for r in roles]
        if joined_at is not None:
            joined_at = check_aware(joined_at, "joined_at")
        try:
            async with self._db.acquire() as conn:
                row = await conn.fetchrow(
                    _UPSERT_MEMBER, guild_id, user_id, nickname, role_names, joined_at
                )
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no guild {guild_id} or no user {user_id}") from exc
            raise
        assert row is not None
        return GuildMember.from_row(row)

    async def get_member(self, guild_id: int, user_id: int) -> GuildMember | None:
        """The user's membership of the guild, or None."""
        guild_id = check_bigint(guild_id, "guild_id")
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM guild_members WHERE guild_id = $1 AND user_id = $2",
                guild_id,
                user_id,
            )
        return None if row is None else GuildMember.from_row(row)

    async def list_members(
        self, guild_id: int, *, limit: int = 1000, offset: int = 0
    ) -> list[GuildMember]:
        """Members of a guild ordered by user id (the unique (guild_id, user_id) index)."""
        guild_id = check_bigint(guild_id, "guild_id")
        limit = check_count(limit, "limit", minimum=1)
        offset = check_count(offset, "offset", maximum=100_000_000)
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM guild_members WHERE guild_id = $1 ORDER BY user_id "
                "LIMIT $2 OFFSET $3",
                guild_id,
                limit,
                offset,
            )
        return [GuildMember.from_row(r) for r in rows]

    async def remove_member(self, guild_id: int, user_id: int) -> bool:
        """Forget a user's membership of a guild (they left); False if there was none."""
        guild_id = check_bigint(guild_id, "guild_id")
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM guild_members WHERE guild_id = $1 AND user_id = $2",
                guild_id,
                user_id,
            )
        return bool(status != "DELETE 0")

    # --- a user's memberships (privacy) --------------------------------------------------

    async def list_user_memberships(self, user_id: int) -> list[GuildMember]:
        """Every guild membership of the user (ix_guild_members_user_id)."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM guild_members WHERE user_id = $1 ORDER BY guild_id", user_id
            )
        return [GuildMember.from_row(r) for r in rows]

    async def delete_user_memberships(self, user_id: int) -> int:
        """Delete every guild membership of the user; returns how many."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM guild_members WHERE user_id = $1", user_id)
        return int(status.rsplit(" ", 1)[-1])
