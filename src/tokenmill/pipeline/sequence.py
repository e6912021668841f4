"""``Pipeline.from_sequence``: items of an in-memory sequence, optionally reshuffled every epoch.

The state is two integers (epoch, index in epoch); the epoch's order is recomputed from (seed, epoch), so resuming
costs one permutation of ``len(sequence)``, whatever the position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.pipeline.base import Node, Stage, StateDict, require


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray | None:
    """The order of one epoch: None for natural order, else a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return None
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)]).permutation(n)


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceNode(Node):
    sequence: Sequence[Any]
    repeat: bool = False
    shuffle: bool = False
    seed: int = 42
    rank: int = 0
    world_size: int = 1
    name = "from_sequence"

    def describe(self) -> str:
        return f"from_sequence(shuffle={self.shuffle}, shard={self.rank}/{self.world_size})"

    def shard_source(self, rank: int, world_size: int) -> Node:
        # composing shards: the j-th item of shard (r, w) is item r + w*j; splitting it again by (k, K) gives
        # the items r + w*k + w*K*i, i.e. shard (r + w*k, w*K)
        return dataclasses.replace(
            self, rank=self.rank + self.world_size * rank, world_size=self.world_size * world_size
        )

    def build(self, state: StateDict | None) -> Stage:
        epoch, index = (
            (0, 0)
            if state is None
            else (require(state, "epoch", self.name), require(state, "index", self.name))
        )
        return SequenceStage(self, int(epoch), int(index))


class SequenceStage(Stage):
    def __init__(self, node: SequenceNode, epoch: int, index: int) -> None:
        self.node = node
        self.items = range(node.rank, len(node.sequence), node.world_size)
        self.epoch = epoch
        self.index = index
        self.order = epoch_order(len(self.items), node.shuffle, node.seed, epoch)

    def next(self) -> Any:
        n = len(self.items)
        while self.index >= n:
            if not self.node.repeat or n == 0:
                raise StopIteration
            self.epoch += 1
            self.index = 0
            self.order = epoch_order(n, self.node.shuffle, self.node.seed, self.epoch)
        i = self.index if self.order is None else int(self.order[self.index])
        self.index += 1
        return self.node.sequence[self.items[i]]

    def get_state(self) -> StateDict:
        return {"epoch": self.epoch, "index": self.index}
