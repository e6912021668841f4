"""``parallel_map``, ``parallel_filter`` and ``parallel_filter_map``: a function over items in worker threads or
processes, ordered or not, with a bounded number of items in flight.

A background thread reads batches of ``max_workers * prefetch_factor`` items and submits them; the consumer
receives the results. The state is that of :mod:`tokenmill.pipeline.anchored`: the parent's state before the
batch being handed out and which of its items were received, so work that the pool did ahead of the consumer is
simply done again after a resume, never lost nor repeated.

Processes are started with ``spawn`` (forking a process that holds tokenizer or Lance threads is unsafe), so the
function must be importable (a module-level function, not a lambda).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from tokenmill.errors import ConfigError
from tokenmill.pipeline.anchored import AnchoredStage
from tokenmill.pipeline.base import Node, Stage, StateDict, parent_state
from tokenmill.pipeline.map import as_filter_map

EXECUTORS = ("thread", "process")


@dataclasses.dataclass(frozen=True, eq=False)
class ParallelMapNode(Node):
    parent: Node
    fn: Callable[[Any], Any]
    kind: str = "map"
    max_workers: int | None = None
    prefetch_factor: int = 10
    ordered: bool = True
    executor_type: str = "process"

    def __post_init__(self) -> None:
        if self.executor_type not in EXECUTORS:
            raise ConfigError(f"executor_type must be one of {EXECUTORS}, got {self.executor_type!r}")
        if self.max_workers is not None and self.max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, got {self.max_workers}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"parallel_{self.kind}"

    def build(self, state: StateDict | None) -> Stage:
        workers = self.max_workers or os.cpu_count() or 1
        executor: Executor
        if self.executor_type == "thread":
            executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenmill-map")
        else:
            executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        fn = as_filter_map(self.fn, self.kind)

        def submit(items: list[Any]) -> list[Any]:
            return [executor.submit(fn, item) for item in items]

        parent = self.parent.build(parent_state(state, self.name))
        return ParallelStage(
            parent,
            state,
            submit,
            executor,
            name=self.name,
            batch_items=workers * max(1, self.prefetch_factor),
            prefetch=1,
            ordered=self.ordered,
        )


class ParallelStage(AnchoredStage):
    def __init__(
        self, parent: Stage, state: StateDict | None, fn: Any, executor: Executor, **kw: Any
    ) -> None:
        self.executor = executor
        super().__init__(parent, state, fn, **kw)

    def release(self) -> None:
        super().release()
        self.executor.shutdown(wait=True, cancel_futures=True)
