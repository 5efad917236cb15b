"""The companion's inner life on real PostgreSQL, with an injected clock.

Mood (classification, bounded moves, decay over simulated days, history), relationships
(gains, diminishing returns, levels, absence), communication styles (convergence and the
confidence threshold), opinions (reinforcement, never about people) and the facade.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from barkeeper.companion import (
    Companion,
    Mood,
    MoodStore,
    OpinionStore,
    PreferenceStore,
    RelationshipStore,
    Sentiment,
    StyleStore,
    Tuning,
    UserStore,
    classify_mood,
    default_persona,
    level_of,
    score_sentiment,
    style_signals,
    topics_of,
)
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD = 800_000_000_000_000_001
OTHER_GUILD = 800_000_000_000_000_002
PERSONA = default_persona()


async def _user(db: Database, discord_id: int = 1001, name: str = "ana") -> int:
    return (await UserStore(db).get_or_create_discord_user(discord_id, username=name)).id


# --- mood ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "a", "label"),
    [
        (0.5, 0.5, "excited"),
        (0.5, 0.3, "happy"),  # the bounds are strict: 0.3 is not above 0.3
        (0.31, -0.9, "happy"),
        (-0.5, 0.31, "annoyed"),
        (-0.31, 0.0, "bored"),
        (-0.3, 0.0, "neutral"),
        (0.0, 0.4, "curious"),
        (0.2, -0.4, "calm"),
        (0.0, -0.3, "neutral"),
        (0.3, 0.3, "neutral"),
    ],
)
def test_mood_classification_is_loyal_companions(v: float, a: float, label: str) -> None:
    assert classify_mood(v, a) == (label, pytest.approx((abs(v) + abs(a)) / 2))


def test_sentiment_is_scored_locally() -> None:
    happy = score_sentiment("I love this place, what a wonderful evening!")
    sad = score_sentiment("this is awful, I hate everything about today")
    shouted = score_sentiment("THIS IS AMAZING!!!")
    assert happy.valence > 0.5 and sad.valence < -0.5
    assert shouted.arousal > happy.arousal > score_sentiment("it is fine").arousal
    assert score_sentiment("   ") == Sentiment(0.0, 0.0)


async def test_a_new_place_rests_at_the_baseline(db: Database) -> None:
    moods = MoodStore(db, PERSONA, decay_per_hour=0.05)
    mood = await moods.get_mood(GUILD, T0)
    assert (mood.valence, mood.arousal) == (PERSONA.baseline_valence, PERSONA.baseline_arousal)
    assert mood.intensity < PERSONA.tuning.mood_effect_threshold  # a resting mood acts not
    assert await moods.history(GUILD) == []


async def test_each_message_moves_the_mood_at_most_one_step(db: Database) -> None:
    user_id = await _user(db)
    moods = MoodStore(db, PERSONA, decay_per_hour=0.05)
    step = PERSONA.tuning.mood_step
    ecstatic = Sentiment(1.0, 1.0)
    before = await moods.get_mood(GUILD, T0)
    after = await moods.record(GUILD, ecstatic, T0, user_id=user_id, description="joy")
    assert after.valence - before.valence == pytest.approx(step)
    assert after.arousal - before.arousal == pytest.approx(step)
    # Steady: it takes many glowing messages to become excited.
    mood = after
    count = 1
    while mood.label != "excited":
        mood = await moods.record(GUILD, ecstatic, T0, user_id=user_id)
        count += 1
    assert count >= 4
    # Other guilds and DMs have their own mood.
    assert (await moods.get_mood(OTHER_GUILD, T0)).valence == PERSONA.baseline_valence
    assert (await moods.get_mood(None, T0)).valence == PERSONA.baseline_valence
    history = await moods.history(GUILD)
    assert len(history) == count
    assert {h["trigger_type"] for h in history} == {"conversation"}
    assert history[-1]["trigger_user_id"] == user_id and history[-1]["trigger_description"] == "joy"


async def test_mood_decays_toward_the_baseline_per_hour(db: Database) -> None:
    moods = MoodStore(db, PERSONA, decay_per_hour=0.05)
    for _ in range(6):
        stirred = await moods.record(GUILD, Sentiment(-1.0, 1.0), T0)
    assert stirred.label == "annoyed"
    v0 = PERSONA.baseline_valence
    # After one hour, 5% of the distance to the baseline is gone.
    one_hour = await moods.get_mood(GUILD, T0 + timedelta(hours=1))
    assert one_hour.valence - v0 == pytest.approx((stirred.valence - v0) * 0.95, rel=1e-4)
    # After a simulated week, it is back at rest and has no effect.
    week = await moods.get_mood(GUILD, T0 + timedelta(days=7))
    assert week.valence == pytest.approx(v0, abs=1e-3)
    assert week.intensity < PERSONA.tuning.mood_effect_threshold
    # Reading wrote nothing; the next message stores the decay first, as its own change.
    assert len(await moods.history(GUILD)) == 6
    await moods.record(GUILD, Sentiment(0.0, 0.0), T0 + timedelta(days=7))
    triggers = [h["trigger_type"] for h in await moods.history(GUILD, limit=2)]
    assert "decay" in triggers


async def test_no_decay_setting_keeps_the_mood(db: Database) -> None:
    moods = MoodStore(db, PERSONA, decay_per_hour=0.0)
    stirred = await moods.record(GUILD, Sentiment(1.0, 1.0), T0)
    later = await moods.get_mood(GUILD, T0 + timedelta(days=30))
    assert later.valence == pytest.approx(stirred.valence)
    with pytest.raises(InvalidInputError):
        MoodStore(db, PERSONA, decay_per_hour=1.5)


# --- relationships ------------------------------------------------------------------------


def test_level_boundaries_are_the_issues() -> None:
    names = [level_of(s, PERSONA) for s in (0, 20, 20.5, 40, 41, 60, 61, 80, 81, 100)]
    assert names == [
        "new_face",
        "new_face",
        "acquaintance",
        "acquaintance",
        "friend",
        "friend",
        "good_friend",
        "good_friend",
        "close_friend",
        "close_friend",
    ]


async def test_relationships_grow_with_diminishing_returns(db: Database) -> None:
    user_id = await _user(db)
    rels = RelationshipStore(db, PERSONA)
    fresh = await rels.get_relationship(user_id, GUILD, T0)
    assert fresh.score == 0 and fresh.level(PERSONA) == "new_face"
    now = T0
    gains = []
    score = 0.0
    levels = []
    for _ in range(400):
        now += timedelta(minutes=5)
        rel = await rels.record_interaction(user_id, GUILD, sentiment=0.5, words=25, now=now)
        gains.append(rel.score - score)
        score = rel.score
        levels.append(rel.level(PERSONA))
    assert gains[0] == pytest.approx(2.5)  # base 2 + depth 0.5, no return bonus
    assert gains[-1] < gains[100] < gains[0]  # diminishing
    assert 0 < score < 100
    assert list(dict.fromkeys(levels)) == [
        "new_face",
        "acquaintance",
        "friend",
        "good_friend",
        "close_friend",
    ]
    assert rel.total_interactions == 400 and rel.positive_interactions == 400
    assert rel.avg_message_length == pytest.approx(25)
    # The DM relationship is another one.
    assert (await rels.get_relationship(user_id, None, now)).score == 0


async def test_returning_and_negative_and_absence(db: Database) -> None:
    user_id = await _user(db)
    rels = RelationshipStore(db, PERSONA)
    t = PERSONA.tuning
    rel = await rels.record_interaction(user_id, GUILD, sentiment=0.0, words=0, now=T0)
    assert rel.score == pytest.approx(t.relationship_base_gain)
    back = T0 + timedelta(hours=t.relationship_return_after_hours)
    rel2 = await rels.record_interaction(user_id, GUILD, sentiment=0.0, words=0, now=back)
    expected = (t.relationship_base_gain + t.relationship_return_bonus) * (1 - rel.score / 100)
    assert rel2.score - rel.score == pytest.approx(expected)
    rel3 = await rels.record_interaction(user_id, GUILD, sentiment=-0.8, words=5, now=back)
    assert rel3.score == pytest.approx(rel2.score - t.relationship_negative_loss)
    assert rel3.negative_interactions == 1

    # A friend away for months decays slowly, and never below the floor.
    friend = await _user(db, 1002, "bo")
    now = T0
    for _ in range(150):
        now += timedelta(minutes=1)
        high = await rels.record_interaction(friend, GUILD, sentiment=0.6, words=50, now=now)
    assert high.level(PERSONA) in ("good_friend", "close_friend")
    grace = await rels.get_relationship(friend, GUILD, now + timedelta(days=14))
    assert grace.score == pytest.approx(high.score)
    later = await rels.get_relationship(friend, GUILD, now + timedelta(days=24))
    assert later.score == pytest.approx(high.score - 10 * t.relationship_decay_per_day, rel=1e-4)
    gone = await rels.get_relationship(friend, GUILD, now + timedelta(days=3650))
    assert gone.score == pytest.approx(t.relationship_decay_floor)


async def test_shared_references_are_kept_and_checked(db: Database) -> None:
    user_id = await _user(db)
    rels = RelationshipStore(db, PERSONA)
    await rels.add_shared_reference(user_id, GUILD, "nicknames", "Captain Tea", T0)
    rel = await rels.add_shared_reference(user_id, GUILD, "inside_jokes", "the lost umbrella", T0)
    assert rel.shared_references == {
        "nicknames": ["Captain Tea"],
        "inside_jokes": ["the lost umbrella"],
    }
    with pytest.raises(InvalidInputError):
        await rels.add_shared_reference(user_id, GUILD, "secrets", "x", T0)
    with pytest.raises(InvalidInputError):
        await rels.add_shared_reference(user_id, GUILD, "nicknames", "x" * 101, T0)
    with pytest.raises(NotFoundError):
        await rels.record_interaction(999_999, GUILD, sentiment=0, words=1, now=T0)
    assert (await rels.get_relationship(user_id, GUILD, T0)).shared_references == (
        rel.shared_references
    )


# --- styles -------------------------------------------------------------------------------


def test_style_signals() -> None:
    casual = style_signals("lol yeah gonna grab a pint 😂")
    formal = style_signals(
        "Good evening. I would appreciate a recommendation for a dry red wine, please."
    )
    assert casual.length == 0.0 and casual.emoji == 1.0 and casual.humour == 1.0
    assert casual.formality < 0.2 < 0.7 < formal.formality
    assert formal.emoji == 0.0 and formal.humour == 0.0 and formal.length == 0.5


async def test_styles_converge_and_apply_only_when_confident(db: Database) -> None:
    user_id = await _user(db)
    styles = StyleStore(db, PERSONA)
    threshold = PERSONA.tuning.style_confidence_threshold
    style = await styles.get_style(user_id)
    assert style.samples == 0 and style.hints(PERSONA) == []
    for i in range(60):
        style = await styles.learn(user_id, "haha ok 😂")
        if style.confidence < threshold:
            assert style.hints(PERSONA) == [], i
    assert style.samples == 60 and style.confidence == 1.0
    assert style.preferred_length == "short" and style.emoji > 0.9 and style.humour > 0.9
    assert style.formality < 0.35
    hints = style.hints(PERSONA)
    assert "keep replies short" in hints and "they enjoy a joke" in hints
    stored = await styles.get_style(user_id)  # stored as learnt (as PostgreSQL reals)
    assert (stored.samples, stored.preferred_length) == (style.samples, style.preferred_length)
    assert stored.formality == pytest.approx(style.formality, abs=1e-6)
    with pytest.raises(NotFoundError):
        await styles.learn(999_999, "hi")


# --- opinions -----------------------------------------------------------------------------


def test_topics_skip_stop_words_and_names() -> None:
    assert topics_of("I went climbing with Ana and climbing again is great") == ["climbing"]
    assert topics_of("Jazz tonight? jazz is my thing") == ["jazz", "tonight"]
    assert topics_of("ok") == []


async def test_opinions_form_and_are_reinforced(db: Database) -> None:
    opinions = OpinionStore(db, PERSONA)
    need = PERSONA.tuning.opinion_min_discussions
    for i in range(need - 1):
        await opinions.reinforce(GUILD, ["jazz"], 0.9, T0 + timedelta(minutes=i))
    assert await opinions.get_opinions(GUILD, ["jazz"]) == []  # not formed yet
    await opinions.reinforce(GUILD, ["jazz", "karaoke"], 0.9, T0 + timedelta(hours=1))
    [jazz] = await opinions.get_opinions(GUILD, ["jazz", "karaoke"])
    assert jazz.count == need and jazz.sentiment > 0.25 and jazz.interest > 0.5
    assert "rather like" in jazz.describe()
    assert await opinions.get_opinions(OTHER_GUILD, ["jazz"]) == []
    async with db.acquire() as conn:
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'bot_opinions'",
                db.schema,
            )
        }
    assert not any("user" in c for c in columns)  # opinions are about topics only


# --- the facade ---------------------------------------------------------------------------


async def test_companion_fragments_follow_the_exchanges(db: Database) -> None:
    user_id = await _user(db)
    clock = [T0]
    companion = Companion(db, mood_decay=0.05, clock=lambda: clock[0])
    first = await companion.before_reply(user_id, GUILD, "hello", name="Ana")
    assert len(first.fragments) == 1 and "New Face" in first.fragments[0]
    long_name = await companion.before_reply(user_id, GUILD, "hi", name="Ana\n" + "x" * 300)
    assert '"Ana ' + "x" * 76 + '" is a New Face' in long_name.fragments[0]
    assert "Your mood" not in first.fragments[0]
    for i in range(40):
        clock[0] = T0 + timedelta(minutes=i)
        text = "haha I LOVE jazz nights here!!! 😂"
        await companion.after_reply(user_id, GUILD, text, "Jazz is the best, glad you came!")
    ctx = await companion.before_reply(user_id, GUILD, "more jazz tonight?", name="Ana")
    joined = "\n".join(ctx.fragments)
    assert ctx.mood.label == "excited" and "Your mood: bright and lively" in joined
    assert "never changes what you know" in joined
    assert '"Ana" is a' in joined and 'How "Ana" writes' in joined
    assert "jazz: you rather like it" in joined
    # A week later the mood has settled and says nothing; the relationship stays.
    clock[0] = T0 + timedelta(days=7)
    calm = await companion.before_reply(user_id, GUILD, "hi", name="Ana")
    assert not any(f.startswith("Your mood") for f in calm.fragments)
    assert calm.relationship.score == ctx.relationship.score
    # A persona can switch the mood's effect off entirely.
    stoic = replace(PERSONA, tuning=replace(Tuning(), mood_effect_threshold=1.0))
    ctx2 = await Companion(db, stoic, clock=lambda: T0 + timedelta(minutes=40)).before_reply(
        user_id, GUILD, "jazz", name="Ana"
    )
    assert not any(f.startswith("Your mood") for f in ctx2.fragments)
    assert isinstance(ctx2.mood, Mood)


async def test_the_bot_knows_its_counters(db: Database) -> None:
    ana, bo = await _user(db), await _user(db, 1002, "bo")
    companion = Companion(db, clock=lambda: T0)
    assert (await companion.state.get_state(GUILD)).messages_sent == 0
    for user_id in (ana, bo, ana):
        await companion.after_reply(user_id, GUILD, "evening!", "Evening.")
    await companion.after_reply(ana, None, "hi", "Hi.")
    state = await companion.state.get_state(GUILD)
    assert (state.messages_sent, state.users_known, state.facts_learned) == (3, 2, 0)
    assert state.first_activated_at == T0
    await companion.state.add_facts_learned(GUILD, 4, T0)
    assert "3 replies sent, 4 facts learnt and 2 people known here since 2026-03-01" == (
        (await companion.state.get_state(GUILD)).describe()
    )
    dms = await companion.state.get_state(None)
    assert (dms.messages_sent, dms.users_known) == (1, 1)
    with pytest.raises(InvalidInputError):
        await companion.state.add_facts_learned(GUILD, -1, T0)


async def test_features_switch_parts_off(db: Database) -> None:
    user_id = await _user(db)
    only_mood = Companion(db, features=["mood"], clock=lambda: T0)
    for _ in range(30):
        await only_mood.after_reply(user_id, GUILD, "I LOVE jazz!!! haha 😂", "Jazz!")
    ctx = await only_mood.before_reply(user_id, GUILD, "jazz?", name="Ana")
    assert [f.split(":")[0] for f in ctx.fragments] == ["Your mood"]
    everything = Companion(db, clock=lambda: T0)
    full = await everything.before_reply(user_id, GUILD, "jazz?", name="Ana")
    assert full.relationship.total_interactions == 0  # never updated while off
    assert full.style.samples == 0
    assert await everything.opinions.get_opinions(GUILD, ["jazz"]) == []
    none = Companion(db, features=[], clock=lambda: T0)
    assert (await none.before_reply(user_id, GUILD, "jazz?")).fragments == ()
    with pytest.raises(InvalidInputError, match="BARKEEPER_FEATURES"):
        Companion(db, features=["mood", "telepathy"])


async def test_a_reminder_that_will_not_be_set_is_the_first_fragment(db: Database) -> None:
    user_id = await _user(db)
    companion = Companion(db, clock=lambda: T0)
    fine = await companion.before_reply(
        user_id, GUILD, "remind me tomorrow at 5pm to call mum", name="Ana"
    )
    assert fine.reminder is None and not any("NO reminder" in f for f in fine.fragments)
    vague = await companion.before_reply(user_id, GUILD, "remind me to call mum", name="Ana")
    assert vague.reminder == "undated"
    assert vague.fragments[0].startswith("Their message seems to ask you to remind them")
    assert "NO reminder is set" in vague.fragments[0] and "ask when" in vague.fragments[0]
    assert "call mum" not in vague.fragments[0]  # fixed text: nothing they wrote
    # Yesterday is "past" once the person's zone is known (without it, the bot's zone
    # might make it today: it is left to the scheduler).
    asked = "remind me on 2026-02-28 at 9pm to call mum"
    assert (await companion.before_reply(user_id, GUILD, asked)).reminder is None
    prefs = PreferenceStore(db)
    await prefs.set_preference(user_id, "timezone", "Asia/Tokyo")
    assert (await companion.before_reply(user_id, GUILD, asked)).reminder == "past"
    await prefs.set_preference(user_id, "followups", "off")
    off = await companion.before_reply(user_id, GUILD, "remind me tomorrow to call mum")
    assert off.reminder == "off_for_them" and "/followups on" in off.fragments[0]
    await prefs.delete_preference(user_id, "followups")
    await companion.settings.set_feature(GUILD, "followups", False)
    here = await companion.before_reply(user_id, GUILD, "remind me tomorrow to call mum")
    assert here.reminder == "off_here"
    dm = await companion.before_reply(user_id, None, "remind me tomorrow to call mum")
    assert dm.reminder is None  # the server's switch is not the DM's
    without = Companion(db, features=["mood"], clock=lambda: T0)
    assert (await without.before_reply(user_id, None, "remind me to call mum")).reminder == (
        "off_here"
    )


async def test_a_reminder_too_far_away_to_count_does_not_break_the_reply(db: Database) -> None:
    """The reminder check runs before every reply: a day beyond the calendar ("in
    99999999999 hours") is no day it can read, not an OverflowError."""
    user_id = await _user(db)
    companion = Companion(db, clock=lambda: T0)
    for text in (
        "remind me in 99999999999 hours to call mum",
        "remind me in 99999999999 days to call mum",
        "remind me in 9999999 weeks to call mum",
    ):
        context = await companion.before_reply(user_id, GUILD, text, name="Ana")
        assert context.reminder == "undated", text
