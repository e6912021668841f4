"""``concat``: the pipelines one after the other.

The state is the index of the pipeline being read and a list with one entry per pipeline, the state of the one
being read and None for the others: the pipelines' states differ in shape, and a list keeps the concat state's
own keys the same whichever pipeline is current.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.errors import StateError
from tokenmill.pipeline.base import Node, Stage, StateDict, require


@dataclasses.dataclass(frozen=True, eq=False)
class ConcatNode(Node):
    parents: tuple[Node, ...]
    name = "concat"

    def build(self, state: StateDict | None) -> Stage:
        if not self.parents:
            raise ValueError("concat needs at least one pipeline")
        if state is None:
            return ConcatStage(self, 0, None)
        index = int(require(state, "index", self.name))
        if not 0 <= index < len(self.parents):
            raise StateError(f"concat state names pipeline {index} of {len(self.parents)}")
        if "current" in state:  # written before the list form
            return ConcatStage(self, index, state["current"])
        states = require(state, "parents", self.name)
        return ConcatStage(self, index, states[index])


class ConcatStage(Stage):
    def __init__(self, node: ConcatNode, index: int, current: StateDict | None) -> None:
        self.node = node
        self.index = index
        self.current: Stage | None = node.parents[index].build(current)

    def next(self) -> Any:
        while self.current is not None:
            try:
                return next(self.current)
            except StopIteration:
                if self.index + 1 >= len(self.node.parents):
                    raise
                self.current.close()
                self.index += 1
                self.current = self.node.parents[self.index].build(None)
        raise StopIteration

    def get_state(self) -> StateDict:
        assert self.current is not None
        states: list[StateDict | None] = [None] * len(self.node.parents)
        states[self.index] = self.current.state_dict()
        return {"index": self.index, "parents": states}

    def release(self) -> None:
        if self.current is not None:
            self.current.close()
