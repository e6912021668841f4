"""PyTorch views of a pipeline: an ``IterableDataset`` that splits work across DataLoader workers and checkpoints
through torchdata's ``StatefulDataLoader``.

Each DataLoader worker iterates ``pipeline.shard(worker_id, num_workers)`` (files dealt out by index, see
``shard``), so workers never read the same data. The dataset implements the ``state_dict()`` /
``load_state_dict()`` protocol that ``torchdata.stateful_dataloader.StatefulDataLoader`` calls inside each
worker, so ``loader.state_dict()`` captures every worker's pipeline state and ``loader.load_state_dict(...)``
resumes all of them exactly. With a plain ``DataLoader`` the view works but cannot be checkpointed.

Torch is imported only when this module is used.
"""

from __future__ import annotations

from typing import Any

import torch.utils.data

from tokenmill.pipeline.batch import to_torch
from tokenmill.pipeline.pipeline import Pipeline, PipelineIterator


class PipelineIterableDataset(torch.utils.data.IterableDataset):
    """``pipeline`` as a torch dataset. ``tensors=True`` turns numpy arrays of dict items into tensors."""

    def __init__(self, pipeline: Pipeline, *, shard_by_worker: bool = True, tensors: bool = True) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.shard_by_worker = shard_by_worker
        self.tensors = tensors
        self._iterator: PipelineIterator | None = None
        self._pending: dict[str, Any] | None = None

    def _worker_pipeline(self) -> Pipeline:
        info = torch.utils.data.get_worker_info()
        if info is None or info.num_workers <= 1 or not self.shard_by_worker:
            return self.pipeline
        return self.pipeline.shard(info.id, info.num_workers)

    def __iter__(self):
        if self._iterator is not None:
            self._iterator.close()
        state, self._pending = self._pending, None
        self._iterator = self._worker_pipeline().iter(state_dict=state)
        return _TorchIterator(self._iterator, self.tensors)

    # torchdata Stateful protocol (called in each worker by StatefulDataLoader)
    def state_dict(self) -> dict[str, Any]:
        if self._iterator is not None:
            return self._iterator.state_dict()
        return self._pending or {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None


class _TorchIterator:
    def __init__(self, it: PipelineIterator, tensors: bool) -> None:
        self.it = it
        self.tensors = tensors

    def __iter__(self) -> _TorchIterator:
        return self

    def __next__(self) -> Any:
        item = next(self.it)
        if self.tensors and isinstance(item, dict):
            return to_torch(item)
        return item
