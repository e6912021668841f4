"""``pack(seq_len)``: pack whole documents into ``seq_len`` rows by best-fit decreasing, over a buffer.

The stage reads ``buffer_size`` documents (a block), plans their packing with
:func:`tokenmill.sampling.packing.pack_documents` (documents longer than ``seq_len`` are cut into ``seq_len``
pieces first, so a document that fits is never split) and hands out the rows of the plan in order. Each row has
``input_ids`` (padded with the pad id), ``position_ids`` restarting at 0 for every document, ``loss_mask``
(False on padding and on the first token of each document after the first, so no label crosses a document
boundary) and ``cu_seqlens`` (int32 segment offsets, ending at ``seq_len``, as flash-attention's variable-length
kernels take them). As for ``shuffle``, the state is the parent's state at the block's start plus counters: a
resume re-reads one block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require
from tokenmill.pipeline.tokens import MASK, columns_of, token_columns
from tokenmill.sampling.packing import pack_documents


@dataclasses.dataclass(frozen=True, eq=False)
class PackNode(Node):
    parent: Node
    seq_len: int
    buffer_size: int = 1000
    pad_id: int = 0
    seed: int | None = 42
    target_columns: Sequence[str] | None = None
    name = "pack"

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.buffer_size < 1:
            raise ValueError(f"seq_len and buffer_size must be >= 1, got {self.seq_len}, {self.buffer_size}")

    def describe(self) -> str:
        return f"pack({self.seq_len},{self.buffer_size})"

    def build(self, state: StateDict | None) -> Stage:
        stage = PackStage(self, self.parent.build(parent_state(state, self.name)))
        if state is not None:
            stage.block = int(require(state, "block", self.name))
            emitted = require(state, "emitted", self.name)
            stage.pending = None if emitted is None else int(emitted)
        return stage


class PackStage(ParentStage):
    def __init__(self, node: PackNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node
        self.block = 0
        self.anchor: StateDict | None = None
        self.pending: int | None = None
        self.docs: list[dict[str, np.ndarray]] = []
        self.plan: Any = None
        self.emitted = 0
        self.num_bins = 0

    def _fill(self) -> None:
        if self.anchor is not None:
            self.block += 1
        self.anchor = self.parent.state_dict()
        docs = []
        for _ in range(self.node.buffer_size):
            try:
                sample = next(self.parent)
            except StopIteration:
                break
            docs.append(columns_of(sample, token_columns(sample, self.node.target_columns), self.node.name))
        lengths = np.asarray([len(d["input_ids"]) for d in docs], dtype=np.int64)
        seed = None if self.node.seed is None else int(self.node.seed) * 1_000_003 + self.block
        self.docs = docs
        self.plan = pack_documents(lengths, self.node.seq_len, seed=seed)
        self.num_bins = self.plan.num_bins
        self.emitted = 0

    def _row(self, b: int) -> dict[str, np.ndarray]:
        plan, seq_len = self.plan, self.node.seq_len
        lo, hi = int(plan.bin_offsets[b]), int(plan.bin_offsets[b + 1])
        docs, starts, lens = plan.seg_doc[lo:hi], plan.seg_start[lo:hi], plan.seg_length[lo:hi]
        columns = [c for c in self.docs[int(docs[0])] if c != MASK]
        parts = {
            c: [self.docs[d][c][s : s + n] for d, s, n in zip(docs, starts, lens, strict=True)]
            for c in columns
        }
        masks = [
            self.docs[d][MASK][s : s + n] if MASK in self.docs[d] else np.ones(n, dtype=bool)
            for d, s, n in zip(docs, starts, lens, strict=True)
        ]
        used = int(lens.sum())
        row: dict[str, np.ndarray] = {}
        for c in columns:
            flat = np.concatenate(parts[c])
            out = np.full(seq_len, self.node.pad_id if c == "input_ids" else 0, dtype=flat.dtype)
            out[:used] = flat
            row[c] = out
        mask = np.zeros(seq_len, dtype=bool)
        mask[:used] = np.concatenate(masks)
        bounds = np.concatenate(([0], np.cumsum(lens))).astype(np.int32)
        mask[bounds[1:-1]] = False  # no label predicts a document from the one before it
        row[MASK] = mask
        pos = np.arange(seq_len, dtype=np.int64)
        pos[:used] -= np.repeat(bounds[:-1], lens)
        pos[used:] -= used
        row["position_ids"] = pos
        row["cu_seqlens"] = bounds if used == seq_len else np.append(bounds, np.int32(seq_len))
        return row

    def next(self) -> Any:
        if self.anchor is None:
            pending = self.pending
            self._fill()
            if pending is not None:
                self.emitted = min(pending, self.num_bins)
                self.pending = None
        while self.emitted >= self.num_bins:
            if not self.docs:
                raise StopIteration
            self._fill()
        row = self._row(self.emitted)
        self.emitted += 1
        return row

    def get_state(self) -> StateDict:
        if self.anchor is None:
            return {"parent": self.parent.state_dict(), "block": self.block, "emitted": self.pending}
        if self.emitted >= self.num_bins:  # block done: the next one starts at the parent's current position
            return {"parent": self.parent.state_dict(), "block": self.block + 1, "emitted": None}
        return {"parent": self.anchor, "block": self.block, "emitted": self.emitted}
