"""The companion's knowledge of people and places: users, guilds, members, preferences.

- :class:`UserStore`: Discord users (by ``discord_id``) and other agents' users (by
  ``external_id``), one internal ``users.id`` for both; the display-name rule.
- :class:`GuildStore`: guilds and memberships (nickname, roles).
- :class:`PreferenceStore`: per-user key/value preferences.

Names, keys and JSON settings containing NUL characters are refused with
:class:`~barkeeper.errors.InvalidInputError`; nothing is written.

Example::

    from barkeeper.companion import GuildStore, PreferenceStore, UserStore

    user = await UserStore(db).get_or_create_discord_user(1234, username="john_doe")
    await PreferenceStore(db).set_preference(user.id, "tone", "gentle")
"""

from barkeeper.companion._guilds import Guild, GuildMember, GuildStore
from barkeeper.companion._persona import (
    LEVEL_NAMES,
    Persona,
    Tuning,
    default_persona,
    load_persona,
)
from barkeeper.companion._preferences import (
    MAX_PREFERENCE_KEY,
    MAX_PREFERENCE_VALUE,
    PreferenceStore,
)
from barkeeper.companion._users import User, UserStore

__all__ = [
    "LEVEL_NAMES",
    "MAX_PREFERENCE_KEY",
    "MAX_PREFERENCE_VALUE",
    "Guild",
    "GuildMember",
    "GuildStore",
    "Persona",
    "PreferenceStore",
    "Tuning",
    "User",
    "UserStore",
    "default_persona",
    "load_persona",
]
