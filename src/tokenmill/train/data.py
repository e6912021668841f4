"""The trainer's data: this rank's batches from the loader (or a streaming pipeline), fetched ahead in a thread.

The training data is a :class:`DataStream`: a description (the one contract of :mod:`tokenmill.state`) whose
``iter(state)`` yields this rank's part of each global batch, whatever feeds it. The loader's iterator
(``tokenmill.loader.BatchIterator``) computes global batch ``g`` from (seed, order, global batch size) alone and
hands rank ``r`` its slice, so its state is the same on every rank and a run resumed on another number of
processes continues with the same samples. A pipeline is sharded per rank instead, so its states differ by rank
and a resume must keep the world size.

:class:`Feed` hands the loop this rank's batches read ahead in background threads (the loader's
``tokenmill.torch.PrefetchIterator``, or the pipeline's ``prefetch`` stage), as int64 tensors. The state that goes
with a batch is the iterator's position right after it, so the state saved in a checkpoint matches the last batch
the loop *consumed*, not what the threads read ahead. Conversion to the model's dtypes happens in those threads
too, so the loop only waits when the data layer is genuinely slower than the model, and ``Fetched.wait`` says how
long it did.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokenmill.errors import CacheError, ConfigError
from tokenmill.labels import IGNORE_INDEX
from tokenmill.state import Resumable, ResumableIterator

# Columns the model is given; anything else in a batch (cu_seqlens, ...) stays on the host.
MODEL_COLUMNS = ("input_ids", "position_ids", "attention_mask")
# Targets: aligned ``labels`` and, from the loader's windows, the pre-shifted ``shift_labels`` (tokenmill.labels).
LABEL_COLUMNS = ("labels", "shift_labels")
# A mixture's per-sample source index (tokenmill.loader.Mixture): counted per source and split out per source in
# validation, never given to the model.
SOURCE = "source_index"


@dataclass
class Fetched:
    batch: dict[str, torch.Tensor]  # input_ids, labels (+ position_ids / attention_mask), int64, on the host
    state: dict[str, Any]  # the iterator's state right after this batch
    wait: float  # seconds the loop waited for this batch
    sources: np.ndarray | None = None  # a mixture's source index of each sample (the loader's ``source``)

    def sample_hashes(self) -> np.ndarray:
        return sample_hashes(self.batch["input_ids"].numpy(), self.batch["labels"].numpy())


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


def model_columns(batch: dict[str, Any]) -> dict[str, Any]:
    """The model's columns and ``labels`` as int64 (the cache stores the narrowest integer for the vocabulary).

    Runs in the prefetch threads, so the training loop receives batches it can copy to the device as they are.
    """
    if "input_ids" not in batch:
        raise ConfigError(f"a training batch needs 'input_ids'; this one has {', '.join(batch)}")
    out = {}
    for key in (*MODEL_COLUMNS, *LABEL_COLUMNS):
        value = batch.get(key)
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            value = value.numpy()
        out[key] = np.ascontiguousarray(value, dtype=np.int64)
    if "labels" not in out:
        labels = out["input_ids"].copy()
        if batch.get("loss_mask") is not None:
            labels[~np.asarray(batch["loss_mask"], dtype=bool)] = IGNORE_INDEX
        out["labels"] = labels
    if batch.get(SOURCE) is not None:  # kept beside the model's columns, never given to the model
        out[SOURCE] = np.asarray(batch[SOURCE], dtype=np.int64)
    return out


def _tensors(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {
        k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
        for k, v in batch.items()
        if k in (*MODEL_COLUMNS, *LABEL_COLUMNS)
    }


class Feed:
    """This rank's batches as int64 tensors with the data state after each and the time the loop waited."""

    def __init__(self, iterator: ResumableIterator[Any]) -> None:
        self.iterator = iterator

    def next(self) -> Fetched:
        t0 = time.perf_counter()
        batch = next(self.iterator)
        wait = time.perf_counter() - t0
        return Fetched(_tensors(batch), self.iterator.state_dict(), wait, batch.get(SOURCE))

    def close(self) -> None:
        self.iterator.close()


@dataclass(frozen=True)
class DataStream:
    """The training data: a description whose ``iter(state)`` yields this rank's batches, read ahead.

    ``world_size_invariant``: the same state resumes on any number of ranks (the loader's), or only on the world
    size that saved it (a pipeline sharded per rank). Labels follow the one convention of :mod:`tokenmill.labels`
    whatever feeds the stream.
    """

    batches: Resumable[Any]
    world_size_invariant: bool

    def open(self, state: dict[str, Any] | None) -> Feed:
        return Feed(self.batches.iter(state))


@dataclass(frozen=True)
class LoaderBatches:
    """This rank's slice of each global batch of the loader (one cache, or a mixture of caches), as a description.

    Its iterator is :class:`tokenmill.torch.PrefetchIterator` over the loader's ``BatchIterator``: threads read
    ahead (pinned memory on CUDA) and convert to the model's columns there; the state is the position after the
    last batch handed to the loop, the same on every rank.
    """

    config: Any
    rank: int
    world_size: int
    pin_memory: bool = False

    def iter(self, state: dict[str, Any] | None = None) -> ResumableIterator[dict[str, Any]]:
        from tokenmill.loader import Batches
        from tokenmill.torch import PrefetchIterator

        config = self.config
        batches = Batches(
            open_dataset(config, split="train", shuffle=config.shuffle),
            config.global_batch_size,
            rank=self.rank,
            world_size=self.world_size,
        ).iter(state)
        depth = max(1, config.prefetch)
        return PrefetchIterator(
            batches, depth=depth, workers=min(2, depth), pin_memory=self.pin_memory, transform=model_columns
        )


def make_stream(config, data: Any, rank: int, world_size: int, pin_memory: bool = False) -> DataStream:
    """The training stream: ``data`` (a :class:`DataStream`, or a ``Pipeline`` yielding batches) when given, else
    the loader on the config's caches."""
    from tokenmill.pipeline import Pipeline

    if data is None:
        if config.data is None:
            raise ConfigError("no training data: set 'data' in the config or pass --data CACHE")
        batches = LoaderBatches(config, rank, world_size, pin_memory)
        return DataStream(batches, world_size_invariant=True)
    if isinstance(data, DataStream):
        return data
    if isinstance(data, Pipeline):
        # sharded per rank
        pipeline = data.shard(rank, world_size) if world_size > 1 else data
        batches = pipeline.map(model_columns).prefetch(max(1, config.prefetch))
        return DataStream(batches, world_size_invariant=False)
    raise ConfigError(
        f"data must be a tokenmill Pipeline (yielding batches), a DataStream, or None (the loader on the config), "
        f"got {type(data).__name__}"
    )


def _recipe(config):
    """The data recipe ``data`` names (a recipe.yaml or a prepared recipe folder), else None."""
    from tokenmill.recipe import is_recipe, load_recipe

    return load_recipe(config.data) if is_recipe(config.data) else None


def source_names(config) -> list[str]:
    """The names of the training mixture's sources, in the order of the ``source`` index its batches carry
    (empty for one cache)."""
    recipe = _recipe(config)
    if recipe is not None:
        return [n for n in recipe.names if recipe.trains_on(n)]
    if isinstance(config.data, list):
        names = [str(part["cache"]).rstrip("/").rsplit("/", 1)[-1] for part in config.data]
        if len(set(names)) < len(names):  # the same folder name twice (or one cache's two splits)
            names = [
                f"{n}:{part.get('split', 'train')}:{i}" for i, (n, part) in enumerate(zip(names, config.data))
            ]
        return names
    return []


def cache_paths(config) -> list[str]:
    if config.data is None:
        return []
    if isinstance(config.data, str):
        from tokenmill.recipe import recipe_caches

        recipe = _recipe(config)
        return [config.data] if recipe is None else recipe_caches(recipe)
    return [str(part["cache"]) for part in config.data]


def open_dataset(config, split: str, shuffle: bool, cache: str | None = None):
    """A ``TokenDataset`` (or a ``Mixture`` of them) over the configured cache(s)."""
    from tokenmill import loader

    common = dict(seq_len=config.seq_len, mode=config.mode, seed=config.seed)
    if config.storage_options:
        common["storage_options"] = config.storage_options
    recipe = _recipe(config) if cache is None else None
    if recipe is not None:  # the recipe's sources mixed by its weights (and its policy)
        from tokenmill.recipe import recipe_mixture

        return recipe_mixture(
            recipe, split=split, shuffle=shuffle, global_batch_size=config.global_batch_size, **common
        )
    if cache is not None or isinstance(config.data, str):
        return loader.TokenDataset(cache or config.data, split=split, shuffle=shuffle, **common)
    parts = []
    for part in config.data:
        ds = loader.TokenDataset(
            str(part["cache"]), split=part.get("split", split), shuffle=shuffle, **common
        )
        parts.append((ds, float(part.get("weight", 1.0))))
    return loader.Mixture(
        parts, seed=config.seed, policy=config.mixture_policy, shuffle=shuffle, names=source_names(config)
    )


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
        self.names: list[str] = []  # a validation mixture's sources, by the index its batches carry
        self.sources: list[np.ndarray] = []  # per kept batch, each sample's source (for a mixture)

    def batches(self) -> list[dict[str, torch.Tensor]]:
        if self._batches is None:
            self._batches = self._load()
        return self._batches

    def _load(self) -> list[dict[str, torch.Tensor]]:
        from tokenmill.loader import BatchIterator

        config = self.config
        recipe = _recipe(config) is not None  # a recipe evaluates on its validation mixture
        cache = config.validation_data or (None if recipe else (cache_paths(config) or [None])[0])
        if cache is None and not recipe:
            self.reason = "no cache to evaluate on"
            return []
        try:
            dataset = open_dataset(config, split="validation", shuffle=False, cache=cache)
        except (CacheError, ConfigError) as exc:
            self.reason = str(exc)
            return []
        batch_size = config.eval_batch_size or config.global_batch_size
        # a small validation split still gives one (smaller) batch that every rank can share evenly
        batch_size = min(batch_size, len(dataset) - len(dataset) % self.world_size)
        if batch_size < self.world_size or batch_size % self.world_size:
            self.reason = (
                f"{cache}: {len(dataset)} validation samples cannot be split evenly over {self.world_size} ranks "
                f"in batches of {config.eval_batch_size or config.global_batch_size}"
            )
            return []
        it = BatchIterator(dataset, batch_size, rank=self.rank, world_size=self.world_size, epochs=1)
        kept = [model_columns(b) for b, _ in zip(it, range(config.eval_batches))]
        if len(getattr(dataset, "names", [])) > 1:
            self.names = list(dataset.names)
            self.sources = [b[SOURCE] for b in kept]
        return [_tensors(b) for b in kept]
