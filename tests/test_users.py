"""Conformance tests of barkeeper.companion's users, guilds, members and preferences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from barkeeper.companion import (
    MAX_PREFERENCE_KEY,
    GuildStore,
    PreferenceStore,
    User,
    UserStore,
)
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError


async def _count(db: Database, table: str) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - test constant


# --- users ---------------------------------------------------------------------------------


async def test_discord_user_is_created_then_seen_again(db: Database) -> None:
    users = UserStore(db)
    first = await users.get_or_create_discord_user(1001, username="john_doe", display_name="Johnny")
    assert first.discord_id == 1001
    assert first.discord_username == "john_doe"
    assert first.discord_display_name == "Johnny"
    assert first.external_id is None
    again = await users.get_or_create_discord_user(1001, username="john_renamed")
    assert again.id == first.id
    assert again.discord_username == "john_renamed"
    assert again.discord_display_name == "Johnny", "a name not given is kept"
    assert again.last_seen_at > first.last_seen_at
    assert again.first_seen_at == first.first_seen_at
    assert again.updated_at > first.updated_at
    unchanged = await users.get_or_create_discord_user(1001, username="john_renamed")
    assert unchanged.updated_at == again.updated_at, "no name changed: updated_at stays"
    assert unchanged.last_seen_at > again.last_seen_at
    assert await _count(db, "users") == 1


async def test_global_name_is_preferred_over_guild_display_name(db: Database) -> None:
    users = UserStore(db)
    user = await users.get_or_create_discord_user(
        1002, username="jd", display_name="Guild Nick", global_name="John"
    )
    assert user.discord_display_name == "John"


async def test_display_name_rule(db: Database) -> None:
    users = UserStore(db)
    plain = await users.get_or_create_discord_user(1003, username="only_username")
    assert plain.display_name == "only_username"
    shown = await users.get_or_create_discord_user(1003, username="u", global_name="Shown")
    assert shown.display_name == "Shown"
    custom = await users.set_custom_name(shown.id, "Captain")
    assert custom.display_name == "Captain"
    seen = await users.get_or_create_discord_user(1003, username="u", global_name="Other")
    assert seen.display_name == "Captain", "seeing the user again keeps the custom name"
    cleared = await users.set_custom_name(shown.id, None)
    assert cleared.display_name == "Other"


async def test_concurrent_first_sight_makes_one_user(db: Database) -> None:
    users = UserStore(db)
    seen = await asyncio.gather(
        *(users.get_or_create_discord_user(1004, username=f"n{i}") for i in range(20))
    )
    assert len({u.id for u in seen}) == 1
    assert await _count(db, "users") == 1


async def test_external_users(db: Database) -> None:
    users = UserStore(db)
    a = await users.get_or_create_external_user("user-123")
    b = await users.get_or_create_external_user("user-123")
    other = await users.get_or_create_external_user("user-456")
    assert a.id == b.id != other.id
    assert a.discord_id is None
    assert a.display_name == "user-123"
    assert b.last_seen_at > a.last_seen_at
    assert (await users.get_by_external_id("user-123")) == b
    assert await users.get_by_external_id("nobody") is None
    discord = await users.get_or_create_discord_user(123, username="x")
    assert discord.id not in (a.id, other.id), "a Discord id and an external id never merge"


async def test_lookups(db: Database) -> None:
    users = UserStore(db)
    user = await users.get_or_create_discord_user(1005, username="x")
    assert await users.get(user.id) == user
    assert await users.get_by_discord_id(1005) == user
    assert await users.get(user.id + 1000) is None
    assert await users.get_by_discord_id(9999) is None
    assert await _count(db, "users") == 1, "lookups create nothing"


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, "1005", 1.0])
async def test_bad_discord_ids_are_refused(db: Database, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await UserStore(db).get_or_create_discord_user(bad, username="x")  # type: ignore[arg-type]
    assert await _count(db, "users") == 0


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "x" * 256, "\ud800"])
async def test_bad_names_are_refused(db: Database, bad: str) -> None:
    users = UserStore(db)
    with pytest.raises(InvalidInputError):
        await users.get_or_create_discord_user(1006, username=bad)
    with pytest.raises(InvalidInputError):
        await users.get_or_create_external_user(bad)
    user = await users.get_or_create_discord_user(1006, username="ok")
    with pytest.raises(InvalidInputError):
        await users.set_custom_name(user.id, bad)
    assert (await users.get(user.id)) is not None
    assert (await users.get(user.id)).custom_name is None  # type: ignore[union-attr]


async def test_unicode_names_round_trip(db: Database) -> None:
    users = UserStore(db)
    name = "Zoë 🍺 ﷽ \u200d名前"
    user = await users.get_or_create_discord_user(1007, username="z", global_name=name)
    assert (await users.get(user.id)).display_name == name  # type: ignore[union-attr]


async def test_set_custom_name_of_missing_user(db: Database) -> None:
    with pytest.raises(NotFoundError):
        await UserStore(db).set_custom_name(42, "x")


async def test_delete_user_cascades(db: Database) -> None:
    users, prefs, guilds = UserStore(db), PreferenceStore(db), GuildStore(db)
    user = await users.get_or_create_discord_user(1008, username="x")
    keep = await users.get_or_create_discord_user(1009, username="y")
    await prefs.set_preference(user.id, "tone", "warm")
    await prefs.set_preference(keep.id, "tone", "dry")
    guild = await guilds.upsert_guild(1, "g")
    await guilds.upsert_member(guild.id, user.id, "n", ["r"])
    assert await users.delete(user.id) is True
    assert await users.delete(user.id) is False
    assert await prefs.get_preferences(user.id) == {}
    assert await guilds.get_member(guild.id, user.id) is None
    assert await prefs.get_preferences(keep.id) == {"tone": "dry"}


def test_user_display_name_without_names() -> None:
    now = datetime.now(UTC)
    user = User(1, 55, None, None, None, None, now, now, True, now, now)
    assert user.display_name == "55"


# --- guilds and members --------------------------------------------------------------------


async def test_guild_upsert(db: Database) -> None:
    guilds = GuildStore(db)
    guild = await guilds.upsert_guild(777, "The Bar", settings={"lang": "fr", "emoji": "🍸"})
    assert guild.settings == {"lang": "fr", "emoji": "🍸"}
    assert guild.is_active
    renamed = await guilds.upsert_guild(777, "The Pub")
    assert renamed.id == guild.id
    assert renamed.name == "The Pub"
    assert renamed.settings == {"lang": "fr", "emoji": "🍸"}, "None keeps the settings"
    replaced = await guilds.upsert_guild(777, "The Pub", settings={})
    assert replaced.settings == {}
    assert await guilds.set_guild_active(guild.id, False) is True
    assert (await guilds.get_guild(guild.id)).is_active is False  # type: ignore[union-attr]
    back = await guilds.upsert_guild(777, "The Pub")
    assert back.is_active, "seeing the guild again means the bot is in it"
    assert await guilds.get_guild_by_discord_id(777) == back
    assert await guilds.get_guild_by_discord_id(778) is None
    assert await guilds.set_guild_active(guild.id + 50, True) is False


@pytest.mark.parametrize(
    "bad_settings", [{"a": "x\x00"}, {"a": float("nan")}, {1: "x"}, {"a": b"bytes"}, {"a": {1, 2}}]
)
async def test_bad_guild_settings_are_refused(
    db: Database, bad_settings: dict[object, object]
) -> None:
    guilds = GuildStore(db)
    await guilds.upsert_guild(1, "g", settings={"kept": True})
    with pytest.raises(InvalidInputError):
        await guilds.upsert_guild(1, "renamed", settings=bad_settings)  # type: ignore[arg-type]
    guild = await guilds.get_guild_by_discord_id(1)
    assert guild is not None
    assert (guild.name, guild.settings) == ("g", {"kept": True})


async def test_members(db: Database) -> None:
    users, guilds = UserStore(db), GuildStore(db)
    a = await users.get_or_create_discord_user(11, username="a")
    b = await users.get_or_create_discord_user(12, username="b")
    guild = await guilds.upsert_guild(1, "g")
    other = await guilds.upsert_guild(2, "h")
    joined = datetime(2024, 5, 1, tzinfo=UTC)
    m = await guilds.upsert_member(guild.id, b.id, "Bee", ["mod", "regular"], joined_at=joined)
    assert (m.guild_nickname, m.roles, m.joined_guild_at) == ("Bee", ["mod", "regular"], joined)
    m2 = await guilds.upsert_member(guild.id, b.id, None, ["regular"])
    assert m2.id == m.id
    assert (m2.guild_nickname, m2.roles) == (None, ["regular"])
    assert m2.joined_guild_at == joined, "join time not given is kept"
    await guilds.upsert_member(guild.id, a.id)
    await guilds.upsert_member(other.id, a.id, "Ay")
    assert await guilds.get_member(guild.id, b.id) == m2
    assert await guilds.get_member(other.id, b.id) is None
    assert [x.user_id for x in await guilds.list_members(guild.id)] == [a.id, b.id]
    assert [x.user_id for x in await guilds.list_members(guild.id, limit=1, offset=1)] == [b.id]
    assert await guilds.list_members(guild.id, offset=2) == []
    assert [x.guild_id for x in await guilds.list_user_memberships(a.id)] == [guild.id, other.id]
    assert await guilds.remove_member(other.id, a.id) is True
    assert await guilds.remove_member(other.id, a.id) is False
    assert await guilds.delete_user_memberships(a.id) == 1
    assert await guilds.list_user_memberships(a.id) == []
    assert [x.user_id for x in await guilds.list_members(guild.id)] == [b.id]


async def test_member_errors(db: Database) -> None:
    users, guilds = UserStore(db), GuildStore(db)
    user = await users.get_or_create_discord_user(11, username="a")
    guild = await guilds.upsert_guild(1, "g")
    with pytest.raises(NotFoundError):
        await guilds.upsert_member(guild.id + 9, user.id)
    with pytest.raises(NotFoundError):
        await guilds.upsert_member(guild.id, user.id + 9)
    with pytest.raises(InvalidInputError):
        await guilds.upsert_member(guild.id, user.id, roles="admin")
    with pytest.raises(InvalidInputError):
        await guilds.upsert_member(guild.id, user.id, roles=["ok", "bad\x00"])
    with pytest.raises(InvalidInputError):
        await guilds.upsert_member(guild.id, user.id, joined_at=datetime(2024, 1, 1))
    with pytest.raises(InvalidInputError):
        await guilds.list_members(guild.id, limit=0)
    assert await guilds.list_members(guild.id) == []


# --- preferences ---------------------------------------------------------------------------


async def test_preferences(db: Database) -> None:
    users, prefs = UserStore(db), PreferenceStore(db)
    a = await users.get_or_create_discord_user(21, username="a")
    b = await users.get_or_create_discord_user(22, username="b")
    assert await prefs.get_preferences(a.id) == {}
    assert await prefs.get_preference(a.id, "tone") is None
    await prefs.set_preference(a.id, "tone", "gentle")
    await prefs.set_preference(a.id, "language", "français 🇫🇷")
    await prefs.set_preference(a.id, "tone", "dry")
    await prefs.set_preference(b.id, "tone", "loud")
    assert await prefs.get_preference(a.id, "tone") == "dry"
    assert await prefs.get_preferences(a.id) == {"language": "français 🇫🇷", "tone": "dry"}
    assert await prefs.get_preferences(b.id) == {"tone": "loud"}
    assert await _count(db, "user_preferences") == 3, "setting again replaces"
    assert await prefs.delete_preference(a.id, "tone") is True
    assert await prefs.delete_preference(a.id, "tone") is False
    assert await prefs.get_preferences(a.id) == {"language": "français 🇫🇷"}
    assert await prefs.delete_user_preferences(a.id) == 1
    assert await prefs.get_preferences(a.id) == {}
    assert await prefs.get_preferences(b.id) == {"tone": "loud"}


async def test_preference_validation(db: Database) -> None:
    users, prefs = UserStore(db), PreferenceStore(db)
    user = await users.get_or_create_discord_user(21, username="a")
    longest = "k" * MAX_PREFERENCE_KEY
    await prefs.set_preference(user.id, longest, "")
    assert await prefs.get_preferences(user.id) == {longest: ""}
    for key in ("", "k" * (MAX_PREFERENCE_KEY + 1), "a\x00b"):
        with pytest.raises(InvalidInputError):
            await prefs.set_preference(user.id, key, "v")
    with pytest.raises(InvalidInputError):
        await prefs.set_preference(user.id, "tone", "a\x00b")
    with pytest.raises(InvalidInputError):
        await prefs.set_preference(user.id, "tone", 5)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await prefs.set_preference(user.id + 1, "tone", "v")
    assert await prefs.get_preferences(user.id) == {longest: ""}
