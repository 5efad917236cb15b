"""Consolidation: new facts against a user's existing memories (add, update, invalidate, none).

For each candidate fact of one message:

1. The user's ``k`` most similar live memories are fetched (:meth:`MemoryStore.similar`:
   one user's rows, at most ``k`` of them, however many the user has).
2. **Without the model**, a duplicate among them is caught (:func:`duplicate_kind`:
   the same words, the fact's words inside a memory, or at least 70% of the content
   words shared, Loyal Companion's rule). The memory is *confirmed*: its sources
   gain the message and its confidence rises if the new one is higher.
3. A fact whose neighbours are all unrelated (no shared word, cosine under
   ``min_similarity``) is added without the model.
4. The other facts go to the memory model **in one call per message** with the
   union of their relevant neighbours, and it decides per fact: ``add``,
   ``update`` (memory id, new text), ``invalidate`` (memory id, reason; the fact is
   then added) or ``none``. One call per message rather than per fact: the rules are
   sent once, facts that touch the same memory are decided together, and the
   prompt stays bounded (``max_facts`` x ``k`` memories, each cut to a sentence).

The model may only name memories it was shown: any other id is ignored and logged
(the guard against prompt injection, on top of the store, whose every statement is
scoped to the user). Nothing is written until every decision is made, so a failed
model call writes nothing; then a message's decisions are written in one transaction
(:meth:`MemoryStore.transaction`), so any failure among them (a database error, a
change the store refuses) writes none of them: a memory is never closed without its
replacement. Updates and invalidations go through the store's versioned API with
``changed_by="llm"`` and the model's reason.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from barkeeper.errors import BarkeeperError, InvalidInputError, NotFoundError
from barkeeper.learning._extraction import MAX_FACT_CHARS, CandidateFact, clean_fact_text
from barkeeper.learning._prompts import PromptFact, PromptMemory, consolidation_messages
from barkeeper.llm import ChatModel
from barkeeper.memory import UNSET, Memory, MemoryStore
from barkeeper.retrieval import Hit

__all__ = [
    "DEFAULT_K",
    "OVERLAP_THRESHOLD",
    "ChangeAction",
    "ConsolidationDecision",
    "ConsolidationReply",
    "Consolidator",
    "DuplicateKind",
    "MemoryChange",
    "content_words",
    "duplicate_kind",
    "word_overlap",
]

_log = logging.getLogger(__name__)

#: Similar memories fetched per fact.
DEFAULT_K = 10
#: Share of content words two facts must share to be the same fact.
OVERLAP_THRESHOLD = 0.7

DuplicateKind = Literal["exact", "substring", "overlap"]
ChangeAction = Literal["add", "update", "invalidate", "confirm", "forget"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor"})
# Function words: sharing them says nothing about sharing a fact.
_STOPWORDS = frozenset(
    """
    a an the and or but if then than so as of to in on at by for with from into onto
    about over under after before during since until up down out off i me my mine myself
    you your yours he him his she her hers they them their theirs we us our ours it its
    this that these those there here who whom whose which what when where why how
    is am are was were be been being has have had having do does did will would shall
    should can could may might must just also too very really quite still even only
    user user's users named called s t d ll m re ve
    """.split()
)


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    words = []
    for word in _WORD.findall(folded):
        if word.endswith("'s"):
            word = word[:-2]
        words.append(word)
    return words


def _stem(word: str) -> str:
    """A crude plural/verb-s stem, so "lives"/"live" and "dogs"/"dog" compare equal."""
    if word.endswith("n't"):
        return "not"
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """The meaningful words of ``text``: case-folded, crudely stemmed, no function words."""
    return {
        stem
        for stem in (_stem(w) for w in _words(text))
        if stem not in _STOPWORDS and stem not in _NEGATIONS
    }


def word_overlap(a: str, b: str) -> float:
    """Shared content words over the content words of the longer text (0..1)."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / max(len(wa), len(wb))


def _contains(haystack: list[str], needle: list[str]) -> bool:
    if not needle or len(needle) > len(haystack):
        return False
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _negated(text: str) -> bool:
    return any(_stem(w) in _NEGATIONS for w in _words(text))


def _numbers(text: str) -> set[str]:
    return {w for w in _words(text) if any(c.isdigit() for c in w)}


def duplicate_kind(candidate: str, existing: str) -> DuplicateKind | None:
    """Whether ``candidate`` says nothing that ``existing`` does not, and how we know.

    - ``exact``: the same words (case, spacing and punctuation aside);
    - ``substring``: the candidate's words appear, in order, inside the existing
      text. Only this direction: an existing memory inside a longer candidate
      means the candidate adds something, which is for the model to weigh;
    - ``overlap``: at least :data:`OVERLAP_THRESHOLD` of the content words are
      shared (over the longer text's), unless the two differ in a number or in
      negation ("Is 30" / "Is 31", "Likes cats" / "Does not like cats").

    Args:
        candidate: The new fact.
        existing: A memory's text.

    Returns:
        The kind of duplicate, or ``None``.

    Example:
        >>> duplicate_kind("likes green tea", "Likes green tea and oolong.")
        'substring'
    """
    a, b = _words(candidate), _words(existing)
    if not a or not b:
        return None
    if a == b:
        return "exact"
    if _contains(b, a):
        return "substring"
    if _numbers(candidate) != _numbers(existing) or _negated(candidate) != _negated(existing):
        return None
    if word_overlap(candidate, existing) >= OVERLAP_THRESHOLD:
        return "overlap"
    return None


# --- the model's answer -----------------------------------------------------------------


class ConsolidationDecision(BaseModel):
    """What to do with one new fact (the JSON the memory model must produce)."""

    model_config = ConfigDict(extra="ignore")

    fact: int = Field(description="The new fact's number.")
    action: Literal["add", "update", "invalidate", "none"] = Field(
        description="add, update (needs memory_id and content), invalidate (needs "
        "memory_id and reason) or none."
    )
    memory_id: int | None = Field(None, description="The existing memory concerned.")
    content: str | None = Field(None, description="For update: the memory's new text.")
    reason: str | None = Field(None, description="Why, in a few words.")

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"delete": "invalidate", "noop": "none", "nothing": "none"}.get(value, value)
        return value


class ConsolidationReply(BaseModel):
    """The memory model's whole answer to a consolidation prompt."""

    model_config = ConfigDict(extra="ignore")

    decisions: list[ConsolidationDecision] = Field(description="One decision per new fact.")


@dataclass(frozen=True, slots=True)
class MemoryChange:
    """One change made to a user's memories.

    Attributes:
        action: ``add``, ``update``, ``invalidate``, ``confirm`` (a duplicate seen
            again) or ``forget``.
        memory_id: The memory changed.
        memory: Its state after the change (``None`` once forgotten).
        changed_by: Who decided: ``extraction`` (rules), ``llm`` (the memory model)
            or ``user`` (an explicit request).
        reason: Why, as recorded in the memory's history.
    """

    action: ChangeAction
    memory_id: int
    memory: Memory | None
    changed_by: str
    reason: str | None = None


@dataclass(slots=True)
class _Plan:
    """What consolidation will write, decided before anything is written."""

    confirms: list[tuple[int, Memory, str | None]] = field(default_factory=list)
    adds: list[tuple[int, str, str | None]] = field(default_factory=list)  # fact, by, reason
    updates: list[tuple[int, Memory, str, str | None]] = field(default_factory=list)
    invalidations: list[tuple[int, Memory, str | None]] = field(default_factory=list)


class Consolidator:
    """Merges a message's candidate facts into its author's memories.

    Args:
        store: The memory store.
        model: The memory model (asked only when a rule cannot decide).
        k: Similar memories fetched and shown per fact.
        min_similarity: A neighbour sharing no word with the fact is shown to the
            model only if its cosine similarity reaches this.
        temperature: Sampling temperature sent to the model.
        max_tokens: Cap on the model's answer.

    Raises:
        InvalidInputError: ``k`` or ``min_similarity`` is out of range.
    """

    def __init__(
        self,
        store: MemoryStore,
        model: ChatModel,
        *,
        k: int = DEFAULT_K,
        min_similarity: float = 0.3,
        temperature: float | None = 0.0,
        max_tokens: int | None = 1024,
    ) -> None:
        if not 1 <= k <= 50:
            raise InvalidInputError(f"k must be within 1..50, not {k}")
        if not -1.0 <= min_similarity <= 1.0:
            raise InvalidInputError(f"min_similarity must be within -1..1, not {min_similarity}")
        self._store = store
        self._model = model
        self.k = k
        self.min_similarity = min_similarity
        self._temperature = temperature
        self._max_tokens = max_tokens

    def _relevant(self, hit: Hit[Memory]) -> bool:
        if hit.parts.text > 0:
            return True
        return hit.parts.vector is not None and hit.parts.vector >= self.min_similarity

    async def _embed(self, texts: list[str]) -> list[list[float] | None]:
        try:
            vectors = await self._store.embedder.embed(texts)
        except (BarkeeperError, OSError, TimeoutError) as exc:
            _log.warning("embedding new facts failed (%s); searching by text only", exc)
            return [None] * len(texts)
        return list(vectors)

    async def consolidate(
        self,
        user_id: int,
        facts: Sequence[CandidateFact],
        *,
        source_message_id: int | None = None,
        guild_id: int | None = None,
        extraction_context: str | None = None,
    ) -> list[MemoryChange]:
        """Add, confirm, update or invalidate ``user_id``'s memories for ``facts``.

        Args:
            user_id: The internal id of the author of the message the facts came
                from: the only user whose memories are read or changed.
            facts: The candidate facts.
            source_message_id: The message they came from (recorded as a source).
            guild_id: Where it was said.
            extraction_context: Kept with added memories for audit (the message).

        Returns:
            The changes made, in the order made.

        Raises:
            LLMError: The model call failed (nothing was written).
            InvalidInputError: The store refused a change (nothing was written).
            NotFoundError: No user has ``user_id`` (nothing was written).
            DatabaseError: The database failed (nothing was written).
        """
        unique: list[CandidateFact] = []
        for fact in facts:
            if not any(duplicate_kind(fact.content, u.content) for u in unique):
                unique.append(fact)
        if not unique:
            return []
        vectors = await self._embed([f.content for f in unique])
        plan = _Plan()
        ask: list[int] = []  # indexes of facts the model must decide
        neighbours: dict[int, Memory] = {}  # shown to the model, in order of first sight
        for index, (fact, vector) in enumerate(zip(unique, vectors, strict=True)):
            hits = await self._store.similar(user_id, fact.content, k=self.k, embedding=vector)
            duplicate = next(
                (
                    (h.item, kind)
                    for h in hits
                    if (kind := duplicate_kind(fact.content, h.item.content)) is not None
                ),
                None,
            )
            if duplicate is not None:
                plan.confirms.append((index, duplicate[0], f"said again ({duplicate[1]} match)"))
                continue
            related = [h.item for h in hits if self._relevant(h)]
            if not related:
                plan.adds.append((index, "extraction", "new fact"))
                continue
            ask.append(index)
            for memory in related:
                neighbours.setdefault(memory.id, memory)
        if ask:
            await self._decide(unique, ask, neighbours, plan)
        return await self._apply(
            user_id,
            unique,
            vectors,
            plan,
            source_message_id=source_message_id,
            guild_id=guild_id,
            extraction_context=extraction_context,
        )

    async def _decide(
        self,
        facts: list[CandidateFact],
        ask: list[int],
        shown: dict[int, Memory],
        plan: _Plan,
    ) -> None:
        """One model call for the facts in ``ask``; its valid decisions join ``plan``."""
        prompt_facts = [
            PromptFact(n, facts[i].memory_type, facts[i].temporal_relevance, facts[i].content)
            for n, i in enumerate(ask, start=1)
        ]
        prompt_memories = [PromptMemory(m.id, m.memory_type, m.content) for m in shown.values()]
        reply = await self._model.complete_json(
            consolidation_messages(prompt_facts, prompt_memories),
            ConsolidationReply,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
        )
        added: set[int] = set()
        touched: set[int] = set()
        decided: set[int] = set()
        for decision in reply.decisions:
            if not 1 <= decision.fact <= len(ask):
                _log.warning(
                    "the memory model decided on fact %d, which does not exist; ignored",
                    decision.fact,
                )
                continue
            index = ask[decision.fact - 1]
            reason = _clean_reason(decision.reason)
            if decision.action == "none":
                decided.add(index)
                continue
            if decision.action == "add":
                if index not in added:
                    plan.adds.append((index, "llm", reason or "new fact"))
                    added.add(index)
                decided.add(index)
                continue
            memory = shown.get(decision.memory_id) if decision.memory_id is not None else None
            if memory is None:
                # Never act on a memory the model was not shown: it may be another
                # user's, named by a message trying to reach it.
                _log.warning(
                    "the memory model asked to %s memory %s, which it was not shown; ignored",
                    decision.action,
                    decision.memory_id,
                )
                continue
            if memory.id in touched:
                _log.info(
                    "memory %d already changed in this batch; %s ignored",
                    memory.id,
                    decision.action,
                )
                continue
            touched.add(memory.id)
            decided.add(index)
            if decision.action == "update":
                content = clean_fact_text(decision.content or "") or facts[index].content
                if len(content) > MAX_FACT_CHARS:
                    content = facts[index].content
                plan.updates.append((index, memory, content, reason))
            else:
                plan.invalidations.append((index, memory, reason))
                if index not in added:
                    plan.adds.append((index, "llm", reason or "replaces a memory no longer true"))
                    added.add(index)
        for index in ask:
            if index not in decided:
                _log.info("the memory model made no valid decision on a fact; nothing stored")

    async def _apply(
        self,
        user_id: int,
        facts: list[CandidateFact],
        vectors: list[list[float] | None],
        plan: _Plan,
        *,
        source_message_id: int | None,
        guild_id: int | None,
        extraction_context: str | None,
    ) -> list[MemoryChange]:
        sources = [source_message_id] if source_message_id is not None else []
        # An update in the model's own words needs a vector of them: made before the
        # transaction, which must not wait on the embedder (embed=False below: a text
        # whose embedding failed is stored without a vector, for reembed).
        reworded = [
            content for index, _, content, _ in plan.updates if content != facts[index].content
        ]
        new_vectors = (
            dict(zip(reworded, await self._embed(reworded), strict=True)) if reworded else {}
        )
        changes: list[MemoryChange] = []
        async with self._store.transaction():
            for index, memory, reason in plan.confirms:
                fact = facts[index]
                try:
                    after = await self._store.update(
                        user_id,
                        memory.id,
                        confidence=max(memory.confidence, fact.confidence),
                        importance=max(memory.importance, fact.importance),
                        add_source_message_ids=sources,
                        changed_by="extraction",
                        reason=reason,
                    )
                except NotFoundError:
                    continue  # expired or closed meanwhile: nothing to confirm
                changes.append(MemoryChange("confirm", memory.id, after, "extraction", reason))
            for _, memory, reason in plan.invalidations:
                try:
                    after = await self._store.invalidate(
                        user_id, memory.id, changed_by="llm", reason=reason
                    )
                except NotFoundError:
                    # Closed meanwhile: what the fact contradicts is already gone, so
                    # adding the fact (below) is still right.
                    _log.info("memory %d was no longer valid; not invalidated", memory.id)
                    continue
                changes.append(MemoryChange("invalidate", memory.id, after, "llm", reason))
            for index, memory, content, reason in plan.updates:
                fact = facts[index]
                try:
                    after = await self._store.update(
                        user_id,
                        memory.id,
                        content=content,
                        confidence=fact.confidence,
                        importance=max(memory.importance, fact.importance),
                        temporal_relevance=fact.temporal_relevance,
                        expires_at=fact.expires_at if fact.expires_at is not None else UNSET,
                        add_source_message_ids=sources,
                        embedding=(
                            vectors[index] if content == fact.content else new_vectors.get(content)
                        ),
                        embed=False,
                        changed_by="llm",
                        reason=reason,
                    )
                except NotFoundError:
                    _log.info("memory %d was no longer valid; not updated", memory.id)
                    continue
                changes.append(MemoryChange("update", memory.id, after, "llm", reason))
            for index, by, reason in plan.adds:
                fact = facts[index]
                added = await self._store.add(
                    user_id,
                    fact.content,
                    memory_type=fact.memory_type,
                    confidence=fact.confidence,
                    importance=fact.importance,
                    temporal_relevance=fact.temporal_relevance,
                    source="conversation",
                    source_message_ids=sources,
                    extraction_context=extraction_context,
                    guild_id=guild_id,
                    expires_at=fact.expires_at,
                    embedding=vectors[index],
                    embed=False,
                    changed_by=by,
                    reason=reason,
                )
                changes.append(MemoryChange("add", added.id, added, by, reason))
        return changes


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    text = clean_fact_text(reason)
    return text[:300] or None
