"""``map``, ``filter`` and ``filter_map``: one function per item, no state of their own.

A stateless stage passes its parent's state through: an item is either emitted or dropped the moment it is read,
so the parent's position is exactly what the consumer has received.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict

_DROP = object()


def as_filter_map(fn: Callable[[Any], Any], kind: str) -> Callable[[Any], Any]:
    """Turn a map or filter function into a filter_map one (None means drop)."""
    if kind == "filter_map":
        return fn
    if kind == "map":
        return fn
    return _FilterAdapter(fn)


class _FilterAdapter:
    """A picklable ``x -> x if fn(x) else None`` (lambdas cannot cross into worker processes)."""

    def __init__(self, fn: Callable[[Any], bool]) -> None:
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        return item if self.fn(item) else None


@dataclasses.dataclass(frozen=True, eq=False)
class MapNode(Node):
    parent: Node
    fn: Callable[[Any], Any]
    kind: str = "map"  # map | filter | filter_map
    stateless = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.kind

    def build(self, state: StateDict | None) -> Stage:
        return MapStage(self.parent.build(state), as_filter_map(self.fn, self.kind), drops=self.kind != "map")


class MapStage(ParentStage):
    def __init__(self, parent: Stage, fn: Callable[[Any], Any], drops: bool) -> None:
        super().__init__(parent)
        self.fn = fn
        self.drops = drops

    def next(self) -> Any:
        if not self.drops:
            return self.fn(next(self.parent))
        while True:
            out = self.fn(next(self.parent))
            if out is not None:
                return out
