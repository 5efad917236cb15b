"""The companion's knowledge of people and places: users, guilds, members, preferences.

- :class:`UserStore`: Discord users (by ``discord_id``) and other agents' users (by
  ``external_id``), one internal ``users.id`` for both; the display-name rule.
- :class:`GuildStore`: guilds and memberships (nickname, roles).
- :class:`PreferenceStore`: per-user key/value preferences.
- :class:`Persona` (:func:`load_persona`): who the bot is; Bartender by default.
- :class:`Companion`: mood per guild, relationships, communication styles and opinions,
  read before a reply as prompt fragments and moved after it (``docs/companion.md``).
- :class:`Followups`: follow-ups, reminders and birthdays (``scheduled_events``), their
  days resolved in code (:func:`resolve_when`), claimed exactly once for delivery;
  :func:`reminder_request` reads "remind me …" by rules (:func:`asks_for_reminder`:
  asked at all), and :func:`reminder_trouble` says why one will not be set, with
  :func:`reminder_notice` the fixed line the reply is told (so that it asks instead of
  promising).
- :class:`CompanionSettings`: per-guild and per-channel personas (from a
  :class:`PersonaCatalog`), per-guild feature switches (:meth:`CompanionSettings.feature_on`
  answers "is feature X on in guild G"), and ``/connect`` opt-ins.
- :class:`AssociationStore`: fact associations between connected members.

Names, keys and JSON settings containing NUL characters are refused with
:class:`~barkeeper.errors.InvalidInputError`; nothing is written.

Example::

    from barkeeper.companion import GuildStore, PreferenceStore, UserStore

    user = await UserStore(db).get_or_create_discord_user(1234, username="john_doe")
    await PreferenceStore(db).set_preference(user.id, "tone", "gentle")
"""

from barkeeper.companion._associations import Association, AssociationStore
from barkeeper.companion._care import (
    CARE_INSTRUCTION,
    DEFAULT_CRISIS_RESOURCES,
    SENSITIVE_MEMORY_TYPES,
    memory_types_for,
    shows_risk,
)
from barkeeper.companion._companion import FEATURES, Companion, CompanionContext
from barkeeper.companion._followups import (
    EVENT_KINDS,
    EVENT_STATUSES,
    ClaimedEvent,
    EventKind,
    EventStatus,
    FollowupRules,
    Followups,
    ScheduledEvent,
    event_text,
)
from barkeeper.companion._guilds import Guild, GuildMember, GuildStore
from barkeeper.companion._mood import Mood, MoodStore, classify_mood
from barkeeper.companion._opinions import Opinion, OpinionStore, topics_of
from barkeeper.companion._persona import (
    LEVEL_NAMES,
    Persona,
    PersonaCatalog,
    Tuning,
    default_persona,
    load_catalog,
    load_persona,
)
from barkeeper.companion._preferences import (
    MAX_PREFERENCE_KEY,
    MAX_PREFERENCE_VALUE,
    PreferenceStore,
)
from barkeeper.companion._relationships import (
    LEVEL_TITLES,
    Relationship,
    RelationshipStore,
    level_of,
)
from barkeeper.companion._reminders import (
    ReminderRequest,
    ReminderTrouble,
    asks_for_reminder,
    reminder_notice,
    reminder_request,
    reminder_trouble,
)
from barkeeper.companion._sentiment import Sentiment, score_sentiment
from barkeeper.companion._settings import (
    GUILD_DEFAULTS,
    CompanionSettings,
    PlaceSettings,
    effective_features,
)
from barkeeper.companion._state import BotState, BotStateStore
from barkeeper.companion._styles import CommunicationStyle, StyleSignals, StyleStore, style_signals
from barkeeper.companion._users import User, UserStore
from barkeeper.companion._when import (
    RECURRENCES,
    QuietHours,
    Recurrence,
    Span,
    local_moment,
    next_occurrence,
    parse_quiet_hours,
    quiet_until,
    resolve_when,
)

__all__ = [
    "CARE_INSTRUCTION",
    "DEFAULT_CRISIS_RESOURCES",
    "EVENT_KINDS",
    "EVENT_STATUSES",
    "FEATURES",
    "GUILD_DEFAULTS",
    "LEVEL_NAMES",
    "LEVEL_TITLES",
    "MAX_PREFERENCE_KEY",
    "MAX_PREFERENCE_VALUE",
    "RECURRENCES",
    "SENSITIVE_MEMORY_TYPES",
    "Association",
    "AssociationStore",
    "BotState",
    "BotStateStore",
    "ClaimedEvent",
    "CommunicationStyle",
    "Companion",
    "CompanionContext",
    "CompanionSettings",
    "EventKind",
    "EventStatus",
    "FollowupRules",
    "Followups",
    "Guild",
    "GuildMember",
    "GuildStore",
    "Mood",
    "MoodStore",
    "Opinion",
    "OpinionStore",
    "Persona",
    "PersonaCatalog",
    "PlaceSettings",
    "PreferenceStore",
    "QuietHours",
    "Recurrence",
    "Relationship",
    "RelationshipStore",
    "ReminderRequest",
    "ReminderTrouble",
    "ScheduledEvent",
    "Sentiment",
    "Span",
    "StyleSignals",
    "StyleStore",
    "Tuning",
    "User",
    "UserStore",
    "asks_for_reminder",
    "classify_mood",
    "default_persona",
    "effective_features",
    "event_text",
    "level_of",
    "load_catalog",
    "load_persona",
    "local_moment",
    "memory_types_for",
    "next_occurrence",
    "parse_quiet_hours",
    "quiet_until",
    "reminder_notice",
    "reminder_request",
    "reminder_trouble",
    "resolve_when",
    "score_sentiment",
    "shows_risk",
    "style_signals",
    "topics_of",
]
