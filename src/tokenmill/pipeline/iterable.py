"""``Pipeline.from_iterable``: any re-iterable that yields the same items each time it is iterated.

This is the one source whose resume is O(position): an arbitrary iterable has no position to seek to, so
resuming iterates it again from the start and skips the items already consumed. Prefer ``from_files``,
``from_sequence`` or ``from_cache`` for large data.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

from tokenmill.pipeline.base import Node, Stage, StateDict, require


@dataclasses.dataclass(frozen=True, eq=False)
class IterableNode(Node):
    iterable: Iterable[Any]
    repeat: bool = False
    name = "from_iterable"

    def build(self, state: StateDict | None) -> Stage:
        epoch, count = (
            (0, 0)
            if state is None
            else (require(state, "epoch", self.name), require(state, "count", self.name))
        )
        return IterableStage(self, int(epoch), int(count))


class IterableStage(Stage):
    def __init__(self, node: IterableNode, epoch: int, count: int) -> None:
        self.node = node
        self.epoch = epoch
        self.count = count
        self._it = iter(node.iterable)
        if count:
            # O(position): re-iterate and drop what the consumer already received
            skipped = sum(1 for _ in itertools.islice(self._it, count))
            if skipped < count:
                self._it = iter(())

    def next(self) -> Any:
        while True:
            try:
                item = next(self._it)
            except StopIteration:
                if not self.node.repeat or self.count == 0:
                    raise
                self.epoch += 1
                self.count = 0
                self._it = iter(self.node.iterable)
                continue
            self.count += 1
            return item

    def get_state(self) -> StateDict:
        return {"epoch": self.epoch, "count": self.count}

    def release(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
