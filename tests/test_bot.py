"""The Discord bot in-process: real discord.py, the emulator, a scripted model, PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools

import barkeeper.bot
from barkeeper.bot import split_message
from barkeeper.config import Settings
from barkeeper.db import Database
from tests._bot import WAIT, bot_rig


def test_public_names_are_exactly_all() -> None:
    public = {name for name in vars(barkeeper.bot) if not name.startswith("_")}
    assert public == set(barkeeper.bot.__all__)


def test_split_keeps_words_and_code_blocks() -> None:
    words = split_message("word " * 1000)
    assert all(len(m) <= 2000 for m in words)
    assert " ".join(words).split() == ["word"] * 1000
    code = "intro\n```python\n" + "\n".join(f"x = {i}" for i in range(600)) + "\n```\nend"
    parts = split_message(code)
    assert len(parts) > 1 and all(len(p) <= 2000 for p in parts)
    for part in parts:
        assert part.count("```") % 2 == 0  # every part's blocks are closed
    assert parts[1].startswith("```python\n")
    assert split_message("   ") == []
    assert [len(p) for p in split_message("a" * 4500)] == [1996, 1996, 508]


async def test_a_mention_gets_a_streamed_split_reply_and_is_cached(db: Database) -> None:
    async with bot_rig(db) as rig:
        long_reply = " ".join(f"word{i}" for i in range(700))  # ~5,000 characters
        rig.llm.script(long_reply)
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        asked = alice.send(channel, "pour me something long @everyone", mention_bot=True)
        first = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        parts = await rig.emu.wait_for_bot_messages(channel, 3, after=asked, timeout=WAIT)
        await asyncio.sleep(1.5)  # the last edit
        parts = rig.emu.bot_messages(channel, after=asked.id)
        assert parts[0].id == first.id
        assert all(len(p.content) <= 2000 for p in parts)
        assert " ".join(p.content for p in parts).split() == long_reply.split()
        typing = [a for a in rig.emu.activity if a.kind == "typing" and a.channel_id == channel]
        assert typing
        edits = [a for a in rig.emu.activity if a.kind == "edit" and a.channel_id == channel]
        for before, after in itertools.pairwise(edits):
            assert after.at - before.at >= 0.9  # at most one edit per interval
        # The model saw the message as data, and the cache holds both sides.
        assert "pour me something long" in str(rig.llm.chat_requests[-1].messages)
        await rig.bot.cache.flush()
        await asyncio.sleep(0.3)
        await rig.bot.cache.flush()
        assert await rig.messages.get(asked.id) is not None
        stored = await rig.messages.get(first.id)
        assert stored is not None and stored.author_is_bot


async def test_triggers_dm_reply_prefix_and_ignores_bots_and_others(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("dm answer", "reply answer", "prefix answer")
        plain = alice.send(channel, "just chatting, not to the bot")
        dm = alice.dm("hello in private")
        got = await rig.emu.wait_for_reply(dm, timeout=WAIT)
        assert got.content == "dm answer"
        asked = alice.send(channel, "hey", mention_bot=True)
        rig.llm.script("first")
        first = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        replied = alice.send(channel, "following up", reply_to=first)
        reply = await rig.emu.wait_for_reply(replied, timeout=WAIT)
        assert reply.content
        prefixed = alice.send(channel, "!what's on tap")
        await rig.emu.wait_for_reply(prefixed, timeout=WAIT)
        await asyncio.sleep(0.3)
        assert not [m for m in rig.emu.bot_messages(channel) if m.reply_to == plain.id]


async def test_a_dropped_gateway_is_resumed_and_messages_meanwhile_reach_the_cache(
    db: Database,
) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        assert rig.emu.gateway.drop() == 1
        meanwhile = alice.send(channel, "said while the bot was away")
        rig.llm.script("still here")
        asked = alice.send(channel, "you there?", mention_bot=True)
        reply = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        assert reply.content == "still here"
        await rig.bot.wait_idle()
        await rig.bot.cache.flush()
        assert await rig.messages.get(meanwhile.id) is not None


async def test_edits_and_deletes_reach_the_cache(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        kept = alice.send(channel, "first words")
        gone = alice.send(channel, "regrettable")
        alice.edit(kept, "better words")
        alice.delete(gone)
        await rig.emu.wait_until(lambda: rig.bot.cache.pending == 0, timeout=WAIT, what="x")
        await asyncio.sleep(0.5)
        await rig.bot.cache.flush()
        stored = await rig.messages.get(kept.id)
        assert stored is not None and stored.content == "better words"
        assert await rig.messages.get(gone.id) is None


async def test_with_the_database_gone_it_still_answers_without_memory(
    db: Database, server_url: str, settings: Settings
) -> None:
    own = await Database.open(settings, url=server_url, schema=db.schema, min_size=1, max_size=2)
    async with bot_rig(own) as rig:
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("hello again", "still pouring")
        first = alice.send(channel, "evening", mention_bot=True)
        await rig.emu.wait_for_reply(first, timeout=WAIT)
        await rig.bot.wait_idle()
        await own.close()  # the database goes away under the running bot
        asked = alice.send(channel, "are you still there?", mention_bot=True)
        reply = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        assert reply.content == "still pouring"
        await rig.bot.wait_idle()


async def test_reply_chain_and_thread_starter_reach_the_context(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
        channel = rig.emu.channel_ids()[0]
        rig.llm.script("The house red is a Rioja.", "Yes, the Rioja.", "In the thread, too.")
        asked = alice.send(channel, "what is the house red?", mention_bot=True)
        answer = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        follow = alice.send(channel, "is it dry?", reply_to=answer)
        await rig.emu.wait_for_reply(follow, timeout=WAIT)
        await rig.bot.wait_idle()
        context = str(rig.llm.chat_requests[-1].messages)
        assert "The house red is a Rioja." in context and "is it dry?" in context

        starter = bob.send(channel, "thread about the garnet-coloured cocktail")
        thread = bob.open_thread(channel, "cocktails", message=starter)
        await asyncio.sleep(0.3)  # the starter reaches the cache
        inside = alice.send(thread.id, "what goes in it?", mention_bot=True)
        await rig.emu.wait_for_reply(inside, timeout=WAIT)
        await rig.bot.wait_idle()
        assert "garnet-coloured cocktail" in str(rig.llm.chat_requests[-1].messages)


async def test_without_streaming_the_reply_is_sent_once(db: Database) -> None:
    async with bot_rig(db, stream_replies=False) as rig:
        channel = rig.emu.channel_ids()[0]
        text = " ".join(f"part{i}" for i in range(400))
        rig.llm.script(text)
        asked = rig.emu.person("alice").send(channel, "no hurry", mention_bot=True)
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        sent = rig.emu.bot_messages(channel, after=asked.id)
        assert " ".join(m.content for m in sent).split() == text.split()
        assert not [a for a in rig.emu.activity if a.kind == "edit"]
