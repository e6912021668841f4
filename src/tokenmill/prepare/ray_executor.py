"""Run prepare's work units as Ray tasks: the same coordinator, ledger and in-order commits, on a cluster.

:class:`RayExecutor` implements :class:`tokenmill.prepare.executors.Executor` as the local pool does (``submit(task)``
returning a ``concurrent.futures.Future``, ``restart()``, ``shutdown()``, ``max_in_flight``), so the coordinator
cannot tell the two apart: it plans the units, commits the fragments each unit wrote in plan order, and a killed driver resumes
from the ledger exactly as a local build does.

Why plain tasks and not an actor pool or Ray Data: a task holds one CPU only while it runs, so the coordinator's
``max_in_flight`` (no more than the cluster's CPUs) is the whole back-pressure story, and a worker process that
dies (``kill -9``, out of memory, a lost node) is simply retried by Ray on another worker (``max_retries``). An
actor pool of 2 on 2 CPUs starves and hangs; Ray Data's ``write_lance`` does not work with pylance 14 and would
commit on its own, outside our ledger.

Each worker process loads the tokenizer once (the ``init`` of the :class:`WorkerFunctions` it is given) and keeps it for every later task of the same job;
the tokenizer files travel in Ray's object store so nodes need no shared filesystem for them. The cache itself
must be reachable from every node: object storage (``s3://``...) or a shared filesystem.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from typing import Any

from tokenmill.errors import ConfigError
from tokenmill.prepare.executors import WorkerFunctions, WorkerLost
from tokenmill.prepare.records import Task, UnitResult, WorkerSetup

# retries of a task whose worker process died (Ray's default is 3); application errors are never retried
TASK_RETRIES = 4
# environment variables the driver forwards to the workers: object-store credentials and endpoints
FORWARDED_ENV_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCS_", "HF_")

log = logging.getLogger(__name__)


class RayWorkerLost(WorkerLost):
    """A unit's worker died more often than Ray retries; the coordinator resubmits the unit (as for a local pool)."""


class RayExecutor:
    """Run the worker's ``run`` function (:func:`tokenmill.prepare.process_unit`) as Ray tasks, one CPU each.

    ``workers``: concurrent tasks; ``None`` or ``0`` means every CPU of the cluster, and more than the cluster has
    is cut to its CPU count (a task waiting for a CPU would only hold a unit back). ``address``: join that cluster
    (``"auto"``, ``"127.0.0.1:6379"``, ``"ray://head:10001"``); without one, start a local Ray on this machine, or
    reuse the connection if this process already called ``ray.init``.
    """

    def __init__(
        self, workers: int | None, setup: WorkerSetup, functions: WorkerFunctions, address: str | None = None
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'tokenmill[ray]' (on every node of the cluster)"
            ) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
            if address:
                _check_reachable(address)
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers or None, include_dashboard=False, **options)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(workers, cpus) if workers else cpus)
        # One unit queued beyond the running ones keeps every CPU busy while the driver commits; Ray's CPU
        # accounting still runs at most `workers` at once. When the cluster has spare CPUs the queued unit would
        # start at once, so there the count stays at `workers`.
        self.max_in_flight = self.workers + 1 if self.workers >= cpus else self.workers
        self._functions = functions
        shipped = _ship_payload(setup)
        self._key = shipped["key"]
        self._payload_ref = ray.put(shipped)
        self._remote = ray.remote(_run_unit).options(
            num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False, name="tokenmill_prepare_unit"
        )
        self._pending: dict[Any, cf.Future] = {}

    def submit(self, task: Task) -> cf.Future[UnitResult]:
        # the payload ref is nested in a list so Ray does not fetch it for every task, only on first use
        ref = self._remote.remote(self._key, [self._payload_ref], task, self._functions)
        future: cf.Future = cf.Future()
        # running: like a busy process pool, cancel() refuses and the coordinator waits and discards the output
        future.set_running_or_notify_cancel()
        self._pending[ref] = future
        ref.future().add_done_callback(lambda done, ref=ref: self._settle(ref, done))
        return future

    def _settle(self, ref: Any, done: cf.Future) -> None:
        future = self._pending.pop(ref, None)
        if future is None or future.done():
            return
        try:
            future.set_result(done.result())
        except BaseException as exc:  # noqa: BLE001 - every outcome is handed to the coordinator
            future.set_exception(_translate(self._ray, exc))

    def restart(self) -> None:
        """Nothing to rebuild: Ray replaces dead worker processes itself; the coordinator resubmits lost units."""

    def shutdown(self) -> None:
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort: the task may have finished meanwhile
                pass
        self._pending.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on an address nobody answers at: ``ray.init`` would retry for minutes.

    Ray rewrites a loopback address to this machine's network address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` was set before Ray was imported, so the check uses Ray's own reading.
    """
    import socket

    try:
        from ray._private.services import canonicalize_bootstrap_address

        target = canonicalize_bootstrap_address(address) or address
    except Exception:  # noqa: BLE001 - a private helper: fall back to the address as given
        target = address
    if "://" in target or target == "auto":
        return  # ray:// (Ray Client) and auto-detection: leave them to Ray
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        hint = ""
        if target != address:
            hint = (
                f" (Ray turned {address} into {target}; for a head started with --node-ip-address=127.0.0.1 set "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and RAY_AUTH_MODE=disabled in this environment)"
            )
        raise ConfigError(f"cannot reach the Ray cluster at {target}: {exc}{hint}") from None


def _translate(ray: Any, exc: BaseException) -> BaseException:
    """The error the coordinator understands: the task's own exception, or ``RayWorkerLost`` for a dead worker."""
    errors = ray.exceptions
    if isinstance(exc, errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc
    lost = (
        errors.WorkerCrashedError,
        errors.NodeDiedError,
        errors.ObjectLostError,
        errors.OwnerDiedError,
        errors.OutOfMemoryError,
        errors.LocalRayletDiedError,
    )
    if isinstance(exc, lost):
        return RayWorkerLost(f"a Ray worker running a prepare unit died: {exc}")
    return exc


# --------------------------------------------------------------------------------------------------------
# Payload shipping: the tokenizer files go with the payload, so a node needs no path of the driver's machine
# --------------------------------------------------------------------------------------------------------


def _ship_payload(setup: WorkerSetup) -> dict[str, Any]:
    """The setup as plain data, with the tokenizer's files, this driver's credentials and a key for the job."""
    payload = dataclasses.asdict(setup)
    out = dict(payload)
    out["tokenizer_threads"] = 1  # one CPU per task: a second tokenizer thread would only contend
    spec = str(setup.tokenizer_dir)
    files: dict[str, bytes] = {}
    if os.path.isdir(spec):
        for root, _, names in os.walk(spec):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, spec)] = f.read()
        out["tokenizer_layout"] = "dir"
    elif os.path.isfile(spec):
        with open(spec, "rb") as f:
            files[os.path.basename(spec)] = f.read()
        out["tokenizer_layout"] = "file"
    out["tokenizer_files"] = files
    out["env"] = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(files[name])
    out["key"] = digest.hexdigest()[:20]
    return out


def _materialize(shipped: dict[str, Any]) -> WorkerSetup:
    """The setup with ``tokenizer_dir`` pointing at a copy of the shipped files on this node."""
    payload = {k: v for k, v in shipped.items() if k not in ("tokenizer_files", "env", "key")}
    files: dict[str, bytes] = shipped.get("tokenizer_files") or {}
    if not files:
        return _setup(payload)
    root = os.path.join(tempfile.gettempdir(), f"tokenmill-tokenizer-{shipped['key']}")
    if not os.path.isdir(root):
        staging = tempfile.mkdtemp(prefix=f"tokenmill-tokenizer-{shipped['key']}.", dir=os.path.dirname(root))
        for rel, data in files.items():
            path = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        try:
            os.rename(staging, root)  # atomic: another worker of this node may have won the race
        except OSError:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    if shipped.get("tokenizer_layout") == "file":
        payload["tokenizer_dir"] = os.path.join(root, next(iter(files)))
    else:
        payload["tokenizer_dir"] = root
    return _setup(payload)


def _setup(payload: dict[str, Any]) -> WorkerSetup:
    names = {f.name for f in dataclasses.fields(WorkerSetup)}
    return WorkerSetup(**{k: v for k, v in payload.items() if k in names})


_READY: dict[str, Any] = {}


def _run_unit(key: str, payload_box: list[Any], task: Task, functions: WorkerFunctions) -> UnitResult:
    """The Ray task: initialise this worker process for the job (once), then process one unit."""
    if _READY.get("key") != key:
        import ray

        shipped = ray.get(payload_box[0])
        os.environ.update(shipped.get("env") or {})
        functions.init(_materialize(shipped))
        _READY.clear()
        _READY.update(key=key)
    return functions.run(task)


__all__ = ["RayExecutor", "RayWorkerLost"]
