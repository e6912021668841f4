"""Executors: where prepare's work units run. One protocol, two implementations (local processes, Ray tasks).

The coordinator hands an executor the worker's two functions (``init`` once per worker process, ``run`` per unit)
and then only calls :meth:`Executor.submit`; it cannot tell a local pool from a Ray cluster. A worker that dies
(``kill -9``, out of memory, a lost node) surfaces as :class:`WorkerLost` from either, and the coordinator
resubmits the units that were lost with it.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from tokenmill.errors import TokenmillError
from tokenmill.prepare.records import Task, UnitResult, WorkerSetup


class WorkerLost(TokenmillError):
    """A worker process died while it ran a unit; the coordinator resubmits the unit."""


@dataclass(frozen=True)
class WorkerFunctions:
    """What an executor runs: ``init(setup)`` once per worker process, then ``run(task)`` for every unit.

    Both must be importable module-level functions (Ray and spawned processes find them by name).
    """

    init: Callable[[WorkerSetup], None]
    run: Callable[[Task], UnitResult]


class Executor(Protocol):
    """Runs units somewhere; ``max_in_flight`` is how many submitted units keep every worker busy."""

    max_in_flight: int

    def submit(self, task: Task) -> cf.Future[UnitResult]:
        """Start a unit; the future fails with :class:`WorkerLost` if its worker dies."""
        ...

    def restart(self) -> None:
        """Recover after :class:`WorkerLost` (the coordinator resubmits the lost units)."""
        ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Spawned worker processes (Lance is not fork-safe). ``workers=0`` runs units in this process."""

    def __init__(self, workers: int, setup: WorkerSetup, functions: WorkerFunctions) -> None:
        self.workers = workers
        self.setup = setup
        self.functions = functions
        self.pool: cf.Executor | None = None
        self.max_in_flight = max(1, workers) + 1

    def _pool(self) -> cf.Executor:
        if self.pool is None:
            if self.workers == 0:
                self.functions.init(self.setup)
                self.pool = cf.ThreadPoolExecutor(max_workers=1)
            else:
                self.pool = cf.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=self.functions.init,
                    initargs=(self.setup,),
                )
        return self.pool

    def submit(self, task: Task) -> cf.Future[UnitResult]:
        return _LostAsWorkerLost(self._pool().submit(self.functions.run, task))

    def restart(self) -> None:
        """Replace a pool that lost a worker (killed, out of memory): its unfinished units are resubmitted."""
        self.shutdown()

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _LostAsWorkerLost(cf.Future):
    """A process pool's future whose ``BrokenProcessPool`` reads as :class:`WorkerLost`; cancels go through."""

    def __init__(self, inner: cf.Future) -> None:
        super().__init__()
        self._inner = inner
        inner.add_done_callback(self._settle)

    def cancel(self) -> bool:
        return self._inner.cancel()  # _settle marks this future cancelled when the inner one is

    def _settle(self, inner: cf.Future) -> None:
        if inner.cancelled():
            super().cancel()
            self.set_running_or_notify_cancel()
            return
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            self.set_exception(WorkerLost(f"a prepare worker process died: {exc}"))
        elif exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(inner.result())
