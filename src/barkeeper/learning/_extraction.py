"""Fact extraction: which messages to read, and the typed facts the memory model finds.

- :class:`UserMessage`: a message as the memory layer sees it (its author's internal
  id, text, Discord message id, optional recent context).
- :func:`skip_reason`: the cheap skips that need no model (under 20 characters, bot
  commands such as ``!play`` or ``/help``, bare greetings and thanks).
- :func:`is_sampled`: the share of messages examined (``BARKEEPER_FACT_EXTRACTION_RATE``),
  decided by a hash of the message id so a retry or a test sees the same answer.
- :class:`FactExtractor`: one structured-output call to the memory model per message,
  validated by :class:`ExtractionReply`; lenient with values (an unknown type becomes
  ``general``, a confidence of 1.3 becomes 1.0), strict with shape (no ``facts`` list
  is :class:`~barkeeper.errors.LLMOutputError`).

Facts carry no owner: whoever stores them stores them for the message's author,
never for anyone the message mentions. This module never writes to the database.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from barkeeper.errors import InvalidInputError
from barkeeper.learning._prompts import extraction_messages
from barkeeper.llm import ChatModel
from barkeeper.memory import (
    MEMORY_TYPES,
    TEMPORAL_RELEVANCES,
    MemoryType,
    TemporalRelevance,
)

__all__ = [
    "MAX_EXPIRY_DAYS",
    "MAX_FACT_CHARS",
    "MIN_EXTRACTION_CHARS",
    "CandidateEvent",
    "CandidateFact",
    "EventKind",
    "ExtractedEvent",
    "ExtractedFact",
    "ExtractionReply",
    "FactExtractor",
    "SkipReason",
    "UserMessage",
    "clean_fact_text",
    "is_sampled",
    "skip_reason",
]

_log = logging.getLogger(__name__)

#: Messages shorter than this (after trimming) are never examined (Loyal Companion's rule).
MIN_EXTRACTION_CHARS = 20
#: Longest fact kept; a fact is one sentence, so longer output is a model misfire.
MAX_FACT_CHARS = 500
#: Longest expiry accepted from the model (ten years).
MAX_EXPIRY_DAYS = 3650
#: Most lines of recent conversation shown with a message.
MAX_CONTEXT_LINES = 6

SkipReason = Literal["empty", "too_short", "command", "greeting", "forgotten"]
"""Why a message was not examined without asking any model, or (``forgotten``) why
nothing was learnt from it: its author was forgotten after writing it."""

# A bot command: a prefix character directly followed by a word ("!play", "/help").
_COMMAND = re.compile(r"^[!/][^\W\d_]")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@\w+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
# Words a bare greeting, thanks or farewell is made of. A message made only of these
# (and mentions, emoji, punctuation) says nothing worth remembering.
_GREETING_WORDS = frozenset(
    """
    hi hello hey heya hiya howdy yo sup hallo hola salut morning evening afternoon night
    good gm gn goodnight goodmorning nite thanks thank you thx ty tysm tyvm cheers bye
    goodbye cya see ya later laters so much very lot lots a the all everyone everybody
    guys folks friend friends there mate mates buddy pal bartender bot again and too
    lol haha hehe ok okay kk how are you doing today tonight whats what's up going it
    hows how's is everything well welcome back nice to meet great
    """.split()
)


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A message as the memory layer sees it.

    Attributes:
        user_id: The author's internal ``users.id``: every fact learnt from this
            message is stored for this user and nobody else.
        text: What the author wrote.
        message_id: The Discord message id (or any stable id); used for sampling
            and recorded as the facts' source.
        guild_id: The Discord guild it was written in, if any.
        author_name: How to call the author in the prompt (display name).
        context: Recent lines before it (``"name: text"``, oldest first), shown to
            the model only to resolve references; nothing is learnt from them.
        created_at: When it was sent: what "Friday" or "tomorrow" in it is resolved
            against (follow-ups and reminders); ``None``: the time it is processed.
        channel_id: The channel (or DM channel) it was written in: where a follow-up
            found in it is sent.
    """

    user_id: int
    text: str
    message_id: int | None = None
    guild_id: int | None = None
    author_name: str | None = None
    context: tuple[str, ...] = field(default=())
    created_at: datetime | None = None
    channel_id: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.user_id, bool) or not isinstance(self.user_id, int):
            raise InvalidInputError(f"user_id must be an int, not {type(self.user_id).__name__}")
        if self.user_id <= 0:
            raise InvalidInputError(f"user_id must be positive, not {self.user_id}")
        if not isinstance(self.text, str):
            raise InvalidInputError(f"text must be a str, not {type(self.text).__name__}")
        if self.message_id is not None and (
            isinstance(self.message_id, bool) or not isinstance(self.message_id, int)
        ):
            raise InvalidInputError("message_id must be an int or None")
        if isinstance(self.context, str):
            raise InvalidInputError("context must be a sequence of lines, not one string")
        object.__setattr__(self, "context", tuple(str(line) for line in self.context))
        if self.created_at is not None and (
            not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None
        ):
            raise InvalidInputError("created_at must be a timezone-aware datetime or None")

    @property
    def sampling_key(self) -> str:
        """What sampling hashes: the message id, else the author and the text."""
        if self.message_id is not None:
            return f"m:{self.message_id}"
        return f"u:{self.user_id}:{self.text}"


def skip_reason(text: str) -> SkipReason | None:
    """Why ``text`` needs no extraction at all, or ``None`` if it may hold facts.

    Args:
        text: A user's message.

    Returns:
        ``"empty"``, ``"too_short"`` (under :data:`MIN_EXTRACTION_CHARS` characters),
        ``"command"`` (``!x`` or ``/x``), ``"greeting"`` (only greetings, thanks,
        farewells, mentions and emoji), or ``None``.

    Example:
        >>> skip_reason("thank you so much bartender!!")
        'greeting'
    """
    stripped = unicodedata.normalize("NFKC", text).replace("\x00", "").strip()
    if not stripped:
        return "empty"
    if _COMMAND.match(stripped):
        return "command"
    if len(stripped) < MIN_EXTRACTION_CHARS:
        return "too_short"
    words = [w.lower() for w in _WORD.findall(_MENTION.sub(" ", stripped))]
    if all(w in _GREETING_WORDS or _elongated_greeting(w) for w in words):
        return "greeting"
    return None


def _elongated_greeting(word: str) -> bool:
    """``heyyy``, ``hiii``, ``thanksss``: a greeting word with its last letter repeated."""
    squeezed = re.sub(r"(.)\1+$", r"\1", word)
    return squeezed != word and squeezed in _GREETING_WORDS


def is_sampled(key: str | int, rate: float) -> bool:
    """Whether the message with this key is examined at extraction rate ``rate``.

    Deterministic: a hash of the key, read as a number in [0, 1), is compared with
    the rate, so the same message always gets the same answer (retries, tests) and
    about ``rate`` of all messages are examined.

    Args:
        key: A stable key of the message (:attr:`UserMessage.sampling_key`).
        rate: The share examined, 0..1 (1: all, 0: none).

    Raises:
        InvalidInputError: ``rate`` is outside 0..1.
    """
    if not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"the extraction rate must be within 0..1, not {rate}")
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


# --- the model's answer -----------------------------------------------------------------


def _clamp_unit(value: Any, default: float) -> Any:
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:  # NaN
            return default
        return min(1.0, max(0.0, float(value)))
    return value


class ExtractedFact(BaseModel):
    """One fact as the memory model writes it (the JSON it must produce)."""

    model_config = ConfigDict(extra="ignore")

    type: MemoryType = Field(description="What the fact is about.")
    content: str = Field(description="The fact: one short third-person sentence.")
    confidence: float = Field(0.8, ge=0.0, le=1.0, description="How clearly it was stated.")
    importance: float = Field(0.5, ge=0.0, le=1.0, description="How much it matters.")
    temporal_relevance: TemporalRelevance = Field(
        "present", description="past, present, future or timeless."
    )
    expires_in_days: int | None = Field(
        None, description="Days until it stops mattering; null if it does not expire."
    )

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().replace(" ", "_").replace("-", "_")
            return value if value in MEMORY_TYPES else "general"
        return value

    @field_validator("temporal_relevance", mode="before")
    @classmethod
    def _known_time(cls, value: Any) -> Any:
        if value is None:
            return "present"
        if isinstance(value, str):
            value = value.strip().lower()
            return value if value in TEMPORAL_RELEVANCES else "present"
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        return _clamp_unit(value, 0.8)

    @field_validator("importance", mode="before")
    @classmethod
    def _importance(cls, value: Any) -> Any:
        return _clamp_unit(value, 0.5)

    @field_validator("expires_in_days", mode="before")
    @classmethod
    def _expiry(cls, value: Any) -> Any:
        if isinstance(value, float) and value == value and abs(value) < 1e9:
            value = round(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return None if value <= 0 else min(value, MAX_EXPIRY_DAYS)
        if value in ("", "null", "none"):
            return None
        return value


EventKind = Literal["followup", "reminder", "birthday"]
"""What a found event is: something coming to ask about afterwards, a reminder the
author asked for, their birthday."""
_EVENT_KINDS = ("followup", "reminder", "birthday")
_MAX_EVENT_CHARS = 200


class ExtractedEvent(BaseModel):
    """An upcoming thing in the author's life, as the memory model writes it.

    The model copies the day as the author wrote it (``when``: "Friday", "next week",
    "March 14"); code resolves it against the message's time, never the model.
    """

    model_config = ConfigDict(extra="ignore")

    kind: EventKind = Field("followup", description="followup, reminder or birthday.")
    what: str = Field("", description="What it is, short, second person ('your job interview').")
    when: str = Field("", description="The day exactly as the author wrote it.")
    question: str | None = Field(
        None, description="For a followup: the question to ask afterwards."
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
            return value if value in _EVENT_KINDS else "followup"
        return value

    @field_validator("what", "when", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value) if isinstance(value, int | float) else value


class ExtractionReply(BaseModel):
    """The memory model's whole answer to an extraction prompt."""

    model_config = ConfigDict(extra="ignore")

    facts: list[ExtractedFact] = Field(description="The facts; empty when there are none.")
    events: list[ExtractedEvent] = Field(
        default_factory=list, description="Upcoming things to follow up; often empty."
    )


@dataclass(frozen=True, slots=True)
class CandidateEvent:
    """An event found in a message, its day still the author's words.

    Attributes:
        kind: ``followup``, ``reminder`` or ``birthday``.
        what: What it is about.
        when: The day as written ("Friday"), resolved later against the message's
            time and the author's time zone.
        question: The follow-up question, if the model wrote one.
        recurrence: ``none``, ``weekly``, ``monthly`` or ``yearly``.
    """

    kind: EventKind
    what: str
    when: str
    question: str | None = None
    recurrence: Literal["none", "weekly", "monthly", "yearly"] = "none"


@dataclass(frozen=True, slots=True)
class CandidateFact:
    """A cleaned fact, ready for consolidation.

    Attributes:
        memory_type: What it is about.
        content: The fact.
        confidence: How clearly it was stated, 0..1.
        importance: How much it matters, 0..1.
        temporal_relevance: When it holds.
        expires_at: When it stops mattering, if it does.
    """

    memory_type: MemoryType
    content: str
    confidence: float = 0.8
    importance: float = 0.5
    temporal_relevance: TemporalRelevance = "present"
    expires_at: datetime | None = None


def clean_fact_text(text: str) -> str:
    """A fact's text with NULs removed and whitespace collapsed."""
    return " ".join(text.replace("\x00", "").split())


class FactExtractor:
    """Asks the memory model for the typed facts one message reveals about its author.

    Args:
        model: The memory model.
        max_facts: Most facts kept from one message (the most important ones).
        min_confidence: Facts stated less clearly than this are dropped.
        max_context_lines: Most lines of :attr:`UserMessage.context` shown.
        temperature: Sampling temperature sent to the model.
        max_tokens: Cap on the model's answer.

    Raises:
        InvalidInputError: A limit is out of range.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        max_facts: int = 8,
        min_confidence: float = 0.5,
        max_context_lines: int = MAX_CONTEXT_LINES,
        temperature: float | None = 0.0,
        max_tokens: int | None = 1024,
    ) -> None:
        if not 1 <= max_facts <= 50:
            raise InvalidInputError(f"max_facts must be within 1..50, not {max_facts}")
        if not 0.0 <= min_confidence <= 1.0:
            raise InvalidInputError(f"min_confidence must be within 0..1, not {min_confidence}")
        if not 0 <= max_context_lines <= 50:
            raise InvalidInputError("max_context_lines must be within 0..50")
        self._model = model
        self.max_facts = max_facts
        self.min_confidence = min_confidence
        self.max_context_lines = max_context_lines
        self._temperature = temperature
        self._max_tokens = max_tokens

    async def extract(self, message: UserMessage) -> list[CandidateFact]:
        """The facts ``message`` reveals about its author (see :meth:`extract_all`)."""
        return (await self.extract_all(message))[0]

    async def extract_all(
        self, message: UserMessage
    ) -> tuple[list[CandidateFact], list[CandidateEvent]]:
        """The facts ``message`` reveals about its author, most important first.

        Args:
            message: The message (its skips and sampling are the caller's business).

        Returns:
            At most ``max_facts`` cleaned facts, and the upcoming events the message
            mentions (at most ``max_facts``, their days as written).

        Raises:
            LLMOutputError: The model's answer was not valid, even after one retry.
            LLMRateLimitError: Still rate limited after the client's retries.
            LLMUnavailableError: The endpoint is down or kept failing.
            LLMAuthenticationError: The endpoint refused the key.
        """
        context = message.context[-self.max_context_lines :] if self.max_context_lines else ()
        reply = await self._model.complete_json(
            extraction_messages(message.text, author=message.author_name, context=context),
            ExtractionReply,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
        )
        return self.clean(reply.facts), self.clean_events(reply.events)

    def clean_events(self, events: Sequence[ExtractedEvent]) -> list[CandidateEvent]:
        """The model's events trimmed; those without a subject or a day dropped."""
        kept: list[CandidateEvent] = []
        for event in events[: self.max_facts]:
            what = clean_fact_text(event.what)[:_MAX_EVENT_CHARS]
            when = clean_fact_text(event.when)[:_MAX_EVENT_CHARS]
            if not what or not when:
                continue
            question = clean_fact_text(event.question or "")[:_MAX_EVENT_CHARS] or None
            kept.append(
                CandidateEvent(
                    event.kind,
                    what,
                    when,
                    question,
                    "yearly" if event.kind == "birthday" else "none",
                )
            )
        return kept

    def clean(
        self, facts: Sequence[ExtractedFact], *, now: datetime | None = None
    ) -> list[CandidateFact]:
        """Turn the model's facts into candidates: trimmed, filtered, capped, dated.

        Empty and over-long facts and those under ``min_confidence`` are dropped;
        the ``max_facts`` most important are kept; ``expires_in_days`` becomes an
        absolute ``expires_at``.
        """
        moment = now or datetime.now(UTC)
        kept: list[CandidateFact] = []
        for fact in facts:
            text = clean_fact_text(fact.content)
            if not text:
                continue
            if len(text) > MAX_FACT_CHARS:
                _log.warning("dropped an extracted fact of %d characters", len(text))
                continue
            if fact.confidence < self.min_confidence:
                continue
            expires = (
                moment + timedelta(days=fact.expires_in_days)
                if fact.expires_in_days is not None
                else None
            )
            kept.append(
                CandidateFact(
                    memory_type=fact.type,
                    content=text,
                    confidence=fact.confidence,
                    importance=fact.importance,
                    temporal_relevance=fact.temporal_relevance,
                    expires_at=expires,
                )
            )
        kept.sort(key=lambda f: f.importance, reverse=True)
        return kept[: self.max_facts]
