"""The two base types of the pipeline: a :class:`Node` describes a stage, a :class:`Stage` iterates it.

A node is an immutable description (its parameters and its parent nodes). ``node.build(state)`` opens a fresh
iterator, resumed from ``state`` when given. Keeping the description apart from the iterator is what lets a
pipeline be iterated many times, resumed from a saved state, re-sharded for a DataLoader worker, or pickled into
a worker process before any file is open.

The state contract every stage follows (Grain / torchdata.nodes style):

- ``state_dict()`` returns plain JSON-able data describing what the *consumer has received* so far, never what
  background threads or workers have read ahead;
- a stateless stage returns its parent's state unchanged; a stateful one nests it: ``{"parent": ..., own keys}``;
- ``build(state)`` never mutates ``state`` and resumes so that the next item equals the next item of an
  uninterrupted run;
- resuming costs O(1) in the position: a stage may re-read a bounded amount of its input (one document, one
  shuffle block), never everything read before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.state import (  # noqa: F401 - re-exported for the stages
    ChildIterator,
    ResumableIterator,
    parent_state,
    require,
)

Sample = dict[str, Any]
StateDict = dict[str, Any]  # the same as tokenmill.state.State


class Skipped:
    """A record a stage rejects (a bad record with ``on_error="skip"``): dropped, and counted under ``reason`` in
    the state when the consumer passes it, so the count matches what was received."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def skipped_counts(skipped: dict[str, int]) -> list[list[Any]]:
    """Counts of skipped records by reason, as the state holds them: ``[[reason, count], ...]`` sorted by reason.

    A list rather than a dict keyed by reason, so the state's structure (its keys) does not change the first
    time a record is skipped (``tokenmill.testing.assert_resumes`` checks it)."""
    return [[reason, count] for reason, count in sorted(skipped.items())]


def read_skipped(state: StateDict) -> dict[str, int]:
    """The counts :func:`skipped_counts` wrote (a dict by reason, as states before the list form, works too)."""
    return {str(k): int(v) for k, v in dict(state.get("skipped") or {}).items()}


#: a running stage is a resumable iterator (tokenmill.state); the names stay for the stages' modules
Stage = ResumableIterator


class ParentStage(ChildIterator[Any]):
    """A stage with one parent stage: closing it closes the parent."""


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """Immutable description of one stage. Subclasses are dataclasses with a ``parent`` or ``parents`` field."""

    # --- to override -------------------------------------------------------------------------------------
    name = "node"
    #: a stateless stage passes its parent's state through unchanged
    stateless = False

    def build(self, state: StateDict | None) -> Stage:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        """Short text naming the stage and what decides its state layout (used to refuse a foreign state)."""
        return self.name

    def shard_source(self, rank: int, world_size: int) -> Node | None:
        """For sources: the sharded source (for example by file), or None to fall back to a record stride."""
        return None

    # --- tree helpers --------------------------------------------------------------------------------------
    def children(self) -> tuple[Node, ...]:
        if hasattr(self, "parents"):
            return tuple(self.parents)  # type: ignore[attr-defined]
        if hasattr(self, "parent"):
            return (self.parent,)  # type: ignore[attr-defined]
        return ()

    def with_children(self, children: tuple[Node, ...]) -> Node:
        if hasattr(self, "parents"):
            return dataclasses.replace(self, parents=tuple(children))  # type: ignore[call-arg]
        if hasattr(self, "parent"):
            (child,) = children
            return dataclasses.replace(self, parent=child)  # type: ignore[call-arg]
        return self

    def signature(self) -> str:
        kids = self.children()
        if not kids:
            return self.describe()
        if len(kids) == 1:
            return f"{kids[0].signature()} > {self.describe()}"
        return f"{self.describe()}[{' | '.join(k.signature() for k in kids)}]"

    @property
    def tokenizer(self) -> Any:
        own = getattr(self, "tok", None)
        if own is not None:
            return own
        for child in self.children():
            found = child.tokenizer
            if found is not None:
                return found
        return None
