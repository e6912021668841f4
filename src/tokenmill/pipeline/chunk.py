"""``chunk``: cut every item's token columns into pieces of ``chunk_length`` (the short tail kept or dropped).

State: the parent's state before the item being cut, and how many of its pieces were handed out. A resume reads
that one item again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require
from tokenmill.pipeline.tokens import columns_of, length_of, token_columns


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkNode(Node):
    parent: Node
    chunk_length: int
    target_columns: Sequence[str] | None = None
    drop_remainder: bool = True
    name = "chunk"

    def __post_init__(self) -> None:
        if self.chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {self.chunk_length}")

    def describe(self) -> str:
        return f"chunk({self.chunk_length})"

    def build(self, state: StateDict | None) -> Stage:
        stage = ChunkStage(self, self.parent.build(parent_state(state, self.name)))
        if state is not None:
            stage.restore(state)
        return stage


class ChunkStage(ParentStage):
    def __init__(self, node: ChunkNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node
        self.anchor: StateDict | None = None  # parent state before the current item
        self.cols: dict[str, Any] = {}
        self.emitted = 0  # pieces of the current item handed out
        self.pieces = 0

    def _load(self) -> None:
        anchor = self.parent.state_dict()
        sample = next(self.parent)
        cols = columns_of(sample, token_columns(sample, self.node.target_columns), self.node.name)
        n, length = length_of(cols), self.node.chunk_length
        self.anchor, self.cols, self.emitted = anchor, cols, 0
        self.pieces = n // length if self.node.drop_remainder else -(-n // length)

    def restore(self, state: StateDict) -> None:
        emitted = require(state, "emitted", self.node.name)
        if emitted is not None:
            self._load()
            self.emitted = int(emitted)

    def next(self) -> Any:
        while self.anchor is None or self.emitted >= self.pieces:
            self._load()
        length, i = self.node.chunk_length, self.emitted
        self.emitted += 1
        return {c: v[i * length : (i + 1) * length] for c, v in self.cols.items()}

    def get_state(self) -> StateDict:
        if self.anchor is None:
            return {"parent": self.parent.state_dict(), "emitted": None}
        return {"parent": self.anchor, "emitted": self.emitted}
