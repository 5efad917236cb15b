"""The companion's slash commands and care, through the bot against the Discord
emulator and the scripted model, on real PostgreSQL: ``/mood``, ``/relationship``,
``/connect``, ``/persona`` and ``/features`` (admins only), the counters of
``bot_states``, and a message at risk whose model fails."""

from __future__ import annotations

from barkeeper.companion import DEFAULT_CRISIS_RESOURCES
from barkeeper.db import Database
from barkeeper.testing.discord import EmulatedInteraction
from barkeeper.testing.llm import Fault
from tests._bot import WAIT, Rig, bot_rig

#: Discord's *Manage Server* and *Manage Messages* permission bits.
MANAGE_GUILD, MANAGE_MESSAGES = 1 << 5, 1 << 13


async def _ask(
    rig: Rig, person: str, command: str, channel: int | None = None, **options: object
) -> tuple[EmulatedInteraction, str]:
    where = channel if channel is not None else rig.emu.channel_ids()[0]
    interaction = rig.emu.person(person).invoke(command, where, options=options)
    response = await interaction.wait_for_response(timeout=WAIT)
    assert interaction.ephemeral
    return interaction, response.content


async def _chat(rig: Rig, person: str, text: str, reply: str, channel: int | None = None) -> str:
    where = channel if channel is not None else rig.emu.channel_ids()[0]
    rig.llm.script(reply)
    asked = rig.emu.person(person).send(where, text, mention_bot=True)
    await rig.emu.wait_for_reply(asked, timeout=WAIT)
    await rig.emu.wait_until(
        lambda: rig.bot.replies_in_flight == 0, timeout=WAIT, what="the reply finished"
    )
    await rig.bot.agent.drain()
    system: str = rig.llm.chat_requests[-1].messages[0]["content"]
    return system


async def test_mood_and_relationship_in_words_and_the_counters(db: Database) -> None:
    async with bot_rig(db) as rig:
        _, mood = await _ask(rig, "alice", "mood")
        assert mood.startswith("Right now, here, I'm ") and "intensity" in mood
        _, rel = await _ask(rig, "alice", "relationship")
        assert rel == "We've only just met here: New Face, 0 out of 100 (we haven't talked yet)."
        for i in range(3):
            await _chat(rig, "alice", f"what a lovely evening, thank you! {i}", "Cheers!")
        _, rel = await _ask(rig, "alice", "relationship")
        assert "New Face" in rel and "(we've talked 3 times)" in rel
        _, other = await _ask(rig, "bob", "relationship")
        assert "(we haven't talked yet)" in other  # where *you* stand
        guild = rig.emu.guild_ids()[0]
        state = await rig.bot.agent.companion.state.get_state(guild)  # type: ignore[union-attr]
        assert (state.messages_sent, state.users_known) == (3, 1)
        assert state.first_activated_at is not None and state.facts_learned == 0
        await _ask(rig, "alice", "remember", text="I keep bees on the roof")
        companion = rig.bot.agent.companion
        assert companion is not None
        assert (await companion.state.get_state(guild)).facts_learned == 1


async def test_persona_and_features_are_for_a_servers_admins(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        rig.bot.admin_ids = frozenset({alice.id})
        first, second = rig.emu.channel_ids()[:2]
        for command, options in (
            ("persona", {"action": "set", "name": "Night Owl"}),
            ("features", {"feature": "mood", "mode": "off"}),
        ):
            _, refused = await _ask(rig, "bob", command, **options)
            assert "Only this server's admins" in refused
        _, unknown = await _ask(rig, "alice", "persona", action="set", name="Pirate")
        assert "I don't know a persona called 'Pirate'" in unknown and "Night Owl" in unknown
        _, done = await _ask(rig, "alice", "persona", action="set", name="night owl")
        assert done == "From now on I'm Night Owl in this server."
        assert (await _chat(rig, "bob", "evening", "Evening.")).startswith("You are Night Owl,")
        _, done = await _ask(
            rig, "alice", "persona", second, action="set", name="Bartender", scope="channel"
        )
        assert done == "From now on I'm Bartender in this channel."
        assert (await _chat(rig, "bob", "hi", "Hi.", second)).startswith("You are Bartender,")
        assert (await _chat(rig, "bob", "hi", "Hi.", first)).startswith("You are Night Owl,")
        _, shown = await _ask(rig, "bob", "persona", second, action="show")
        assert "Only this server's admins" in shown
        _, shown = await _ask(rig, "alice", "persona", second, action="show")
        assert shown.startswith("Here I'm Bartender (this channel's choice).")
        _, reset = await _ask(rig, "alice", "persona", action="reset")
        assert "this server uses the default (Bartender)" in reset
        assert (await _chat(rig, "bob", "hi", "Hi.", first)).startswith("You are Bartender,")

        # /features: the list, a switch, and its effect on /mood; conversation goes on.
        _, listed = await _ask(rig, "alice", "features")
        assert "- mood: on" in listed and "- associations: off" in listed
        _, switched = await _ask(rig, "alice", "features", feature="mood", mode="off")
        assert "- mood: off" in switched
        _, mood = await _ask(rig, "bob", "mood")
        assert "the mood is switched off" in mood
        for feature in ("relationships", "styles", "opinions", "followups"):
            await _ask(rig, "alice", "features", feature=feature, mode="off")
        system = await _chat(rig, "bob", "I LOVE it here!!!", "Glad to hear.", first)
        assert "How you are right now" not in system
        assert rig.emu.bot_messages(first)[-1].content == "Glad to hear."


async def test_a_member_with_manage_server_is_an_admin_of_that_server(db: Database) -> None:
    async with bot_rig(db) as rig:
        assert rig.bot.admin_ids == frozenset()  # only Discord's permission counts here
        managers = rig.emu.add_role("managers", permissions=MANAGE_GUILD)
        moderators = rig.emu.add_role("moderators", permissions=MANAGE_MESSAGES)
        carol, dave = rig.emu.person("carol"), rig.emu.person("dave")
        carol.set_roles(managers)
        dave.set_roles(moderators)  # may moderate messages, not manage the server
        for person in ("bob", "dave"):
            _, refused = await _ask(rig, person, "persona", action="set", name="Night Owl")
            assert "Only this server's admins" in refused
            _, refused = await _ask(rig, person, "features", feature="mood", mode="off")
            assert "Only this server's admins" in refused
        _, done = await _ask(rig, "carol", "persona", action="set", name="Night Owl")
        assert done == "From now on I'm Night Owl in this server."
        assert (await _chat(rig, "bob", "evening", "Evening.")).startswith("You are Night Owl,")
        _, switched = await _ask(rig, "carol", "features", feature="mood", mode="off")
        assert "- mood: off" in switched
        _, mood = await _ask(rig, "bob", "mood")
        assert "the mood is switched off" in mood
        # Without the role, she is a member like any other.
        carol.set_roles()
        _, refused = await _ask(rig, "carol", "persona", action="reset")
        assert "Only this server's admins" in refused
        _, shown = await _ask(rig, "dave", "mood")
        assert "the mood is switched off" in shown  # her change stands


async def test_connect_on_and_off(db: Database) -> None:
    async with bot_rig(db) as rig:
        _, on = await _ask(rig, "alice", "connect", mode="on")
        assert "Connections are on" in on and "admins have not turned the feature on" in on
        rig.bot.admin_ids = frozenset({rig.emu.person("alice").id})
        await _ask(rig, "alice", "features", feature="associations", mode="on")
        _, on = await _ask(rig, "alice", "connect", mode="on")
        assert "Connections are on" in on and "admins have not" not in on
        companion = rig.bot.agent.companion
        assert companion is not None
        user = await rig.bot.people.get_by_discord_id(rig.emu.person("alice").id)
        assert user is not None
        guild = rig.emu.guild_ids()[0]
        assert await companion.settings.is_connected(user.id, guild)
        _, off = await _ask(rig, "alice", "connect", mode="off")
        assert "Connections are off" in off
        assert not await companion.settings.is_connected(user.id, guild)


async def test_a_message_at_risk_whose_model_fails_gets_the_resources_first(
    db: Database,
) -> None:
    async with bot_rig(db) as rig:
        channel = rig.emu.channel_ids()[0]
        rig.llm.script(Fault.server_error(), Fault.server_error(), Fault.server_error())
        asked = rig.emu.person("alice").send(
            channel, "I don't want to live anymore", mention_bot=True
        )
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.emu.wait_until(
            lambda: rig.bot.replies_in_flight == 0, timeout=WAIT, what="the reply finished"
        )
        said = " ".join(m.content for m in rig.emu.bot_messages(channel, after=asked.id))
        assert said.startswith(DEFAULT_CRISIS_RESOURCES[:80])
        assert "lost my train of thought" not in said and "went wrong behind the bar" not in said


async def test_what_each_command_says_when_it_cannot_answer(db: Database) -> None:
    """The shared preamble: the companion off, a feature off, a DM, not an admin."""
    async with bot_rig(db, companion=False) as rig:
        off = "The companion is switched off on this bot (BARKEEPER_COMPANION=false)."
        for command, options in (
            ("mood", {}),
            ("relationship", {}),
            ("connect", {"mode": "on"}),
            ("persona", {"action": "show"}),
            ("features", {}),
        ):
            _, said = await _ask(rig, "alice", command, **options)
            assert said == off, command
    async with bot_rig(db) as rig:
        rig.bot.admin_ids = frozenset({rig.emu.person("alice").id})
        dm = rig.emu.person("alice").dm_channel.id
        for command, options in (
            ("connect", {"mode": "on"}),
            ("persona", {"action": "show"}),
            ("features", {}),
        ):
            _, said = await _ask(rig, "alice", command, dm, **options)
            assert said == "That only works in a server channel.", command
        _, refused = await _ask(rig, "bob", "features")
        assert refused.startswith("Only this server's admins")
        await _ask(rig, "alice", "features", feature="relationships", mode="off")
        _, rel = await _ask(rig, "bob", "relationship")
        assert rel == "I don't keep track of how well I know people here: it's switched off."
        _, listed = await _ask(rig, "alice", "features")
        assert "- relationships: off" in listed and "- mood: on" in listed
