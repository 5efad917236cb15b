"""Per-place companion settings: the persona a guild or channel uses, the guild's
feature switches, and who turned ``/connect`` on (``companion_settings`` and
``companion_connections``, schema version 5).

Rules (``docs/companion.md``):

- persona: the channel's choice, else the guild's, else the default persona
  (``BARKEEPER_PERSONA_FILE`` or Bartender); only personas of the catalogue
  (:class:`PersonaCatalog`) can be chosen;
- features: a feature is on in a guild when ``BARKEEPER_FEATURES`` has it AND the
  guild's switch is on; a guild's switch defaults to :data:`GUILD_DEFAULTS` (every
  feature on but ``associations``, which the guild's admins must turn on); DMs follow
  ``BARKEEPER_FEATURES`` alone, except ``associations``, which need a guild;
- connections: per (person, guild); ``/connect off`` also deletes the associations of
  their memories learnt in that guild.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError
from barkeeper.validation import check_bigint

__all__ = [
    "FEATURES",
    "GUILD_DEFAULTS",
    "SETTINGS_READ",
    "CompanionSettings",
    "PlaceSettings",
    "effective_features",
]

#: The companion's parts, each switched by ``BARKEEPER_FEATURES`` and per guild.
FEATURES = ("mood", "relationships", "styles", "opinions", "followups", "associations")

#: A guild's switches before its admins change them: all on but ``associations``.
GUILD_DEFAULTS: Mapping[str, bool] = {f: f != "associations" for f in FEATURES}

# $1 guild (Discord id), $2 channel (Discord id; 0 for none): the guild's row, the channel's.
SETTINGS_READ = """
SELECT channel_id, persona, features FROM companion_settings
WHERE guild_id = $1 AND channel_id IN (0, coalesce($2::bigint, 0))
"""
_SET_PERSONA = """
INSERT INTO companion_settings (guild_id, channel_id, persona) VALUES ($1, $2, $3)
ON CONFLICT (guild_id, channel_id) DO UPDATE SET persona = EXCLUDED.persona, updated_at = now()
"""
_SET_FEATURE = """
INSERT INTO companion_settings (guild_id, channel_id, features)
VALUES ($1, 0, jsonb_build_object($2::text, $3::boolean))
ON CONFLICT (guild_id, channel_id) DO UPDATE SET
    features = companion_settings.features || jsonb_build_object($2::text, $3::boolean),
    updated_at = now()
RETURNING features
"""
_CONNECT = """
INSERT INTO companion_connections (guild_id, user_id) VALUES ($1, $2)
ON CONFLICT (guild_id, user_id) DO NOTHING
"""
# The associations of the person's memories learnt in that guild (both directions).
_UNLINK = """
DELETE FROM fact_associations fa USING memories m
WHERE m.user_id = $2 AND m.guild_id = $1
  AND (fa.memory_id_1 = m.id OR fa.memory_id_2 = m.id)
"""


def check_feature(name: str) -> str:
    """``name`` if it is one of :data:`FEATURES`, else :class:`InvalidInputError`."""
    if name not in FEATURES:
        raise InvalidInputError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")
    return name


def effective_features(
    global_features: Iterable[str], guild_id: int | None, switches: Mapping[str, Any]
) -> frozenset[str]:
    """The features on in a place: ``BARKEEPER_FEATURES`` and the guild's switches.

    Args:
        global_features: ``BARKEEPER_FEATURES``.
        guild_id: The guild (``None``: a DM or the terminal: no switches, no associations).
        switches: The guild's stored switches (missing keys: :data:`GUILD_DEFAULTS`).
    """
    on = set(global_features) & set(FEATURES)
    if guild_id is None:
        return frozenset(on - {"associations"})
    return frozenset(f for f in on if bool(switches.get(f, GUILD_DEFAULTS[f])) is True)


@dataclass(frozen=True, slots=True)
class PlaceSettings:
    """What admins set for one place.

    Attributes:
        guild_id: The guild (Discord id; ``None``: a DM).
        channel_id: The channel (Discord id), if any.
        guild_persona: The guild's persona choice (``None``: the default).
        channel_persona: The channel's choice (``None``: the guild's).
        switches: The guild's feature switches as stored (missing: the defaults).
    """

    guild_id: int | None
    channel_id: int | None = None
    guild_persona: str | None = None
    channel_persona: str | None = None
    switches: Mapping[str, bool] = field(default_factory=dict)

    @property
    def persona(self) -> str | None:
        """The persona that applies: the channel's, else the guild's (``None``: default)."""
        return self.channel_persona or self.guild_persona

    def features(self, global_features: Iterable[str]) -> frozenset[str]:
        """The features on here (see :func:`effective_features`)."""
        return effective_features(global_features, self.guild_id, self.switches)

    @classmethod
    def from_rows(
        cls, guild_id: int | None, channel_id: int | None, rows: Iterable[Mapping[str, Any]]
    ) -> PlaceSettings:
        """Build from :data:`SETTINGS_READ`'s rows (``features`` as JSON text or a dict)."""
        guild_persona = channel_persona = None
        switches: dict[str, bool] = {}
        for row in rows:
            raw = row["features"]
            data = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
            if int(row["channel_id"]) == 0:
                guild_persona = row["persona"]
                switches = {k: bool(v) for k, v in data.items() if k in FEATURES}
            else:
                channel_persona = row["persona"]
        return cls(guild_id, channel_id, guild_persona, channel_persona, switches)


class CompanionSettings:
    """The ``companion_settings`` and ``companion_connections`` tables.

    Args:
        db: The database (migrated to version 5).
        global_features: ``BARKEEPER_FEATURES`` (default: every feature).

    Example::

        settings = CompanionSettings(db, settings.companion_features())
        if await settings.feature_on(guild_id, "followups"):
            ...
    """

    def __init__(self, db: Database, global_features: Iterable[str] = FEATURES) -> None:
        self._db = db
        self.global_features = frozenset(global_features)

    async def get(self, guild_id: int | None, channel_id: int | None = None) -> PlaceSettings:
        """The settings of a place (a DM, ``guild_id`` None, has none)."""
        if guild_id is None:
            return PlaceSettings(None, channel_id)
        guild_id = check_bigint(guild_id, "guild_id")
        async with self._db.acquire() as conn:
            rows = await conn.fetch(SETTINGS_READ, guild_id, channel_id)
        return PlaceSettings.from_rows(guild_id, channel_id, rows)

    async def features(self, guild_id: int | None) -> frozenset[str]:
        """The features on in the guild (``None``: DMs), with ``BARKEEPER_FEATURES``."""
        return (await self.get(guild_id)).features(self.global_features)

    async def feature_on(self, guild_id: int | None, feature: str) -> bool:
        """Whether ``feature`` is on in the guild (``None``: DMs).

        The public question for other parts (e.g. follow-ups): is feature X on for
        guild G? It is when ``BARKEEPER_FEATURES`` has it and the guild's admins did
        not switch it off (``associations``: switched on).

        Raises:
            InvalidInputError: an unknown feature.
        """
        return check_feature(feature) in await self.features(guild_id)

    async def set_feature(self, guild_id: int, feature: str, on: bool) -> dict[str, bool]:
        """Switch a feature on or off for a guild; returns the guild's switches, all of them."""
        guild_id = check_bigint(guild_id, "guild_id")
        check_feature(feature)
        async with self._db.acquire() as conn:
            raw = await conn.fetchval(_SET_FEATURE, guild_id, feature, bool(on))
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return {f: bool(data.get(f, GUILD_DEFAULTS[f])) for f in FEATURES}

    async def set_persona(
        self,
        guild_id: int,
        channel_id: int | None,
        persona: str | None,
    ) -> None:
        """Choose the persona of a guild (``channel_id`` None) or of one channel.

        ``persona`` None resets the choice (the channel inherits the guild's, the guild
        the default). The name is not checked here: see :class:`PersonaCatalog`.
        """
        guild_id = check_bigint(guild_id, "guild_id")
        channel = 0 if channel_id is None else check_bigint(channel_id, "channel_id")
        if persona is not None and (not persona.strip() or len(persona) > 80):
            raise InvalidInputError("a persona's name is 1 to 80 characters")
        async with self._db.acquire() as conn:
            await conn.execute(_SET_PERSONA, guild_id, channel, persona)

    # --- connections (fact associations) ---------------------------------------------

    async def is_connected(self, user_id: int, guild_id: int) -> bool:
        """Whether the person turned ``/connect on`` in the guild."""
        async with self._db.acquire() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM companion_connections WHERE guild_id = $1 AND user_id = $2",
                check_bigint(guild_id, "guild_id"),
                check_bigint(user_id, "user_id"),
            )
        return found is not None

    async def set_connected(self, user_id: int, guild_id: int, on: bool) -> int:
        """Turn connections on or off for a person in a guild.

        Off also deletes the associations of their memories learnt in that guild;
        returns how many were deleted (0 when turning on).

        Raises:
            NotFoundError: no such user.
        """
        guild_id = check_bigint(guild_id, "guild_id")
        user_id = check_bigint(user_id, "user_id")
        try:
            async with self._db.transaction() as conn:
                if on:
                    await conn.execute(_CONNECT, guild_id, user_id)
                    return 0
                await conn.execute(
                    "DELETE FROM companion_connections WHERE guild_id = $1 AND user_id = $2",
                    guild_id,
                    user_id,
                )
                status = await conn.execute(_UNLINK, guild_id, user_id)
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        return int(status.rsplit(" ", 1)[-1])
