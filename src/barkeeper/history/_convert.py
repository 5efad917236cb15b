"""Build :class:`StoredMessage` from a discord.py message or from Discord's raw JSON.

Content is summarised the way Junkie did, so the language model sees what a message
carried: the text, then one ``[Attachment: url]`` line per file, ``[Sticker: name]``
per sticker, ``[Forwarded message]`` followed by a forwarded message's own summary,
``[Poll: question]``, and ``[Embed: N embed(s)]``. Attachments also stay structured
(:class:`Attachment`). A message with no text but an attachment is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from barkeeper.errors import InvalidInputError
from barkeeper.history._model import Attachment, StoredMessage

if TYPE_CHECKING:
    import discord

__all__ = ["message_from_discord", "message_from_payload", "summarize_content"]

#: Discord's message type of a reply.
_REPLY_TYPE = 19
#: ``message_reference.type`` of a forward (0 is a reply / default reference).
_FORWARD_REFERENCE = 1


def summarize_content(
    text: str,
    *,
    attachment_urls: Iterable[str] = (),
    embeds_count: int = 0,
    sticker_names: Iterable[str] = (),
    forwarded: Sequence[str] = (),
    poll_question: str | None = None,
) -> str:
    """The content stored for a message: its text plus one summary line per extra.

    Args:
        text: the message's own text (may be empty).
        attachment_urls: one ``[Attachment: url]`` line each.
        embeds_count: ``[Embed: N embed(s)]`` when above zero.
        sticker_names: one ``[Sticker: name]`` line each.
        forwarded: summaries of forwarded messages, each after ``[Forwarded message]``.
        poll_question: ``[Poll: question]``.

    Returns:
        The lines joined by newlines (no leading newline when ``text`` is empty).
    """
    parts = [text] if text else []
    for summary in forwarded:
        parts.append("[Forwarded message]")
        if summary:
            parts.append(summary)
    if poll_question is not None:
        parts.append(f"[Poll: {poll_question}]")
    parts.extend(f"[Attachment: {url}]" for url in attachment_urls)
    parts.extend(f"[Sticker: {name}]" for name in sticker_names)
    if embeds_count > 0:
        parts.append(f"[Embed: {embeds_count} embed(s)]")
    return "\n".join(parts)


def message_from_discord(message: discord.Message) -> StoredMessage:
    """Convert a discord.py message.

    Args:
        message: a message from an event, ``channel.history()`` or ``fetch_message``.

    Returns:
        The message as the cache keeps it. ``author_name`` is the author's display
        name (server nickname, else global name, else username).
    """
    author = message.author
    attachments = tuple(
        Attachment(a.url, a.filename, a.content_type, a.size) for a in message.attachments
    )
    forwarded = [
        summarize_content(
            snap.content,
            attachment_urls=[a.url for a in snap.attachments],
            embeds_count=len(snap.embeds),
            sticker_names=[s.name for s in snap.stickers],
        )
        for snap in getattr(message, "message_snapshots", ()) or ()
    ]
    poll = message.poll
    question = None if poll is None else str(poll.question)
    content = summarize_content(
        message.content,
        attachment_urls=[a.url for a in attachments],
        embeds_count=len(message.embeds),
        sticker_names=[s.name for s in message.stickers],
        forwarded=forwarded,
        poll_question=question,
    )
    ref = message.reference
    reply_to = ref.message_id if ref is not None and message.type.value == _REPLY_TYPE else None
    guild = message.guild
    return StoredMessage(
        message_id=message.id,
        channel_id=message.channel.id,
        guild_id=None if guild is None else guild.id,
        author_id=author.id,
        author_name=author.display_name,
        author_is_bot=author.bot,
        content=content,
        reply_to_id=reply_to,
        attachments=attachments,
        embeds_count=len(message.embeds),
        edited_at=message.edited_at,
    )


def _optional_int(payload: Mapping[str, Any], key: str) -> int | None:
    raw = payload.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidInputError(f"Discord message payload: {key!r} is not an integer: {raw!r}")
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(
            f"Discord message payload: {key!r} is not an integer: {raw!r}"
        ) from None


def _required_int(payload: Mapping[str, Any], key: str) -> int:
    value = _optional_int(payload, key)
    if value is None:
        raise InvalidInputError(f"Discord message payload has no {key!r}")
    return value


def _objects(payload: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    raw = payload.get(key) or ()
    if not isinstance(raw, list | tuple) or not all(isinstance(x, Mapping) for x in raw):
        raise InvalidInputError(f"Discord message payload: {key!r} is not a list of objects")
    return list(raw)


def _time(raw: object, key: str) -> dt.datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidInputError(f"Discord message payload: {key!r} is not an ISO time: {raw!r}")
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInputError(
            f"Discord message payload: {key!r} is not an ISO time: {raw!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _payload_summary(payload: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...], int]:
    attachments = tuple(
        Attachment(
            url=str(a.get("url") or ""),
            filename=str(a.get("filename") or ""),
            content_type=None if a.get("content_type") is None else str(a["content_type"]),
            size=_optional_int(a, "size") or 0,
        )
        for a in _objects(payload, "attachments")
    )
    embeds = len(_objects(payload, "embeds"))
    forwarded = []
    for snap in _objects(payload, "message_snapshots"):
        inner = snap.get("message")
        forwarded.append(_payload_summary(inner)[0] if isinstance(inner, Mapping) else "")
    poll = payload.get("poll")
    question = None
    if isinstance(poll, Mapping):
        media = poll.get("question")
        question = str(media.get("text") or "") if isinstance(media, Mapping) else ""
    content = summarize_content(
        str(payload.get("content") or ""),
        attachment_urls=[a.url for a in attachments],
        embeds_count=embeds,
        sticker_names=[str(s.get("name") or "") for s in _objects(payload, "sticker_items")],
        forwarded=forwarded,
        poll_question=question,
    )
    return content, attachments, embeds


def message_from_payload(
    payload: Mapping[str, Any], *, guild_id: int | None = None
) -> StoredMessage:
    """Convert Discord's JSON message object (REST or gateway ``MESSAGE_CREATE``).

    Args:
        payload: the decoded JSON object, snowflakes as strings or ints.
        guild_id: the server, when the payload does not carry ``guild_id`` (REST
            message objects do not).

    Returns:
        The message as the cache keeps it. ``author_name`` is ``member.nick`` (gateway
        events in servers), else ``author.global_name``, else ``author.username``.

    Raises:
        InvalidInputError: a required field (``id``, ``channel_id``, ``author.id``) is
            missing or malformed.
    """
    if not isinstance(payload, Mapping):
        raise InvalidInputError(f"a Discord message payload is a JSON object, got {payload!r}")
    author = payload.get("author")
    if not isinstance(author, Mapping):
        raise InvalidInputError("Discord message payload has no 'author' object")
    member = payload.get("member")
    nick = member.get("nick") if isinstance(member, Mapping) else None
    name = nick or author.get("global_name") or author.get("username") or ""
    content, attachments, embeds = _payload_summary(payload)
    reply_to = None
    ref = payload.get("message_reference")
    if isinstance(ref, Mapping) and payload.get("type") == _REPLY_TYPE:
        if (ref.get("type") or 0) != _FORWARD_REFERENCE:
            reply_to = _optional_int(ref, "message_id")
    return StoredMessage(
        message_id=_required_int(payload, "id"),
        channel_id=_required_int(payload, "channel_id"),
        guild_id=_optional_int(payload, "guild_id") or guild_id,
        author_id=_required_int(author, "id"),
        author_name=str(name),
        author_is_bot=bool(author.get("bot", False)),
        content=content,
        reply_to_id=reply_to,
        attachments=attachments,
        embeds_count=embeds,
        edited_at=_time(payload.get("edited_timestamp"), "edited_timestamp"),
    )
