"""Running the plan: units dispatched lazily to an executor, finished ones committed strictly in plan order.

Committing in plan order is what makes the cache the same whatever the number of workers and what lets a killed
build resume from the last committed unit (see :mod:`tokenmill.cache.writer`). Subset limits (``max_documents``,
``max_total_tokens``) and dedup are applied at commit time, in plan order, so the kept documents never depend on
timing: a unit that crosses a limit or holds documents an earlier unit stored is redone with the exact budget.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from tokenmill.cache.lock import CacheLock
from tokenmill.cache.manifest import Manifest, write_manifest
from tokenmill.cache.writer import CacheCommitter, LedgerState
from tokenmill.dedup import SeenKeys, load_committed_keys, read_cache_keys, save_commit_keys
from tokenmill.errors import TokenmillError
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.executors import Executor, WorkerLost
from tokenmill.prepare.records import Counts, Task, Unit, UnitResult

MAX_RESTARTS = 3  # lost workers tolerated per build before prepare gives up (a unit that kills its worker)
COMMIT_EVERY_S = 0.5  # at most two commits a second: each is a Lance version and a ledger write


def remaining(config: PrepareConfig, counts: Counts) -> tuple[int | None, int | None]:
    """Documents and tokens still allowed by --max-documents / --max-total-tokens (None: no limit)."""
    docs = None if config.max_documents is None else config.max_documents - counts.documents
    toks = None if config.max_total_tokens is None else config.max_total_tokens - counts.tokens
    return docs, toks


def limit_reached(config: PrepareConfig, counts: Counts) -> bool:
    return any(left is not None and left <= 0 for left in remaining(config, counts))


@dataclass
class Dispatch:
    """One run over the plan's units from ``state.through`` on; :meth:`run` returns the final ledger state."""

    config: PrepareConfig
    cache: str
    units: list[Unit]
    state: LedgerState
    executor: Executor
    committer: CacheCommitter
    progress: Progress
    manifest: Manifest
    lock: CacheLock | None = None  # the writer lock: its heartbeat is refreshed as units are committed
    in_flight: dict[cf.Future, int] = field(default_factory=dict)
    done: dict[int, UnitResult | TokenmillError] = field(default_factory=dict)  # an error: raised in its turn
    seen: SeenKeys | None = None  # dedup: keys stored by the committed prefix and by dedup_seen caches

    def run(self) -> LedgerState:
        if self.config.dedup:
            self.seen = seen_keys(self.config, self.cache, self.state.through)
        try:
            self._loop()
        except BaseException:
            self._save_finished_prefix()
            raise
        self._discard_beyond_limit()
        return self.state

    # the loop ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_unit, restarts, last_commit = self.state.through, 0, 0.0
        while not limit_reached(self.config, Counts.from_json(self.state.stats)):
            while next_unit < len(self.units) and len(self.in_flight) < self.executor.max_in_flight:
                self._submit(next_unit)
                next_unit += 1
            if not self.in_flight and self.state.through >= len(self.units):
                return
            if self._collect_finished():
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise TokenmillError(
                        "prepare workers keep dying (out of memory?); see the log above"
                    ) from None
            if self.state.through not in self.done:
                continue
            busy = self.in_flight and next_unit < len(self.units)
            if busy and time.monotonic() - last_commit < COMMIT_EVERY_S:
                continue
            finished = self._commit_prefix(redo=True)
            last_commit = time.monotonic()
            self.manifest.skipped = dict(self.state.stats.get("skipped", {}))
            if finished:
                return

    def _task(self, i: int, **limits: object) -> Task:
        return Task(index=i, unit=self.units[i], output=self.cache, **limits)  # type: ignore[arg-type]

    @property
    def _budgeted(self) -> bool:
        return self.config.max_documents is not None or self.config.max_total_tokens is not None

    def _submit(self, i: int) -> None:
        """Run unit ``i`` within what the budget has left now: an upper bound of what it may keep, so a source
        (a streamed dataset, a compressed file read whole) is not read past the budget; the exact share is
        settled at commit time, in plan order."""
        docs_left, toks_left = remaining(self.config, Counts.from_json(self.state.stats))
        self.in_flight[
            self.executor.submit(self._task(i, limit_documents=docs_left, limit_tokens=toks_left))
        ] = i

    def _collect_finished(self) -> bool:
        """Move finished units to ``done``; after a lost worker, resubmit what was lost. Returns whether one was."""
        ready, _ = cf.wait(list(self.in_flight), timeout=0.5, return_when=cf.FIRST_COMPLETED)
        for fut in ready:
            i = self.in_flight.pop(fut)
            try:
                self.done[i] = fut.result()
            except WorkerLost:
                self._resubmit_after_loss(i)
                return True
            except TokenmillError as exc:
                if not self._budgeted:
                    raise
                # under a budget, a unit's error counts only if the units before it leave it a share: raised
                # when the commit reaches it, never when the budget is met first
                self.done[i] = exc
        return False

    def _resubmit_after_loss(self, i: int) -> None:
        for other in self.in_flight:
            other.cancel()
        lost = sorted({i} | set(self.in_flight.values()))
        self.in_flight.clear()
        self.executor.restart()
        for j in lost:
            if j not in self.done:
                self._submit(j)

    # commits ----------------------------------------------------------------------------------------
    def _commit_prefix(self, redo: bool) -> bool:
        """Commit the finished units that follow the committed prefix, in plan order.

        A unit that crosses a subset limit, or holds documents an earlier unit stored, is redone with the exact
        remaining budget and without those documents (``redo``), or left to a rerun (after a failure), so the
        subset and the kept copies are the same on every run. Returns whether a subset limit ended the build.
        """
        counts, through, finished = Counts.from_json(self.state.stats), self.state.through, False
        fragments: list[dict] = []
        keys: list[int] = []
        sums: list[np.ndarray] = []
        while through in self.done:
            result = self.done[through]
            if isinstance(result, BaseException):
                if redo:
                    raise result
                break
            redo_task = self._redo_task(through, result, counts)
            if redo_task is not None:
                if not redo:
                    break
                self.committer.discard(result.fragments)
                result = self.executor.submit(redo_task).result()
            finished = result.stopped
            del self.done[through]
            if self.seen is not None:
                self.seen.add(result.keys)
                keys.extend(result.keys)
            fragments.extend(result.fragments)
            if result.row_sums is not None:
                sums.append(result.row_sums)
            counts = counts.plus(replace(result.counts, bytes=self.units[through].bytes))
            self.progress.update(self.units[through].bytes, counts)
            through += 1
            if finished:
                break
        if through > self.state.through:
            if self.lock is not None:
                self.lock.heartbeat()
            if self.seen is not None:
                save_commit_keys(self.cache, self.state.through, through, keys, self.config.storage_options)
            self.committer.save_row_checksums(
                self.state.through, through, np.concatenate(sums) if sums else np.zeros(0, dtype=np.uint64)
            )
            self.state = self.committer.commit(fragments, through, counts.to_json())
        return finished

    def _redo_task(self, i: int, result: UnitResult, counts: Counts) -> Task | None:
        """The task that redoes unit ``i`` within the budget and without stored copies, or None if it fits."""
        docs_left, toks_left = remaining(self.config, counts)
        over_docs = docs_left is not None and result.counts.documents > docs_left
        over_toks = toks_left is not None and result.counts.tokens > toks_left
        dups = self.seen.intersect(result.keys) if self.seen is not None else []
        if not (over_docs or over_toks or dups):
            return None
        return self._task(i, limit_documents=docs_left, limit_tokens=toks_left, drop_keys=tuple(dups))

    def _save_finished_prefix(self) -> None:
        """After a failure: commit what finished in order, so the cache stays valid and a rerun resumes."""
        for fut in self.in_flight:
            fut.cancel()
        self._commit_prefix(redo=False)
        for result in self.done.values():
            if not isinstance(result, BaseException):
                self.committer.discard(result.fragments)
        self.manifest.skipped = dict(self.state.stats.get("skipped", {}))
        write_manifest(self.cache, self.manifest, self.config.storage_options)

    def _discard_beyond_limit(self) -> None:
        """Delete what units never committed (because a subset limit was reached) wrote."""
        for result in self.done.values():
            if not isinstance(result, BaseException):
                self.committer.discard(result.fragments)
        for fut in self.in_flight:
            if fut.cancel():
                continue
            try:
                self.committer.discard(fut.result().fragments)
            except (TokenmillError, OSError, cf.CancelledError):
                pass


def seen_keys(config: PrepareConfig, cache: str, through: int) -> SeenKeys:
    """Keys of the documents stored by the committed units of this cache and by the caches in dedup_seen."""
    so = config.storage_options
    parts = [load_committed_keys(cache, through, so)]
    parts += [read_cache_keys(other.rstrip("/"), so) for other in config.dedup_seen]
    return SeenKeys(np.concatenate(parts))


class Progress:
    """A progress bar on a terminal (documents, tokens, MB/s, ETA from bytes); silent in pipes and CI."""

    def __init__(
        self, enabled: bool | None, total_bytes: int, done_bytes: int, label: str = "prepare"
    ) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_bytes or None,
                initial=done_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                desc=label,
                file=sys.stderr,
            )

    def update(self, nbytes: int, counts: Counts) -> None:
        if self.bar is not None:
            self.bar.set_postfix(docs=counts.documents, tokens=counts.tokens, refresh=False)
            self.bar.update(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
