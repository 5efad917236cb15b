"""Helpers shared by the backfill tests: emulator specs and comparison with the ground truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from barkeeper.db import Database
from barkeeper.history import sanitize_text, summarize_content
from barkeeper.testing.discord import DiscordEmulator, EmulatorSpec

MESSAGES_ROUTE = "GET /channels/{channel_id}/messages"
#: Limits loose enough never to bind (tests of rate limits set their own).
FAST: dict[str, Any] = {"route_limit": 10_000, "global_limit": 0}


def spec(**changes: Any) -> EmulatorSpec:
    """An emulator spec: 3 channels of 300 messages, no binding limits, unless changed."""
    base: dict[str, Any] = {"seed": 17, "channels": 3, "messages_per_channel": 300, **FAST}
    base.update(changes)
    return EmulatorSpec(**base)


def expected_row(emu: DiscordEmulator, record: dict[str, Any]) -> dict[str, Any]:
    """What the cache must hold for one ground-truth record (computed from the truth alone)."""
    user = emu.world.users[record["author_id"]]
    content = summarize_content(
        record["content"],
        attachment_urls=[a["url"] for a in record["attachments"]],
        embeds_count=len(record["embeds"]),
    )
    edited = record["edited_timestamp"]
    return {
        "content": sanitize_text(content)[0],
        "author_id": record["author_id"],
        "author_name": sanitize_text(user.global_name or user.username)[0],
        "author_is_bot": record["author_bot"],
        "guild_id": record["guild_id"],
        "reply_to_id": record["reply_to"],
        "edited_at": dt.datetime.fromisoformat(edited) if edited else None,
        "attachments": [a["filename"] for a in record["attachments"]],
        "embeds_count": len(record["embeds"]),
    }


@dataclass
class Comparison:
    """How the cache compares with the emulator's truth."""

    compared: int = 0
    gaps: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    duplicates: int = 0
    different: list[tuple[int, str]] = field(default_factory=list)
    count_mismatch: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.gaps or self.extra or self.duplicates or self.different or self.count_mismatch
        )

    def __str__(self) -> str:
        return (
            f"compared={self.compared} gaps={len(self.gaps)} extra={len(self.extra)} "
            f"duplicates={self.duplicates} different={self.different[:3]} "
            f"count_mismatch={self.count_mismatch}"
        )


async def compare_with_truth(
    db: Database, emu: DiscordEmulator, channel_ids: Iterable[int]
) -> Comparison:
    """Compare every cached message of ``channel_ids`` with the truth, field by field."""
    result = Comparison()
    truth = emu.truth()
    async with db.acquire() as conn:
        for cid in channel_ids:
            rows = await conn.fetch(
                "SELECT message_id, content, author_id, author_name, author_is_bot, guild_id, "
                "reply_to_id, edited_at, attachments, embeds_count "
                "FROM discord_messages WHERE channel_id = $1 ORDER BY message_id",
                cid,
            )
            ids = [r["message_id"] for r in rows]
            result.duplicates += len(ids) - len(set(ids))
            counter = await conn.fetchval(
                "SELECT message_count FROM discord_channels WHERE channel_id = $1", cid
            )
            if (counter or 0) != len(ids):
                result.count_mismatch.append(cid)
            cached = {r["message_id"]: r for r in rows}
            records = {r["id"]: r for r in truth[cid]}
            result.gaps += [i for i in records if i not in cached]
            result.extra += [i for i in cached if i not in records]
            for mid, record in records.items():
                row = cached.get(mid)
                if row is None:
                    continue
                result.compared += 1
                want = expected_row(emu, record)
                got = {
                    **{k: row[k] for k in want if k != "attachments"},
                    "attachments": [a["filename"] for a in row["attachments"]],
                }
                for key, value in want.items():
                    if got[key] != value:
                        result.different.append((mid, key))
    return result


async def cursors(db: Database, channel_id: int) -> dict[str, Any]:
    """The channel's status row as a dict (``{}`` when it has none)."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM discord_channels WHERE channel_id = $1", channel_id
        )
    return {} if row is None else dict(row)


class RecordingProxy:
    """An HTTP proxy in front of the emulator that records every history request.

    ``history`` holds ``(channel_id, before, after, limit)`` per
    ``GET /channels/{id}/messages`` that got a 200 answer, whoever sent it (any process).
    """

    def __init__(self, origin: str) -> None:
        self._origin = origin
        self.history: list[tuple[int, int | None, int | None, int]] = []
        self._runner: Any = None
        self._session: Any = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    async def __aenter__(self) -> RecordingProxy:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
        async with self._session.request(
            request.method,
            self._origin + request.path_qs,
            headers=headers,
            data=body or None,
        ) as upstream:
            data = await upstream.read()
            status = upstream.status
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
        parts = request.path.rstrip("/").split("/")
        if request.method == "GET" and parts[-1] == "messages" and status == 200:
            q = request.query

            def opt(name: str) -> int | None:
                return int(q[name]) if name in q else None

            self.history.append(
                (int(parts[-2]), opt("before"), opt("after"), int(q.get("limit", "50")))
            )
        return web.Response(status=status, body=data, headers=out)
