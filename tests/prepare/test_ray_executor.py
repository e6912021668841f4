"""prepare on a real Ray cluster on this machine: same content as the local executor, a killed worker or driver
still ends with every document exactly once, errors keep their file and line, object-store sources and caches.

The cluster is ``ray start --head`` on 127.0.0.1 with 2 CPUs, started once for the module (about 7 s) in its own
session, joined by address, and stopped by killing the processes of that session (never ``ray stop``, which
would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import s3_server
from conftest import make_documents, write_jsonl
from tokenmill.cache import CacheReader, read_manifest
from tokenmill.errors import ConfigError, RecordError
from tokenmill.prepare import (
    PrepareConfig,
    WorkerFunctions,
    WorkerLost,
    WorkerSetup,
    init_worker,
    prepare,
    process_unit,
)

# A loopback-only cluster: Ray reads these when it is imported (drivers and `ray start` alike), so they are set
# for the whole test session before the first `import ray`.
CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
os.environ.update(CLUSTER_ENV)
moto_server, s3 = s3_server.moto_server, s3_server.s3  # the shared S3 fixtures
ray = pytest.importorskip("ray")
if ray._private.ray_constants.ENABLE_RAY_CLUSTER:
    pytest.skip("Ray was imported before this module could make it loopback-only", allow_module_level=True)

pytestmark = pytest.mark.ray

TASK_TITLE = "ray::tokenmill_prepare_unit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Processes of one session (``ray start`` in a new session: the cluster and every worker it spawns)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
                if os.getsid(int(entry)) == sid and int(entry) != os.getpid() and not zombie:
                    pids.append(int(entry))
            except (OSError, IndexError):
                continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray head on 127.0.0.1; yields ``(address, session id)``."""
    # a short folder: Ray's socket paths must stay under 108 bytes
    temp_dir = tempfile.mkdtemp(prefix="tmray-", dir="/tmp")
    port = _free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [
        ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", f"--dashboard-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]  # fmt: skip
    # a new session: every process of the cluster (and every worker it spawns) carries its id
    head = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        out, _ = head.communicate(timeout=120)  # `ray start` returns once the head is up
        if head.returncode != 0:
            raise RuntimeError(f"ray start failed: {out.decode(errors='replace')[-3000:]}")
        yield address, head.pid
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for pid in _session_pids(head.pid):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.time() + wait
            while _session_pids(head.pid) and time.time() < deadline:
                time.sleep(0.2)
        subprocess.run(["rm", "-rf", temp_dir], check=False)


CLI = [sys.executable, "-c", "import sys; from tokenmill.cli import main; sys.exit(main())"]


def build(sources, out, tokenizer, **kw):
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    return prepare(config, progress=False)


def documents_of(cache, split: str, storage_options=None) -> list[list[int]]:
    """The documents of one split, in cache order, as token lists."""
    reader = CacheReader(str(cache), storage_options)
    index = reader.split_index(split)
    if index.num_rows == 0:
        return []
    flat, offsets, _ = reader.take_rows(index.rows)
    starts = offsets[:-1][index.doc_start]
    ends = np.append(starts[1:], offsets[-1])
    return [flat[s:e].astype(np.int64).tolist() for s, e in zip(starts, ends)]


def assert_same_cache(a, b, storage_options_b=None) -> None:
    for split in ("train", "validation"):
        assert documents_of(a, split) == documents_of(b, split, storage_options_b), split
    ma, mb = read_manifest(str(a)), read_manifest(str(b), storage_options_b)
    assert mb.complete
    assert {k: v.documents for k, v in ma.splits.items()} == {k: v.documents for k, v in mb.splits.items()}
    assert ma.tokens == mb.tokens


@pytest.fixture(scope="module")
def big_shards(tmp_path_factory) -> list[Path]:
    """Enough text for units that each take a noticeable time (the kill tests need a job in progress)."""
    root = tmp_path_factory.mktemp("big")
    return [
        write_jsonl(root / f"s{i:02d}.jsonl", [{"text": t} for t in make_documents(400, seed=1000 + i)])
        for i in range(16)
    ]


# --------------------------------------------------------------------------------------------------------


def test_ray_prepare_equals_local(tmp_path, ray_cluster, jsonl_shards, tokenizer_path):
    address, _ = ray_cluster
    kw = dict(validation=0.2, seed=3, unit_bytes=20_000, row_tokens=64)
    local = build(jsonl_shards, tmp_path / "local", tokenizer_path, workers=0, **kw)
    on_ray = build(
        jsonl_shards, tmp_path / "ray", tokenizer_path, workers=2, executor="ray", ray_address=address, **kw
    )
    assert on_ray.documents == local.documents == 400
    assert on_ray.splits == local.splits and local.splits["validation"]["documents"] > 0
    # units are committed in plan order on both executors, so even the order of documents agrees
    assert_same_cache(tmp_path / "local", tmp_path / "ray")
    assert read_manifest(str(tmp_path / "ray")).config["prepare"]["executor"] == "ray"
    assert not ray.is_initialized()  # the executor disconnects the driver it connected


@pytest.mark.slow
def test_bad_record_on_ray_names_file_and_line(tmp_path, ray_cluster, tokenizer_path):
    address, _ = ray_cluster
    good = write_jsonl(tmp_path / "src" / "a-good.jsonl", [{"text": "hello world"}] * 3)
    bad = tmp_path / "src" / "b-bad.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(RecordError) as info:
        build([good, bad], tmp_path / "c", tokenizer_path, unit_bytes=10, executor="ray", ray_address=address)
    err = info.value
    assert err.path.endswith("b-bad.jsonl") and err.line == 2 and err.field == "text"
    assert err.reason == "missing_field"
    assert not read_manifest(str(tmp_path / "c")).complete
    # the same command with --on-error skip resumes the cache (on_error does not change what is built)
    skipped = build(
        [good, bad], tmp_path / "c", tokenizer_path, unit_bytes=10, on_error="skip", executor="ray",
        ray_address=address,
    )  # fmt: skip
    assert skipped.documents == 4 and skipped.skipped == {"missing_field": 1}


class _TaskKiller(threading.Thread):
    """Kill -9 the first Ray worker seen running a prepare unit (its process title names the task), and count how
    many units ever run at once."""

    def __init__(self, sid: int, after: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.sid, self.after = sid, after
        self.killed: int | None = None
        self.most_running = 0
        self.stop = threading.Event()

    def run(self) -> None:
        first_seen: dict[int, float] = {}
        while not self.stop.is_set():
            running = [pid for pid in _session_pids(self.sid) if _cmdline(pid).startswith(TASK_TITLE)]
            self.most_running = max(self.most_running, len(running))
            for pid in running:
                seen = first_seen.setdefault(pid, time.time())
                if self.killed is None and time.time() - seen >= self.after:
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
            time.sleep(0.02)


def test_killed_ray_worker_still_gives_every_document_once(tmp_path, ray_cluster, big_shards, tokenizer_path):
    address, sid = ray_cluster
    kw = dict(validation=0.1, seed=1, unit_bytes=200_000)
    build(big_shards, tmp_path / "local", tokenizer_path, workers=0, **kw)
    killer = _TaskKiller(sid, after=0.2)
    killer.start()
    try:
        summary = build(
            big_shards, tmp_path / "ray", tokenizer_path, workers=2, executor="ray", ray_address=address, **kw
        )
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no worker was caught running a unit"
    assert 1 <= killer.most_running <= 2  # never more units at once than the cluster's 2 CPUs
    assert summary.status == "complete"
    assert_same_cache(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
def test_killed_ray_driver_resumes_like_a_local_build(tmp_path, ray_cluster, big_shards, tokenizer_path):
    address, _ = ray_cluster
    build(big_shards, tmp_path / "local", tokenizer_path, workers=0, unit_bytes=100_000)
    cache = tmp_path / "ray"
    cmd = [
        *CLI, "prepare", f"{big_shards[0].parent}/*.jsonl",
        "--tokenizer", str(tokenizer_path), "--output", str(cache), "--executor", "ray",
        "--ray-address", address, "--workers", "2", "--unit-bytes", "100000", "--no-progress",
    ]  # fmt: skip
    env = dict(os.environ, **CLUSTER_ENV)
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    committed = cache / "ledger" / "committed.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if committed.exists() and json.loads(committed.read_text())["through"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the driver finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not read_manifest(str(cache)).complete
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    assert_same_cache(tmp_path / "local", cache)


@pytest.mark.slow
def test_ray_prepare_from_and_to_s3(tmp_path, ray_cluster, s3, jsonl_shards, tokenizer_path):
    """Workers read the sources and write fragments in the bucket with the driver's forwarded AWS variables."""
    address, _ = ray_cluster
    for shard in jsonl_shards:
        s3.put(f"src/{shard.name}", shard.read_bytes())
    kw = dict(validation=0.2, seed=3, unit_bytes=20_000)
    build(jsonl_shards, tmp_path / "local", tokenizer_path, workers=0, **kw)
    remote = s3.url("caches/ray")
    build([s3.url("src/part-*.jsonl")], remote, tokenizer_path, executor="ray", ray_address=address, **kw)
    assert_same_cache(tmp_path / "local", remote)


@pytest.mark.slow
def test_local_ray_without_an_address(tmp_path, jsonl_shards, tokenizer_path, monkeypatch):
    """No address: the executor starts a Ray of its own on this machine and shuts it down at the end."""
    if ray.is_initialized():
        ray.shutdown()
    build(jsonl_shards, tmp_path / "local", tokenizer_path, workers=0)
    build(jsonl_shards, tmp_path / "ray", tokenizer_path, workers=2, executor="ray")
    assert not ray.is_initialized()
    assert_same_cache(tmp_path / "local", tmp_path / "ray")


def test_payload_ships_the_tokenizer_files(tmp_path, tokenizer_path):
    """Nodes get the tokenizer from the object store, not from a path of the driver's machine."""
    from tokenmill.prepare.ray_executor import _materialize, _ship_payload

    setup = WorkerSetup(tokenizer_dir=str(tokenizer_path), config={"output": "x"}, dtype="uint16")
    shipped = _ship_payload(setup)
    assert shipped["tokenizer_threads"] == 1
    assert shipped["key"] == _ship_payload(replace(setup))["key"]
    local = _materialize(shipped)
    assert isinstance(local, WorkerSetup) and local.tokenizer_threads == 1
    assert local.tokenizer_dir != str(tokenizer_path)
    assert Path(local.tokenizer_dir).read_bytes() == tokenizer_path.read_bytes()
    folder = tmp_path / "tok"
    (folder / "sub").mkdir(parents=True)
    (folder / "tokenizer.json").write_bytes(tokenizer_path.read_bytes())
    (folder / "sub" / "extra.txt").write_text("x")
    other = _ship_payload(replace(setup, tokenizer_dir=str(folder)))
    assert other["key"] != shipped["key"]
    root = Path(_materialize(other).tokenizer_dir)
    assert (root / "tokenizer.json").read_bytes() == tokenizer_path.read_bytes()
    assert (root / "sub" / "extra.txt").read_text() == "x"
    assert _ship_payload(replace(setup, tokenizer_dir="bytes"))["tokenizer_files"] == {}


def test_unreachable_cluster_fails_fast(tmp_path, jsonl_shards, tokenizer_path):
    started = time.time()
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        build(
            jsonl_shards,
            tmp_path / "c",
            tokenizer_path,
            executor="ray",
            ray_address=f"127.0.0.1:{_free_port()}",
        )
    assert time.time() - started < 30


def test_tasks_in_flight_follow_the_cluster_cpus(ray_cluster, tokenizer_path):
    from tokenmill.prepare.ray_executor import RayExecutor

    address, _ = ray_cluster
    setup = WorkerSetup(tokenizer_dir=str(tokenizer_path), config={}, dtype="uint16")
    functions = WorkerFunctions(init=init_worker, run=process_unit)
    first = RayExecutor(8, setup, functions, address=address)  # connects
    try:
        # the cluster has 2 CPUs: 2 units run, a third waits in Ray's queue for the first free CPU
        assert first.workers == 2 and first.max_in_flight == 3
        default = RayExecutor(None, setup, functions, address=address)  # default: every CPU
        assert default.workers == 2 and default.max_in_flight == 3
        one = RayExecutor(
            1, setup, functions, address=address
        )  # spare CPUs: nothing queued, exactly one unit runs
        assert one.workers == 1 and one.max_in_flight == 1
    finally:
        first.shutdown()
    assert not ray.is_initialized()


def test_dead_worker_errors_become_a_lost_unit():
    """After Ray's own retries, a dead worker reaches the coordinator as a lost worker: it resubmits the unit."""
    from tokenmill.prepare.ray_executor import RayWorkerLost, _translate

    for error in (ray.exceptions.WorkerCrashedError(), ray.exceptions.NodeDiedError("node gone")):
        lost = _translate(ray, error)
        assert isinstance(lost, RayWorkerLost) and isinstance(lost, WorkerLost)
    other = ValueError("not a worker death")
    assert _translate(ray, other) is other
