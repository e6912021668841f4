"""``Pipeline.from_cache``: the documents of a prepared Lance token cache, in cache order or shuffled per epoch.

A document may be stored as several rows; the stage hands out whole documents (``input_ids``, and ``loss_mask``
where the cache has one). The state is (epoch, documents handed out in the epoch); the epoch's order is a Feistel
permutation computed per index, so a resume reads nothing it does not hand out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tokenmill.pipeline.base import Node, Stage, StateDict, require
from tokenmill.sampling.ragged import ragged_arange

#: documents fetched per Lance ``take``
READ_DOCS = 64


@dataclasses.dataclass(frozen=True, eq=False)
class CacheNode(Node):
    path: str
    split: str = "train"
    repeat: bool = False
    shuffle: bool = False
    seed: int = 42
    storage_options: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1
    name = "from_cache"

    def describe(self) -> str:
        return f"from_cache({self.split}, shuffle={self.shuffle}, shard={self.rank}/{self.world_size})"

    def shard_source(self, rank: int, world_size: int) -> Node:
        return dataclasses.replace(
            self, rank=self.rank + self.world_size * rank, world_size=self.world_size * world_size
        )

    def build(self, state: StateDict | None) -> Stage:
        epoch, index = (
            (0, 0)
            if state is None
            else (int(require(state, "epoch", self.name)), int(require(state, "index", self.name)))
        )
        return CacheStage(self, epoch, index)


class CacheStage(Stage):
    def __init__(self, node: CacheNode, epoch: int, index: int) -> None:
        from tokenmill.cache import CacheReader
        from tokenmill.sampling.permutation import epoch_permutation

        self._perm = epoch_permutation
        self.node = node
        self.reader = CacheReader(node.path, storage_options=node.storage_options)
        split = self.reader.split_index(node.split)
        self.rows = split.rows
        self.doc_first_row = np.flatnonzero(split.doc_start)
        self.doc_end_row = np.append(self.doc_first_row[1:], len(split.rows))
        n_docs = len(self.doc_first_row)
        self.n = len(range(node.rank, n_docs, node.world_size))
        self.epoch, self.index = epoch, index
        self._buffer: list[dict[str, Any]] = []

    def _docs(self, positions: np.ndarray) -> np.ndarray:
        """Document numbers at epoch positions (this rank's share of the epoch's order)."""
        n_docs = len(self.doc_first_row)
        perm = self._perm(
            n_docs, self.node.seed, self.epoch, shuffle=self.node.shuffle, stream="pipeline-docs"
        )
        return np.asarray(perm(self.node.rank + self.node.world_size * positions), dtype=np.int64)

    def _read(self) -> None:
        stop = min(self.index + READ_DOCS, self.n)
        docs = self._docs(np.arange(self.index, stop, dtype=np.int64))
        first, end = self.doc_first_row[docs], self.doc_end_row[docs]
        counts = end - first
        local = ragged_arange(first, counts)
        flat, offsets, mask = self.reader.take_rows(self.rows[local])
        flat = flat.astype(
            np.int32
        )  # the cache stores the narrowest type; stages and pad ids want signed ints
        doc_bounds = offsets[np.concatenate(([0], np.cumsum(counts)))]
        out = []
        for a, b in zip(doc_bounds[:-1].tolist(), doc_bounds[1:].tolist(), strict=True):
            sample: dict[str, Any] = {"input_ids": flat[a:b]}
            if mask is not None:
                sample["loss_mask"] = mask[a:b]
            out.append(sample)
        self._buffer = out[::-1]

    def next(self) -> Any:
        while not self._buffer:
            if self.index >= self.n:
                if not self.node.repeat or self.n == 0:
                    raise StopIteration
                self.epoch, self.index = self.epoch + 1, 0
            self._read()
        self.index += 1
        return self._buffer.pop()

    def get_state(self) -> StateDict:
        return {"epoch": self.epoch, "index": self.index}
