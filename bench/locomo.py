"""LoCoMo retrieval: evidence recall of barkeeper's search over raw turns and over memories.

Run: ``python bench/locomo.py PATH_TO_LOCOMO_JSON --out bench/results/locomo.json
[--database-url URL] [--embedder minilm|hashing] [--tuned-on conv-26,conv-30]``

Each conversation of the file is indexed through :class:`barkeeper.turns.MessageIndex`
under its own scope (one scope per conversation, like one user each), one session per
``add_turns`` call: a turn is ``"speaker: text"`` (plus ``[shares a photo: caption]``
when it carries an image caption), its time is its session's date, its vector is
all-MiniLM-L6-v2's of that text alone, and its full-text context (searched at half
weight, never shown) is what the index makes by default: the two turns before it and
the one after it in the same session, then the session's month and year in words;
its sentences (when it has two or more) get vectors of their own, its *pieces*
(``"speaker: sentence"``, at most 8), and its vector signal is the mean of the whole
turn's cosine and the best of its own and its pieces' (schema v9).
Every question of categories 1-4 with evidence is then asked of each system, in the
same run, on the same index:

- ``fulltext``: BM25 alone (the full-text half of ours);
- ``vector``: cosine similarity alone (the vector half: pieces included, the question
  embedded without the speaker names it gives); ``vector_whole`` the whole turn's
  cosine alone, the question embedded as it is (the vector half before schema v9);
- ``hybrid``: ours, as the bot's search tool calls it (the search embeds the question
  itself, without the names of the scope's speakers it gives: who is weighed by the
  speaker bonus, what by the vector), :data:`barkeeper.retrieval.DEFAULT_TURN_WEIGHTS`
  without recency (the conversations are years old): both signals fused (BM25 and
  cosine each divided by its best among the candidates), the bonuses for a speaker and
  a month or year the question names, then the session and neighbour terms;
  ``hybrid_k10`` the same asked for 10 hits, as the bot's tools ask (recall@20 and the
  token budgets are capped by the 10 hits);
- ``hybrid_named``: ``hybrid`` with the question's own vector, names and all: what the
  names' removal adds, in the same run;
- ``hybrid_v8`` / ``hybrid_v8_k10``: the ranking as it was at schema v8, before piece
  vectors and the names' removal (whole-turn vectors, the question's own vector, the
  weights of then: speaker 0.3, session 0.5, neighbour 0.1, vector 1): this change's
  baseline, in the same run;
- ``hybrid_before``: the same before issue 12 (speaker bonus 0.1, no date, session or
  neighbour terms, raw cosine, 20 candidates): the baseline of issue 12, in the same run;
- ``fulltext_plain`` (reference, not part of the interface): BM25 over bare turns,
  without any context: the usual "BM25 over turns" baseline;
- ``memories`` / ``memories_before``: LoCoMo's ``observation`` facts (gold memories,
  each naming the turn it came from) added through :class:`barkeeper.memory.MemoryStore`
  for one user per conversation (``valid_from`` = the session's date;
  ``extraction_context`` = the text of the turn it came from, as the bot's extraction
  keeps the message a fact was learnt from; searched at half weight, schema v8) and
  searched with ``MemoryStore.search``, with
  :data:`barkeeper.retrieval.DEFAULT_MEMORY_WEIGHTS` (now / before) without recency and
  importance; ``memories_unscaled`` with the raw cosine. A memory found counts as its turn.

Recall@k is the share of a question's evidence turns (``dia_id``) among the top k,
averaged over questions; ``recall@500tok`` / ``recall@1000tok`` the share among the
hits that fit 500 / 1,000 prompt tokens (in rank order, a hit that no longer fits
skipped, as ``token_budget`` does); ``tokens@10`` is what the top 10 cost in prompt
tokens (offline count, gpt-oss tokenizer). Evidence such as ``"D8:6; D9:17"`` is split;
ids that are malformed or absent from the conversation are dropped (counted in
``meta``); questions left without evidence are skipped.

Tuning: design choices (weights, context, fusion, BM25 parameters) were made looking
at ``--tuned-on`` conversations only (conv-26 and conv-30 of the dev file); the
others are reported separately as ``held_out``. Each question is embedded once, alone
(timed: ``meta.query_embedding_ms``); ``meta.search_latency_ms`` is per search, and
``meta.query_latency_ms_with_embedding`` the two added up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import bench_database, environment, percentile, write_json
from barkeeper.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder
from barkeeper.llm import load_token_tables
from barkeeper.memory import MemoryStore
from barkeeper.retrieval import (
    DEFAULT_MEMORY_WEIGHTS,
    DEFAULT_TURN_WEIGHTS,
    SearchMode,
    Weights,
)
from barkeeper.turns import MessageIndex, Turn

KS = (5, 10, 20)
BUDGETS = (500, 1000)
METRICS = tuple(f"recall@{k}" for k in KS) + tuple(f"recall@{b}tok" for b in BUDGETS)
SEARCH_K = 50
"""Hits asked of each search: enough to fill the 1,000-token budget."""
PRODUCT_K = 10
"""Hits the bot's search tools ask for (``hybrid_k10``)."""
UNSCALED: dict[str, Any] = {"scale_vector": False, "candidates": 20, "candidates_per_hit": 2}
"""What the defaults were before the cosine was scaled and the candidates widened
(``*_unscaled``)."""
V8_TURN_WEIGHTS = Weights(
    importance=0.0, recency=0.05, speaker=0.3, date=0.3, session=0.5, neighbour=0.1, pieces=False
)
"""Turn weights at schema v8, before piece vectors and the names' removal (``hybrid_v8``)."""
PREVIOUS_TURN_WEIGHTS = Weights(importance=0.0, recency=0.05, speaker=0.1, pieces=False, **UNSCALED)
"""Turn weights before issue 12 (no date, session or neighbour terms): the baseline."""
PREVIOUS_MEMORY_WEIGHTS = Weights(**UNSCALED)
"""Memory weights before issue 12."""
CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DEFAULT_TUNED_ON = ("conv-26", "conv-30")

# --- the data ----------------------------------------------------------------------------------

_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")


@dataclass
class Question:
    text: str
    category: int
    evidence: set[str]


@dataclass
class Observation:
    """One of LoCoMo's gold memories: a fact, the turn it came from, its session's date."""

    text: str
    dia_id: str
    when: datetime | None


@dataclass
class Conversation:
    sample_id: str
    sessions: list[list[Turn]]
    questions: list[Question]
    observations: list[Observation] = field(default_factory=list)
    dropped_evidence: int = 0
    skipped_questions: int = 0
    split_evidence: int = 0
    turn_ids: set[str] = field(default_factory=set)


def parse_session_time(text: object) -> datetime | None:
    """LoCoMo's ``"1:56 pm on 8 May, 2023"`` as a UTC datetime (None if unparseable)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def load_conversations(path: Path) -> list[Conversation]:
    """Read a LoCoMo-format file: turns per session and the questions to ask."""
    data = json.loads(path.read_text(encoding="utf-8"))
    conversations = []
    for sample in data:
        conv = sample["conversation"]
        keys = sorted((k for k in conv if _SESSION.fullmatch(k)), key=lambda k: int(k[8:]))
        sessions: list[list[Turn]] = []
        ids: set[str] = set()
        for key in keys:
            when = parse_session_time(conv.get(f"{key}_date_time"))
            turns = []
            for raw in conv[key] or []:
                text = str(raw.get("text") or "").strip()
                caption = raw.get("blip_caption")
                if caption:
                    text = f"{text} [shares a photo: {caption}]".strip()
                if not text or not raw.get("dia_id"):
                    continue
                speaker = str(raw.get("speaker") or "")
                turns.append(
                    Turn(
                        source_id=raw["dia_id"],
                        speaker=speaker,
                        text=text,
                        occurred_at=when,
                    )
                )
                ids.add(raw["dia_id"])
            if turns:
                sessions.append(turns)
        conversation = Conversation(str(sample["sample_id"]), sessions, [], turn_ids=ids)
        for key, speakers in sorted((sample.get("observation") or {}).items()):
            number = re.fullmatch(r"session_(\d+)_observation", key)
            if number is None or not isinstance(speakers, dict):
                continue
            when = parse_session_time(conv.get(f"session_{number[1]}_date_time"))
            for facts in speakers.values():
                for fact in facts or []:
                    if not (isinstance(fact, list) and len(fact) >= 2):
                        continue
                    for part in re.split(r"[;,\s]+", str(fact[1])):
                        match = _EVIDENCE.fullmatch(part)
                        if match and f"D{match[1]}:{match[2]}" in ids and str(fact[0]).strip():
                            dia = f"D{match[1]}:{match[2]}"
                            conversation.observations.append(
                                Observation(str(fact[0]).strip(), dia, when)
                            )
        for qa in sample.get("qa", []):
            if qa.get("category") not in CATEGORIES:
                continue
            evidence: set[str] = set()
            for entry in qa.get("evidence") or []:
                parts = [p for p in re.split(r"[;,\s]+", str(entry)) if p]
                if len(parts) > 1:
                    conversation.split_evidence += 1
                for part in parts:
                    match = _EVIDENCE.fullmatch(part)
                    dia = f"D{match[1]}:{match[2]}" if match else None
                    if dia is not None and dia in ids:
                        evidence.add(dia)
                    else:
                        conversation.dropped_evidence += 1
            if not evidence:
                conversation.skipped_questions += 1
                continue
            conversation.questions.append(Question(str(qa["question"]), qa["category"], evidence))
        conversations.append(conversation)
    return conversations


# --- scoring -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    conversation: str
    category: int
    recall: dict[str, float]
    tokens10: int
    latency_ms: float


def evidence_recall(ranked: Sequence[tuple[str, int]], evidence: set[str]) -> dict[str, float]:
    """Recall@k and recall within token budgets of a ranking of (dia_id, tokens).

    A budget keeps hits in order and skips one that no longer fits, as
    :func:`barkeeper.retrieval.apply_token_budget` does. The same turn may come
    more than once (memories from one turn): it counts once.
    """
    ids = [dia for dia, _ in ranked]
    recall = {f"recall@{k}": len(evidence & set(ids[:k])) / len(evidence) for k in KS}
    for budget in BUDGETS:
        used, kept = 0, set()
        for dia, tokens in ranked:
            if used + tokens > budget:
                continue
            used += tokens
            kept.add(dia)
        recall[f"recall@{budget}tok"] = len(evidence & kept) / len(evidence)
    return recall


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Recall@k, recall within token budgets, tokens@10 and per-category figures."""

    def block(items: Sequence[Outcome]) -> dict[str, Any]:
        n = len(items)
        result: dict[str, Any] = {
            key: round(sum(o.recall[key] for o in items) / n, 4) if n else None for key in METRICS
        }
        result["tokens@10"] = round(sum(o.tokens10 for o in items) / n, 1) if n else None
        result["questions"] = n
        return result

    summary = block(outcomes)
    summary["by_category"] = {
        str(c): {"name": CATEGORY_NAMES[c]} | block([o for o in outcomes if o.category == c])
        for c in CATEGORIES
    }
    return summary


def bench_weights(base: Weights) -> Weights:
    """``base`` without recency or importance (the conversations are years old)."""
    return replace(base, importance=0.0, recency=0.0, candidates=max(base.candidates, 20))


async def _new_user(db: Any, discord_id: int) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO users (discord_id) VALUES ($1) RETURNING id", discord_id
            )
        )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    conversations = load_conversations(Path(args.path))
    tuned_on = [c.strip() for c in args.tuned_on.split(",") if c.strip()]
    embedder: Embedder = MiniLMEmbedder() if args.embedder == "minilm" else HashingEmbedder()
    load_token_tables()
    weights = bench_weights(DEFAULT_TURN_WEIGHTS)
    previous = bench_weights(PREVIOUS_TURN_WEIGHTS)
    plain_weights = replace(previous, speaker=0.0, pieces=True)
    memory_weights = bench_weights(DEFAULT_MEMORY_WEIGHTS)
    memory_previous = bench_weights(PREVIOUS_MEMORY_WEIGHTS)
    v8 = bench_weights(V8_TURN_WEIGHTS)
    memory_unscaled = bench_weights(replace(DEFAULT_MEMORY_WEIGHTS, **UNSCALED))
    # system -> (mode, weights, plain index?, hits asked, query vector made by the search?)
    systems: dict[str, tuple[SearchMode, Weights, bool, int, bool]] = {
        "fulltext": ("fulltext", plain_weights, False, SEARCH_K, False),
        "vector": ("vector", plain_weights, False, SEARCH_K, True),
        "vector_whole": ("vector", replace(plain_weights, pieces=False), False, SEARCH_K, False),
        "hybrid": ("hybrid", weights, False, SEARCH_K, True),
        "hybrid_k10": ("hybrid", weights, False, PRODUCT_K, True),
        "hybrid_named": ("hybrid", weights, False, SEARCH_K, False),
        "hybrid_v8": ("hybrid", v8, False, SEARCH_K, False),
        "hybrid_v8_k10": ("hybrid", v8, False, PRODUCT_K, False),
        "hybrid_before": ("hybrid", previous, False, SEARCH_K, False),
        "fulltext_plain": ("fulltext", plain_weights, True, SEARCH_K, False),
    }
    memory_systems = {
        "memories": memory_weights,
        "memories_unscaled": memory_unscaled,
        "memories_before": memory_previous,
    }
    names = [*systems, *memory_systems]
    outcomes: dict[str, list[Outcome]] = {s: [] for s in names}
    latencies: dict[str, list[float]] = {s: [] for s in names}
    embed_ms: list[float] = []
    index_seconds = memory_seconds = 0.0
    turns_total = memories_total = 0
    async with bench_database(args.database_url, prefix="locomo") as db:
        where = await environment(db)
        index = MessageIndex(db, embedder, weights=weights)
        # bare turns for the plain BM25 reference: full text only, so no real vectors
        plain = MessageIndex(db, HashingEmbedder(8), weights=plain_weights)
        store = MemoryStore(db, embedder, weights=memory_weights)
        for number, conversation in enumerate(conversations, 1):
            scope = f"locomo:{conversation.sample_id}"
            turns = [t for session in conversation.sessions for t in session]
            turns_total += len(turns)
            t0 = time.perf_counter()
            for session in conversation.sessions:  # one session per call: contexts stay in it
                await index.add_turns(scope, session)
            index_seconds += time.perf_counter() - t0
            bare = [replace(t, context="") for t in turns]
            for start in range(0, len(bare), 5000):
                await plain.add_turns(f"{scope}:plain", bare[start : start + 5000])
            # the gold memories, through MemoryStore (one user per conversation)
            user = await _new_user(db, 9_000_000 + number)
            t0 = time.perf_counter()
            texts = [o.text for o in conversation.observations]
            said = {t.source_id: t.text for t in turns}
            vectors = await embedder.embed(texts) if texts else []
            source_of: dict[int, str] = {}
            for observation, vector in zip(conversation.observations, vectors, strict=True):
                memory = await store.add(
                    user,
                    observation.text,
                    valid_from=observation.when,
                    embedding=vector,
                    source="locomo",
                    # what the bot's extraction keeps: the message the fact was learnt from
                    extraction_context=said[observation.dia_id],
                )
                source_of[memory.id] = observation.dia_id
            memory_seconds += time.perf_counter() - t0
            memories_total += len(texts)
            for question in conversation.questions:
                t0 = time.perf_counter()
                vector = await embedder.embed_query(question.text)
                embed_ms.append((time.perf_counter() - t0) * 1000)
                for system, (mode, use, bare_index, wanted, own) in systems.items():
                    t0 = time.perf_counter()
                    hits = await (plain if bare_index else index).search(
                        f"{scope}:plain" if bare_index else scope,
                        question.text,
                        k=wanted,
                        mode=mode,
                        # own: the search embeds the question itself (without the names
                        # it gives), as the bot's tool calls it; its time includes that
                        query_embedding=None if own or mode == "fulltext" else vector,
                        weights=use,
                    )
                    latencies[system].append((time.perf_counter() - t0) * 1000)
                    ranked = [(h.item.source_id, h.tokens) for h in hits]
                    outcomes[system].append(
                        Outcome(
                            conversation.sample_id,
                            question.category,
                            evidence_recall(ranked, question.evidence),
                            sum(h.tokens for h in hits[:10]),
                            latencies[system][-1],
                        )
                    )
                for system, use in memory_systems.items():
                    t0 = time.perf_counter()
                    found = await store.search(
                        user, question.text, k=SEARCH_K, query_embedding=vector, weights=use
                    )
                    latencies[system].append((time.perf_counter() - t0) * 1000)
                    ranked = [(source_of[h.item.id], h.tokens) for h in found]
                    outcomes[system].append(
                        Outcome(
                            conversation.sample_id,
                            question.category,
                            evidence_recall(ranked, question.evidence),
                            sum(h.tokens for h in found[:10]),
                            latencies[system][-1],
                        )
                    )
            print(
                f"{conversation.sample_id}: {len(turns)} turns, {len(texts)} memories, "
                f"{len(conversation.questions)} questions",
                file=sys.stderr,
            )

    def subset(chosen: Sequence[str] | None) -> dict[str, Any]:
        return {
            system: summarise(
                [o for o in outcomes[system] if chosen is None or o.conversation in chosen]
            )
            for system in names
        }

    def weights_of(w: Weights) -> dict[str, float]:
        keys = ("text", "vector", "speaker", "date", "session", "neighbour", "context_weight")
        extra = {
            "candidates": w.candidates,
            "candidates_per_hit": w.candidates_per_hit,
            "scale_vector": w.scale_vector,
            "pieces": w.pieces,
        }
        return {key: getattr(w, key) for key in keys} | extra

    def with_embedding(system: str) -> list[float]:
        if system in systems and systems[system][4]:
            return list(latencies[system])  # the search made its own vector
        return [a + b for a, b in zip(latencies[system], embed_ms, strict=True)]

    present = [c.sample_id for c in conversations]
    tuned = [c for c in present if c in tuned_on]
    held = [c for c in present if c not in tuned_on]
    result: dict[str, Any] = subset(None)
    result["held_out"] = {"conversations": held} | subset(held)
    result["tuned_on"] = {"conversations": tuned} | subset(tuned)
    result["meta"] = {
        "file": os.path.basename(args.path),
        "conversations": present,
        "turns": turns_total,
        "memories": memories_total,
        "questions": sum(len(c.questions) for c in conversations),
        "questions_skipped_no_evidence": sum(c.skipped_questions for c in conversations),
        "evidence_entries_split": sum(c.split_evidence for c in conversations),
        "evidence_ids_dropped": sum(c.dropped_evidence for c in conversations),
        "embedder": embedder.name,
        "search_k": SEARCH_K,
        "product_k": PRODUCT_K,
        "weights": {
            "hybrid": weights_of(weights),
            "hybrid_v8": weights_of(v8),
            "hybrid_before": weights_of(previous),
            "memories": weights_of(memory_weights),
            "memories_unscaled": weights_of(memory_unscaled),
            "memories_before": weights_of(memory_previous),
        },
        "index_seconds": round(index_seconds, 1),
        "index_turns_per_second": round(turns_total / index_seconds, 1) if index_seconds else None,
        "memory_add_seconds": round(memory_seconds, 1),
        "query_embedding_ms": {
            "p50": round(percentile(embed_ms, 50), 2),
            "p95": round(percentile(embed_ms, 95), 2),
        },
        "search_latency_ms": {
            system: {
                "p50": round(percentile(latencies[system], 50), 2),
                "p95": round(percentile(latencies[system], 95), 2),
            }
            for system in names
        },
        "query_latency_ms_with_embedding": {
            system: {f"p{p}": round(percentile(with_embedding(system), p), 2) for p in (50, 95)}
            for system in (
                "hybrid",
                "hybrid_k10",
                "hybrid_named",
                "hybrid_v8",
                "hybrid_v8_k10",
                "hybrid_before",
                "memories",
                "memories_unscaled",
                "memories_before",
            )
        },
        "total_seconds": round(time.perf_counter() - started, 1),
        "environment": where,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "path", help="a LoCoMo-format JSON file (e.g. ../shared/data/locomo-dev.json)"
    )
    parser.add_argument(
        "--out", default="bench/results/locomo.json", help="where to write the JSON"
    )
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server (default: embedded)"
    )
    parser.add_argument(
        "--embedder",
        choices=("minilm", "hashing"),
        default="minilm",
        help="minilm (the local default) or hashing (no model: a quick smoke run)",
    )
    parser.add_argument(
        "--tuned-on",
        default=",".join(DEFAULT_TUNED_ON),
        help="conversations the design was tuned on (reported apart from held_out)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    write_json(Path(args.out), result)
    systems = [k for k in result if k not in ("held_out", "tuned_on", "meta")]
    for name in ("tuned_on", "held_out", None):
        part = result[name] if name else result
        print(f"{name or 'all'} {','.join(part['conversations']) if name else ''}:")
        for system in systems:
            s = part[system]
            cats = " ".join(f"{c['name']} {c['recall@10']}" for c in s["by_category"].values())
            print(
                f"  {system:15s} r@5 {s['recall@5']} r@10 {s['recall@10']} r@20 {s['recall@20']}"
                f" r@500tok {s['recall@500tok']} r@1000tok {s['recall@1000tok']}"
                f" tokens@10 {s['tokens@10']} | r@10 {cats}"
            )
    print(f"total {result['meta']['total_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
