"""Batch-at-a-time stages that stay exact on resume: tokenize, format and the parallel maps.

Such a stage reads a batch of items from its parent, processes the batch at once (one ``encode_batch`` call, or
one submission to a worker pool) and hands the results out one by one, possibly while a background thread
prepares the next batch. Its state is the parent's state *before* the batch it is handing out (the anchor) plus
how many of that batch's items the consumer has received. Resuming re-reads at most one batch from the anchor and
skips, without processing them, the items already received: a bounded cost, whatever the position.

With ``ordered=False`` results are handed out as they complete; the state then also lists which items past the
contiguous prefix were received, so none is lost or repeated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from tokenmill.pipeline.base import (
    ParentStage,
    Skipped,
    Stage,
    StateDict,
    parent_state,
    read_skipped,
    require,
    skipped_counts,
)
from tokenmill.state import Prefetch

#: a batch function returns one result per input (``None`` drops the item), or one Future per input
BatchFn = Callable[[list[Any]], Sequence[Any]]


class _Batch:
    __slots__ = ("anchor", "base", "done", "indices", "results", "pending")

    def __init__(
        self, anchor: StateDict, base: int, done: set[int], indices: list[int], results: Sequence[Any]
    ) -> None:
        self.anchor = anchor  # parent state before the batch's first item
        self.base = base  # items of the batch received before a resume, in a prefix ...
        self.done = done  # ... and out of order (ordered=False)
        self.indices = indices  # in-batch index of each result
        self.results = results
        self.pending = list(range(len(results)))  # positions not yet handed out


class AnchoredStage(ParentStage):
    """Reads batches of up to ``batch_items`` items (and ``batch_weight`` of ``weight_fn``) through ``fn``."""

    def __init__(
        self,
        parent: Stage,
        state: StateDict | None,
        fn: BatchFn,
        *,
        name: str,
        batch_items: int = 64,
        batch_weight: int | None = None,
        weight_fn: Callable[[Any], int] | None = None,
        prefetch: int = 0,
        ordered: bool = True,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.fn = fn
        self.batch_items = max(1, batch_items)
        self.batch_weight = batch_weight
        self.weight_fn = weight_fn
        self.ordered = ordered
        self.skipped: dict[str, int] = {}
        # the resume point: skip `skip` items, and the listed items past them, of the batch starting at the anchor
        if state is None:
            self._resume_skip, self._resume_done = 0, set()
            anchor = parent.state_dict()
        else:
            self._resume_skip = int(require(state, "skip", name))
            self._resume_done = {int(i) for i in state.get("done", ())}
            self.skipped.update(read_skipped(state))
            anchor = parent_state(state, name)
        self.current = _Batch(anchor, self._resume_skip, self._resume_done, [], [])
        self.current_done: set[int] = set()
        self._first = True
        self._exhausted = False
        self._stop = threading.Event()  # set on close: a half-read batch is dropped
        self._prefetch: Prefetch[_Batch, _Batch] | None = None
        if prefetch > 0:
            self._prefetch = Prefetch(self._batches(), anchor, depth=prefetch, name=f"tokenmill-{name}")

    # --- producing batches (in the background thread, or inline) --------------------------------------------
    def _read_batch(self) -> _Batch | None:
        anchor = self.current.anchor if self._first else self.parent.state_dict()
        base, done = (self._resume_skip, self._resume_done) if self._first else (0, set())
        self._first = False
        for _ in range(base):
            try:
                next(self.parent)
            except StopIteration:
                return None
        items, indices, weight = [], [], 0
        index = base
        while index < self.batch_items and (self.batch_weight is None or weight < self.batch_weight):
            if self._stop.is_set():
                return None  # closing: drop the half-read batch
            try:
                item = next(self.parent)
            except StopIteration:
                if not items and index == base:
                    return None
                break
            if index not in done:
                items.append(item)
                indices.append(index)
                if self.weight_fn is not None:
                    weight += self.weight_fn(item)
            index += 1
        return _Batch(anchor, base, done, indices, self.fn(items) if items else [])

    def _batches(self) -> Iterator[tuple[_Batch, StateDict]]:
        """Each batch with its anchor, for the one prefetch (tokenmill.state.Prefetch)."""
        while (batch := self._read_batch()) is not None:
            yield batch, batch.anchor

    def _next_batch(self) -> _Batch | None:
        if self._prefetch is None:
            return self._read_batch()
        try:
            return self._prefetch.next()
        except StopIteration:
            return None

    # --- consuming ----------------------------------------------------------------------------------------
    def next(self) -> Any:
        while True:
            batch = self.current
            while batch.pending:
                pos = self._pick(batch)
                batch.pending.remove(pos)
                result = batch.results[pos]
                if isinstance(result, Future):
                    result = result.result()
                self.current_done.add(batch.indices[pos])
                if isinstance(result, Skipped):
                    self.skipped[result.reason] = self.skipped.get(result.reason, 0) + 1
                elif result is not None:
                    return result
            if self._exhausted:
                raise StopIteration
            nxt = self._next_batch()
            if nxt is None:
                self._exhausted = True
                # the state stays "all of the last batch received"
                raise StopIteration
            self.current = nxt
            self.current_done = set()

    def _pick(self, batch: _Batch) -> int:
        if self.ordered:
            return batch.pending[0]
        futures = [batch.results[p] for p in batch.pending]
        if not all(isinstance(f, Future) for f in futures):
            return batch.pending[0]
        done_now = [p for p in batch.pending if batch.results[p].done()]
        if not done_now:
            wait(futures, return_when=FIRST_COMPLETED)
            done_now = [p for p in batch.pending if batch.results[p].done()]
        return done_now[0]

    def get_state(self) -> StateDict:
        batch = self.current
        received = self.current_done | batch.done
        skip = batch.base
        while skip in received:
            skip += 1
        done = sorted(i for i in received if i > skip)
        return {"parent": batch.anchor, "skip": skip, "done": done, "skipped": skipped_counts(self.skipped)}

    def release(self) -> None:
        self._stop.set()
        if self._prefetch is not None:
            self._prefetch.close()
        for result in getattr(self.current, "results", ()):
            if isinstance(result, Future):
                result.cancel()
