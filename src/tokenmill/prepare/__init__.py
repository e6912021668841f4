"""prepare: sources -> records -> token ids + loss masks -> a versioned, resumable Lance token cache.

Modules, in the order data flows through them:

- :mod:`~tokenmill.prepare.config`: :class:`PrepareConfig`, every option and what decides a cache's content
- :mod:`~tokenmill.prepare.plan`: the input cut into work units, fixed in the ledger
- :mod:`~tokenmill.prepare.records`: the typed records between coordinator and workers
- :mod:`~tokenmill.prepare.worker`: one unit -> uncommitted Lance fragments (:func:`process_unit`)
- :mod:`~tokenmill.prepare.executors`: where units run (threads of this process, spawned processes;
  :mod:`~tokenmill.prepare.ray_executor`)
- :mod:`~tokenmill.prepare.dispatch`: units dispatched, committed in plan order
- :mod:`~tokenmill.prepare.coordinator`: :func:`prepare`, the steps of a build

``tokenmill.prepare`` (the attribute of the ``tokenmill`` package) is always the :func:`prepare` function, whatever
was imported first; ``from tokenmill.prepare import PrepareConfig`` reaches this package.
"""

from tokenmill.errors import SourceError
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.coordinator import executor_kind, make_executor, prepare
from tokenmill.prepare.executors import (
    Executor,
    LocalExecutor,
    ThreadExecutor,
    WorkerFunctions,
    WorkerLost,
)
from tokenmill.prepare.records import Counts, Task, Unit, UnitResult, WorkerSetup
from tokenmill.prepare.summary import PrepareSummary
from tokenmill.prepare.worker import POLICY_REASONS, init_worker, process_unit

__all__ = [
    "POLICY_REASONS",
    "Counts",
    "Executor",
    "LocalExecutor",
    "PrepareConfig",
    "PrepareSummary",
    "SourceError",
    "Task",
    "ThreadExecutor",
    "Unit",
    "UnitResult",
    "WorkerFunctions",
    "WorkerLost",
    "WorkerSetup",
    "executor_kind",
    "init_worker",
    "make_executor",
    "prepare",
    "process_unit",
]
