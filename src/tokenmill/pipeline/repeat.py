"""``repeat``: iterate the parent again from its start when it ends (``n`` times, or forever)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require


@dataclasses.dataclass(frozen=True, eq=False)
class RepeatNode(Node):
    parent: Node
    times: int | None = None
    name = "repeat"

    def build(self, state: StateDict | None) -> Stage:
        epoch = 0 if state is None else int(require(state, "epoch", self.name))
        return RepeatStage(self, self.parent.build(parent_state(state, self.name)), epoch)


class RepeatStage(ParentStage):
    def __init__(self, node: RepeatNode, parent: Stage, epoch: int) -> None:
        super().__init__(parent)
        self.node = node
        self.epoch = epoch
        self.emitted_this_epoch = True  # unknown after a resume; only guards against an empty parent

    def next(self) -> Any:
        while True:
            if self.node.times is not None and self.epoch >= self.node.times:
                raise StopIteration
            try:
                item = next(self.parent)
            except StopIteration:
                if not self.emitted_this_epoch:
                    raise  # an empty parent would loop forever
                self.parent.close()
                self.epoch += 1
                self.parent = self.node.parent.build(None)
                self.emitted_this_epoch = False
                continue
            self.emitted_this_epoch = True
            return item

    def get_state(self) -> StateDict:
        return {"parent": self.parent.state_dict(), "epoch": self.epoch}
