"""Personas: who the bot is (name, voice, values, baseline mood, what it never does).

The default, Bartender, ships in this package (``_personas/bartender.toml``);
``BARKEEPER_PERSONA_FILE`` names a TOML file that replaces it. Every constant of the
companion's rules lives in the persona's ``[tuning]`` table (or, for the mood's decay, in
``BARKEEPER_MOOD_DECAY``) so that a persona can be steadier or livelier; the rules and
their defaults are in ``docs/companion.md``. This module only reads and checks files: it
never writes, and a malformed file is refused whole with a message naming the field.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from barkeeper.errors import ConfigError

__all__ = [
    "LEVEL_NAMES",
    "Persona",
    "PersonaCatalog",
    "Tuning",
    "default_persona",
    "load_catalog",
    "load_persona",
]

#: The relationship levels, lowest first (their keys in a persona's ``[tones]``).
LEVEL_NAMES = ("new_face", "acquaintance", "friend", "good_friend", "close_friend")

_MAX_TEXT = 4000


@dataclass(frozen=True, slots=True)
class Tuning:
    """The constants of the companion's rules (a persona's ``[tuning]`` table).

    Each is explained, with its reason, in ``docs/companion.md``.
    """

    mood_step: float = 0.1
    mood_sentiment_weight: float = 0.3
    mood_effect_threshold: float = 0.2
    mood_history_min_change: float = 0.01
    relationship_base_gain: float = 2.0
    relationship_negative_loss: float = 1.0
    relationship_depth_bonus: float = 1.0
    relationship_return_bonus: float = 1.0
    relationship_return_after_hours: float = 12.0
    relationship_grace_days: float = 14.0
    relationship_decay_per_day: float = 0.5
    relationship_decay_floor: float = 20.0
    relationship_levels: tuple[float, float, float, float] = (20.0, 40.0, 60.0, 80.0)
    relationship_negative_below: float = 0.3
    relationship_depth_words: int = 50
    style_learning_rate: float = 0.1
    style_confidence_samples: int = 20
    style_confidence_threshold: float = 0.5
    opinion_learning_rate: float = 0.2
    opinion_interest_gain: float = 0.1
    opinion_min_discussions: int = 3
    opinion_max_shown: int = 3
    association_min_shared_words: int = 2
    association_min_strength: float = 0.5
    association_recent_memories: int = 20
    association_max_shown: int = 3
    association_max_per_memory: int = 3

    def __post_init__(self) -> None:
        unit = (
            "relationship_negative_below",
            "mood_step",
            "mood_sentiment_weight",
            "mood_effect_threshold",
            "mood_history_min_change",
            "style_learning_rate",
            "style_confidence_threshold",
            "opinion_learning_rate",
            "opinion_interest_gain",
            "association_min_strength",
        )
        for name in unit:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"persona tuning {name} must be between 0 and 1, not {value}")
        for name in (
            "relationship_base_gain",
            "relationship_negative_loss",
            "relationship_depth_bonus",
            "relationship_return_bonus",
            "relationship_return_after_hours",
            "relationship_grace_days",
            "relationship_decay_per_day",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ConfigError(f"persona tuning {name} must be between 0 and 100, not {value}")
        if not 0.0 <= self.relationship_decay_floor <= 100.0:
            raise ConfigError("persona tuning relationship_decay_floor must be between 0 and 100")
        levels = self.relationship_levels
        if (
            len(levels) != 4
            or not all(0 < a < b < 100 for a, b in itertools.pairwise(levels))
            or levels[0] <= 0
        ):
            raise ConfigError(
                "persona tuning relationship_levels must be four increasing scores "
                f"between 0 and 100, not {list(levels)}"
            )
        for name in (
            "style_confidence_samples",
            "opinion_min_discussions",
            "opinion_max_shown",
            "relationship_depth_words",
            "association_min_shared_words",
            "association_recent_memories",
            "association_max_shown",
            "association_max_per_memory",
        ):
            value = getattr(self, name)
            if not 1 <= value <= 10_000:
                raise ConfigError(f"persona tuning {name} must be between 1 and 10000, not {value}")


@dataclass(frozen=True, slots=True)
class Persona:
    """Who the bot is. Build one with :func:`load_persona` or :func:`default_persona`.

    Attributes:
        name: How the bot is called (and labels its own messages).
        description: What it is, completing "You are <name>, …".
        voice: How it talks.
        values: What it holds to, one sentence each.
        never: What it never does, each completing "Never …".
        baseline_valence: The mood's resting valence, in [-1, 1].
        baseline_arousal: The mood's resting arousal, in [-1, 1].
        tones: Per relationship level (:data:`LEVEL_NAMES`), how it shapes the tone.
        tuning: The rules' constants.
    """

    name: str
    description: str
    voice: str
    values: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    baseline_valence: float = 0.0
    baseline_arousal: float = 0.0
    tones: dict[str, str] = field(default_factory=dict)
    tuning: Tuning = field(default_factory=Tuning)

    def system_prompt(self) -> str:
        """The persona as a system prompt (the agent appends its context rules)."""
        parts = [f"You are {self.name}, {self.description}", f"How you talk: {self.voice}"]
        if self.values:
            parts.append("What you hold to:\n" + "\n".join(f"- {v}" for v in self.values))
        if self.never:
            parts.append("You never:\n" + "\n".join(f"- {n}" for n in self.never))
        return "\n\n".join(parts)

    def tone(self, level: str) -> str:
        """How the relationship level ``level`` shapes the tone ('' if the persona is silent)."""
        return self.tones.get(level, "")


def _text(data: dict[str, Any], key: str, source: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"persona {source}: {key!r} must be a non-empty string")
    if "\x00" in value or len(value) > _MAX_TEXT:
        raise ConfigError(
            f"persona {source}: {key!r} must be at most {_MAX_TEXT} characters, without NUL"
        )
    return " ".join(value.split()) if key != "voice" else value.strip()


def _texts(data: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"persona {source}: {key!r} must be a list of strings")
    return tuple(_text({key: item}, key, source) for item in value)


def _mood_value(data: dict[str, Any], key: str, source: str) -> float:
    value = data.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"persona {source}: baseline_mood.{key} must be a number")
    if not -1.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"persona {source}: baseline_mood.{key} must be between -1 and 1")
    return float(value)


def _tuning(data: Any, source: str) -> Tuning:
    if data is None:
        return Tuning()
    if not isinstance(data, dict):
        raise ConfigError(f"persona {source}: [tuning] must be a table")
    known = {f.name: f for f in fields(Tuning)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"persona {source}: unknown tuning field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(Tuning(), name)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"persona {source}: tuning {name} must be a list of numbers")
            values[name] = tuple(float(v) for v in value)
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"persona {source}: tuning {name} must be a whole number")
            values[name] = value
        else:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"persona {source}: tuning {name} must be a number")
            values[name] = float(value)
    try:
        return Tuning(**values)
    except ConfigError as exc:
        raise ConfigError(f"persona {source}: {exc}") from None


def _parse(text: str, source: str) -> Persona:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"persona {source} is not valid TOML: {exc}") from None
    known = {"name", "description", "voice", "values", "never", "baseline_mood", "tones", "tuning"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"persona {source}: unknown field(s) {', '.join(unknown)}")
    name = _text(data, "name", source)
    if len(name) > 80:
        raise ConfigError(f"persona {source}: 'name' must be at most 80 characters")
    mood = data.get("baseline_mood", {})
    if not isinstance(mood, dict) or set(mood) - {"valence", "arousal"}:
        raise ConfigError(f"persona {source}: [baseline_mood] holds only valence and arousal")
    tones = data.get("tones", {})
    if not isinstance(tones, dict) or set(tones) - set(LEVEL_NAMES):
        raise ConfigError(
            f"persona {source}: [tones] holds only the levels {', '.join(LEVEL_NAMES)}"
        )
    return Persona(
        name=name,
        description=_text(data, "description", source),
        voice=_text(data, "voice", source),
        values=_texts(data, "values", source),
        never=_texts(data, "never", source),
        baseline_valence=_mood_value(mood, "valence", source),
        baseline_arousal=_mood_value(mood, "arousal", source),
        tones={level: _text(tones, level, source) for level in LEVEL_NAMES if level in tones},
        tuning=_tuning(data.get("tuning"), source),
    )


def default_persona() -> Persona:
    """Bartender, the persona shipped with barkeeper."""
    text = resources.files("barkeeper.companion").joinpath("_personas/bartender.toml")
    return _parse(text.read_text(encoding="utf-8"), "Bartender (built in)")


def load_persona(path: str | Path | None = None) -> Persona:
    """The persona in the TOML file ``path``; the default when ``path`` is None or empty.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or a field is missing or
            malformed (the message names it); nothing is half-loaded.
    """
    if path is None or str(path) == "":
        return default_persona()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the persona file {str(file)!r} (BARKEEPER_PERSONA_FILE): "
            f"{type(exc).__name__}"
        ) from None
    return _parse(text, repr(str(file)))


class PersonaCatalog:
    """The personas a guild's admins may choose with ``/persona``, by name.

    Names are matched without regard to case. The default persona is always in it.

    Args:
        default: The default persona (``BARKEEPER_PERSONA_FILE`` or Bartender).
        others: More personas (:func:`load_catalog` reads them from files).

    Raises:
        ConfigError: Two personas share a name.
    """

    def __init__(self, default: Persona, others: Iterable[Persona] = ()) -> None:
        self.default = default
        self._by_key: dict[str, Persona] = {default.name.casefold(): default}
        for persona in others:
            key = persona.name.casefold()
            if key in self._by_key:
                if self._by_key[key] == persona:
                    continue
                raise ConfigError(
                    f"two personas are called {persona.name!r}; persona names must differ"
                )
            self._by_key[key] = persona

    def __len__(self) -> int:
        return len(self._by_key)

    def names(self) -> list[str]:
        """Every persona's name, the default first, then alphabetically."""
        rest = sorted(p.name for k, p in self._by_key.items() if p is not self.default)
        return [self.default.name, *rest]

    def get(self, name: str | None) -> Persona | None:
        """The persona called ``name`` (any case), or ``None``."""
        if not name:
            return None
        return self._by_key.get(name.strip().casefold())

    def personas(self) -> list[Persona]:
        """Every persona, in :meth:`names` order."""
        return [self._by_key[n.casefold()] for n in self.names()]


def _shipped() -> list[Persona]:
    folder = resources.files("barkeeper.companion").joinpath("_personas")
    return [
        _parse(item.read_text(encoding="utf-8"), f"{item.name} (built in)")
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".toml")
    ]


def load_catalog(default: Persona, directory: str | Path | None = None) -> PersonaCatalog:
    """The default persona, the shipped ones, and every ``*.toml`` in ``directory``
    (``BARKEEPER_PERSONAS_DIR``; ``None``: none). A shipped persona with the default's
    name is left out (the default replaces it).

    Raises:
        ConfigError: The directory cannot be read, a file is malformed, or two
            personas share a name.
    """
    # The default replaces a shipped persona of its name (BARKEEPER_PERSONA_FILE often
    # is a tuned Bartender); only the directory's files must not clash.
    others = [p for p in _shipped() if p.name.casefold() != default.name.casefold()]
    if directory is not None and str(directory) != "":
        folder = Path(directory)
        try:
            files = sorted(folder.glob("*.toml"))
            if not folder.is_dir():
                raise NotADirectoryError
        except OSError as exc:
            raise ConfigError(
                f"cannot read the personas directory {str(folder)!r} (BARKEEPER_PERSONAS_DIR): "
                f"{type(exc).__name__}"
            ) from None
        others += [load_persona(f) for f in files]
    return PersonaCatalog(default, others)
