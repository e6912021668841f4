"""prepare on Ray: cluster start, per-job overhead, throughput with 1 and 2 workers; the first epoch from S3.

Corpus: the Python standard library's .py files (``examples/make_corpus.py``) written ``--repeat`` times, with the
32k byte-level BPE that ``bench_prepare.py`` trains (``tokenmill tokenizer train``): tokenizer-bound, since
reading and writing cost little next to tokenizing. The cluster is a real loopback Ray head (``ray start --head``,
2 CPUs) that every job joins by address, as a cluster job would.

  cluster start   wall time of ``ray start --head`` (paid once per cluster, not per job)
  job overhead    a prepare of one tiny file on Ray (connect, start a worker, load the tokenizer, one unit,
                  commit, disconnect), next to the same on the local executor
  throughput      prepare of the whole corpus with 1 and 2 Ray workers (each task holds one CPU and one
                  tokenizer thread), median of ``--runs``; "steady" subtracts the tiny job's time
  first epoch     a cache in a bucket (a ``moto`` server process on 127.0.0.1) read by the loader for one
                  shuffled epoch of 1024-token windows, through Lance (no local copy; requests and bytes counted
                  by Lance) and through a local memmap copy made first (``read="memmap"``)

    .venv/bin/python benchmarks/bench_ray.py [--out bench-out] [--repeat 3] [--runs 3] [--skip-s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = [PY, "-c", "import sys; from tokenmill.cli import main; sys.exit(main())"]
# a loopback-only cluster: Ray reads these when it is imported, so they are set before anything imports it
CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
os.environ.update(CLUSTER_ENV)
SEQ = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


class Cluster:
    """A 2-CPU Ray head on 127.0.0.1 in its own session; stopped by killing that session's processes."""

    def __init__(self, cpus: int = 2) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="tmray-", dir="/tmp")
        self.port = free_port()
        cmd = [
            str(Path(PY).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
            f"--num-cpus={cpus}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
        ]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=180)
        self.start_seconds = time.perf_counter() - started
        self.sid = proc.pid
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(out.decode(errors="replace")[-3000:])
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for pid in session_pids(self.sid):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.time() + wait
            while session_pids(self.sid) and time.time() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class CpuSampler:
    """CPU seconds used by the cluster's worker processes during a job (polled from /proc, since the workers of
    a job exit with it): on a shared machine, tokens per worker CPU-second stay meaningful when wall time is not."""

    def __init__(self, sid: int) -> None:
        import threading

        self.sid, self.cpu, self.stop = sid, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self.stop.is_set():
            for pid in session_pids(self.sid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        title = f.read().split(b"\0")[0]
                    if not title.startswith(b"ray::") or b"Agent" in title:
                        continue
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    continue
            time.sleep(0.1)

    def __enter__(self) -> CpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.cpu.values())


def ensure_inputs(out: Path, repeat: int) -> tuple[Path, Path, Path]:
    corpus = out / "corpus"
    if not corpus.exists():
        subprocess.run([PY, str(ROOT / "examples/make_corpus.py"), str(corpus), "--shards", "8"], check=True)
    big = out / f"corpus-x{repeat}"
    if not big.exists():
        subprocess.run(
            [PY, str(ROOT / "examples/make_corpus.py"), str(big), "--shards", "8", "--repeat", str(repeat)],
            check=True,
        )
    tok = out / "tok32k" / "tokenizer.json"
    if not tok.exists():
        subprocess.run(
            [*CLI, "tokenizer", "train", f"{corpus}/*.jsonl", "--vocab-size", "32000", "--output", str(tok)],
            check=True,
        )
    return corpus, big, tok


def run_prepare(sources: Path | str, cache: Path, tok: Path, **kw) -> dict:
    from tokenmill.prepare import PrepareConfig, prepare

    shutil.rmtree(cache, ignore_errors=True)
    pattern = f"{sources}/*.jsonl" if Path(sources).is_dir() else str(sources)
    config = PrepareConfig(sources=[pattern], output=str(cache), tokenizer=str(tok), **kw)
    started = time.perf_counter()
    summary = prepare(config, progress=False)
    seconds = time.perf_counter() - started
    # the 1-minute load average: the machine is shared, and a busy neighbour shows up here
    load = round(os.getloadavg()[0], 2)
    return {"seconds": seconds, "tokens": summary.tokens, "documents": summary.documents, "load": load}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def bench_prepare(args, out: Path, big: Path, tok: Path, cluster: Cluster) -> dict:
    tiny = out / "ray-tiny.jsonl"
    tiny.write_text(
        "".join(json.dumps({"text": f"def f{i}(x):\n    return x + {i}\n"}) + "\n" for i in range(20))
    )
    results: dict = {"cluster_start_seconds": cluster.start_seconds}
    work = out / "ray-caches"
    ray_kw = dict(executor="ray", ray_address=cluster.address, unit_bytes=args.unit_bytes)
    local_kw = dict(unit_bytes=args.unit_bytes)
    tiny_ray = [
        run_prepare(tiny, work / "tiny-ray", tok, workers=1, **ray_kw)["seconds"] for _ in range(args.runs)
    ]
    tiny_local = [
        run_prepare(tiny, work / "tiny-local", tok, workers=1, **local_kw)["seconds"] for _ in range(3)
    ]
    results["tiny_job_seconds"] = {"ray": median(tiny_ray), "local": median(tiny_local), "ray_runs": tiny_ray}
    print(f"cluster start {cluster.start_seconds:.1f} s; tiny job: Ray {median(tiny_ray):.2f} s, "
          f"local {median(tiny_local):.2f} s", flush=True)  # fmt: skip
    runs: dict[str, list[dict]] = {"ray-1": [], "ray-2": [], "local-2": []}
    for _ in range(args.runs):  # interleaved, so drift in the shared machine's load hits every variant alike
        for workers in (1, 2):
            with CpuSampler(cluster.sid) as cpu:
                run = run_prepare(big, work / "big", tok, workers=workers, **ray_kw)
            runs[f"ray-{workers}"].append(dict(run, worker_cpu_seconds=cpu.seconds))
        runs["local-2"].append(run_prepare(big, work / "big", tok, workers=2, **local_kw))
        print(
            "  " + ", ".join(f"{k} {v[-1]['seconds']:.1f} s (load {v[-1]['load']})" for k, v in runs.items())
        )
    shutil.rmtree(work, ignore_errors=True)
    tokens = runs["ray-1"][0]["tokens"]
    assert all(r["tokens"] == tokens for rs in runs.values() for r in rs), "runs disagree on the token count"
    overhead = results["tiny_job_seconds"]["ray"]
    for name, rs in runs.items():
        secs = median([r["seconds"] for r in rs])
        steady = secs - (overhead if name.startswith("ray") else results["tiny_job_seconds"]["local"])
        best = min(r["seconds"] for r in rs)
        results[name] = {
            "tokens": tokens,
            "seconds": secs,
            "best_seconds": best,
            "best_tokens_per_s": tokens / best,
            "runs": [round(r["seconds"], 2) for r in rs],
            "load_after_runs": [r["load"] for r in rs],
            "worker_cpu_seconds": [round(r.get("worker_cpu_seconds", 0.0), 2) for r in rs],
            "tokens_per_s": tokens / secs,
            "steady_tokens_per_s": tokens / steady,
        }
    results["speedup_2_over_1"] = results["ray-2"]["tokens_per_s"] / results["ray-1"]["tokens_per_s"]
    results["best_speedup_2_over_1"] = (
        results["ray-2"]["best_tokens_per_s"] / results["ray-1"]["best_tokens_per_s"]
    )
    results["steady_speedup_2_over_1"] = (
        results["ray-2"]["steady_tokens_per_s"] / results["ray-1"]["steady_tokens_per_s"]
    )
    for name in ("ray-1", "ray-2"):
        cpu = median(results[name]["worker_cpu_seconds"])
        results[name]["tokens_per_worker_cpu_s"] = tokens / cpu if cpu else 0.0
    results["corpus_bytes"] = sum(p.stat().st_size for p in big.glob("*.jsonl"))
    return results


# --------------------------------------------------------------------------------------------------------
# First epoch from object storage
# --------------------------------------------------------------------------------------------------------


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(PY).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def epoch(ds, batch: int = 64) -> tuple[float, int]:
    from tokenmill.loader import BatchIterator

    it = BatchIterator(ds, batch, epochs=1)
    started = time.perf_counter()
    samples = 0
    for b in it:
        samples += len(b["input_ids"])
    return time.perf_counter() - started, samples


def bench_s3(out: Path, corpus: Path, tok: Path, row_tokens: list[int]) -> dict:
    moto, endpoint = start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        return {f"row_tokens={rt}": first_epoch(out, corpus, tok, rt) for rt in row_tokens}
    finally:
        os.killpg(moto.pid, signal.SIGKILL)
        moto.wait()
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
            os.environ.pop(k, None)


def first_epoch(out: Path, corpus: Path, tok: Path, row_tokens: int) -> dict:
    """One shuffled epoch of windows from a cache in the bucket: Lance reads, and a local copy made first."""
    from tokenmill.cache import CacheReader, store
    from tokenmill.loader import TokenDataset

    cache = out / f"ray-s3-cache-{row_tokens}"
    run_prepare(corpus, cache, tok, workers=2, row_tokens=row_tokens)
    stored = sum(p.stat().st_size for p in (cache / "tokens.lance").rglob("*") if p.is_file())
    fs, _ = store.get_fs("s3://bench/")
    url = f"s3://bench/cache-{row_tokens}"
    started = time.perf_counter()
    fs.put(str(cache) + "/", f"bench/cache-{row_tokens}/", recursive=True)
    results: dict = {"stored_bytes": stored, "upload_seconds": time.perf_counter() - started}

    local = TokenDataset(str(cache), seq_len=SEQ, read="lance", seed=0)
    secs, n = epoch(local)
    results["local_lance"] = {"seconds": secs, "samples": n}

    started = time.perf_counter()
    reader = CacheReader(url)
    remote = TokenDataset(reader, seq_len=SEQ, read="lance", seed=0)
    opened = time.perf_counter() - started
    reader.dataset.io_stats_incremental()
    secs, n = epoch(remote)
    io = reader.dataset.io_stats_incremental()
    results["s3_lance"] = {
        "open_seconds": opened,
        "seconds": secs,
        "samples": n,
        "read_iops": io.read_iops,
        "read_bytes": io.read_bytes,
    }
    local_dir = out / "ray-s3-memmap"
    shutil.rmtree(local_dir, ignore_errors=True)
    started = time.perf_counter()
    copy = TokenDataset(url, seq_len=SEQ, read="memmap", local_dir=str(local_dir), seed=0)
    materialize = time.perf_counter() - started
    secs, n = epoch(copy)
    results["s3_memmap"] = {"materialize_seconds": materialize, "seconds": secs, "samples": n}
    shutil.rmtree(local_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    ap.add_argument("--repeat", type=int, default=3, help="copies of the standard library in the corpus")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--unit-bytes", type=int, default=4 << 20)
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--skip-prepare", action="store_true")
    ap.add_argument(
        "--row-tokens", type=int, nargs="+", default=[4096, 1024], help="cache rows for the S3 part"
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, big, tok = ensure_inputs(out, args.repeat)
    results: dict = {}
    if not args.skip_prepare:
        cluster = Cluster()
        try:
            results["prepare"] = bench_prepare(args, out, big, tok, cluster)
        finally:
            cluster.stop()
    if not args.skip_s3:
        results["first_epoch"] = bench_s3(out, corpus, tok, args.row_tokens)
    report(results)
    (out / "bench_ray.json").write_text(json.dumps(results, indent=1))


def report(results: dict) -> None:
    if "prepare" in results:
        p = results["prepare"]
        print(
            f"\ncorpus: {p['corpus_bytes'] / 1e6:.0f} MB of JSONL, {p['ray-1']['tokens'] / 1e6:.1f}M tokens"
        )
        print(f"Ray cluster start (ray start --head): {p['cluster_start_seconds']:.1f} s")
        t = p["tiny_job_seconds"]
        print(f"tiny job (20 documents): Ray {t['ray']:.2f} s, local executor {t['local']:.2f} s")
        print(
            f"{'run':<10}{'median s':>9}{'tokens/s':>11}{'steady':>9}{'best s':>8}{'tokens/s':>10}   runs (load)"
        )
        for name in ("ray-1", "ray-2", "local-2"):
            r = p[name]
            print(
                f"{name:<10}{r['seconds']:>9.1f}{r['tokens_per_s'] / 1e6:>10.2f}M"
                f"{r['steady_tokens_per_s'] / 1e6:>8.2f}M{r['best_seconds']:>8.1f}{r['best_tokens_per_s'] / 1e6:>9.2f}M"
                f"   {r['runs']} ({r['load_after_runs']})"
            )
        for name in ("ray-1", "ray-2"):
            r = p[name]
            print(
                f"{name}: worker CPU seconds {r['worker_cpu_seconds']}, "
                f"{r['tokens_per_worker_cpu_s'] / 1e6:.2f}M tokens per worker CPU-second"
            )
        print(
            f"second Ray worker: {p['speedup_2_over_1']:.2f}x on medians, {p['best_speedup_2_over_1']:.2f}x on best "
            f"runs, {p['steady_speedup_2_over_1']:.2f}x steady (medians less the tiny job); goal >= 1.7x"
        )
    for name, f in results.get("first_epoch", {}).items():
        s3, mm = f["s3_lance"], f["s3_memmap"]
        print(
            f"\n{name}: cache {f['stored_bytes'] / 1e6:.1f} MB; one shuffled epoch of {s3['samples']} windows "
            f"of {SEQ} tokens, global batch 64:"
        )
        print(f"  local, Lance reads      {f['local_lance']['seconds']:.2f} s")
        print(
            f"  S3 (moto), Lance reads  {s3['seconds']:.2f} s, {s3['read_iops']} read requests "
            f"({s3['read_iops'] / s3['samples']:.2f} per sample), {s3['read_bytes'] / 1e6:.1f} MB read "
            f"({s3['read_bytes'] / f['stored_bytes']:.2f}x the stored bytes)"
        )
        print(
            f"  S3 (moto), memmap copy  {mm['materialize_seconds']:.2f} s to copy, then {mm['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
