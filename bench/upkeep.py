"""Upkeep cost: prompt tokens per extracted message when a user already has 10, 100, 1000 memories.

Run: ``python bench/upkeep.py --out bench/results/upkeep.json [--quick]
[--database-url URL] [--embedder minilm|hashing] [--messages N]``

Two memory managers process the same messages of one user, on the same database,
in the same run, against the same local OpenAI-compatible server
(:class:`barkeeper.testing.llm.LLMServer`, which counts every request's prompt tokens
offline, gpt-oss tokenizer):

- ``ours``: :class:`barkeeper.learning.MemoryManager`. One extraction call (the
  message alone), then, unless a rule settles it, one consolidation call with the new
  fact and its ``k`` = 10 most similar memories (:meth:`MemoryStore.similar`).
- ``agno``: a faithful re-implementation of the pattern of Agno's ``MemoryManager``
  (Junkie's memory, seed 001): a system prompt of instructions that lists **every**
  memory of the user (``ID: …`` / ``Memory: …``), the user's message, and the
  ``add_memory`` / ``update_memory`` / ``delete_memory`` tools; the model's tool calls
  are run and the conversation goes back to the model with their results until it
  stops calling tools (Agno's model loop: two requests when a memory is added).

The model is scripted, identically for both: each message reveals one new fact, which
both managers add (extraction returns it; our consolidator answers ``add``; Agno's
model calls ``add_memory`` then answers "done"). Each message is measured against
exactly N memories: what it added is deleted before the next one. Our embedder runs
locally, so it costs no prompt tokens; the figures are prompt tokens only.

Output JSON: ``{"ours": {"10": t, "100": t, "1000": t}, "agno": {...},
"ratio_at_1000": agno/ours, "details": {...}, ...}`` with ``t`` the mean prompt
tokens per extracted message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import bench_database, environment, write_json
from barkeeper.db import Database
from barkeeper.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder
from barkeeper.learning import MemoryManager, UserMessage
from barkeeper.learning._consolidation import DEFAULT_K
from barkeeper.learning._prompts import CONSOLIDATION_SYSTEM, EXTRACTION_SYSTEM
from barkeeper.llm import OpenAIChatModel, RetryPolicy
from barkeeper.memory import MemoryStore, MemoryType
from barkeeper.testing.llm import LLMServer, Reply, ReplyLike

SIZES = (10, 100, 1000)

# --- the synthetic user ------------------------------------------------------------------

_CITIES = (
    "Lisbon Porto Madrid Seville Paris Lyon Berlin Hamburg Vienna Prague Krakow Budapest "
    "Rome Naples Athens Oslo Bergen Dublin Edinburgh Glasgow Amsterdam Ghent Zurich Geneva "
    "Copenhagen Stockholm Helsinki Tallinn Riga Vilnius Kyoto Osaka Seoul Hanoi Lima Quito"
).split()
_FOODS = (
    "ramen sushi tacos paella risotto pho kimchi falafel hummus goulash pierogi curry "
    "dumplings lasagne ceviche moussaka croissants bagels pretzels churros gelato "
    "dark chocolate olives anchovies blue cheese mushrooms aubergine okra liquorice"
).split()
_ACTIVITIES = (
    "bouldering,trail running,sea swimming,cycling,knitting,pottery,chess,birdwatching,"
    "woodworking,baking sourdough,gardening,photography,salsa dancing,kayaking,yoga,"
    "journaling,painting watercolours,playing the piano,playing the cello,fishing,"
    "board games,crosswords,stargazing,hiking,camping,skateboarding,sketching"
).split(",")
_JOBS = (
    "nurse,teacher,barista,carpenter,accountant,software developer,paramedic,librarian,"
    "chef,electrician,bus driver,pharmacist,translator,architect,social worker,baker"
).split(",")
_RELATIVES = "sister brother cousin aunt uncle grandmother grandfather niece nephew".split()
_EVENTS = "concert,wedding,funeral,book fair,marathon,music festival,job interview".split(",")
_YEARS = [str(y) for y in range(1995, 2025)]


def corpus(count: int, seed: int = 7) -> list[tuple[MemoryType, str]]:
    """``count`` distinct one-sentence memories of varied types, deterministically."""
    rng = random.Random(seed)
    makers: list[tuple[MemoryType, Any]] = [
        ("location", lambda: f"Has visited {rng.choice(_CITIES)} in {rng.choice(_YEARS)}"),
        ("location", lambda: f"Travelled to {rng.choice(_CITIES)} with friends"),
        ("preference", lambda: f"Likes {rng.choice(_FOODS)}"),
        ("preference", lambda: f"Cannot stand {rng.choice(_FOODS)}"),
        ("hobby", lambda: f"Enjoys {rng.choice(_ACTIVITIES)} on weekends"),
        ("hobby", lambda: f"Took up {rng.choice(_ACTIVITIES)} in {rng.choice(_YEARS)}"),
        ("work", lambda: f"Worked as a {rng.choice(_JOBS)} in {rng.choice(_CITIES)}"),
        (
            "family",
            lambda: f"Has a {rng.choice(_RELATIVES)} who lives in {rng.choice(_CITIES)}",
        ),
        (
            "event",
            lambda: (
                f"Went to a {rng.choice(_EVENTS)} in {rng.choice(_CITIES)} in {rng.choice(_YEARS)}"
            ),
        ),
    ]
    seen: set[str] = set()
    result: list[tuple[MemoryType, str]] = []
    attempt = 0
    while len(result) < count:
        # round robin over the templates; a small template that has run out of new
        # sentences just yields its turn
        kind, make = makers[attempt % len(makers)]
        attempt += 1
        text = make()
        if text not in seen:
            seen.add(text)
            result.append((kind, text))
    return result


@dataclass(frozen=True)
class Probe:
    """A message that reveals one new fact, and the fact."""

    text: str
    memory_type: MemoryType
    fact: str


def probes(count: int, seed: int = 11) -> list[Probe]:
    """``count`` chat messages, each revealing one fact on the corpus' topics."""
    rng = random.Random(seed)
    makers = [
        lambda c: Probe(
            f"Just got back from {c} last night, still dreaming about the food there",
            "event",
            f"Recently travelled to {c}",
        ),
        lambda c: Probe(
            f"I've started {rng.choice(_ACTIVITIES)} with a club that meets in {c}",
            "hobby",
            f"Joined a club in {c}",
        ),
        lambda c: Probe(
            f"My {rng.choice(_RELATIVES)} is moving to {c} next spring and I'll miss them",
            "family",
            f"Has a relative moving to {c}",
        ),
        lambda c: Probe(
            f"Honestly I could eat {rng.choice(_FOODS)} every day since that trip to {c}",
            "preference",
            f"Loves a dish first tried in {c}",
        ),
    ]
    return [makers[n % len(makers)](rng.choice(_CITIES)) for n in range(count)]


# --- the Agno-style baseline ---------------------------------------------------------------

# Agno's MemoryManager system prompt, paraphrased at the same length and structure: the
# role, when and how to add or update, the capture criteria, the tools, and then every
# existing memory of the user.
_AGNO_INSTRUCTIONS = """\
You are a Memory Manager responsible for managing information and preferences about the \
user. You will be given criteria for memories to capture in the <memories_to_capture> \
section and a list of existing memories in the <existing_memories> section.

## When to add or update memories
- First decide whether a memory needs to be added, updated or deleted based on the \
user's message, or whether no changes are needed.
- If the user's message meets the criteria in <memories_to_capture> and that \
information is not already captured in <existing_memories>, capture it as a memory.
- If the user's message does not meet the criteria in <memories_to_capture>, no memory \
updates are needed.
- If the existing memories in <existing_memories> already capture all relevant \
information, no memory updates are needed.

## How to add or update memories
- When adding a memory, write one that captures the key information, as if storing it \
for future reference.
- Memories should be brief third-person statements that capture the most important \
aspect of the user's input, without extraneous information.
  - Example: if the user says 'I'm going to the gym', a memory could be `John Doe goes \
to the gym regularly`.
  - Example: if the user says 'My name is John Doe', a memory could be `User's name is \
John Doe`.
- Do not make one memory too long or complex; create several if needed.
- Do not repeat the same information in several memories; update existing ones instead.
- If the user asks for a memory to be updated or forgotten, remove every reference to \
what should be forgotten. Do not say 'The user used to like ...'.
- When updating a memory, extend the existing memory with the new information rather \
than overwriting it completely.
- When a user's preferences change, update the relevant memories to reflect the new \
preferences, and also record what they used to be and what changed.

## Criteria for creating memories
Use the following criteria to decide whether a user's message should be captured as a \
memory.

<memories_to_capture>
Memories should capture personal information about the user that is relevant to the \
current conversation, such as:
- Personal facts: name, age, occupation, location, interests and preferences
- Opinions and preferences: what the user likes, dislikes, enjoys or finds frustrating
- Significant life events or experiences the user shared
- Important context about the user's current situation, challenges or goals
- Any other details that give meaningful insight into the user's personality, \
perspective or needs
</memories_to_capture>

## Updating memories
You will also be given a list of existing memories in the <existing_memories> section. \
You can:
  - Decide to make no changes.
  - Decide to add a new memory, using the `add_memory` tool.
  - Decide to update an existing memory, using the `update_memory` tool.
  - Decide to delete an existing memory, using the `delete_memory` tool.
You can call several tools in one response if needed.
Only add or update memories if it is necessary to capture key information provided by \
the user."""


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_TOPICS = {"type": "array", "items": {"type": "string"}, "description": "Topics of the memory."}
AGNO_TOOLS = [
    _tool(
        "add_memory",
        "Use this function to add a memory to the database.\n\nArgs:\n    memory (str): The "
        "memory to be added.\n    topics (Optional[List[str]]): The topics of the memory "
        "(e.g. ['name', 'hobbies', 'location']).\n\nReturns:\n    str: A message indicating "
        "if the memory was added successfully or not.",
        {"memory": {"type": "string"}, "topics": _TOPICS},
        ["memory"],
    ),
    _tool(
        "update_memory",
        "Use this function to update an existing memory in the database.\n\nArgs:\n    "
        "memory_id (str): The id of the memory to be updated.\n    memory (str): The updated "
        "memory.\n    topics (Optional[List[str]]): The topics of the memory.\n\nReturns:\n"
        "    str: A message indicating if the memory was updated successfully or not.",
        {"memory_id": {"type": "string"}, "memory": {"type": "string"}, "topics": _TOPICS},
        ["memory_id", "memory"],
    ),
    _tool(
        "delete_memory",
        "Use this function to delete a single memory from the database.\n\nArgs:\n    "
        "memory_id (str): The id of the memory to be deleted.\n\nReturns:\n    str: A "
        "message indicating if the memory was deleted successfully or not.",
        {"memory_id": {"type": "string"}},
        ["memory_id"],
    ),
]


class AgnoStyleManager:
    """Agno's pattern over our store: every memory of the user in every prompt, tools."""

    def __init__(self, store: MemoryStore, model: OpenAIChatModel) -> None:
        self._store = store
        self._model = model

    def system_message(self, memories: Sequence[tuple[int, str]]) -> str:
        lines = [_AGNO_INSTRUCTIONS]
        if memories:
            lines.append("\n<existing_memories>")
            for memory_id, content in memories:
                lines += [f"ID: {memory_id}", f"Memory: {content}", ""]
            lines.append("</existing_memories>")
        return "\n".join(lines)

    async def process(self, user_id: int, text: str) -> None:
        existing = [(m.id, m.content) async for m in self._store.iter_memories(user_id)]
        messages: list[Any] = [
            {"role": "system", "content": self.system_message(existing)},
            {"role": "user", "content": text},
        ]
        for _ in range(5):  # the model loop: run tool calls until the model stops
            result = await self._model.complete(messages, tools=AGNO_TOOLS)
            if not result.tool_calls:
                return
            messages.append(result.to_message())
            for call in result.tool_calls:
                args = call.parsed_arguments()
                if call.name == "add_memory":
                    await self._store.add(user_id, str(args["memory"]), changed_by="agno")
                    answer = "Memory added successfully"
                elif call.name == "update_memory":
                    await self._store.update(
                        user_id, int(args["memory_id"]), content=str(args["memory"])
                    )
                    answer = "Memory updated successfully"
                else:
                    await self._store.forget(user_id, int(args["memory_id"]))
                    answer = "Memory deleted successfully"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})


# --- the scripted model ---------------------------------------------------------------------

_MESSAGE = re.compile(r"<message>\n(.*)\n</message>", re.DOTALL)


def responder(facts: dict[str, Probe]) -> Any:
    """Answers both managers' requests the same way: the message's one fact is added."""

    def respond(body: dict[str, Any]) -> ReplyLike:
        messages = body["messages"]
        system = messages[0].get("content") or ""
        if body.get("tools"):  # the Agno-style manager
            if messages[-1]["role"] == "tool":
                return "Done: the memory was added."
            probe = facts[messages[-1]["content"]]
            return Reply.call("add_memory", {"memory": probe.fact, "topics": [probe.memory_type]})
        if system == EXTRACTION_SYSTEM:
            match = _MESSAGE.search(messages[-1]["content"])
            assert match is not None
            probe = facts[match.group(1)]
            fact = {
                "type": probe.memory_type,
                "content": probe.fact,
                "confidence": 0.9,
                "importance": 0.6,
                "temporal_relevance": "present",
                "expires_in_days": None,
            }
            return Reply.json({"facts": [fact]})
        if system == CONSOLIDATION_SYSTEM:
            return Reply.json({"decisions": [{"fact": 1, "action": "add", "reason": "new"}]})
        raise AssertionError(f"unexpected request: {system[:80]!r}")

    return respond


# --- the measurement ------------------------------------------------------------------------


async def _new_user(db: Database, discord_id: int) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO users (discord_id) VALUES ($1) RETURNING id", discord_id
            )
        )


async def _seed(store: MemoryStore, user_id: int, count: int) -> int:
    """Give the user ``count`` memories; returns the largest id."""
    memories = corpus(count)
    vectors = await store.embedder.embed([text for _, text in memories])
    last = 0
    for (kind, text), vector in zip(memories, vectors, strict=True):
        last = (await store.add(user_id, text, memory_type=kind, embedding=vector)).id
    return last


async def _reset(db: Database, user_id: int, last_id: int) -> None:
    """Delete what a message added: each message meets exactly N memories."""
    async with db.acquire() as conn:
        await conn.execute("DELETE FROM memories WHERE user_id = $1 AND id > $2", user_id, last_id)


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 1) if values else float("nan")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    embedder: Embedder = HashingEmbedder() if args.embedder == "hashing" else MiniLMEmbedder()
    messages = probes(args.messages)
    by_text = {p.text: p for p in messages}
    ours: dict[str, float] = {}
    agno: dict[str, float] = {}
    details: dict[str, Any] = {}
    async with (
        bench_database(args.database_url, prefix="bench_upkeep") as db,
        LLMServer(responder=responder(by_text)) as server,
        OpenAIChatModel(
            base_url=server.base_url,
            model="openai/gpt-oss-120b",
            retry_policy=RetryPolicy(max_retries=0),
        ) as model,
    ):
        store = MemoryStore(db, embedder)
        manager = MemoryManager(store, model, extraction_rate=1.0, k=DEFAULT_K)
        baseline = AgnoStyleManager(store, model)
        env = await environment(db)
        for size in SIZES:
            started = time.perf_counter()
            user = await _new_user(db, 10_000 + size)
            last = await _seed(store, user, size)
            ours_tokens: list[int] = []
            ours_calls: list[int] = []
            shown: list[int] = []
            agno_tokens: list[int] = []
            agno_calls: list[int] = []
            agno_first: list[int] = []
            for n, probe in enumerate(messages):
                server.reset()
                outcome = await manager.process(UserMessage(user, probe.text, message_id=n + 1))
                assert [c.action for c in outcome.changes] == ["add"], outcome
                ours_tokens.append(sum(r.prompt_tokens for r in server.chat_requests))
                ours_calls.append(len(server.chat_requests))
                consolidation = [
                    r for r in server.chat_requests
                    if r.messages[0].get("content") == CONSOLIDATION_SYSTEM
                ]  # fmt: skip
                shown += [r.messages[-1]["content"].count("[id ") for r in consolidation]
                await _reset(db, user, last)

                server.reset()
                await baseline.process(user, probe.text)
                agno_tokens.append(sum(r.prompt_tokens for r in server.chat_requests))
                agno_calls.append(len(server.chat_requests))
                agno_first.append(server.chat_requests[0].prompt_tokens)
                await _reset(db, user, last)
            ours[str(size)] = _mean(ours_tokens)
            agno[str(size)] = _mean(agno_tokens)
            details[str(size)] = {
                "ours": {
                    "calls_per_message": _mean(ours_calls),
                    "memories_shown_per_consolidation": _mean(shown),
                    "min": min(ours_tokens),
                    "max": max(ours_tokens),
                },
                "agno": {
                    "calls_per_message": _mean(agno_calls),
                    "first_call_tokens": _mean(agno_first),
                    "min": min(agno_tokens),
                    "max": max(agno_tokens),
                },
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(
                f"{size:>5} memories: ours {ours[str(size)]:>8.1f} tokens/message "
                f"({details[str(size)]['ours']['calls_per_message']} calls), "
                f"agno-style {agno[str(size)]:>9.1f} "
                f"({details[str(size)]['agno']['calls_per_message']} calls)",
                file=sys.stderr,
            )
    top = str(SIZES[-1])
    return {
        "ours": ours,
        "agno": agno,
        f"ratio_at_{top}": round(agno[top] / ours[top], 2),
        "ours_growth_10_to_1000": round(ours[top] / ours[str(SIZES[0])], 3),
        "details": details,
        "config": {
            "messages_per_size": len(messages),
            "k": DEFAULT_K,
            "embedder": embedder.name,
            "tokenizer": "offline count of barkeeper.testing.llm (gpt-oss)",
            "what": "mean prompt tokens per extracted message (all requests it caused)",
        },
        "environment": env,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help="5 messages per size, not 20")
    parser.add_argument("--messages", type=int, default=None, help="messages per size")
    parser.add_argument(
        "--embedder",
        choices=("minilm", "hashing"),
        default="minilm",
        help="embedder of the store (minilm: the local default)",
    )
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL to run on (default: ephemeral)"
    )
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 5 if args.quick else 20
    results = asyncio.run(measure(args))
    write_json(args.out, results)
    print(json.dumps({k: results[k] for k in ("ours", "agno", "ratio_at_1000")}))


if __name__ == "__main__":
    main()
