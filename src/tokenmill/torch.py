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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from tokenmill.errors import ConfigError
from tokenmill.loader import (
    BatchIterator,
    BatchPlan,
    Mixture,
    TokenDataset,
    cu_seqlens_from_position_ids,
    resolve_world,
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

    With ``num_workers = k`` DataLoader workers, worker ``w`` reads global batches ``w, w + k, ...``; the
    DataLoader returns worker outputs round-robin, so the stream is the same as with no workers. Use
    ``batch_size=None`` in the DataLoader. The consumer knows how many batches it received; :meth:`state_after`
    turns that count into a loader state (O(1)), to save with a checkpoint and pass back as ``state=``.
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
        self.source = source
        rank, world_size = resolve_world(rank, world_size)  # here: spawned workers have no process group
        self.kwargs = {
            "rank": rank,
            "world_size": world_size,
            "epochs": epochs,
            "steps": steps,
            "drop_last": drop_last,
        }
        self.global_batch_size = int(global_batch_size)
        self.state = state
        self._pid = os.getpid()
        self._batches().state_dict()  # validate the arguments and the state now, in the main process

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_pid"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def _batches(self) -> BatchIterator:
        it = BatchIterator(self.source, self.global_batch_size, **self.kwargs)
        if self.state is not None:
            it.load_state_dict(self.state)
        return it

    def state_after(self, batches_received: int) -> dict[str, Any]:
        """The loader state once the consumer has received ``batches_received`` batches from this dataset."""
        it = self._batches()
        it.skip(batches_received)
        return it.state_dict()

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        _guard_fork(self.source, self._pid)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers > 1 and self.source.follow:
            raise ConfigError(
                "follow=True with several DataLoader workers would let each worker move to a new cache version "
                "on its own; use one worker, or PrefetchIterator"
            )
        it = self._batches()
        it.skip(worker)
        while True:
            plan = it.next_plan()
            if plan is None:
                return
            yield to_tensors(it.fetch(plan))
            it.skip(workers - 1)


def make_dataloader(dataset: Dataset, *, num_workers: int = 0, **kwargs: Any) -> DataLoader:
    """A DataLoader that is safe with Lance: spawned workers, persistent across epochs, and our ``collate``.

    For a :class:`TorchIterableDataset` the batch size is already decided (``batch_size=None``).
    """
    if isinstance(dataset, TorchIterableDataset):
        kwargs.setdefault("batch_size", None)
    else:
        kwargs.setdefault("collate_fn", collate)
        kwargs.setdefault("shuffle", False)
    if num_workers > 0:
        kwargs.setdefault("multiprocessing_context", "spawn")
        kwargs.setdefault("persistent_workers", True)
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
