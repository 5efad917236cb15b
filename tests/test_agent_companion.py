"""The companion in the reply pipeline: real PostgreSQL, the real ``openai`` client
against the scripted LLM server. Its fragments reach the system message within the
persona's share; the mood colours the tone and never changes the facts shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from barkeeper.agent import (
    Agent,
    AgentConfig,
    Author,
    ContextBudget,
    IncomingMessage,
    Place,
    ReplyRequest,
    RunRecord,
    build_agent,
)
from barkeeper.companion import (
    FEATURES,
    SENSITIVE_MEMORY_TYPES,
    Companion,
    Sentiment,
    UserStore,
    default_persona,
    load_catalog,
    reminder_notice,
    shows_risk,
)
from barkeeper.config import load_settings
from barkeeper.conversations import SessionStore
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.errors import ConfigError
from barkeeper.llm import OpenAIChatModel, RetryPolicy, count_tokens
from barkeeper.memory import MemoryStore
from barkeeper.testing.llm import Fault, LLMServer, Reply

MODEL = "openai/gpt-oss-120b"
NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
GUILD, CHANNEL, BOT = 5000, 6000, 999
FAST = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, jitter=0)


def _block(context: str, tag: str) -> str:
    start = context.index(f"<{tag}")
    return context[start : context.index(f"</{tag}>", start)]


@dataclass
class Bar:
    db: Database
    srv: LLMServer
    model: OpenAIChatModel
    memories: MemoryStore
    alice: Author
    clock: list[datetime]

    def agent(self, companion: Companion | None, **config: object) -> Agent:
        return Agent(
            self.model,
            sessions=SessionStore(self.db),
            memories=self.memories,
            companion=companion,
            config=AgentConfig(**{"model": MODEL, "tools": False, **config}),  # type: ignore[arg-type]
            clock=lambda: self.clock[0],
        )

    def request(self, text: str, seq: int) -> ReplyRequest:
        return ReplyRequest(
            author=self.alice,
            place=Place.guild(GUILD, CHANNEL),
            message=IncomingMessage(text, self.clock[0], id=10_000 + seq),
            bot_id=BOT,
        )

    def system(self, index: int = -1) -> tuple[str, str]:
        messages = self.srv.chat_requests[index].messages
        return messages[0]["content"], messages[1]["content"]


@pytest.fixture
async def bar(db: Database) -> AsyncIterator[Bar]:
    alice = await UserStore(db).get_or_create_discord_user(1001, username="alice")
    async with (
        LLMServer() as srv,
        OpenAIChatModel(base_url=srv.base_url, model=MODEL, timeout=5, retry_policy=FAST) as model,
    ):
        yield Bar(
            db,
            srv,
            model,
            MemoryStore(db, HashingEmbedder()),
            Author(alice.id, "Alice", discord_id=1001),
            [NOW],
        )


async def test_fragments_reach_the_prompt_and_the_mood_never_changes_facts(bar: Bar) -> None:
    await bar.memories.add(bar.alice.user_id, "Alice's sister is called Maya", memory_type="family")
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    agent = bar.agent(companion)
    plain = bar.agent(None)

    bar.srv.script("Evening.")
    await plain.reply(bar.request("how is my sister?", 0))
    system_without, context_without = bar.system()
    assert "How you are right now" not in system_without

    for i in range(12):  # a run of delighted, shouted messages stirs the bar's mood
        bar.clock[0] = NOW + timedelta(minutes=i)
        bar.srv.script("Ha, glad to hear it!")
        await agent.reply(bar.request(f"I LOVE this place, best night ever!!! {i}", i + 1))
        await agent.drain()

    mood = await companion.moods.get_mood(GUILD, bar.clock[0])
    assert mood.label == "excited"
    bar.clock[0] = NOW
    bar.srv.script("She's well, I hope.")
    answer = await agent.reply(bar.request("how is my sister?", 0))
    await agent.drain()
    system, context = bar.system()
    assert "How you are right now, with this person and this place" in system
    assert "- Your mood: bright and lively (excited" in system
    assert '"Alice" is a' in system
    assert system.endswith("(UTC).")
    # The mood changed the tone's instructions only: the facts shown are the same.
    assert _block(context, "memories") == _block(context_without, "memories")
    assert "Maya" in _block(context, "memories")
    assert "Maya" in context and "Maya" not in system
    [memory] = await bar.memories.list_memories(bar.alice.user_id)
    assert memory.content == "Alice's sister is called Maya"
    assert answer.record.latency_ms["context.companion"] >= 0
    rel = await companion.relationships.get_relationship(bar.alice.user_id, GUILD, NOW)
    assert rel.total_interactions == 13


async def test_fragments_stay_within_the_persona_share(bar: Bar) -> None:
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    tight = bar.agent(companion, budget=ContextBudget(total=4000, persona_share=0.15))
    persona_room = int(4000 * 0.15)
    bar.srv.script("Hi.")
    answer = await tight.reply(bar.request("hello there", 1))
    system, _ = bar.system()
    assert "How you are right now" in system
    assert "companion_fragments" not in answer.record.cut
    assert count_tokens(system, model=MODEL) <= persona_room

    # A budget that only just holds the persona leaves no room: the fragments are cut.
    total = 2 * count_tokens(AgentConfig().persona, model=MODEL)
    while True:  # the smallest budget whose persona share holds the persona alone
        try:
            squeezed = bar.agent(
                companion, budget=ContextBudget(total=total, persona_share=0.5, history_share=0.3)
            )
            break
        except ConfigError:
            total += 2
    bar.srv.script("Hi.")
    answer = await squeezed.reply(bar.request("hello there", 2))
    system, _ = bar.system()
    assert "How you are right now" not in system
    assert answer.record.cut["companion_fragments"] >= 1
    await tight.drain()
    await squeezed.drain()


async def test_the_setting_turns_the_companion_off(
    bar: Bar, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value, expected in (("true", True), ("false", False)):
        monkeypatch.setenv("BARKEEPER_COMPANION", value)
        monkeypatch.setenv("BARKEEPER_EMBEDDER", "hashing")
        agent = build_agent(bar.db, load_settings(), model=bar.model)
        bar.srv.script("Hi.")
        await agent.reply(bar.request("hello", 1))
        await agent.aclose()
        system, _ = bar.system()
        assert ("How you are right now" in system) is expected


@pytest.mark.parametrize(
    ("text", "risk"),
    [
        ("I want to kill myself", True),
        ("honestly I don't want to live anymore", True),
        ("sometimes I think everyone would be better off dead without me", True),
        ("I've been self-harming again", True),
        ("I can't go on like this", True),
        ("this traffic is killing me lol", False),
        ("the battery died on my phone", False),
        ("my dad passed away last year and I miss him", False),
    ],
)
def test_risk_is_spotted_locally(text: str, risk: bool) -> None:
    assert shows_risk(text) is risk


async def test_a_message_at_risk_gets_care_and_resources_and_is_flagged(
    bar: Bar, caplog: pytest.LogCaptureFixture
) -> None:
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    await companion.moods.record(GUILD, Sentiment(1.0, 1.0), NOW)
    for _ in range(5):
        await companion.moods.record(GUILD, Sentiment(1.0, 1.0), NOW)
    agent = bar.agent(companion, crisis_resources="Call 988 or your local emergency number.")
    bar.srv.script("That sounds so heavy. I'm here.")  # the model forgets the resources
    message = "I don't want to live anymore, I'm thinking of ending my life"
    with caplog.at_level("WARNING"):
        answer = await agent.reply(bar.request(message, 1))
    await agent.drain()
    system, _ = bar.system()
    assert "may show a risk of self-harm or suicide" in system
    assert "Call 988 or your local emergency number." in system
    assert "Your mood" not in system  # no mood, no banter
    assert answer.text == (
        "That sounds so heavy. I'm here.\n\nCall 988 or your local emergency number."
    )
    assert answer.record.flags == ("crisis",)
    assert answer.run is not None
    assert RunRecord.from_metrics(answer.run.metrics).flags == ("crisis",)
    assert "run flagged: crisis" in caplog.text and "ending my life" not in caplog.text

    # A model that already gave them is not repeated; a failing model still gives them.
    bar.srv.script("I'm so sorry. Call 988 or your local emergency number. I'm here.")
    again = await agent.reply(bar.request("I want to kill myself", 2))
    assert again.text.count("988") == 1
    await agent.drain()


async def test_a_failing_model_still_gives_the_resources_first_and_no_apology(bar: Bar) -> None:
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    agent = bar.agent(companion, crisis_resources="Call 988 or your local emergency number.")
    pieces: list[str] = []
    bar.srv.script(Fault.server_error(), Fault.server_error(), Fault.server_error())
    failed = await agent.reply(bar.request("I want to kill myself", 3), on_text=pieces.append)
    assert failed.failed and failed.record.flags == ("crisis",)
    # The first words streamed are the resources; the in-character apology never comes.
    assert pieces and pieces[0].startswith("Call 988 or your local emergency number.")
    assert failed.text.startswith("Call 988 or your local emergency number.")
    assert "lost my train of thought" not in failed.text
    assert "".join(pieces) == failed.text
    # An ordinary message that fails gets the apology, as before.
    pieces.clear()
    bar.srv.script(Fault.server_error(), Fault.server_error(), Fault.server_error())
    plain = await agent.reply(bar.request("pour me a pint", 4), on_text=pieces.append)
    assert "lost my train of thought" in plain.text and "988" not in plain.text
    await agent.drain()

    # An ordinary message is not flagged.
    bar.srv.script("Evening!")
    plain = await agent.reply(bar.request("what a day, pour me something", 5))
    assert plain.record.flags == ()
    await agent.drain()


#: One memory of each sensitive type, all about her father (so a search for him finds it).
SENSITIVE_ABOUT_FATHER = {
    "grief_context": "Alice lost her father in March",
    "attachment_pattern": "Alice clings to people since she lost her father",
    "coping_mechanism": "Alice walks by the sea when she misses her father since she lost him",
    "health": "Alice takes heart medication since she lost her father",
}


def test_every_sensitive_type_is_exercised() -> None:
    assert set(SENSITIVE_ABOUT_FATHER) == set(SENSITIVE_MEMORY_TYPES)


@pytest.mark.parametrize("kind", sorted(SENSITIVE_ABOUT_FATHER))
async def test_a_sensitive_memory_never_reaches_a_guild_channel(bar: Bar, kind: str) -> None:
    uid = bar.alice.user_id
    secret = SENSITIVE_ABOUT_FATHER[kind]
    await bar.memories.add(uid, secret, memory_type=kind)  # type: ignore[arg-type]
    await bar.memories.add(uid, "Alice's father taught her chess", memory_type="family")
    agent = bar.agent(None, tools=True)
    question = "do you remember my father?"

    bar.srv.script("I do.")
    await agent.reply(bar.request(question, 1))
    _, guild_context = bar.system()
    assert "taught her chess" in guild_context and secret not in guild_context

    # Nor through the recall tool in a guild channel.
    bar.srv.script(Reply.call("recall_memories", {"query": "father"}), "I remember.")
    await agent.reply(bar.request(question, 2))
    tool_messages = [m for m in bar.srv.chat_requests[-1].messages if m["role"] == "tool"]
    assert tool_messages and "taught her chess" in tool_messages[0]["content"]
    assert secret not in tool_messages[0]["content"]

    # In a DM with her, it is used.
    bar.srv.script("I do.")
    dm = ReplyRequest(
        author=bar.alice,
        place=Place.dm(4242),
        message=IncomingMessage(question, NOW, id=20_000),
        bot_id=BOT,
    )
    await agent.reply(dm)
    _, dm_context = bar.system()
    assert secret in dm_context
    await agent.drain()


async def test_the_place_persona_speaks_and_features_off_still_reply(
    bar: Bar, tmp_path: Path
) -> None:
    (tmp_path / "owl.toml").write_text(
        'name = "Owl"\ndescription = "a quiet night host."\nvoice = "Soft and brief."\n'
    )
    companion = Companion(
        bar.db, personas=load_catalog(default_persona(), tmp_path), clock=lambda: bar.clock[0]
    )
    agent = bar.agent(companion)
    await companion.settings.set_persona(GUILD, CHANNEL, "Owl")
    bar.srv.script("Mm. Evening.")
    await agent.reply(bar.request("evening!", 1))
    system, _ = bar.system()
    assert system.startswith("You are Owl, a quiet night host.")
    await companion.settings.set_persona(GUILD, CHANNEL, None)
    bar.srv.script("Evening!")
    await agent.reply(bar.request("evening!", 2))
    system, _ = bar.system()
    assert system.startswith("You are Bartender,")
    await agent.drain()

    # Every feature switched off in the guild: the reply still comes, plainly.
    for feature in FEATURES:
        await companion.settings.set_feature(GUILD, feature, False)
    before = await companion.relationships.get_relationship(bar.alice.user_id, GUILD, NOW)
    bar.srv.script("Here you go.")
    answer = await agent.reply(bar.request("I LOVE this place, pour me one!!!", 3))
    await agent.drain()
    assert answer.text == "Here you go." and not answer.failed
    system, _ = bar.system()
    assert "How you are right now" not in system
    after = await companion.relationships.get_relationship(bar.alice.user_id, GUILD, NOW)
    assert after.total_interactions == before.total_interactions  # not updated either


async def test_associations_reach_the_context_as_data_never_the_system(bar: Bar) -> None:
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    agent = bar.agent(companion)
    users = UserStore(bar.db)
    bob = await users.get_or_create_discord_user(1002, username="bob", global_name="Bob")
    uid = bar.alice.user_id
    await bar.memories.add(uid, "Alice plays the cello in a quartet", guild_id=GUILD)
    await bar.memories.add(bob.id, "Bob plays the cello on Sundays", guild_id=GUILD)
    await companion.settings.set_feature(GUILD, "associations", True)
    for who in (uid, bob.id):
        await companion.settings.set_connected(who, GUILD, True)
    bar.srv.script("Nice.")
    await agent.reply(bar.request("any news?", 1))
    await agent.drain()  # the first reply's after-work discovers the link
    bar.srv.script("You and Bob should jam.")
    await agent.reply(bar.request("I practised the cello all day", 2))
    system, context = bar.system()
    block = _block(context, "in_common")
    assert '"Bob"' in block and "Bob plays the cello on Sundays" in block
    assert "Bob plays the cello" not in system
    # Not once Bob turns /connect off.
    await companion.settings.set_connected(bob.id, GUILD, False)
    bar.srv.script("Nice.")
    await agent.reply(bar.request("I practised the cello all day", 3))
    _, context = bar.system()
    assert "<in_common" not in context
    await agent.drain()


async def test_a_reminder_nobody_will_set_is_never_promised(bar: Bar) -> None:
    """With the companion off, or an incognito message, nothing schedules a reminder:
    the model is told so by a fixed line (none of the person's words in it)."""
    companion = Companion(bar.db, clock=lambda: bar.clock[0])
    asked = "remind me on Friday to call the plumber"
    off_line = reminder_notice("off_here")
    incognito_line = reminder_notice("incognito")
    cases = [
        # (companion, text, incognito, the line the system message must hold, or None)
        (None, asked, False, off_line),
        (None, "remind me later", False, off_line),
        (None, "can you pour me a stout?", False, None),
        (None, asked, True, incognito_line),
        (companion, asked, True, incognito_line),
        (companion, "remind me later", True, incognito_line),  # instead of "undated"
        (companion, asked, False, None),  # it will be scheduled: nothing to say
        (companion, asked, "terminal", off_line),  # nothing delivers one in the terminal
        (companion, "remind me later", "terminal", off_line),  # instead of "undated"
    ]
    for seq, (inner, text, incognito, line) in enumerate(cases):
        agent = bar.agent(inner)
        bar.srv.script("Righto.")
        request = bar.request(text, seq)
        if incognito == "terminal":
            request, incognito = replace(request, place=Place.terminal()), False
        request = replace(request, incognito=bool(incognito))
        await agent.reply(request)
        await agent.drain()
        system, _ = bar.system()
        case = f"case {seq}: {text!r}, companion {inner is not None}, incognito {incognito}"
        assert system.count("NO reminder is set") == (line is not None), (case, system)
        if line is not None:
            assert line in system, case
            assert text not in system and "plumber" not in system, case
