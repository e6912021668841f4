"""``concat_chunk``: concatenate the items' token columns into one stream and cut it into ``chunk_length``
pieces (the classic pretraining layout; the tail of the stream that does not fill a piece is dropped).

The state holds no tokens. After a chunk is handed out, the tokens left over always come from the last item read
(the stage only reads while it has fewer than ``chunk_length`` tokens, so everything before that item was used).
The state is therefore the parent's state before that item plus how many of its tokens were used; a resume reads
that one item again and drops the used tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require
from tokenmill.pipeline.tokens import columns_of, length_of, token_columns


@dataclasses.dataclass(frozen=True, eq=False)
class ConcatChunkNode(Node):
    parent: Node
    chunk_length: int
    target_columns: Sequence[str] | None = None
    name = "concat_chunk"

    def __post_init__(self) -> None:
        if self.chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {self.chunk_length}")

    def describe(self) -> str:
        return f"concat_chunk({self.chunk_length})"

    def build(self, state: StateDict | None) -> Stage:
        stage = ConcatChunkStage(self, self.parent.build(parent_state(state, self.name)))
        if state is not None:
            stage.restore(require(state, "offset", self.name))
        return stage


class ConcatChunkStage(ParentStage):
    def __init__(self, node: ConcatChunkNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node
        self.columns: list[str] | None = None
        self.carry: list[dict[str, np.ndarray]] = []  # whole earlier items, fewer than chunk_length tokens
        self.carried = 0
        self.anchor: StateDict | None = None  # parent state before the last item read
        self.last: dict[str, np.ndarray] = {}
        self.last_len = 0
        self.used = 0  # tokens of the last item already handed out

    def _read(self) -> None:
        anchor = self.parent.state_dict()
        sample = next(self.parent)
        if self.columns is None:
            self.columns = token_columns(sample, self.node.target_columns)
        cols = columns_of(sample, self.columns, self.node.name)
        if self.anchor is not None and self.used < self.last_len:
            self.carry.append({c: v[self.used :] for c, v in self.last.items()})
            self.carried += self.last_len - self.used
        self.anchor, self.last, self.last_len, self.used = anchor, cols, length_of(cols), 0

    def restore(self, offset: int | None) -> None:
        if offset is not None:
            self._read()
            self.used = int(offset)

    def next(self) -> Any:
        length = self.node.chunk_length
        while self.anchor is None or self.carried + self.last_len - self.used < length:
            self._read()
        take = length - self.carried
        if not self.carry:
            out = {c: v[self.used : self.used + take].copy() for c, v in self.last.items()}
        else:
            out = {
                c: np.concatenate([p[c] for p in self.carry] + [v[self.used : self.used + take]])
                for c, v in self.last.items()
            }
            self.carry, self.carried = [], 0
        self.used += take
        return out

    def get_state(self) -> StateDict:
        if self.anchor is None:
            return {"parent": self.parent.state_dict(), "offset": None}
        return {"parent": self.anchor, "offset": self.used}
