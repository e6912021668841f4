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
import queue
import threading
from collections.abc import Iterator
from typing import Any

from tokenmill.errors import StateError

Sample = dict[str, Any]
StateDict = dict[str, Any]


class Stage(Iterator[Any]):
    """A running iterator of one stage; closes its parents when closed."""

    def __iter__(self) -> Stage:
        return self

    def __next__(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> StateDict:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release files, threads and workers; safe to call more than once."""

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a dropped iterator must not leak threads or open files
        try:
            self.close()
        except Exception:
            pass


class ParentStage(Stage):
    """A stage with one parent stage: closing it closes the parent."""

    def __init__(self, parent: Stage) -> None:
        self.parent = parent
        self._closed = False

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self.parent.close()


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


def parent_state(state: StateDict | None, stage: str) -> StateDict | None:
    """The parent's part of a nested state, with a clear error when the state does not fit the stage."""
    if state is None:
        return None
    if not isinstance(state, dict) or "parent" not in state:
        raise StateError(
            f"state for stage {stage!r} has no 'parent' key: this state was saved by another pipeline"
        )
    return state["parent"]


def require(state: StateDict, key: str, stage: str) -> Any:
    try:
        return state[key]
    except (KeyError, TypeError):
        raise StateError(
            f"state for stage {stage!r} lacks {key!r}: this state was saved by another pipeline"
        ) from None


def put_until_stopped(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put ``item`` on a bounded queue, giving up once ``stop`` is set.

    A background reader must not block forever on a full queue after its consumer has closed the iterator.
    """
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
