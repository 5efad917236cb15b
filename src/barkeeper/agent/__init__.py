"""The brain: one reply pipeline for Discord and the terminal, with the stores injected.

- :class:`Agent`: :meth:`~Agent.reply` answers a :class:`ReplyRequest` (or
  :meth:`~Agent.stream` it piece by piece): the author's relevant memories, the
  channel's history strictly before the message, the reply chain and thread
  starter, the session's earlier exchanges, all within ``BARKEEPER_CONTEXT_TOKENS``
  (oldest history cut first, and recorded); tools bound to the author and the
  channel; every reply a run (:class:`RunRecord`) that ``/why`` reads back with
  :meth:`~Agent.last_run`; memory work handed off without waiting.
- :func:`build_agent`: all of it on a database, from the settings.

Example::

    agent = build_agent(db, settings, memory_sink=worker.submit)
    request = ReplyRequest(
        author=Author(user.id, user.display_name, discord_id=user.discord_id),
        place=Place.guild(guild_id, channel_id, channel_name="general"),
        message=IncomingMessage("evening!", created_at=message.created_at, id=message.id),
    )
    async for piece in agent.stream(request):
        ...  # edit the Discord message
"""

from barkeeper.agent._agent import Agent, AgentConfig, MemorySink, ReplyStream
from barkeeper.agent._context import ContextBudget
from barkeeper.agent._factory import build_agent, build_chat_model
from barkeeper.agent._persona import DEFAULT_PERSONA
from barkeeper.agent._request import (
    AgentReply,
    Author,
    IncomingMessage,
    Place,
    PlaceKind,
    QuotedMessage,
    ReplyRequest,
    RunRecord,
)
from barkeeper.agent._tools import TOOL_DEFINITIONS

__all__ = [
    "DEFAULT_PERSONA",
    "TOOL_DEFINITIONS",
    "Agent",
    "AgentConfig",
    "AgentReply",
    "Author",
    "ContextBudget",
    "IncomingMessage",
    "MemorySink",
    "Place",
    "PlaceKind",
    "QuotedMessage",
    "ReplyRequest",
    "ReplyStream",
    "RunRecord",
    "build_agent",
    "build_chat_model",
]
