"""Personas: the shipped Bartender, BARKEEPER_PERSONA_FILE, and refusals of bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from barkeeper.agent import DEFAULT_PERSONA, AgentConfig
from barkeeper.companion import LEVEL_NAMES, Tuning, default_persona, load_persona
from barkeeper.config import load_settings
from barkeeper.errors import ConfigError

MINIMAL = """
name = "Nightowl"
description = "a quiet late-night host."
voice = "Soft and brief."
never = ["raise your voice"]
[baseline_mood]
valence = -0.2
arousal = 0.4
[tuning]
mood_step = 0.05
style_confidence_samples = 10
"""


def test_bartender_is_the_default_and_the_agents_prompt() -> None:
    persona = default_persona()
    assert persona.name == "Bartender"
    assert persona.baseline_valence == pytest.approx(0.1)
    assert persona.baseline_arousal == pytest.approx(-0.1)
    assert set(persona.tones) == set(LEVEL_NAMES)
    assert persona.tuning == Tuning()  # the file and the code agree on every default
    prompt = persona.system_prompt()
    assert prompt.startswith("You are Bartender, ")
    assert "grief" in prompt and "988" in prompt and "You never:" in prompt
    assert DEFAULT_PERSONA == prompt
    assert AgentConfig().persona == prompt
    assert load_persona(None) == persona and load_persona("") == persona


def test_a_persona_file_replaces_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "owl.toml"
    file.write_text(MINIMAL, encoding="utf-8")
    persona = load_persona(file)
    assert persona.name == "Nightowl"
    assert (persona.baseline_valence, persona.baseline_arousal) == (-0.2, 0.4)
    assert persona.tuning.mood_step == 0.05 and persona.tuning.style_confidence_samples == 10
    assert persona.tuning.opinion_max_shown == Tuning().opinion_max_shown
    assert persona.tones == {} and persona.tone("friend") == ""
    assert "- raise your voice" in persona.system_prompt()

    monkeypatch.setenv("BARKEEPER_PERSONA_FILE", str(file))
    config = AgentConfig.from_settings(load_settings())
    assert config.persona.startswith("You are Nightowl, ") and config.bot_name == "Nightowl"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name = ", "not valid TOML"),
        ('description = "x"\nvoice = "y"', "'name'"),
        (MINIMAL + "\nmood_stepp = 1\n", "unknown tuning field(s) mood_stepp"),
        (MINIMAL.replace("valence = -0.2", "valence = 2"), "between -1 and 1"),
        (
            MINIMAL.replace("mood_step = 0.05", "mood_step = 1.5"),
            "mood_step must be between 0 and 1",
        ),
        (MINIMAL.replace("mood_step = 0.05", 'mood_step = "x"'), "mood_step must be a number"),
        (MINIMAL + "relationship_levels = [50, 40, 60, 80]\n", "relationship_levels"),
        (MINIMAL + "\n[tones]\nbest_buddy = 'x'\n", "[tones] holds only"),
        ('colour = "red"\n' + MINIMAL, "unknown field(s) colour"),
        (MINIMAL.replace('voice = "Soft and brief."', 'voice = ""'), "'voice'"),
    ],
)
def test_bad_persona_files_are_refused_naming_the_field(
    tmp_path: Path, text: str, needle: str
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_persona(file)
    assert needle in str(info.value)


def test_a_missing_persona_file_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BARKEEPER_PERSONA_FILE"):
        load_persona(tmp_path / "nope.toml")


def test_features_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().companion_features() == {
        "mood",
        "relationships",
        "styles",
        "opinions",
        "followups",
        "associations",
    }
    monkeypatch.setenv("BARKEEPER_FEATURES", " mood , styles,associations")
    assert load_settings().companion_features() == {"mood", "styles", "associations"}
    monkeypatch.setenv("BARKEEPER_FEATURES", " mood , styles")
    assert load_settings().companion_features() == {"mood", "styles"}
    monkeypatch.setenv("BARKEEPER_FEATURES", "")
    assert load_settings().companion_features() == frozenset()
    monkeypatch.setenv("BARKEEPER_FEATURES", "mood,telepathy")
    with pytest.raises(ConfigError, match="BARKEEPER_FEATURES"):
        load_settings()
