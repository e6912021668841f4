"""Cache row layout: whole-document rows against bounded pieces, for random 1024-token windows read through Lance.

Builds the same corpus with several ``--row-tokens`` values and times ``CacheReader.read_windows`` (one Lance
``take`` per batch of 64 random windows), reporting samples/s and how many tokens each sample made Lance read.

    .venv/bin/python benchmarks/bench_rows.py [--corpus bench-out/corpus] [--tokenizer bench-out/tok32k/tokenizer.json]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from tokenmill.cache import CacheReader
from tokenmill.prepare import PrepareConfig, prepare

ROOT = Path(__file__).resolve().parent.parent


def measure(cache: str, seq: int, batch: int, seconds: float) -> tuple[float, float]:
    reader = CacheReader(cache)
    index = reader.split_index("train")
    rng = np.random.default_rng(0)
    samples = read_tokens = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        starts = rng.integers(0, index.num_tokens - seq - 1, batch)
        reader.read_windows("train", starts, seq + 1)
        first = np.searchsorted(index.token_offsets, starts, side="right") - 1
        last = np.searchsorted(index.token_offsets, starts + seq + 1, side="left") - 1
        rows = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)]))
        read_tokens += int((index.token_offsets[rows + 1] - index.token_offsets[rows]).sum())
        samples += batch
    elapsed = time.perf_counter() - started
    return samples / elapsed, read_tokens / samples / (seq + 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "bench-out/corpus"))
    ap.add_argument("--tokenizer", default=str(ROOT / "bench-out/tok32k/tokenizer.json"))
    ap.add_argument("--out", default=str(ROOT / "bench-out/rows"))
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    print(f"{'row_tokens':>12}{'rows':>9}{'samples/s':>12}{'read/needed':>13}")
    for row_tokens in (1 << 30, 16384, 4096, 2048, 1024):
        out = Path(args.out) / f"rows-{row_tokens}"
        if not (out / "manifest.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            prepare(
                PrepareConfig(
                    sources=[f"{args.corpus}/*.jsonl"],
                    output=str(out),
                    tokenizer=args.tokenizer,
                    row_tokens=row_tokens,
                    workers=2,
                ),
                progress=False,
            )
        rate, amplification = measure(str(out), 1024, 64, args.seconds)
        rows = CacheReader(str(out)).split_index("train").num_rows
        label = "whole docs" if row_tokens >= 1 << 30 else str(row_tokens)
        print(f"{label:>12}{rows:>9}{rate:>12.0f}{amplification:>12.1f}x")


if __name__ == "__main__":
    main()
