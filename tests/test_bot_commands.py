"""The bot's slash commands in-process: ephemeral answers, confirmations, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re

from barkeeper.db import Database
from barkeeper.testing.discord import DiscordEmulator, EmulatedInteraction
from tests._bot import WAIT, Rig, bot_rig, spec
from tests.test_extraction import fact, facts_reply
from tests.test_privacy import _scan


async def _ask(
    rig: Rig, person: str, command: str, **options: object
) -> tuple[EmulatedInteraction, str]:
    channel = rig.emu.channel_ids()[0]
    interaction = rig.emu.person(person).invoke(command, channel, options=options)
    response = await interaction.wait_for_response(timeout=WAIT)
    assert interaction.ephemeral
    return interaction, response.content


async def _confirm(rig: Rig, person: str, interaction: EmulatedInteraction) -> str:
    assert interaction.response is not None
    rig.emu.person(person).click(interaction.response, "confirm")
    await rig.emu.wait_until(
        lambda: interaction.response is not None and not interaction.response.components,
        timeout=WAIT,
        what="the confirmation answered",
    )
    assert interaction.response is not None
    return interaction.response.content


async def test_remember_memories_forget_with_confirmation(db: Database) -> None:
    async with bot_rig(db) as rig:
        _, said = await _ask(rig, "alice", "remember", text="I keep bees on the roof")
        assert "remember" in said
        await _ask(rig, "alice", "remember", text="My sister is called Ines")
        _, listed = await _ask(rig, "alice", "memories")
        assert "bees" in listed and "Ines" in listed
        _, other = await _ask(rig, "bob", "memories")
        assert "bees" not in other and "Ines" not in other  # two users never mix
        asked, shown = await _ask(rig, "alice", "forget", what="bees")
        assert "bees" in shown and "Ines" not in shown
        done = await _confirm(rig, "alice", asked)
        assert "Forgotten: 1" in done
        _, listed = await _ask(rig, "alice", "memories")
        assert "bees" not in listed and "Ines" in listed
        cancel, _ = await _ask(rig, "alice", "forget", what="Ines")
        assert cancel.response is not None
        rig.emu.person("alice").click(cancel.response, "cancel")
        await asyncio.sleep(0.3)
        _, listed = await _ask(rig, "alice", "memories")
        assert "Ines" in listed and "sensitive" not in listed
        # A sensitive memory is marked: the bot uses it only in a DM with her.
        async with rig.db.acquire() as conn:
            uid = await conn.fetchval(
                "SELECT id FROM users WHERE discord_id = $1", rig.emu.person("alice").user.id
            )
        await rig.memories.add(uid, "Alice misses her grandmother", memory_type="grief_context")
        await rig.memories.add(uid, "Alice has asthma", memory_type="health")
        _, listed = await _ask(rig, "alice", "memories")
        assert "(grief_context, sensitive: DMs only," in listed
        assert "(health, sensitive: DMs only," in listed


async def test_why_shows_the_memories_and_messages_the_reply_used(db: Database) -> None:
    async with bot_rig(db) as rig:
        await _ask(rig, "alice", "remember", text="I drink oolong tea every evening")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("Oolong, as ever?")
        asked = rig.emu.person("alice").send(channel, "which tea do I like?", mention_bot=True)
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        _, why = await _ask(rig, "alice", "why")
        assert "oolong" in why.lower()
        assert "Memories** (1)" in why
        _, nothing = await _ask(rig, "bob", "why")
        assert "no reply" in nothing


async def test_forget_me_leaves_nothing_a_catalog_scan_can_find(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("Noted, friend.")
        asked = alice.send(channel, "my password hint is zanzibar-quokka", mention_bot=True)
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await _ask(rig, "alice", "remember", text="zanzibar-quokka is my hint")
        await rig.bot.wait_idle()
        await rig.bot.cache.flush()
        before = await _scan(db, ["zanzibar-quokka"])
        assert before  # there was something to forget
        interaction, shown = await _ask(rig, "alice", "forget-me")
        assert "cannot be undone" in shown
        done = await _confirm(rig, "alice", interaction)
        assert "forgot everything" in done and "new to me" in done
        assert await _scan(db, ["zanzibar-quokka", str(alice.id)]) == {}
        # An edit of an old message does not bring it back; what she writes next is new.
        alice.edit(asked, "zanzibar-quokka, edited")
        fresh = alice.send(channel, "a fresh start")
        await rig.emu.wait_until(
            lambda: rig.bot.cache.pending == 0, timeout=WAIT, what="the cache written"
        )
        await asyncio.sleep(0.5)
        await rig.bot.cache.flush()
        assert await _scan(db, ["zanzibar-quokka"]) == {}
        assert await rig.messages.get(fresh.id) is not None


async def test_incognito_leaves_no_trace(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        _, said = await _ask(rig, "alice", "incognito", mode="on")
        assert "on" in said
        rig.llm.script("Your secret is safe.")
        dm = alice.dm("off the record: quetzal-marmalade")
        await rig.emu.wait_for_reply(dm, timeout=WAIT)
        await rig.bot.wait_idle()
        await asyncio.sleep(0.4)
        await rig.bot.cache.flush()
        assert await rig.messages.get(dm.id) is None
        user = await rig.bot.people.get_by_discord_id(alice.id)
        assert user is not None
        assert await rig.bot.agent.last_run(user.id) is None
        assert await _scan(db, ["quetzal-marmalade"]) == {}
        await _ask(rig, "alice", "incognito", mode="off")
        rig.llm.script("Back on the record.")
        dm2 = alice.dm("remember this one")
        await rig.emu.wait_for_reply(dm2, timeout=WAIT)
        await rig.bot.wait_idle()
        assert await rig.bot.agent.last_run(user.id) is not None


async def test_export_my_data_is_a_json_file_for_the_asker_only(db: Database) -> None:
    async with bot_rig(db) as rig:
        await _ask(rig, "alice", "remember", text="I collect brass keys")
        interaction, _ = await _ask(rig, "alice", "export-my-data")
        assert interaction.response is not None
        files = rig.emu.uploads(interaction.response)
        assert [name for name, _ in files] == ["barkeeper-export.json"]
        document = json.loads(files[0][1])
        assert "brass keys" in json.dumps(document)


async def test_admin_commands_are_for_admins(db: Database) -> None:
    async with bot_rig(db, admin_ids="1") as rig:
        assert rig.bot.admin_ids == {1}  # BARKEEPER_ADMIN_IDS; alice's id is known only now
        rig.bot.admin_ids = frozenset({rig.emu.person("alice").id})
        _, refused = await _ask(rig, "bob", "barkeeper status")
        assert "Only barkeeper's admins" in refused
        _, status = await _ask(rig, "alice", "barkeeper status")
        assert "Database: PostgreSQL" in status and "Queues" in status
        assert "test-model: reachable" in status
        assert re.search(r"History index: \d+ channel\(s\) waiting, \d+ queued whole", status)


async def test_status_says_the_history_index_is_off(db: Database) -> None:
    async with bot_rig(db, index_history=False) as rig:
        rig.bot.admin_ids = frozenset({rig.emu.person("alice").id})
        _, status = await _ask(rig, "alice", "barkeeper status")
        assert "History index: off (BARKEEPER_INDEX_HISTORY)" in status


async def test_commands_sync_globally_only_when_changed_or_to_the_dev_guild(db: Database) -> None:
    async with bot_rig(db) as rig:
        assert [s.guild_id for s in rig.emu.command_syncs] == [None]
    async with bot_rig(db) as rig:  # same tree, same data directory: no global sync
        assert rig.emu.command_syncs == []
    async with DiscordEmulator(spec()) as emu:
        guild = emu.guild_ids()[0]
    async with bot_rig(db, dev_guild_id=guild) as rig:
        assert [s.guild_id for s in rig.emu.command_syncs] == [guild]


async def test_backfill_on_start_and_on_an_admins_request(db: Database) -> None:
    async with bot_rig(db, backfill_on_start=True) as rig:
        task = rig.bot.backfill_task
        assert task is not None
        result = await asyncio.wait_for(task, WAIT)
        assert result is not None and result.ok
        for channel in rig.emu.channel_ids():
            truth = [m["id"] for m in rig.emu.truth()[channel]]
            assert await rig.messages.count(channel) == len(truth) > 0
        rig.bot.admin_ids = frozenset({rig.emu.person("alice").id})
        _, said = await _ask(rig, "alice", "barkeeper backfill")
        assert "Backfill started" in said
        assert rig.bot.backfill_task is not None
        again = await asyncio.wait_for(rig.bot.backfill_task, WAIT)
        assert again is not None and again.ok
        _, status = await _ask(rig, "alice", "barkeeper status")
        assert "Backfill: idle" in status and "cached" in status


async def test_a_fact_said_in_chat_is_in_memories_and_in_a_later_replys_why(
    db: Database,
) -> None:
    async with bot_rig(db, learn=True) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script(
            "Bees! Lovely.",
            facts_reply(fact("Keeps bees on the roof", "hobby")),
        )
        said = alice.send(channel, "my bees survived the winter on the roof", mention_bot=True)
        await rig.emu.wait_for_reply(said, timeout=WAIT)
        await rig.bot.wait_idle()
        assert rig.bot.worker is not None
        await rig.bot.worker.drain()
        _, listed = await _ask(rig, "alice", "memories")
        assert "Keeps bees on the roof" in listed and "hobby" in listed
        # The worker told the companion: the guild's facts-learnt counter moved.
        companion = rig.bot.agent.companion
        assert companion is not None
        guild = rig.emu.guild_ids()[0]
        assert (await companion.state.get_state(guild)).facts_learned == 1
        rig.llm.script("Your bees, of course.", facts_reply())
        asked = alice.send(channel, "what do I keep on the roof?", mention_bot=True)
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        await rig.bot.worker.drain()  # the second message's extraction comes last
        assert "Keeps bees on the roof" in str(rig.llm.chat_requests[-2].messages)
        _, why = await _ask(rig, "alice", "why")
        assert "Keeps bees on the roof" in why
        _, other = await _ask(rig, "bob", "memories")
        assert "bees" not in other
