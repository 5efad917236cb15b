"""LoCoMo retrieval: evidence recall of barkeeper's hybrid search over raw turns vs its halves.

Run: ``python bench/locomo.py PATH_TO_LOCOMO_JSON --out bench/results/locomo.json
[--database-url URL] [--embedder minilm|hashing] [--tuned-on conv-26,conv-30]``

Each conversation of the file is indexed through :class:`barkeeper.turns.MessageIndex`
under its own scope (one scope per conversation, like one user each): a
turn is ``"speaker: text"`` (plus ``[shares a photo: caption]`` when it carries an
image caption), its context is the previous turn of the same session (searched at
half weight), and its vector is all-MiniLM-L6-v2's. Every question of categories 1-4
with evidence is then asked of three systems, in the same run, on the same index:

- ``fulltext``: BM25 alone (the full-text half of ours);
- ``vector``: cosine similarity alone (the vector half);
- ``hybrid``: ours, both fused, plus the bonus for turns by a speaker the question
  names (:data:`barkeeper.retrieval.DEFAULT_TURN_WEIGHTS` without recency: the
  conversations are years old);
- ``fulltext_plain`` (reference, not part of the interface): BM25 over bare turns,
  without the previous turn as context: the usual "BM25 over turns" baseline.

Recall@k is the share of a question's evidence turns (``dia_id``) among the top k,
averaged over questions; ``tokens@10`` is what the top 10 turns cost in prompt tokens
(offline count, gpt-oss tokenizer). Evidence such as ``"D8:6; D9:17"`` is split;
ids that are malformed or absent from the conversation are dropped (counted in
``meta``); questions left without evidence are skipped.

Tuning: design choices (context weight, fusion, BM25 parameters) were made looking
at ``--tuned-on`` conversations only (conv-26 and conv-30 of the dev file); the
others are reported separately as ``held_out``. Query embedding is done once per
question and excluded from the per-search latency, which is reported in ``meta``.
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
from barkeeper.retrieval import DEFAULT_TURN_WEIGHTS, SearchMode, Weights
from barkeeper.turns import MessageIndex, Turn

SYSTEMS = ("fulltext", "vector", "hybrid", "fulltext_plain")
"""The three systems of the interface, and BM25 over bare turns (no context), for reference."""
KS = (5, 10, 20)
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
class Conversation:
    sample_id: str
    sessions: list[list[Turn]]
    questions: list[Question]
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
            previous: str | None = None
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
                        context=previous or "",
                    )
                )
                previous = f"{speaker}: {text}"
                ids.add(raw["dia_id"])
            if turns:
                sessions.append(turns)
        conversation = Conversation(str(sample["sample_id"]), sessions, [], turn_ids=ids)
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
    recall: dict[int, float]
    tokens10: int
    latency_ms: float


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Recall@k, tokens@10 and per-category figures over some outcomes."""

    def block(items: Sequence[Outcome]) -> dict[str, Any]:
        n = len(items)
        result: dict[str, Any] = {
            f"recall@{k}": round(sum(o.recall[k] for o in items) / n, 4) if n else None for k in KS
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    conversations = load_conversations(Path(args.path))
    tuned_on = [c.strip() for c in args.tuned_on.split(",") if c.strip()]
    embedder: Embedder = MiniLMEmbedder() if args.embedder == "minilm" else HashingEmbedder()
    weights = Weights(
        text=DEFAULT_TURN_WEIGHTS.text,
        vector=DEFAULT_TURN_WEIGHTS.vector,
        importance=0.0,
        recency=0.0,
        speaker=DEFAULT_TURN_WEIGHTS.speaker,
        context_weight=DEFAULT_TURN_WEIGHTS.context_weight,
        k1=DEFAULT_TURN_WEIGHTS.k1,
        b=DEFAULT_TURN_WEIGHTS.b,
        candidates=max(DEFAULT_TURN_WEIGHTS.candidates, max(KS)),
    )
    plain_weights = replace(weights, speaker=0.0)
    # system -> (mode, weights, plain index?)
    systems: dict[str, tuple[SearchMode, Weights, bool]] = {
        "fulltext": ("fulltext", plain_weights, False),
        "vector": ("vector", plain_weights, False),
        "hybrid": ("hybrid", weights, False),
        "fulltext_plain": ("fulltext", plain_weights, True),
    }
    outcomes: dict[str, list[Outcome]] = {s: [] for s in SYSTEMS}
    index_seconds = question_embed_seconds = 0.0
    turns_total = 0
    async with bench_database(args.database_url, prefix="locomo") as db:
        where = await environment(db)
        index = MessageIndex(db, embedder, weights=weights)
        # bare turns for the plain BM25 reference: full text only, so no real vectors
        plain = MessageIndex(db, HashingEmbedder(8), weights=plain_weights)
        for conversation in conversations:
            scope = f"locomo:{conversation.sample_id}"
            turns = [t for session in conversation.sessions for t in session]
            turns_total += len(turns)
            t0 = time.perf_counter()
            for start in range(0, len(turns), 5000):
                await index.add_turns(scope, turns[start : start + 5000])
            index_seconds += time.perf_counter() - t0
            bare = [replace(t, context="") for t in turns]
            for start in range(0, len(bare), 5000):
                await plain.add_turns(f"{scope}:plain", bare[start : start + 5000])
            t0 = time.perf_counter()
            vectors = await embedder.embed([q.text for q in conversation.questions])
            question_embed_seconds += time.perf_counter() - t0
            for question, vector in zip(conversation.questions, vectors, strict=True):
                for system, (mode, use, bare_index) in systems.items():
                    t0 = time.perf_counter()
                    hits = await (plain if bare_index else index).search(
                        f"{scope}:plain" if bare_index else scope,
                        question.text,
                        k=max(KS),
                        mode=mode,
                        query_embedding=vector if mode != "fulltext" else None,
                        weights=use,
                    )
                    latency = (time.perf_counter() - t0) * 1000
                    ranked = [h.item.source_id for h in hits]
                    recall = {
                        k: len(question.evidence & set(ranked[:k])) / len(question.evidence)
                        for k in KS
                    }
                    outcomes[system].append(
                        Outcome(
                            conversation.sample_id,
                            question.category,
                            recall,
                            sum(h.tokens for h in hits[:10]),
                            latency,
                        )
                    )
            print(
                f"{conversation.sample_id}: {len(turns)} turns, "
                f"{len(conversation.questions)} questions",
                file=sys.stderr,
            )

    def subset(names: Sequence[str] | None) -> dict[str, Any]:
        return {
            system: summarise(
                [o for o in outcomes[system] if names is None or o.conversation in names]
            )
            for system in SYSTEMS
        }

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
        "questions": sum(len(c.questions) for c in conversations),
        "questions_skipped_no_evidence": sum(c.skipped_questions for c in conversations),
        "evidence_entries_split": sum(c.split_evidence for c in conversations),
        "evidence_ids_dropped": sum(c.dropped_evidence for c in conversations),
        "embedder": embedder.name,
        "weights": {
            "text": weights.text,
            "vector": weights.vector,
            "speaker": weights.speaker,
            "context_weight": weights.context_weight,
            "k1": weights.k1,
            "b": weights.b,
        },
        "index_seconds": round(index_seconds, 1),
        "index_turns_per_second": round(turns_total / index_seconds, 1) if index_seconds else None,
        "question_embedding_seconds": round(question_embed_seconds, 1),
        "search_latency_ms": {
            system: {
                "p50": round(percentile([o.latency_ms for o in outcomes[system]], 50), 2),
                "p95": round(percentile([o.latency_ms for o in outcomes[system]], 95), 2),
            }
            for system in SYSTEMS
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
    for name in ("tuned_on", "held_out"):
        part = result[name]
        print(f"{name} {','.join(part['conversations'])}:")
        for system in SYSTEMS:
            s = part[system]
            print(
                f"  {system:8s} r@5 {s['recall@5']} r@10 {s['recall@10']} r@20 {s['recall@20']} "
                f"tokens@10 {s['tokens@10']}"
            )
    print("all:")
    for system in SYSTEMS:
        s = result[system]
        print(f"  {system:8s} r@5 {s['recall@5']} r@10 {s['recall@10']} r@20 {s['recall@20']}")
    print(f"total {result['meta']['total_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
