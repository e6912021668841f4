"""The trainer's data: this rank's batches from the loader (or a streaming pipeline), fetched ahead in a thread.

A *stream* opens a resumable iterator of this rank's part of each global batch. The loader's iterator
(``tokenmill.loader.BatchIterator``) computes global batch ``g`` from (seed, order, global batch size) alone and
hands rank ``r`` its slice, so its state is the same on every rank and a run resumed on another number of
processes continues with the same samples. A pipeline is sharded per rank instead, so its states differ by rank
and a resume must keep the world size.

:class:`Prefetcher` runs the iterator in a background thread ``depth`` batches ahead. Each batch travels with
the iterator's state taken right after it, so the state saved in a checkpoint is the one that matches the last
batch the training loop *consumed*, not what the thread read ahead. The thread also does the per-batch host work
(tensor conversion, pinning, counting trained tokens, hashing samples), so the loop only waits when the data
layer is genuinely slower than the model.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokenmill.errors import ConfigError, StateError

IGNORE_INDEX = -100
# Columns the model is given; anything else in a batch (cu_seqlens, ...) stays on the host.
MODEL_COLUMNS = ("input_ids", "position_ids", "attention_mask")


@dataclass
class Fetched:
    batch: dict[str, torch.Tensor]  # input_ids, labels (+ position_ids / attention_mask), on the host
    state: dict[str, Any]  # the iterator's state right after this batch
    sample_hashes: np.ndarray  # int64[n]: one hash per sample (input ids and labels), for batch digests
    trained_tokens: int  # labels != -100
    wait: float = 0.0  # seconds the loop waited for this batch


def sample_hashes(input_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A 63-bit hash per sample of its input ids and labels (independent of the integer width)."""
    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    lab = np.ascontiguousarray(labels, dtype=np.int64)
    out = np.empty(len(ids), dtype=np.int64)
    for i in range(len(ids)):
        h = hashlib.blake2b(ids[i].tobytes(), digest_size=8)
        h.update(lab[i].tobytes())
        out[i] = int.from_bytes(h.digest(), "little") >> 1
    return out


def batch_digest(hashes: np.ndarray) -> str:
    """Digest of a global batch as a set of samples, so it does not depend on how ranks split it."""
    return hashlib.blake2b(np.sort(np.asarray(hashes, dtype=np.int64)).tobytes(), digest_size=8).hexdigest()


def to_tensors(batch: dict[str, Any], pin: bool) -> dict[str, torch.Tensor]:
    """The model's columns and ``labels`` as int64 tensors (pinned for fast copies to a GPU when asked)."""
    if "input_ids" not in batch:
        raise ConfigError(f"a training batch needs 'input_ids'; this one has {', '.join(batch)}")
    out = {}
    for key in (*MODEL_COLUMNS, "labels"):
        value = batch.get(key)
        if value is None:
            continue
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        t = t.to(torch.int64)
        out[key] = t.pin_memory() if pin else t
    if "labels" not in out:
        out["labels"] = out["input_ids"].clone()
    return out


class Prefetcher:
    """Pulls ``(batch, state)`` pairs from ``iterator`` in a daemon thread, ``depth`` ahead of the consumer."""

    _END = object()

    def __init__(self, iterator: Iterator[Any], *, depth: int = 2, pin: bool = False) -> None:
        self.iterator = iterator
        self.pin = pin
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenmill-train-prefetch", daemon=True)
        self._thread.start()

    def _fetch(self) -> Fetched:
        batch = next(self.iterator)
        state = self.iterator.state_dict()
        tensors = to_tensors(batch, self.pin)
        labels = tensors["labels"].numpy()
        return Fetched(
            batch=tensors,
            state=state,
            sample_hashes=sample_hashes(tensors["input_ids"].numpy(), labels),
            trained_tokens=int((labels != IGNORE_INDEX).sum()),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = self._fetch()
            except StopIteration:
                item = self._END
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is self._END or isinstance(item, BaseException):
                return

    def next(self) -> Fetched:
        """The next batch; ``wait`` is how long this call blocked (zero when the thread was ahead)."""
        t0 = time.perf_counter()
        item = self._queue.get()
        wait = time.perf_counter() - t0
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        item.wait = wait
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------------------------------------------ streams


class LoaderStream:
    """This rank's slice of each global batch of the loader over one cache, or a mixture of caches."""

    world_size_invariant = True

    def __init__(self, config, rank: int, world_size: int, micro_batch_size: int) -> None:
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.micro_batch_size = micro_batch_size

    def dataset(self):
        return open_dataset(self.config, split="train", shuffle=self.config.shuffle)

    def open(self, state: dict[str, Any] | None):
        from tokenmill.loader import BatchIterator

        it = BatchIterator(
            self.dataset(),
            self.config.global_batch_size,
            rank=self.rank,
            world_size=self.world_size,
        )
        if state is not None:
            it.load_state_dict(state)
        return it


class PipelineStream:
    """A streaming :class:`tokenmill.pipeline.Pipeline` that yields batches; sharded per rank when distributed."""

    world_size_invariant = False

    def __init__(self, pipeline, rank: int, world_size: int) -> None:
        self.pipeline = pipeline.shard(rank, world_size) if world_size > 1 else pipeline
        self.rank = rank
        self.world_size = world_size

    def open(self, state: dict[str, Any] | None):
        return self.pipeline.iter(state_dict=state)


def make_stream(config, data: Any, rank: int, world_size: int, micro_batch_size: int):
    """The training stream: ``data`` when the caller passes a pipeline or stream, else the loader on the config."""
    if data is None:
        if config.data is None:
            raise ConfigError("no training data: set 'data' in the config or pass --data CACHE")
        return LoaderStream(config, rank, world_size, micro_batch_size)
    if hasattr(data, "open") and hasattr(data, "world_size_invariant"):
        return data
    if hasattr(data, "iter") and hasattr(data, "signature"):
        return PipelineStream(data, rank, world_size)
    raise ConfigError(
        f"data must be a tokenmill Pipeline (yielding batches) or None (the loader on the config), got {type(data)}"
    )


def cache_paths(config) -> list[str]:
    if config.data is None:
        return []
    if isinstance(config.data, str):
        return [config.data]
    return [str(part["cache"]) for part in config.data]


def open_dataset(config, split: str, shuffle: bool, cache: str | None = None):
    """A ``TokenDataset`` (or a ``Mixture`` of them) over the configured cache(s)."""
    from tokenmill import loader

    common = dict(seq_len=config.seq_len, mode=config.mode, seed=config.seed)
    if config.storage_options:
        common["storage_options"] = config.storage_options
    if cache is not None or isinstance(config.data, str):
        return loader.TokenDataset(cache or config.data, split=split, shuffle=shuffle, **common)
    parts, weights = [], []
    for part in config.data:
        parts.append(
            loader.TokenDataset(str(part["cache"]), split=part.get("split", split), shuffle=shuffle, **common)
        )
        weights.append(float(part.get("weight", 1.0)))
    return loader.Mixture(parts, weights, seed=config.seed, policy=config.mixture_policy)


class EvalBatches:
    """The first ``eval_batches`` global batches of the validation split, in cache order: the same every time.

    They are read once and kept (a few batches of token ids), so an evaluation costs only the forward passes.
    """

    def __init__(self, config, rank: int, world_size: int) -> None:
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self._batches: list[dict[str, torch.Tensor]] | None = None
        self.reason: str | None = None

    def batches(self) -> list[dict[str, torch.Tensor]]:
        if self._batches is None:
            self._batches = self._load()
        return self._batches

    def _load(self) -> list[dict[str, torch.Tensor]]:
        from tokenmill.loader import BatchIterator

        config = self.config
        batch_size = config.eval_batch_size or config.global_batch_size
        if batch_size % self.world_size:
            raise ConfigError(
                f"eval_batch_size {batch_size} is not divisible by the world size {self.world_size}"
            )
        cache = config.validation_data or cache_paths(config)[0]
        try:
            dataset = open_dataset(config, split="validation", shuffle=False, cache=cache)
        except (StateError, ConfigError, ValueError) as exc:
            self.reason = f"no validation data in {cache}: {exc}"
            return []
        if len(dataset) == 0:
            self.reason = f"{cache} has no validation samples of {config.seq_len} tokens"
            return []
        batch_size = min(batch_size, len(dataset) - len(dataset) % self.world_size) or self.world_size
        if len(dataset) < self.world_size:
            self.reason = f"{cache} has fewer validation samples than ranks"
            return []
        it = BatchIterator(dataset, batch_size, rank=self.rank, world_size=self.world_size)
        out = []
        for _ in range(min(config.eval_batches, max(1, len(dataset) // batch_size))):
            try:
                out.append(to_tensors(next(it), pin=False))
            except StopIteration:
                break
        return out
