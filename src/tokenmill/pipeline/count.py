"""``take``, ``skip``, ``stride`` and ``enumerate``: stages whose whole state is one counter."""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require


@dataclasses.dataclass(frozen=True, eq=False)
class CountNode(Node):
    """``mode`` is take (stop after ``n``), skip (drop the first ``n``), stride (keep ``i % n == offset``) or
    enumerate (write the index into ``column``)."""

    parent: Node
    mode: str
    n: int = 0
    offset: int = 0
    column: str = "step"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.mode

    def describe(self) -> str:
        return f"{self.mode}({self.n},{self.offset})" if self.mode == "stride" else f"{self.mode}({self.n})"

    def build(self, state: StateDict | None) -> Stage:
        count = 0 if state is None else int(require(state, "count", self.mode))
        return CountStage(self, self.parent.build(parent_state(state, self.mode)), count)


class CountStage(ParentStage):
    def __init__(self, node: CountNode, parent: Stage, count: int) -> None:
        super().__init__(parent)
        self.node = node
        self.count = count  # items read from the parent (take/enumerate: items emitted)

    def next(self) -> Any:
        node = self.node
        if node.mode == "take":
            if self.count >= node.n:
                raise StopIteration
            item = next(self.parent)
            self.count += 1
            return item
        if node.mode == "skip":
            while self.count < node.n:
                next(self.parent)
                self.count += 1
            return next(self.parent)
        if node.mode == "stride":
            while self.count % node.n != node.offset:
                next(self.parent)
                self.count += 1
            item = next(self.parent)
            self.count += 1
            return item
        # enumerate
        item = next(self.parent)
        if isinstance(item, dict):
            item = dict(item)
            item[node.column] = self.count
        else:
            item = (self.count, item)
        self.count += 1
        return item

    def get_state(self) -> StateDict:
        return {"parent": self.parent.state_dict(), "count": self.count}
