"""Executors: where prepare's work units run. One protocol, three implementations: threads of this process,
spawned local processes, Ray tasks.

The coordinator hands an executor the worker's two functions (``init`` once per worker process, ``run`` per unit)
and then only calls :meth:`Executor.submit`; it cannot tell a local pool from a Ray cluster. A worker process
that dies (``kill -9``, out of memory, a lost node) surfaces as :class:`WorkerLost`, and the coordinator
resubmits the units that were lost with it.

Threads are the local default when the tokenizer's engine encodes with the GIL released (fastokens, tiktoken,
`tokenizers`): they share the engine the coordinator already loaded and checked, where each spawned process
imports tokenmill and loads the tokenizer again. Measured on 2 cores, cl100k, 25M tokens (docs/benchmarks.md):
2 threads 3.3 s and 608 MiB peak, 2 processes 5.1 s and 1,275 MiB.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from tokenmill.errors import TokenmillError
from tokenmill.prepare.records import Task, UnitResult, WorkerSetup


class WorkerLost(TokenmillError):
    """A worker process died while it ran a unit; the coordinator resubmits the unit."""


@dataclass(frozen=True)
class WorkerFunctions:
    """What an executor runs: ``init(setup)`` once per worker process, then ``run(task)`` for every unit.

    Both must be importable module-level functions (Ray and spawned processes find them by name).
    """

    init: Callable[..., Any]  # init(setup) in a worker process; init(setup, tokenizer) here returns `loaded`
    run: Callable[..., UnitResult]  # run(task) in a worker process; run(task, loaded) here


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


class ThreadExecutor:
    """Units on ``threads`` threads of this process, sharing ``tokenizer`` (the coordinator's, its engine
    already chosen and checked; None: loaded once from ``setup``). Meant for engines that encode with the GIL
    released: the rest of a unit (reading, JSON, Arrow, Lance) is C or Rust for the most part, so two threads
    keep two cores busy."""

    def __init__(self, threads: int, setup: WorkerSetup, functions: WorkerFunctions, tokenizer: Any) -> None:
        self.threads = max(1, threads)
        self.setup = setup
        self.functions = functions
        self.tokenizer = tokenizer
        self.pool: cf.ThreadPoolExecutor | None = None
        self.loaded: Any = None
        self.max_in_flight = self.threads + 1

    def submit(self, task: Task) -> cf.Future[UnitResult]:
        if self.pool is None:
            self.loaded = self.functions.init(self.setup, self.tokenizer)
            self.pool = cf.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="tokenmill-unit")
        return self.pool.submit(self.functions.run, task, self.loaded)

    def restart(self) -> None:
        """Nothing to replace: a thread does not die without its process."""

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class LocalExecutor:
    """Spawned worker processes (Lance is not fork-safe), each loading the tokenizer from ``setup``: for engines
    that hold the GIL (a Python tokenizer, the byte tokenizer) or when the user asks (``--executor process``)."""

    def __init__(self, workers: int, setup: WorkerSetup, functions: WorkerFunctions) -> None:
        self.workers = max(1, workers)
        self.setup = setup
        self.functions = functions
        self.pool: cf.Executor | None = None
        self.max_in_flight = self.workers + 1

    def _pool(self) -> cf.Executor:
        if self.pool is None:
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
