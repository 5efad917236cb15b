"""``python -m barkeeper.testing.discord``: run the Discord emulator as a standalone server.

On start-up it prints the API base, the gateway URL and the token
(``DISCORD_API_BASE=…``, ``DISCORD_GATEWAY_URL=…`` and ``DISCORD_TOKEN=…`` lines, for
scripts to read); on SIGINT/SIGTERM it stops,
rewrites ``--truth`` if given, and prints the request statistics as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from barkeeper.testing.discord._server import DiscordEmulator
from barkeeper.testing.discord._spec import FAULT_KINDS, EmulatorSpec

__all__ = ["build_parser", "main"]

# (flag, type, help) for the spec fields a flag sets directly.
_FIELD_FLAGS: tuple[tuple[str, type[Any], str], ...] = (
    ("--host", str, "interface to listen on (default 127.0.0.1)"),
    ("--port", int, "TCP port; 0 picks a free one (default 0)"),
    ("--seed", int, "seed of content, unexpected 429s and faults (default 0)"),
    ("--token", str, "bot token clients must send (default: generated and printed)"),
    ("--guilds", int, "generated guilds (default 1)"),
    ("--channels", int, "generated text channels, spread over the guilds (default 3)"),
    ("--messages-per-channel", int, "generated messages per channel (default 200)"),
    ("--users", int, "generated authors besides the bot (default 12)"),
    ("--start", str, "ISO time of the earliest message (default 2024-01-01T00:00:00Z)"),
    ("--empty-channels", int, "last N channels answer history with 200 [] (default 0)"),
    ("--forbidden-channels", int, "N channels before those answer 403 (default 0)"),
    ("--route-limit", int, "requests per window per route per channel; 0 = none (default 5)"),
    ("--route-window", float, "seconds per route window (default 1.0)"),
    ("--global-limit", int, "requests per global window; 0 = none (default 50)"),
    ("--global-window", float, "seconds per global window (default 1.0)"),
    ("--shared-429-rate", float, "probability of an unexpected 429 (default 0)"),
    ("--fault-rate", float, "probability of a fault per eligible request (default 0)"),
    ("--fault-slow-seconds", float, "delay of a 'slow' fault (default 1.0)"),
    ("--fault-max", int, "stop injecting faults after this many (default: never)"),
    ("--fault-seed", int, "seed of faults and unexpected 429s (default: --seed)"),
    ("--shards", int, "shard count GET /gateway/bot recommends (default 1)"),
    ("--heartbeat-interval", float, "seconds between gateway heartbeats (default 41.25)"),
    (
        "--interaction-ack-timeout",
        float,
        "seconds a bot has to answer an interaction; 0 = no limit (default 3, as Discord)",
    ),
)

_HELPER_ROUTES = """\
helper routes (no auth; JSON; snowflakes as strings; wait=S long-polls, 408 when it runs out):
  GET  /_emulator/info | /_emulator/truth | /_emulator/stats
  POST /_emulator/offline-changes?edits=N&deletes=M&new_messages=K&seed=S
  POST /_emulator/people        {"username", "global_name"?}
  POST /_emulator/messages      {"author", "channel_id" | "dm": true, "content",
                                 "reply_to"?, "mention_bot"?, "mentions"?,
                                 "attachments"?: [{"filename", "size"?, "content_type"?}]}
  PATCH|DELETE /_emulator/messages/CHANNEL_ID/MESSAGE_ID   {"content"}
  POST /_emulator/threads       {"author", "channel_id", "name", "message_id"?}
  POST /_emulator/typing        {"user", "channel_id"}
  POST /_emulator/roles         {"name", "guild_id"?}
  PUT  /_emulator/members/USER/roles        {"role_ids": [...], "guild_id"?}
  POST /_emulator/categories    {"name", "guild_id"?, "channel_ids"?}
  PATCH /_emulator/channels/CHANNEL_ID      {"parent_id"}  (its category; null: none)
  POST /_emulator/interactions  {"user", "command", "channel_id"?, "options"?}
  GET  /_emulator/interactions/ID?wait=S&followups=N
  POST /_emulator/clicks        {"user", "message_id", "custom_id", "values"?}
  GET  /_emulator/bot-messages?channel_id=&after=&reply_to=&count=N&wait=S
  GET  /_emulator/activity?after=K          (the bot's sends, edits, deletes, typing)
  GET  /_emulator/commands                  (registered commands and every sync)
  GET  /_emulator/gateway?connected=N&wait=S
  POST /_emulator/gateway/drop|reconnect|invalidate|stop-acks|resume-acks
       ?shard_id=&resumable=true
"author"/"user" is a username (created on first use) or a user id.

Point discord.py at it with barkeeper.testing.discord.discord_py_pointed_at(
DISCORD_API_BASE, gateway_url=DISCORD_GATEWAY_URL) (in-process: running_client()).
A bot process can find the websocket itself: GET DISCORD_API_BASE/gateway answers
{"url": DISCORD_GATEWAY_URL}, as Discord's does; set discord.py's
DiscordWebSocket.DEFAULT_GATEWAY to it (a plain Client never asks on its own).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command (every flag documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m barkeeper.testing.discord",
        description=(
            "A local Discord emulator for the real discord.py: REST under /api/v10 (seeded, "
            "deterministic guilds, channels and message history with Discord's paging, "
            "errors, rate limits and optional faults) and the gateway websocket at /gateway "
            "(IDENTIFY, RESUME, messages, threads, DMs, slash commands, sharding, faults). "
            "Simulated people post and invoke commands through the helper routes below."
        ),
        epilog="Flags override the same keys of --spec.\n\n" + _HELPER_ROUTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--spec",
        type=Path,
        metavar="FILE",
        help="JSON file with EmulatorSpec fields (and optionally 'explicit' content)",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="write every message per channel (oldest first, string ids) as JSON at "
        "start-up and again on shutdown",
    )
    for flag, kind, text in _FIELD_FLAGS:
        metavar = {int: "N", float: "X"}.get(kind, flag[2:].upper())
        parser.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    parser.add_argument(
        "--fault-kinds",
        default=None,
        metavar="KINDS",
        help=f"comma-separated fault kinds to draw from (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--fault-statuses",
        default=None,
        metavar="CODES",
        help="comma-separated 5xx statuses of server_error faults (default 500,502,503)",
    )
    parser.add_argument(
        "--fault-routes",
        default=None,
        metavar="KEYS",
        help="comma-separated route keys faults apply to, e.g. "
        "'GET /channels/{channel_id}/messages' (default: all but login routes)",
    )
    parser.add_argument(
        "--fault-login",
        action="store_true",
        default=None,
        help="let faults hit the login routes too",
    )
    parser.add_argument(
        "--no-rate-limits",
        dest="rate_limits",
        action="store_false",
        default=None,
        help="never answer 429 (headers are still sent)",
    )
    parser.add_argument(
        "--granted-intents",
        default=None,
        metavar="NAMES",
        help="comma-separated privileged intents the application may use "
        "(members,presences,message_content; default all; '' for none); IDENTIFY asking "
        "for another is closed with 4014",
    )
    parser.add_argument(
        "--hostile-text",
        action="store_true",
        default=None,
        help="put NUL characters and lone surrogates into some messages",
    )
    return parser


def _spec_from_args(args: argparse.Namespace) -> EmulatorSpec:
    data: dict[str, Any] = {}
    if args.spec is not None:
        loaded = json.loads(args.spec.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.spec}: the spec must be a JSON object")
        data.update(loaded)
    names = [flag[2:].replace("-", "_") for flag, _, _ in _FIELD_FLAGS]
    names += ["fault_kinds", "fault_login", "rate_limits", "hostile_text", "granted_intents"]
    for name in names:
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.fault_statuses is not None:
        data["fault_statuses"] = [int(s) for s in args.fault_statuses.split(",") if s.strip()]
    if args.fault_routes is not None:
        data["fault_routes"] = [r.strip() for r in args.fault_routes.split(",") if r.strip()]
    return EmulatorSpec.model_validate(data)


async def _serve(spec: EmulatorSpec, truth: Path | None) -> None:
    emulator = DiscordEmulator(spec)
    await emulator.start()
    try:
        if truth is not None:
            emulator.write_truth(truth)
        channels = emulator.channel_ids()
        print(f"Discord emulator listening on {emulator.origin}")
        print(
            f"{len(emulator.guild_ids())} guilds, {len(channels)} channels, "
            f"{emulator.world.message_count()} messages, bot user {emulator.bot_user_id}"
        )
        print(f"DISCORD_API_BASE={emulator.base_url}")
        print(f"DISCORD_GATEWAY_URL={emulator.gateway_url}")
        print(f"DISCORD_TOKEN={emulator.token}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await emulator.stop()
    if truth is not None:
        emulator.write_truth(truth)
    print(json.dumps({"stats": emulator.stats.as_dict()}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad flag or spec)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = _spec_from_args(args)
    except (OSError, ValueError, ValidationError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    try:
        asyncio.run(_serve(spec, args.truth))
    except OSError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
