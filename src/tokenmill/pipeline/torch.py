"""PyTorch views of a pipeline: an ``IterableDataset`` that splits work across DataLoader workers and checkpoints
through torchdata's ``StatefulDataLoader``.

Each DataLoader worker iterates ``pipeline.shard(worker_id, num_workers)`` (files dealt out by index, see
``shard``), so workers never read the same data. The view is itself a description (``view.iter(state)`` gives a
resumable iterator of tensors, the one contract of :mod:`tokenmill.state`), and it speaks the ``state_dict()`` /
``load_state_dict()`` protocol that ``torchdata.stateful_dataloader.StatefulDataLoader`` calls inside each worker,
so ``loader.state_dict()`` captures every worker's pipeline state and ``loader.load_state_dict(...)`` resumes all
of them exactly. With a plain ``DataLoader`` the view works but cannot be checkpointed.

Torch is imported only when this module is used. The pipeline is taken as it is (``iter`` and ``shard``), not
imported, so ``tokenmill.pipeline.pipeline`` and this module do not import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.utils.data

from tokenmill.pipeline.batch import to_torch
from tokenmill.state import ChildIterator, ResumableIterator, State

if TYPE_CHECKING:
    from tokenmill.pipeline.pipeline import Pipeline


class PipelineIterableDataset(torch.utils.data.IterableDataset):
    """``pipeline`` as a torch dataset. ``tensors=True`` turns numpy arrays of dict items into tensors."""

    def __init__(self, pipeline: Pipeline, *, shard_by_worker: bool = True, tensors: bool = True) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.shard_by_worker = shard_by_worker
        self.tensors = tensors
        self._iterator: ResumableIterator[Any] | None = None
        self._pending: State | None = None

    def _worker_pipeline(self) -> Pipeline:
        info = torch.utils.data.get_worker_info()
        if info is None or info.num_workers <= 1 or not self.shard_by_worker:
            return self.pipeline
        return self.pipeline.shard(info.id, info.num_workers)

    def iter(self, state: State | None = None) -> ResumableIterator[Any]:
        """This worker's part of the pipeline (all of it outside a DataLoader) as tensors, resumed from ``state``."""
        it = self._worker_pipeline().iter(state)
        return TorchIterator(it) if self.tensors else it

    def __iter__(self) -> ResumableIterator[Any]:
        if self._iterator is not None:
            self._iterator.close()
        state, self._pending = self._pending, None
        self._iterator = self.iter(state)
        return self._iterator

    # torchdata Stateful protocol (called in each worker by StatefulDataLoader)
    def state_dict(self) -> State:
        if self._iterator is not None:
            return self._iterator.state_dict()
        return self._pending or {}

    def load_state_dict(self, state_dict: State) -> None:
        self._pending = dict(state_dict) if state_dict else None


class TorchIterator(ChildIterator[Any]):
    """The parent's items with numpy arrays of dict items turned into tensors; the parent's state."""

    def next(self) -> Any:
        item = next(self.parent)
        return to_torch(item) if isinstance(item, dict) else item
