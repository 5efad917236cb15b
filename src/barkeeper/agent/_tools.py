"""The tools a reply may call: all bound to one request's author and channel.

A tool never takes a user or a channel from the model: whose memories and which
channel come from the :class:`~barkeeper.agent.ReplyRequest` the toolbox was made
for. Arguments the model adds (``user_id``, ``channel_id``, …) are ignored and
reported back to it, so a message saying "look up Bob's memories" reaches nothing
of Bob's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from barkeeper.agent._context import clean_name, quote, when
from barkeeper.agent._request import ReplyRequest
from barkeeper.companion import GuildStore, UserStore, memory_types_for
from barkeeper.errors import BarkeeperError
from barkeeper.llm import ToolCall, count_tokens
from barkeeper.memory import MEMORY_TYPES, MemoryStore
from barkeeper.turns import MessageIndex, discord_channel_scope

__all__ = ["TOOL_DEFINITIONS", "Toolbox"]

_log = logging.getLogger(__name__)


def _tool(name: str, description: str, argument: str, about: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string", "description": about}},
                "required": [argument],
            },
        },
    }


#: The tools' OpenAI definitions.
TOOL_DEFINITIONS: tuple[dict[str, Any], ...] = (
    _tool(
        "search_channel_history",
        "Search older messages of the current channel (only this one) for a topic, "
        "when the history shown is not enough.",
        "query",
        "What to look for, in a few words.",
    ),
    _tool(
        "recall_memories",
        "Recall more of what you remember about the author of the current message "
        "(only them) on a topic.",
        "query",
        "The topic, in a few words.",
    ),
    _tool(
        "lookup_member",
        "Look up the profile (names, Discord id, nickname, roles, first seen) of someone "
        "who wrote in the current channel; in a direct message, only its author.",
        "name_or_id",
        "Their name as shown in the history, or their Discord id.",
    ),
)

_ARGUMENTS = {
    "search_channel_history": "query",
    "recall_memories": "query",
    "lookup_member": "name_or_id",
}


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call answered, and what the run records of it."""

    text: str
    record: dict[str, Any]


class Toolbox:
    """The tools of one reply, acting for its author in its channel only.

    Args:
        request: The reply's request: the author and the place every tool is bound to.
        now: The current time, for relative times.
        timezone: For the times shown.
        people: Discord id → name of everyone who wrote in the context shown (the
            people ``lookup_member`` may look up), the author included.
        memories: The memory store (``recall_memories``).
        index: The turn index (``search_channel_history``).
        users: The user store (``lookup_member``).
        guilds: The guild store (``lookup_member``'s nickname and roles).
        max_tokens: Most tokens one result may take.
        model: Whose tokenizer counts them.
    """

    def __init__(
        self,
        request: ReplyRequest,
        *,
        now: datetime,
        timezone: ZoneInfo,
        people: Mapping[int, str],
        memories: MemoryStore | None,
        index: MessageIndex | None,
        users: UserStore | None,
        guilds: GuildStore | None,
        max_tokens: int,
        model: str | None,
    ) -> None:
        self._request = request
        self._now = now
        self._zone = timezone
        self._people = dict(people)
        self._memories = memories
        self._index = index
        self._users = users
        self._guilds = guilds
        self._max_tokens = max_tokens
        self._model = model

    async def call(self, call: ToolCall) -> ToolOutcome:
        """Run one tool call; never raises (a failure is the tool's answer)."""
        record: dict[str, Any] = {"name": call.name}
        try:
            arguments = call.parsed_arguments()
        except BarkeeperError:
            record["error"] = "arguments are not a JSON object"
            return ToolOutcome("error: the arguments were not a JSON object", record)
        wanted = _ARGUMENTS.get(call.name)
        if wanted is None:
            record["error"] = "unknown tool"
            return ToolOutcome(f"error: there is no tool called {quote(call.name)}", record)
        value = arguments.get(wanted)
        ignored = sorted(k for k in arguments if k != wanted)
        record["arguments"] = {wanted: value if isinstance(value, str) else None}
        if ignored:
            record["ignored"] = ignored
        if not isinstance(value, str) or not value.strip():
            record["error"] = f"missing {wanted}"
            return ToolOutcome(f"error: {wanted} must be a non-empty string", record)
        try:
            if call.name == "search_channel_history":
                text = await self._search_history(value)
            elif call.name == "recall_memories":
                text = await self._recall(value)
            else:
                text = await self._lookup(value)
        except BarkeeperError as exc:
            _log.warning("tool %s failed: %s", call.name, exc)
            record["error"] = type(exc).__name__
            text = "error: that lookup failed just now"
        if ignored:
            text = (
                f"(note: this tool acts only for {self._author_label()} in this channel; "
                f"ignored {', '.join(ignored)})\n{text}"
            )
        text = self._fit(text)
        record["result_chars"] = len(text)
        return ToolOutcome(text, record)

    def _author_label(self) -> str:
        author = self._request.author
        name = clean_name(author.display_name)
        return f"{name}({author.discord_id})" if author.discord_id else name

    def _fit(self, text: str) -> str:
        if count_tokens(text, model=self._model) <= self._max_tokens:
            return text
        lines = text.split("\n")
        while (
            len(lines) > 1 and count_tokens("\n".join(lines), model=self._model) > self._max_tokens
        ):
            lines.pop()
        return "\n".join(lines)[: self._max_tokens * 4]

    async def _search_history(self, query: str) -> str:
        place = self._request.place
        if self._index is None:
            return "no older messages are indexed, so none can be searched"
        if place.channel_id is None:
            return "no older history can be searched here"
        hits = await self._index.search(
            discord_channel_scope(place.channel_id), query, k=10, token_budget=self._max_tokens
        )
        current = self._request.message.id
        lines = []
        for hit in hits:
            turn = hit.item
            if current is not None and (
                turn.discord_message_id is None or turn.discord_message_id >= current
            ):
                continue  # only what was written before the message being answered
            moment = (
                f"[{when(turn.occurred_at, self._now, self._zone)}] " if turn.occurred_at else ""
            )
            lines.append(f"{moment}{quote(turn.content)}")
        if not lines:
            return "nothing found in this channel's older messages"
        return "older messages of this channel, best match first:\n" + "\n".join(lines)

    async def _recall(self, query: str) -> str:
        if self._memories is None:
            return "no memories are available"
        author = self._request.author
        hits = await self._memories.search(
            author.user_id,
            query,
            k=10,
            token_budget=self._max_tokens,
            # in a guild channel, never the sensitive types (grief, attachment, coping)
            memory_types=memory_types_for(self._request.place.kind, MEMORY_TYPES),  # type: ignore[arg-type]
        )
        if not hits:
            return f"you remember nothing about that for {self._author_label()}"
        lines = [
            f"- #{h.item.id} {h.item.memory_type}, learnt "
            f"{when(h.item.created_at, self._now, self._zone)}: {quote(h.item.content)}"
            for h in hits
        ]
        return f"what you remember about {self._author_label()}:\n" + "\n".join(lines)

    async def _lookup(self, name_or_id: str) -> str:
        wanted = name_or_id.strip().removeprefix("<@").removesuffix(">").lstrip("!")
        target: int | None = None
        if wanted.isdigit() and int(wanted) in self._people:
            target = int(wanted)
        else:
            folded = clean_name(wanted).casefold()
            for discord_id, name in self._people.items():
                if clean_name(name).casefold() == folded:
                    target = discord_id
                    break
        if target is None:
            return f"no one called {quote(name_or_id)} wrote in this conversation"
        lines = [f"name: {quote(self._people[target])}", f"discord id: {target}"]
        user = await self._users.get_by_discord_id(target) if self._users is not None else None
        if user is not None:
            lines.append(f"display name: {quote(user.display_name)}")
            lines.append(f"first seen: {when(user.first_seen_at, self._now, self._zone)}")
            place = self._request.place
            if self._guilds is not None and place.guild_id is not None:
                guild = await self._guilds.get_guild_by_discord_id(place.guild_id)
                member = await self._guilds.get_member(guild.id, user.id) if guild else None
                if member is not None:
                    if member.guild_nickname:
                        lines.append(f"nickname here: {quote(member.guild_nickname)}")
                    if member.roles:
                        lines.append("roles here: " + ", ".join(quote(r) for r in member.roles))
        return "\n".join(lines)
