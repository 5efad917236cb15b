"""Allow and block lists by role and by category, end to end: the emulator's guild roles,
members' roles and categories reach the real discord.py inside the bot."""

from __future__ import annotations

import asyncio

from barkeeper.db import Database
from barkeeper.testing.discord import EmulatedMessage
from tests._bot import WAIT, Rig, bot_rig


async def _answered(rig: Rig, asked: EmulatedMessage, ignored: list[EmulatedMessage]) -> str:
    """The reply to ``asked``; by then the bot has seen ``ignored`` (sent before) and not
    answered them."""
    reply = await rig.emu.wait_for_reply(asked, timeout=WAIT)
    await rig.bot.wait_idle()
    await asyncio.sleep(0.2)
    ids = {m.id for m in ignored}
    assert [m.id for m in rig.emu.bot_messages() if m.reply_to in ids] == []
    return reply.content


async def test_roles_allow_and_block(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice, bob, carol = (rig.emu.person(n) for n in ("alice", "bob", "carol"))
        channel = rig.emu.channel_ids()[0]
        regulars, barred = rig.emu.add_role("regulars"), rig.emu.add_role("barred")
        alice.set_roles(regulars)
        bob.set_roles(regulars, barred)
        rig.bot.settings = rig.settings.model_copy(
            update={"allowed_roles": str(regulars.id), "blocked_roles": str(barred.id)}
        )
        rig.llm.script("for a regular", "welcome aboard")
        ignored = [
            bob.send(channel, "a regular, but barred", mention_bot=True),
            carol.send(channel, "no role at all", mention_bot=True),
            carol.dm("a DM has no roles"),
        ]
        asked = alice.send(channel, "evening", mention_bot=True)
        assert await _answered(rig, asked, ignored) == "for a regular"
        # A role given later reaches the bot with the member's next message.
        carol.set_roles(regulars)
        asked = carol.send(channel, "now I'm a regular", mention_bot=True)
        assert await _answered(rig, asked, []) == "welcome aboard"
        bob.set_roles(regulars)  # no longer barred
        rig.llm.script("back in")
        asked = bob.send(channel, "let me back in", mention_bot=True)
        assert await _answered(rig, asked, []) == "back in"
        assert len(rig.llm.chat_requests) == 3


async def test_categories_allow_and_block_with_threads(db: Database) -> None:
    async with bot_rig(db) as rig:
        alice = rig.emu.person("alice")
        inside, outside = rig.emu.channel_ids()[:2]
        bar = rig.emu.add_category("the bar", channel_ids=[inside])
        thread = alice.open_thread(inside, "side table")
        rig.bot.settings = rig.settings.model_copy(update={"allowed_categories": str(bar.id)})
        rig.llm.script("in the bar", "in its thread")
        ignored = [
            alice.send(outside, "out on the street", mention_bot=True),
            alice.dm("a DM is in no category"),
        ]
        asked = alice.send(inside, "a pint", mention_bot=True)
        assert await _answered(rig, asked, ignored) == "in the bar"
        asked = alice.send(thread.id, "and here?", mention_bot=True)
        assert await _answered(rig, asked, []) == "in its thread"

        rig.bot.settings = rig.settings.model_copy(update={"blocked_categories": str(bar.id)})
        rig.llm.script("outside is fine")
        ignored = [
            alice.send(inside, "blocked now", mention_bot=True),
            alice.send(thread.id, "and the thread", mention_bot=True),
        ]
        asked = alice.send(outside, "out here?", mention_bot=True)
        assert await _answered(rig, asked, ignored) == "outside is fine"
        # A channel moved into the category (CHANNEL_UPDATE) is blocked with it.
        rig.emu.move_channel(outside, bar.id)
        rig.llm.script("in the DM")
        moved = alice.send(outside, "moved in", mention_bot=True)
        asked = alice.dm("still there?")
        assert await _answered(rig, asked, [moved]) == "in the DM"
        assert len(rig.llm.chat_requests) == 4
