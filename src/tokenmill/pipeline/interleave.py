"""``interleave``: mix pipelines by weight, with an explicit policy for a source that runs out.

The source of item ``t`` is drawn from a counter-based random stream seeded by (seed, t // 1024), so the state is
the step count plus each source's own state: nothing replays on resume. ``stop`` decides what happens when the
chosen source is exhausted:

- ``"first"``: the interleave ends (epochraft's behaviour);
- ``"all"``: the exhausted source drops out and the weights of the others are renormalised; ends when all are out;
- ``"never"``: the exhausted source starts again from its beginning (an endless mixture).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.errors import StateError
from tokenmill.pipeline.base import Node, Stage, StateDict, require

_BLOCK = 1024
STOP_POLICIES = ("first", "all", "never")


@dataclasses.dataclass(frozen=True, eq=False)
class InterleaveNode(Node):
    parents: tuple[Node, ...]
    weights: tuple[float, ...]
    stop: str = "first"
    seed: int = 42
    name = "interleave"

    def __post_init__(self) -> None:
        if not self.parents:
            raise ValueError("interleave needs at least one pipeline")
        if len(self.weights) != len(self.parents):
            raise ValueError(f"{len(self.weights)} weights for {len(self.parents)} pipelines")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(self.weights)}")
        if self.stop not in STOP_POLICIES:
            raise ValueError(f"stop must be one of {STOP_POLICIES}, got {self.stop!r}")

    def describe(self) -> str:
        return f"interleave(stop={self.stop})"

    def build(self, state: StateDict | None) -> Stage:
        n = len(self.parents)
        if state is None:
            return InterleaveStage(self, 0, [False] * n, [0] * n, [None] * n)
        sources = require(state, "sources", self.name)
        if len(sources) != n:
            raise StateError(f"interleave state has {len(sources)} sources, the pipeline has {n}")
        return InterleaveStage(
            self,
            int(require(state, "step", self.name)),
            [bool(x) for x in require(state, "exhausted", self.name)],
            [int(x) for x in require(state, "epochs", self.name)],
            list(sources),
        )


class InterleaveStage(Stage):
    def __init__(
        self,
        node: InterleaveNode,
        step: int,
        exhausted: list[bool],
        epochs: list[int],
        states: Sequence[StateDict | None],
    ) -> None:
        self.node = node
        self.step = step
        self.exhausted = exhausted
        self.epochs = epochs
        self.weights = np.asarray(node.weights, dtype=np.float64)
        self.sources: list[Stage | None] = [
            None if done else p.build(s) for p, done, s in zip(node.parents, exhausted, states, strict=True)
        ]
        self._block = -1
        self._uniforms = np.zeros(0)

    def _uniform(self, step: int) -> float:
        block = step // _BLOCK
        if block != self._block:
            self._uniforms = np.random.default_rng([int(self.node.seed) & 0xFFFFFFFF, block]).random(_BLOCK)
            self._block = block
        return float(self._uniforms[step % _BLOCK])

    def _choose(self, u: float) -> int:
        w = np.where(self.exhausted, 0.0, self.weights)
        total = w.sum()
        if total <= 0:
            raise StopIteration
        i = int(np.searchsorted(np.cumsum(w) / total, u, side="right"))
        return min(i, len(w) - 1 - int(np.argmax(w[::-1] > 0)))  # never land on a zero-weight tail

    def next(self) -> Any:
        u = self._uniform(self.step)
        while True:
            i = self._choose(u)
            source = self.sources[i]
            assert source is not None
            try:
                item = next(source)
            except StopIteration:
                if self.node.stop == "first":
                    raise
                source.close()
                if self.node.stop == "all":
                    self.exhausted[i] = True
                    self.sources[i] = None
                    continue
                # never: start the source again; an empty source would loop forever
                self.epochs[i] += 1
                fresh = self.node.parents[i].build(None)
                try:
                    item = next(fresh)
                except StopIteration:
                    fresh.close()
                    raise ValueError(f"interleave(stop='never'): source {i} yields nothing") from None
                self.sources[i] = fresh
            self.step += 1
            return item

    def get_state(self) -> StateDict:
        return {
            "step": self.step,
            "exhausted": list(self.exhausted),
            "epochs": list(self.epochs),
            "sources": [None if s is None else s.state_dict() for s in self.sources],
        }

    def release(self) -> None:
        for s in self.sources:
            if s is not None:
                s.close()
