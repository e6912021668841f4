"""PyTorch views of the loader: tensors, ``Dataset``/``IterableDataset`` wrappers, and a prefetching iterator.

torch stays optional: importing :mod:`tokenmill` never imports it; this module does.

Two ways to feed a training loop:

- :class:`PrefetchIterator` over a :class:`~tokenmill.loader.BatchIterator`: background threads read the next
  batches while the model computes (numpy copies and Lance reads release the GIL), tensors are pinned when CUDA is
  available, and ``state_dict()`` is the position of the last batch *handed to the caller*, so a checkpoint never
  skips or repeats the batches still in flight. No DataLoader, no worker processes.
- A ``torch.utils.data.DataLoader`` over :class:`TorchIterableDataset` (batches, sharded over workers) or
  :class:`TorchMapDataset` (samples, with :func:`collate`). Lance is not fork-safe (a forked worker that touches a
  Lance dataset can hang), so :func:`make_dataloader` uses ``multiprocessing_context="spawn"``; the datasets pickle
  their recipe, not their open handles, and each spawned worker reopens the cache itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from tokenmill.errors import ConfigError
from tokenmill.loader import (
    Batches,
    BatchIterator,
    BatchPlan,
    Mixture,
    TokenDataset,
    cu_seqlens_from_position_ids,
)
from tokenmill.state import Prefetch, ResumableIterator

Source = TokenDataset | Mixture


def to_tensors(
    batch: dict[str, np.ndarray], *, pin_memory: bool = False, device: str | torch.device | None = None
) -> dict[str, Any]:
    """A numpy batch as tensors (zero-copy where the arrays allow); ``max_seqlen`` becomes a Python int."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "max_seqlen":
            out[key] = int(value)
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if pin_memory:
            tensor = tensor.pin_memory()
        if device is not None:
            tensor = tensor.to(device, non_blocking=pin_memory)
        out[key] = tensor
    return out


def collate(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Stack per-sample dicts (from :class:`TorchMapDataset`) into a batch of tensors.

    Per-sample ``cu_seqlens``/``max_seqlen`` are dropped and recomputed over the whole flattened batch from
    ``position_ids``. A top-level function, so spawned DataLoader workers can import it.
    """
    if not samples:
        raise ValueError("collate got an empty batch")
    keys = [k for k in samples[0] if k not in ("cu_seqlens", "max_seqlen")]
    batch = {k: np.stack([np.asarray(s[k]) for s in samples]) for k in keys}
    if "position_ids" in batch:
        batch["cu_seqlens"], longest = cu_seqlens_from_position_ids(batch["position_ids"])
        batch["max_seqlen"] = np.int64(longest)
    return to_tensors(batch)


def _guard_fork(source: Source, opened_in: int) -> None:
    """Refuse, instead of hanging, when a forked process would read through Lance."""
    if os.getpid() == opened_in:
        return
    datasets = source.datasets if isinstance(source, Mixture) else [source]
    if any(d.stream.kind == "lance" for d in datasets):
        raise ConfigError(
            "this process was forked from the one that opened the Lance cache, and Lance is not fork-safe; "
            "use DataLoader(..., multiprocessing_context='spawn') (tokenmill.torch.make_dataloader does)"
        )


class TorchMapDataset(Dataset):
    """Map-style view: item ``i`` is sample ``i`` of the epoch order, as numpy arrays (use :func:`collate`).

    The order is already shuffled, so use ``shuffle=False`` in the DataLoader and :meth:`set_epoch` between
    epochs. For several ranks, prefer :class:`TorchIterableDataset`, whose batches do not depend on the world size.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.source = state["source"]
        self._pid = os.getpid()

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        _guard_fork(self.source, self._pid)
        return self.source[i]


class TorchIterableDataset(IterableDataset):
    """Iterable view yielding whole batches (this rank's part of each global batch) as tensors.

    A description (the one contract of :mod:`tokenmill.state`): ``view.iter(state=None)`` gives a resumable
    iterator of tensors. With ``num_workers = k`` DataLoader workers, worker ``w`` reads global batches
    ``w, w + k, ...``; the DataLoader returns worker outputs round-robin, so the stream is the same as with no
    workers. Use ``batch_size=None`` in the DataLoader. A worker's state is the position of the next batch *it*
    reads, so torchdata's ``StatefulDataLoader``, which calls ``state_dict()`` / ``load_state_dict()`` inside each
    worker, checkpoints and resumes all of them exactly (with the same number of workers); with no workers the
    state is the loader's own position, which resumes on any world size.
    """

    def __init__(
        self,
        source: Source,
        global_batch_size: int,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = None,
        steps: int | None = None,
        drop_last: bool = True,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # rank and world size are fixed here: spawned workers have no process group
        self.batches = Batches(source, global_batch_size, rank, world_size, epochs, steps, drop_last)
        self._pid = os.getpid()
        self._iterator: ResumableIterator[dict[str, Any]] | None = None
        self._pending: dict[str, Any] | None = None
        if state is not None:
            warnings.warn(
                "TorchIterableDataset(state=...) is deprecated; use view.load_state_dict(state) or view.iter(state)",
                DeprecationWarning,
                stacklevel=2,
            )
            self.batches.iter(state).close()  # refused now, in the main process, when it does not fit
            self._pending = dict(state)

    @property
    def source(self) -> Source:
        return self.batches.source

    def __getstate__(self) -> dict[str, Any]:
        return {"batches": self.batches, "pending": self._pending}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.batches, self._pending = state["batches"], state["pending"]
        self._pid = os.getpid()
        self._iterator = None

    def iter(self, state: dict[str, Any] | None = None) -> ResumableIterator[dict[str, Any]]:
        """This worker's batches (all of them outside a DataLoader) as tensors, resumed from ``state``."""
        _guard_fork(self.source, self._pid)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers > 1 and self.source.follow:
            raise ConfigError(
                "follow=True with several DataLoader workers would let each worker move to a new cache version "
                "on its own; use one worker, or PrefetchIterator"
            )
        return _WorkerBatches(self.batches.iter(state), worker if state is None else 0, workers)

    def state_after(self, batches_received: int) -> dict[str, Any]:
        """Deprecated: the loader state once ``batches_received`` batches were received (use ``state_dict()``)."""
        warnings.warn(
            "TorchIterableDataset.state_after is deprecated; use state_dict() (StatefulDataLoader calls it)",
            DeprecationWarning,
            stacklevel=2,
        )
        it = self.batches.iter(self._pending)
        it.skip(batches_received)
        return it.state_dict()

    def __len__(self) -> int:
        """Global batches of a run from the start (or from a state given to ``load_state_dict``)."""
        return len(self.batches.iter(self._pending))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._iterator is not None:
            self._iterator.close()
        state, self._pending = self._pending, None
        self._iterator = self.iter(state)
        return self._iterator

    # torchdata Stateful protocol (called in each worker by StatefulDataLoader)
    def state_dict(self) -> dict[str, Any]:
        if self._iterator is not None:
            return self._iterator.state_dict()
        return self._pending if self._pending is not None else self.batches.iter().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None


class _WorkerBatches(ResumableIterator[dict[str, Any]]):
    """Every ``workers``-th batch, starting ``first`` batches in; the state is where this worker goes on."""

    def __init__(self, batches: BatchIterator, first: int, workers: int) -> None:
        self.batches, self.workers = batches, workers
        batches.skip(first)

    def next(self) -> dict[str, Any]:
        plan = self.batches.next_plan()
        if plan is None:
            raise StopIteration
        batch = to_tensors(self.batches.fetch(plan))
        self.batches.skip(self.workers - 1)
        return batch

    def get_state(self) -> dict[str, Any]:
        return self.batches.state_dict()


def make_dataloader(
    dataset: Dataset, *, num_workers: int = 0, stateful: bool = False, **kwargs: Any
) -> DataLoader:
    """A DataLoader that is safe with Lance: spawned workers, persistent across epochs, and our ``collate``.

    For a :class:`TorchIterableDataset` the batch size is already decided (``batch_size=None``). ``stateful``
    makes it torchdata's ``StatefulDataLoader`` (``pip install torchdata``), whose ``state_dict()`` /
    ``load_state_dict()`` checkpoint the position of every worker of a :class:`TorchIterableDataset`.
    """
    if isinstance(dataset, TorchIterableDataset):
        kwargs.setdefault("batch_size", None)
    else:
        kwargs.setdefault("collate_fn", collate)
        kwargs.setdefault("shuffle", False)
    if num_workers > 0:
        kwargs.setdefault("multiprocessing_context", "spawn")
        kwargs.setdefault("persistent_workers", True)
    if stateful:
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
        except ImportError as exc:
            raise ConfigError(
                "make_dataloader(stateful=True) needs torchdata: pip install torchdata"
            ) from exc
        return StatefulDataLoader(dataset, num_workers=num_workers, **kwargs)
    return DataLoader(dataset, num_workers=num_workers, **kwargs)


class PrefetchIterator(ResumableIterator[dict[str, Any]]):
    """Batches of a :class:`BatchIterator` as tensors, read ``depth`` steps ahead by ``workers`` threads.

    The batch plans (which samples) are computed in one background thread and the reads run in ``workers``
    threads, through the one prefetch of :mod:`tokenmill.state`, which hands each batch out with the loader state
    right after it. ``state_dict()`` is therefore the state after the last batch returned by ``next()``: batches
    read ahead are not counted, so a checkpoint resumes exactly at the next batch. To resume, open the
    ``BatchIterator`` from the saved state and wrap it again. ``pin_memory`` (default: when CUDA is available)
    pins the host tensors so ``device`` copies are asynchronous.
    """

    def __init__(
        self,
        batches: BatchIterator,
        *,
        depth: int = 4,
        workers: int = 2,
        pin_memory: bool | None = None,
        device: str | torch.device | None = None,
        transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    ) -> None:
        if depth < 1 or workers < 1:
            raise ConfigError("PrefetchIterator needs depth >= 1 and workers >= 1")
        self.batches = batches
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.device = device
        self.transform = transform
        self._prefetch: Prefetch[BatchPlan, dict[str, Any]] = Prefetch(
            self._plans(), batches.state_dict(), depth=depth, fn=self._load, workers=workers
        )

    def _plans(self) -> Iterator[tuple[BatchPlan, dict[str, Any]]]:
        while (plan := self.batches.next_plan()) is not None:
            yield plan, plan.state

    def _load(self, plan: BatchPlan) -> dict[str, Any]:
        batch = self.batches.fetch(plan)
        if self.transform is not None:
            batch = self.transform(batch)
        return to_tensors(batch, pin_memory=self.pin_memory)

    def next(self) -> dict[str, Any]:
        batch = self._prefetch.next()
        if self.device is not None:
            batch = {
                k: (v.to(self.device, non_blocking=self.pin_memory) if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()
            }
        return batch

    def get_state(self) -> dict[str, Any]:
        return dict(self._prefetch.state)

    def release(self) -> None:
        self._prefetch.close()
