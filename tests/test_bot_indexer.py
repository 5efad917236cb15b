"""The bot keeps its cached channels indexed for the history-search tool, in the background.

Real discord.py against the emulator, a scripted model, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import pytest

from barkeeper.bot import ChannelIndexer
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.embeddings import HashingEmbedder
from barkeeper.history import MessageStore, StoredMessage
from barkeeper.testing.embeddings import FailingEmbedder
from barkeeper.testing.llm import Reply
from barkeeper.turns import MessageIndex, discord_channel_scope
from tests._bot import WAIT, bot_rig
from tests.test_bot_commands import _ask, _confirm

FAST = {"index_interval": 0.1}


async def until(check: Callable[[], Awaitable[object]], *, within: float, what: str) -> None:
    """Poll ``check`` (the index, which has no event to wait on) until it holds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - database state has no event
                await asyncio.sleep(0.05)
    assert await check(), f"not reached within {within} s: {what}"


async def _row(db: Database, channel_id: int, message_id: int) -> dict[str, str] | None:
    """The indexed turn of a message: its content and context (``None``: not indexed)."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT content, context FROM message_index WHERE scope = $1 AND source_id = $2",
            discord_channel_scope(channel_id),
            str(message_id),
        )
    return None if row is None else {"content": row["content"], "context": row["context"]}


def _index(rig_db: Database) -> MessageIndex:
    return MessageIndex(rig_db, HashingEmbedder())


async def test_posted_messages_are_indexed_and_the_previous_context_refreshed(
    db: Database,
) -> None:
    async with bot_rig(db, **FAST) as rig:
        assert rig.bot.indexer is not None and rig.bot.agent.index is not None
        index = rig.bot.agent.index
        alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
        channel = rig.emu.channel_ids()[0]
        scope = discord_channel_scope(channel)
        first = alice.send(channel, "the cellar floods every spring")
        await until(lambda: _row(db, channel, first.id), within=WAIT, what="the first one indexed")
        # The next message arrives: the first one's context now quotes it.
        second = bob.send(channel, "then keep the saffron upstairs")

        async def refreshed() -> bool:
            row = await _row(db, channel, first.id)
            return row is not None and "saffron upstairs" in row["context"]

        await until(refreshed, within=WAIT, what="the first one's context quotes the second")
        texts = ["a third about pickled walnuts", "and a fourth on cider"]
        for text in texts:
            alice.send(channel, text)

        async def all_four() -> bool:
            return await index.count(scope) == 4

        await until(all_four, within=WAIT, what="four turns indexed")
        hits = await index.search(scope, "walnuts", k=3)
        assert hits and "pickled walnuts" in hits[0].item.content
        second_row = await _row(db, channel, second.id)
        assert second_row is not None and "flood" in second_row["context"]
        other = discord_channel_scope(rig.emu.channel_ids()[1])
        assert await index.count(other) == 0
        assert rig.bot.indexer.failures == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "barkeeper-channel-indexer"]


async def test_an_edit_is_indexed_again_and_a_delete_leaves_the_neighbours_indexed(
    db: Database,
) -> None:
    async with bot_rig(db, **FAST) as rig:
        index = _index(db)
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        scope = discord_channel_scope(channel)
        before = alice.send(channel, "the quiz night starts at eight")
        middle = alice.send(channel, "bring a pencil for the crossword")
        after = alice.send(channel, "winners get a pint")

        async def three() -> bool:
            return await index.count(scope) == 3

        await until(three, within=WAIT, what="three turns indexed")

        alice.edit(middle, "bring a pen for the crossword")

        async def edited() -> bool:
            row, prior = await _row(db, channel, middle.id), await _row(db, channel, before.id)
            return (
                row is not None
                and "a pen for" in row["content"]
                and prior is not None
                and "a pen for" in prior["context"]
            )

        await until(edited, within=WAIT, what="the edit indexed, and quoted by the one before")
        assert [h.item.discord_message_id for h in await index.search(scope, "pen", k=1)] == [
            middle.id
        ]

        # The delete takes the message's row, and the next one's (its context came
        # from it): the indexer puts the next one back, quoting what is left.
        alice.delete(middle)

        async def deleted() -> bool:
            gone = await _row(db, channel, middle.id) is None
            back, prior = await _row(db, channel, after.id), await _row(db, channel, before.id)
            return (
                gone
                and back is not None
                and "crossword" not in back["context"]
                and "quiz night" in back["context"]
                and prior is not None
                and "winners get a pint" in prior["context"]
            )

        await until(deleted, within=WAIT, what="the delete's row gone, the neighbours indexed")
        assert await index.count(scope) == 2
        assert await index.search(scope, "crossword", mode="fulltext") == []


async def test_with_indexing_off_nothing_is_indexed_and_the_tool_says_so(db: Database) -> None:
    async with bot_rig(db, index_history=False, **FAST) as rig:
        assert rig.bot.indexer is None and rig.bot.agent.index is None
        alice = rig.emu.person("alice")
        channel = rig.emu.channel_ids()[0]
        said = alice.send(channel, "the jukebox only plays polka")
        rig.llm.script(Reply.call("search_channel_history", {"query": "jukebox"}), "No idea.")
        asked = alice.send(channel, "what does the jukebox play?", mention_bot=True)
        await rig.emu.wait_for_reply(asked, timeout=WAIT)
        await rig.bot.wait_idle()
        [tool] = [m for m in rig.llm.chat_requests[-1].messages if m["role"] == "tool"]
        assert tool["content"] == "no older messages are indexed, so none can be searched"
        assert await rig.messages.get(said.id) is not None  # cached all the same
        assert await _index(db).count(discord_channel_scope(channel)) == 0


async def test_the_model_finds_older_messages_through_the_bot(db: Database) -> None:
    async with bot_rig(db, team_leader_context_limit=1, **FAST) as rig:
        alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
        channel = rig.emu.channel_ids()[0]
        bob.send(channel, "my band plays the blue moon on friday")
        for n in range(3):
            bob.send(channel, f"unrelated chatter number {n}")
        index = _index(db)

        async def indexed() -> bool:
            return await index.count(discord_channel_scope(channel)) == 4

        await until(indexed, within=WAIT, what="the older messages indexed")
        rig.llm.script(
            Reply.call("search_channel_history", {"query": "band blue moon"}),
            "Friday at the Blue Moon.",
        )
        asked = alice.send(channel, "when does Bob's band play?", mention_bot=True)
        reply = await rig.emu.wait_for_reply(asked, timeout=WAIT)
        assert reply.content == "Friday at the Blue Moon."
        await rig.bot.wait_idle()
        request = rig.llm.chat_requests[-1]
        [tool] = [m for m in request.messages if m["role"] == "tool"]
        assert "my band plays the blue moon on friday" in tool["content"]
        first_prompt = str(rig.llm.chat_requests[-2].messages)
        assert "blue moon" not in first_prompt  # found by the tool, not shown before


async def test_backfilled_and_already_cached_channels_are_synced_whole(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="barkeeper.bot._indexer")
    store = MessageStore(db)
    # Cached before the bot starts (an earlier run): synced at start-up.
    earlier = 9_000_000_000_000_000
    await store.store_many(
        StoredMessage(earlier + n, 4242, 7, "cy", f"an old note about barrels {n}")
        for n in range(1, 6)
    )
    async with bot_rig(db, backfill_on_start=True, **FAST) as rig:
        index = _index(db)
        channels = rig.emu.channel_ids()

        async def texts(channel_id: int) -> int:
            page = await store.get_page(channel_id, after=0, limit=1000)
            return sum(1 for m in page if m.content.strip())

        async def all_indexed() -> bool:
            if rig.bot.backfill_task is None or not rig.bot.backfill_task.done():
                return False
            counts = [await index.count(discord_channel_scope(c)) for c in (*channels, 4242)]
            return counts == [*[await texts(c) for c in channels], 5] and all(counts)

        await until(all_indexed, within=3 * WAIT, what="every cached channel indexed")
    synced = [r.getMessage() for r in caplog.records if "synced" in r.getMessage()]
    assert any("channel 4242 synced, 5 turn(s) indexed" in line for line in synced)
    assert all(any(f"channel {c} synced" in line for line in synced) for c in channels)


class _FlakyEmbedder(HashingEmbedder):
    """Fails its first ``failures`` calls the way a broken model would (text in the error)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError(f"cannot embed {list(texts)}")
        return await super().embed(texts)


async def test_a_failure_keeps_the_channel_marked_and_the_task_goes_on(
    db: Database, settings: Settings, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = MessageStore(db)
    message = StoredMessage(8_000_000_000_000_001, 77, 7, "dee", "the secret recipe is nutmeg")
    await store.store(message)
    index = MessageIndex(db, _FlakyEmbedder(failures=2))
    indexer = ChannelIndexer(index, store, interval=0.1)
    indexer.mark(77, message.message_id)
    await indexer.run_pass()  # the embedder fails: still marked, nothing indexed
    assert indexer.marked == 1 and indexer.failures == 1
    assert await index.count(discord_channel_scope(77)) == 0
    indexer.start()  # fails once more, then indexes it
    try:

        async def indexed() -> bool:
            return await index.count(discord_channel_scope(77)) == 1

        await until(indexed, within=WAIT, what="indexed once the embedder works")
        assert indexer.marked == 0 and indexer.failures == 2
    finally:
        await indexer.aclose()
    assert "nutmeg" not in caplog.text and "RuntimeError" in caplog.text

    # The database gone: the pass fails, the channel stays marked.
    own = await Database.open(settings, url=server_url, schema=db.schema, min_size=1, max_size=1)
    down = ChannelIndexer(MessageIndex(own, HashingEmbedder()), MessageStore(own), interval=0.1)
    await own.close()
    down.mark(77, message.message_id)
    down.sync_cached()
    await down.run_pass()
    await down.run_pass()
    assert down.marked == 1 and down.failures == 2


async def _vectors(db: Database, channel_id: int) -> dict[int, tuple[bool, bool]]:
    """Each indexed turn of the channel: (has a vector, has piece vectors)."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT source_id, embedding IS NOT NULL AS whole, piece_embeddings IS NOT NULL "
            "AS parts FROM message_index WHERE scope = $1",
            discord_channel_scope(channel_id),
        )
    return {int(r["source_id"]): (r["whole"], r["parts"]) for r in rows}


async def test_turns_stored_without_vectors_while_the_embedder_fails_get_them_once_it_works(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="barkeeper.bot._indexer")
    store = MessageStore(db)
    base = 8_100_000_000_000_000
    said = [
        StoredMessage(base + 1, 78, 7, "rosa", "The cellar key hangs behind the dartboard."),
        StoredMessage(base + 2, 78, 7, "ivo", "Why there? Nobody ever finds it."),
        StoredMessage(base + 3, 78, 7, "rosa", "that is the point"),
    ]
    await store.store_many(said)
    embedder = FailingEmbedder(failing=True)  # the embeddings endpoint is down
    indexer = ChannelIndexer(MessageIndex(db, embedder), store, interval=0.1)
    searcher = _index(db)  # the same embedder's vectors, working
    scope = discord_channel_scope(78)
    indexer.mark(78, said[0].message_id)
    await indexer.run_pass()
    # What a sync does when the embedder fails: the turns are stored without vectors
    # (none for their pieces either), found by their words only; not a failed sync.
    assert indexer.marked == 0 and indexer.failures == 0 and embedder.failures == 2
    assert await _vectors(db, 78) == {m.message_id: (False, False) for m in said}
    found = await searcher.search(scope, "dartboard", mode="fulltext")
    assert found[0].item.discord_message_id == said[0].message_id
    assert await searcher.search(scope, "where is the cellar key", mode="vector") == []

    await indexer.run_pass()  # still down: one attempt this pass, nothing changes
    assert embedder.failures == 3 and indexer.reembedded == 0
    embedder.failing = False  # the endpoint is back: the next pass re-embeds them
    await indexer.run_pass()
    assert indexer.reembedded == 3 and indexer.failures == 0
    # The two turns of two sentences have their pieces' vectors too.
    assert await _vectors(db, 78) == {
        said[0].message_id: (True, False),
        said[1].message_id: (True, True),
        said[2].message_id: (True, False),
    }
    hits = await searcher.search(scope, "the cellar key hangs behind the dartboard", mode="vector")
    assert hits[0].item.discord_message_id == said[0].message_id
    assert hits[0].parts.vector is not None and hits[0].parts.vector > 0.9
    await indexer.run_pass()  # nothing left to do: the embedder is not called
    assert indexer.reembedded == 3
    logged = caplog.text
    assert "not re-embedded (LLMUnavailableError" in logged
    assert "channel 78, 3 turn(s) stored without a vector re-embedded" in logged
    assert logged.count("not re-embedded") == 1  # once per outage
    assert "every synced channel's turns have vectors again" in logged
    assert "dartboard" not in logged


async def test_the_bot_gives_its_turns_their_vectors_once_the_embedder_is_back(
    db: Database,
) -> None:
    embedder = FailingEmbedder(failing=True)  # the index's, as BARKEEPER_EMBEDDER's
    async with bot_rig(db, embedder=embedder, **FAST) as rig:
        assert rig.bot.indexer is not None
        alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
        channel = rig.emu.channel_ids()[0]
        said = [
            alice.send(channel, "The darts final is on Thursday. Bring your own flights."),
            bob.send(channel, "who is playing?"),
            alice.send(channel, "the Red Lion against the Anchor"),
        ]

        async def stored_without() -> bool:
            return await _vectors(db, channel) == {m.id: (False, False) for m in said}

        await until(stored_without, within=WAIT, what="three turns stored without vectors")
        assert rig.bot.indexer.failures == 0  # indexed, found by their words
        embedder.failing = False

        async def embedded() -> bool:
            return await _vectors(db, channel) == {
                said[0].id: (True, True),
                said[1].id: (True, False),
                said[2].id: (True, False),
            }

        # no message came meanwhile: the indexer's repair gave them (counted and logged
        # by the repair's own test above; a pass still running when the embedder came
        # back may give some of them theirs first, so the count is not asserted here)
        await until(embedded, within=WAIT, what="the turns given their vectors")
        scope = discord_channel_scope(channel)
        hits = await _index(db).search(scope, "Bring your own flights", mode="vector", k=1)
        assert [h.item.discord_message_id for h in hits] == [said[0].id]


async def test_at_start_up_turns_left_without_vectors_get_them(db: Database) -> None:
    store = MessageStore(db)
    base = 8_200_000_000_000_000
    said = [StoredMessage(base + n, 79, 7, "ivo", f"a barrel of stout number {n}") for n in (1, 2)]
    await store.store_many(said)
    down = MessageIndex(db, FailingEmbedder(failing=True))
    assert await down.sync_discord_channel(79) == 2  # an earlier run, the embedder down
    assert await _vectors(db, 79) == {m.message_id: (False, False) for m in said}
    # The next start-up: every cached channel is synced whole, then re-embedded.
    indexer = ChannelIndexer(_index(db), store, interval=0.1)
    indexer.sync_cached()
    await indexer.run_pass()
    assert indexer.reembedded == 2
    assert await _vectors(db, 79) == {m.message_id: (True, False) for m in said}


async def test_after_forget_me_the_others_turns_are_indexed_again(db: Database) -> None:
    async with bot_rig(db, **FAST) as rig:
        index = _index(db)
        alice, bob = rig.emu.person("alice"), rig.emu.person("bob")
        channel = rig.emu.channel_ids()[0]
        scope = discord_channel_scope(channel)
        bob.send(channel, "who wants the last slice of tart?")
        alice.send(channel, "me, the rhubarb one please")
        answer = bob.send(channel, "it is yours, with cream")

        async def three() -> bool:
            return await index.count(scope) == 3

        await until(three, within=WAIT, what="three turns indexed")
        interaction, _ = await _ask(rig, "alice", "forget-me")
        assert "forgot everything" in await _confirm(rig, "alice", interaction)

        # Her row went, and Bob's answer's (its context came from hers): indexed again.
        async def bobs_two() -> bool:
            row = await _row(db, channel, answer.id)
            return await index.count(scope) == 2 and row is not None

        await until(bobs_two, within=WAIT, what="Bob's answer indexed again")
        assert await index.search(scope, "rhubarb", mode="fulltext") == []
        row = await _row(db, channel, answer.id)
        assert row is not None and "rhubarb" not in row["context"]
