"""Random 1024-token training samples per second, side by side on the same tokens, in one run.

Corpus: the Python standard library's .py files written ``--repeat`` times (about 8M tokens per copy with the
32k BPE of ``bench_prepare.py``), prepared into a tokenmill cache. The train split's token stream is also written
in the two other layouts, so every reader serves the very same tokens:

  tutorial   the Lance tutorial: one token per row (int64); a sample is
             ``torch.tensor([r["input_ids"] for r in ds.take(np.arange(i, i + 1025)).to_pylist()])``
  memmap     a flat uint32 file, ``np.array(mm[i : i + 1025])`` per sample (the practical ceiling), and the same
             vectorised over a batch of 64: one fancy index, or rows of a strided window view (what tokenmill
             does; copying only, no labels)
  tokenmill  ``BatchIterator(TokenDataset(cache, seq_len=1024, mode="windows"))`` (shuffled, global batch 8 and
             64; ``input_ids``, ``labels`` and ``shift_labels`` as int64) with the default memmap read, with Lance reads,
             and through ``PrefetchIterator`` (torch tensors); then packed and padded modes

Also: time to open the dataset and build its derived files (cold: none on disk; warm: reused), the packing plan,
and the memory of the shuffle at 10^6, 10^9 and 10^12 samples. Readers run in alternating rounds (each reader
``--seconds`` per round); rates are medians over rounds and ratios are medians of the per-round ratios.

    .venv/bin/python benchmarks/bench_loader.py [--out bench-out] [--repeat 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SEQ = 1024


def sh(*args: str) -> str:
    return subprocess.run([PY, *args], check=True, capture_output=True, text=True).stdout


def ensure_cache(out: Path, repeat: int) -> Path:
    corpus = out / f"corpus-x{repeat}"
    if not corpus.exists():
        sh(str(ROOT / "examples/make_corpus.py"), str(corpus), "--shards", "8", "--repeat", str(repeat))
    tok = out / "tok32k" / "tokenizer.json"
    if not tok.exists():
        sh("-m", "tokenmill.cli", "tokenizer", "train", f"{out}/corpus-x{repeat}/*.jsonl", "--vocab-size", "32000",
           "--output", str(tok))  # fmt: skip
    cache = out / "loader" / f"cache-x{repeat}"
    sh("-m", "tokenmill.cli", "prepare", f"{corpus}/*.jsonl", "--tokenizer", str(tok), "--output", str(cache),
       "--workers", "2", "--json", "--no-progress")  # fmt: skip
    return cache


def rate(step: Callable[[], int], seconds: float) -> float:
    """Samples/s of one run of ``seconds``, where each ``step()`` returns the samples it produced."""
    step()  # warm-up call
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        n += step()
    return n / elapsed


def write_baselines(cache: Path, out: Path) -> tuple[Path, Path, int]:
    """The train stream as a flat uint32 file and as the tutorial's one-token-per-row Lance dataset."""
    import lance
    import pyarrow as pa

    from tokenmill.cache import CacheReader

    flat_path, tut_path = out / "tokens.u32", out / "tutorial.lance"
    reader = CacheReader(str(cache))
    index = reader.split_index("train")
    if not flat_path.exists() or flat_path.stat().st_size != 4 * index.num_tokens:
        flat, _, _ = reader.take_rows(index.rows, with_mask=False)
        flat.astype(np.uint32).tofile(flat_path)
    if not tut_path.exists():
        tokens = np.fromfile(flat_path, dtype=np.uint32).astype(np.int64)
        lance.write_dataset(pa.table({"input_ids": tokens}), str(tut_path), max_rows_per_file=1 << 24)
    return flat_path, tut_path, index.num_tokens


def bench_reads(cache: Path, out: Path, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Every reader once per round, rounds alternating, so a busy machine slows all of them alike."""
    import lance
    import torch

    from tokenmill.loader import BatchIterator, TokenDataset
    from tokenmill.torch import PrefetchIterator

    flat_path, tut_path, total = write_baselines(cache, out)
    rng = np.random.default_rng(0)
    ds = lance.dataset(str(tut_path))

    def tutorial() -> int:
        i = int(rng.integers(0, total - SEQ - 1))
        rows = ds.take(np.arange(i, i + SEQ + 1)).to_pylist()
        torch.tensor([r["input_ids"] for r in rows])
        return 1

    mm = np.memmap(flat_path, dtype=np.uint32, mode="r")
    windows = np.lib.stride_tricks.sliding_window_view(mm, SEQ + 1)

    def memmap_loop() -> int:
        for s in rng.integers(0, total - SEQ - 1, size=64).tolist():
            np.array(mm[s : s + SEQ + 1])
        return 64

    def memmap_fancy() -> int:
        starts = rng.integers(0, total - SEQ - 1, size=64)
        mm[starts[:, None] + np.arange(SEQ + 1)]
        return 64

    def memmap_strided() -> int:
        windows[rng.integers(0, total - SEQ - 1, size=64)]
        return 64

    def ours(read: str, batch: int, mode: str = "windows", prefetch: bool = False) -> Callable[[], int]:
        dataset = TokenDataset(cache, seq_len=SEQ, mode=mode, read=read, seed=1)
        it = BatchIterator(dataset, batch, rank=0, world_size=1)
        source = PrefetchIterator(it, depth=8, workers=2) if prefetch else it
        return lambda: next(source)["input_ids"].shape[0]

    readers = {
        "tutorial (one token per row, to_pylist)": tutorial,
        "memmap, per-sample copy": memmap_loop,
        "memmap, batch of 64, one fancy index": memmap_fancy,
        "memmap, batch of 64, strided window view": memmap_strided,
        "tokenmill windows, batch 8": ours("memmap", 8),
        "tokenmill windows, batch 64": ours("memmap", 64),
        "tokenmill windows, Lance reads, batch 8": ours("lance", 8),
        "tokenmill windows, Lance reads, batch 64": ours("lance", 64),
        "tokenmill windows, PrefetchIterator (torch), batch 64": ours("memmap", 64, prefetch=True),
        "tokenmill packed, batch 64": ours("memmap", 64, mode="packed"),
        "tokenmill padded, batch 64": ours("memmap", 64, mode="padded"),
    }
    results: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(rounds):
        for name, step in readers.items():
            results[name].append(rate(step, seconds))
    return results


def bench_open(cache: Path) -> dict[str, float]:
    from tokenmill.loader import TokenDataset

    index = cache / "index"
    out: dict[str, float] = {}
    for name in glob.glob(str(index / "*")):
        os.remove(name)
    t = time.perf_counter()
    TokenDataset(cache, seq_len=SEQ)
    out["open, cold (row index + token stream built)"] = time.perf_counter() - t
    t = time.perf_counter()
    TokenDataset(cache, seq_len=SEQ)
    out["open, warm (files reused)"] = time.perf_counter() - t
    t = time.perf_counter()
    packed = TokenDataset(cache, seq_len=SEQ, mode="packed")
    out["open packed, plan computed and saved"] = time.perf_counter() - t
    t = time.perf_counter()
    TokenDataset(cache, seq_len=SEQ, mode="packed")
    out["open packed, plan reused"] = time.perf_counter() - t
    out["packed padding fraction"] = packed.padding_fraction
    out["documents"] = packed.index.num_documents
    out["tokens (train)"] = packed.index.num_tokens
    return out


def bench_shuffle_memory() -> dict[str, float]:
    from tokenmill.sampling.permutation import epoch_permutation

    out: dict[str, float] = {}
    for exp in (6, 9, 12):
        n = 10**exp
        tracemalloc.start()
        perm = epoch_permutation(n, seed=0, epoch=3)
        positions = np.arange(n - 64, n)
        ids = perm(positions)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert np.unique(ids).size == 64 and ids.max() < n
        out[f"shuffle peak bytes, 10^{exp} samples (build + one batch of 64)"] = peak
    t = time.perf_counter()
    perm = epoch_permutation(10**9, seed=0, epoch=0)
    for i in range(1000):
        perm(np.arange(i * 64, (i + 1) * 64))
    out["shuffle us per batch of 64 at 10^9"] = (time.perf_counter() - t) / 1000 * 1e6
    t = time.perf_counter()
    perm(np.arange(10**6))
    out["shuffle ns per index at 10^9 (chunk of 10^6)"] = (time.perf_counter() - t) / 10**6 * 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    ap.add_argument(
        "--repeat", type=int, default=3, help="copies of the stdlib corpus (3 -> about 24M tokens)"
    )
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="rebuild the baselines' files")
    args = ap.parse_args()
    out = Path(args.out)
    work = out / "loader"
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(work / "tutorial.lance", ignore_errors=True)
        (work / "tokens.u32").unlink(missing_ok=True)
    cache = ensure_cache(out, args.repeat)
    opening = bench_open(cache)
    runs = bench_reads(cache, work, args.seconds, args.rounds)
    memory = bench_shuffle_memory()
    reads = {name: statistics.median(values) for name, values in runs.items()}

    def ratio(a: str, b: str) -> float:
        """Median over rounds of the side-by-side ratio (both measured within the same round)."""
        return statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))

    print(
        f"corpus: {opening['tokens (train)'] / 1e6:.1f}M train tokens, {opening['documents']:.0f} documents"
    )
    print(f"\n{'random 1024-token samples (median of ' + str(args.rounds) + ' rounds)':<58}{'samples/s':>12}")
    for name, value in reads.items():
        print(f"{name:<58}{value:>12,.0f}")
    ratios = {}
    for batch in (8, 64):
        ours = f"tokenmill windows, batch {batch}"
        ratios[f"batch {batch} / tutorial"] = ratio(ours, "tutorial (one token per row, to_pylist)")
        ratios[f"batch {batch} / memmap per-sample"] = ratio(ours, "memmap, per-sample copy")
        ratios[f"batch {batch} / memmap strided"] = ratio(ours, "memmap, batch of 64, strided window view")
    print()
    for name, value in ratios.items():
        print(f"tokenmill {name:<50}{value:>10.2f}x")
    print()
    for name, value in {**opening, **memory}.items():
        shown = f"{value:.3f}" if isinstance(value, float) and value < 100 else f"{value:,.0f}"
        print(f"{name:<60}{shown:>14}")
    (work / "bench_loader.json").write_text(
        json.dumps(
            {"reads": reads, "runs": runs, "ratios": ratios, "open": opening, "shuffle": memory}, indent=1
        )
    )


if __name__ == "__main__":
    main()
