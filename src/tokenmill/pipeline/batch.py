"""``batch``: group items into batches of numpy arrays or torch tensors, with ``labels`` for causal LM training.

``labels`` is ``input_ids`` with -100 wherever ``loss_mask`` is False (prompt tokens, padding): the value every
Hugging Face causal LM loss ignores. Batching reads its items synchronously, so its state is its parent's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError
from tokenmill.labels import IGNORE_INDEX
from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict

_INT_COLUMNS = ("input_ids", "labels", "position_ids")


def collate(samples: list[dict[str, Any]], labels: bool = True, return_tensors: str = "np") -> dict[str, Any]:
    """Stack a list of samples (dicts) into one batch."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    if not all(isinstance(s, dict) for s in samples):
        return {"items": list(samples)}
    keys = list(samples[0])
    for s in samples[1:]:
        keys.extend(k for k in s if k not in keys)
    out: dict[str, Any] = {}
    for key in keys:
        values = [s.get(key) for s in samples]
        if key == "loss_mask" and any(v is None for v in values):
            values = [
                np.ones(len(s["input_ids"]), dtype=bool) if v is None else v
                for s, v in zip(samples, values, strict=True)
            ]
        out[key] = _stack(key, values)
    if labels and "input_ids" in out and "labels" not in out and isinstance(out["input_ids"], np.ndarray):
        lab = out["input_ids"].astype(np.int64, copy=True)
        if "loss_mask" in out:
            lab[~out["loss_mask"].astype(bool)] = IGNORE_INDEX
        if "attention_mask" in out:
            lab[out["attention_mask"] == 0] = IGNORE_INDEX
        out["labels"] = lab
    if return_tensors in ("pt", "torch"):
        out = to_torch(out)
    elif return_tensors not in ("np", "numpy"):
        raise ConfigError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
    return out


def _stack(key: str, values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, (np.ndarray, list, tuple)) and not (
        isinstance(first, (list, tuple)) and first and isinstance(first[0], str)
    ):
        arrays = [np.asarray(v) for v in values]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            if key in ("cu_seqlens", "boundaries"):
                return arrays  # one variable-length array per sample (flash-attention takes them per sample)
            raise ConfigError(
                f"cannot batch column {key!r}: items have different lengths {sorted(s[0] for s in shapes if s)[:5]}...; "
                "add .chunk(), .concat_chunk(), .pack() or .pad() before .batch()"
            )
        stacked = np.stack(arrays)
        if key in _INT_COLUMNS and stacked.dtype.kind in "ui":
            stacked = stacked.astype(np.int64, copy=False)
        return stacked
    if isinstance(first, (bool, int, float, np.integer, np.floating, np.bool_)):
        return np.asarray(values)
    return values


def to_torch(batch: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> torch tensors (zero-copy where possible); other values unchanged."""
    import torch

    return {
        k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) and v.dtype != object else v
        for k, v in batch.items()
    }


@dataclasses.dataclass(frozen=True, eq=False)
class BatchNode(Node):
    parent: Node
    batch_size: int
    drop_last: bool = False
    collate_fn: Callable[[list[Any]], Any] | None = None
    labels: bool = True
    return_tensors: str = "np"
    name = "batch"
    stateless = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def describe(self) -> str:
        return f"batch({self.batch_size})"

    def build(self, state: StateDict | None) -> Stage:
        return BatchStage(self, self.parent.build(state))


class BatchStage(ParentStage):
    def __init__(self, node: BatchNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node

    def next(self) -> Any:
        items = []
        for _ in range(self.node.batch_size):
            try:
                items.append(next(self.parent))
            except StopIteration:
                break
        if not items or (self.node.drop_last and len(items) < self.node.batch_size):
            raise StopIteration
        if self.node.collate_fn is not None:
            return self.node.collate_fn(items)
        return collate(items, labels=self.node.labels, return_tensors=self.node.return_tensors)
