"""``prefetch``: run everything above this stage in a background thread, ``buffer_size`` items ahead.

Each item travels with the parent's state right after it (``tokenmill.state.PrefetchIterator``), so the state is
the one that goes with the last item the consumer received, not with what the thread has read ahead. This is the
built-in background iterator for training loops that use no DataLoader.
"""

from __future__ import annotations

import dataclasses

from tokenmill.pipeline.base import Node, Stage, StateDict
from tokenmill.state import PrefetchIterator


@dataclasses.dataclass(frozen=True, eq=False)
class PrefetchNode(Node):
    parent: Node
    buffer_size: int = 2
    name = "prefetch"
    stateless = True

    def build(self, state: StateDict | None) -> Stage:
        return PrefetchIterator(self.parent.build(state), max(1, self.buffer_size))
