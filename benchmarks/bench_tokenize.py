"""Tokenizing throughput of each engine on the Python standard library corpus (one document per `.py` file).

The tokenizer is a 32k byte-level BPE trained on that corpus with ``tokenmill.tokenizer.train_tokenizer``.
Compares, on the same documents and the same cores:

- `tokenizers` ``encode_batch`` (its thread pool: all cores), ``encode_batch_fast``, and one document at a time;
- fastokens (the engine tokenmill picks for it), ``encode_batch`` and the flat form ``encode_flat``;
- ``Tokenizer.encode_batch`` / ``encode_flat`` as tokenmill runs them (what prepare and the pipeline get).

Every engine's ids are checked equal to `tokenizers`' on every document before timing is reported.

    .venv/bin/python benchmarks/bench_tokenize.py [--limit-mb 100] [--vocab-size 32000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from make_corpus import stdlib_texts  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--limit-mb", type=float, default=100.0, help="stop reading the corpus after this many MB"
    )
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine (the median is reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    from tokenmill.tokenizer import load_tokenizer, train_tokenizer

    docs = stdlib_texts(int(args.limit_mb * 1e6))
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    t0 = time.perf_counter()
    fast = train_tokenizer(docs, args.vocab_size)
    train_s = time.perf_counter() - t0
    if fast.engine != "fastokens":
        print(f"fastokens unavailable: {fast.engine_reason}", file=sys.stderr)
        return 1
    raw = fast.backend  # the tokenizers.Tokenizer (special-token text as plain text)
    engine = fast._engine_state().fast

    def flat_lists(flat_offsets) -> list[list[int]]:
        flat, offsets = flat_offsets
        return [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    reference = [e.ids for e in raw.encode_batch(docs, add_special_tokens=False)]
    ntok = sum(map(len, reference))
    engines = {
        "tokenizers encode_batch (all cores)": lambda: [
            e.ids for e in raw.encode_batch(docs, add_special_tokens=False)
        ],
        "tokenizers encode_batch_fast (all cores)": lambda: [
            e.ids for e in raw.encode_batch_fast(docs, add_special_tokens=False)
        ],
        "tokenizers one document at a time": lambda: [
            raw.encode(d, add_special_tokens=False).ids for d in docs
        ],
        "fastokens encode_batch": lambda: engine.encode_batch(docs),
        "fastokens encode_flat (ids checked after timing)": lambda: engine.encode_flat(docs),
        "tokenmill Tokenizer.encode_batch": lambda: fast.encode_batch(docs),
    }
    if not hasattr(raw, "encode_batch_fast"):
        del engines["tokenizers encode_batch_fast (all cores)"]
    results = {}
    for name, fn in engines.items():
        seconds, ids = timed(fn, args.repeats)
        if isinstance(ids, tuple):
            ids = flat_lists(ids)
        if ids != reference:
            print(f"{name}: ids differ from tokenizers encode_batch", file=sys.stderr)
            return 1
        results[name] = {
            "seconds": seconds,
            "tokens_per_s": ntok / seconds,
            "mb_per_s": nbytes / 1e6 / seconds,
        }
    base = results["tokenizers encode_batch (all cores)"]["tokens_per_s"]
    for r in results.values():
        r["ratio_to_encode_batch"] = r["tokens_per_s"] / base

    slow = load_tokenizer(
        fast.save(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_tokenize_tok"), engine="tokenizers"
    )
    load_s, _ = timed(
        lambda: load_tokenizer(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_tokenize_tok"), 3
    )
    summary = {
        "corpus": {"documents": len(docs), "bytes": nbytes, "tokens": ntok},
        "tokenizer": {
            "vocab_size": fast.vocab_size,
            "train_seconds": train_s,
            "load_with_engine_check_s": load_s,
        },
        "cpus": os.cpu_count(),
        "engines": results,
        "ids_identical": True,
        "slow_engine": slow.engine,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"corpus: {len(docs)} documents, {nbytes / 1e6:.1f} MB, {ntok / 1e6:.2f}M tokens; "
        f"vocab {fast.vocab_size} (trained in {train_s:.1f} s); {os.cpu_count()} CPUs; median of {args.repeats}"
    )
    print(f"{'engine':45s} {'tokens/s':>10s} {'MB/s':>7s} {'x encode_batch':>15s}")
    for name, r in results.items():
        print(
            f"{name:45s} {r['tokens_per_s'] / 1e6:9.2f}M {r['mb_per_s']:7.2f} {r['ratio_to_encode_batch']:14.2f}x"
        )
    print(f"ids identical to tokenizers on all {len(docs)} documents; load + engine check: {load_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
