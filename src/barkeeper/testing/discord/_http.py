"""HTTP plumbing shared by the emulator's REST handlers: Discord error replies, snowflake
parsing, JSON encoding and message bodies (JSON or multipart with files).

Pure helpers; nothing here holds state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from aiohttp import BodyPartReader, web

from barkeeper.testing.discord._spec import ExplicitAttachment

__all__ = [
    "Upload",
    "_Reply",
    "_constant",
    "_error",
    "_form_error",
    "_json_bytes",
    "_parse_json",
    "_read_message_body",
    "_snowflake",
]

#: A file the bot uploaded: what Discord records about it, and its bytes.
Upload: TypeAlias = tuple[ExplicitAttachment, bytes]

_SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")


class _Reply(Exception):
    """Raised by handlers to answer with a Discord error at once."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, message: str, code: int) -> _Reply:
    return _Reply(status, {"message": message, "code": code})


def _form_error(field_name: str, code: str, message: str) -> _Reply:
    return _Reply(
        400,
        {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field_name: {"_errors": [{"code": code, "message": message}]}},
        },
    )


def _snowflake(value: str, field_name: str) -> int:
    if not _SNOWFLAKE.match(value):
        raise _form_error(field_name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
    return int(value)


def _json_bytes(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates representable (as \udxxx escapes).
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def _read_message_body(
    request: web.Request,
) -> tuple[dict[str, Any], list[Upload]]:
    files: list[Upload] = []
    payload: Any = {}
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            if part.name == "payload_json":
                payload = _parse_json(data)
            elif part.name and part.name.startswith("files["):
                content_type = part.headers.get("Content-Type")
                attachment = ExplicitAttachment(
                    filename=part.filename or "file",
                    size=len(data),
                    content_type=content_type,
                )
                files.append((attachment, data))
    elif request.can_read_body:
        payload = _parse_json(await request.read())
    if not isinstance(payload, dict):
        raise _error(400, "400: Bad Request", 0)
    return payload, files


def _constant(data: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """A renderer giving every session the same event data."""
    return lambda _session: data


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise _error(400, "400: Bad Request", 0) from None
