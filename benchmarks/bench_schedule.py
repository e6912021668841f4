"""Batches per second of a 4-source mixture with a 3-segment schedule, beside the same mixture with fixed weights.

Corpus: the Python standard library's .py files (``examples/make_corpus.py``, 8 shards), prepared with the
``bytes`` tokenizer into four caches of two shards each, so nothing is downloaded and the four sources differ.
Both readers are ``BatchIterator`` over a ``Mixture`` of the same four ``TokenDataset``s (windows of ``--seq-len``
tokens, memmap reads, global batch ``--batch``); one has fixed weights, the other a schedule of four points
(three segments, linear and constant, with a source entering and one leaving) spread over the steps that one
round reads, so every segment and both kinds of tick layout are timed. Readers run in alternating rounds of
``--seconds`` each, each continuing where its last round stopped; rates are medians over rounds and the ratio is
the median of the per-round ratios (the machine is shared, so only side-by-side ratios mean much).

Also: the cost of the index math alone (``sample_ids`` over 8192 positions: which source and which of its
samples), fixed against scheduled, to show where a difference would come from.

    .venv/bin/python benchmarks/bench_schedule.py [--out bench-out] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
WEIGHTS = [0.4, 0.3, 0.2, 0.1]
NAMES = ["a", "b", "c", "d"]


def schedule(span: int) -> list[dict]:
    """Three segments over ``span`` steps: a ramp, a hold, a ramp that brings ``d`` in and takes ``a`` out."""
    third = max(1, span // 3)
    return [
        {"at": 0, "weights": {"a": 0.7, "b": 0.2, "c": 0.1}},
        {"at": third, "weights": {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, "segment": "constant"},
        {"at": 2 * third, "weights": {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}},
        {"at": 3 * third, "weights": {"b": 0.3, "c": 0.3, "d": 0.4}},
    ]


def ensure_caches(out: Path, max_files: int) -> list[Path]:
    corpus = out / "corpus"
    if not corpus.exists():
        subprocess.run(
            [
                PY,
                str(ROOT / "examples/make_corpus.py"),
                str(corpus),
                "--shards",
                "8",
                "--max-files",
                str(max_files),
            ],
            check=True,
            capture_output=True,
        )
    caches = []
    for k, name in enumerate(NAMES):
        cache = out / f"cache-{name}"
        shards = [str(corpus / f"part-{i:05d}.jsonl") for i in (2 * k, 2 * k + 1)]
        if not shards or not Path(shards[0]).exists():
            shards = sorted(str(p) for p in corpus.glob("*.jsonl"))[2 * k : 2 * k + 2]
        subprocess.run(
            [PY, "-m", "tokenmill.cli", "prepare", *shards, "--tokenizer", "bytes", "--output", str(cache),
             "--workers", "2", "--json", "--no-progress"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        caches.append(cache)
    return caches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--max-files", type=int, default=800)
    args = ap.parse_args()

    from tokenmill.loader import BatchIterator, Mixture, TokenDataset

    out = Path(args.out) / "schedule"
    out.mkdir(parents=True, exist_ok=True)
    caches = ensure_caches(out, args.max_files)
    datasets = [TokenDataset(c, seq_len=args.seq_len, seed=1) for c in caches]
    fixed = Mixture(list(zip(datasets, WEIGHTS)), names=NAMES, seed=7)
    # a first round tells how many steps one round reads, so the schedule's segments fall inside the timed run
    probe = BatchIterator(fixed, args.batch, rank=0, world_size=1)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        next(probe)
        n += 1
    span = max(30, int(n * args.rounds * 0.8))
    scheduled = Mixture(
        dict(zip(NAMES, datasets)), schedule=schedule(span), global_batch_size=args.batch, seed=7
    )
    readers = {
        "fixed": BatchIterator(fixed, args.batch, rank=0, world_size=1),
        "scheduled": BatchIterator(scheduled, args.batch, rank=0, world_size=1),
    }
    rates: dict[str, list[float]] = {k: [] for k in readers}
    sources: dict[str, list[np.ndarray]] = {k: [] for k in readers}
    for _ in range(args.rounds):
        for name, it in readers.items():
            next(it)  # warm
            steps, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < args.seconds:
                sources[name].append(next(it)["source_index"])
                steps += 1
            rates[name].append(steps / elapsed)
    ratio = statistics.median(s / f for s, f in zip(rates["scheduled"], rates["fixed"]))
    order = {}
    for name, mix in (("fixed", fixed), ("scheduled", scheduled)):
        positions = np.arange(8192)
        mix.sample_ids(0, positions)
        t0 = time.perf_counter()
        for c in range(20):  # fresh blocks / ticks every time (an epoch of the fixed mixture is short)
            mix.sample_ids(0, positions + 8192 + (c * 2048) % (len(fixed) - 2 * 8192))
        order[name] = (time.perf_counter() - t0) / 20 * 1000
    steps_read = len(sources["scheduled"])
    shares = np.stack([np.bincount(s, minlength=4) / s.size for s in sources["scheduled"]])
    report = {
        "batch": args.batch,
        "seq_len": args.seq_len,
        "samples": {n: len(d) for n, d in zip(NAMES, datasets)},
        "schedule_steps": span,
        "batches_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "samples_per_s": {k: round(statistics.median(v) * args.batch) for k, v in rates.items()},
        "scheduled_vs_fixed": round(ratio, 3),
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "sample_ids_ms_per_8192": {k: round(v, 2) for k, v in order.items()},
        "scheduled_steps_read": steps_read,
        "scheduled_share_first_last_step": [shares[0].round(3).tolist(), shares[-1].round(3).tolist()],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
