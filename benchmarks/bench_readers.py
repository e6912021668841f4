"""JSON-lines reading speed: tokenmill's reader against the bare loops it is built on, per CPU-second.

Corpus: the Python standard library's sources as JSON lines (one record per file, non-ASCII text included, as
`make_corpus` writes them), at least ``--mb`` megabytes of text, written plain, gzip and zstd. For each reader,
CPU seconds of this process (best of ``--repeats``: the machine may be shared) and MB/s of uncompressed text:

  bare json     for line in file: json.loads(line.decode())   (the ceiling with the standard library)
  bare orjson   for line in file: orjson.loads(line)
  read_records  tokenmill.sources.read_records on .jsonl, .jsonl.gz, .jsonl.zst (offsets, positions, checks)

Every reader must give the same records as bare json.

    .venv/bin/python benchmarks/bench_readers.py [--out bench-readers] [--mb 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import orjson
import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from make_corpus import stdlib_texts  # noqa: E402

from tokenmill.sources import read_records  # noqa: E402


def write_corpus(out: Path, megabytes: float) -> tuple[Path, Path, Path, float]:
    out.mkdir(parents=True, exist_ok=True)
    plain = out / "corpus.jsonl"
    if not plain.exists():
        lines, size, rounds = [], 0, 0
        texts = stdlib_texts()
        while size < megabytes * 1e6:  # the library again, with a round mark, until the size is reached
            for t in texts:
                text = t if rounds == 0 else f"# round {rounds}\n{t}"
                lines.append(json.dumps({"text": text}, ensure_ascii=False))
                size += len(text.encode("utf-8"))
            rounds += 1
        plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = plain.read_bytes()
    gz, zst = out / "corpus.jsonl.gz", out / "corpus.jsonl.zst"
    if not gz.exists():
        gz.write_bytes(gzip.compress(data, compresslevel=6))
    if not zst.exists():
        zst.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    text_mb = sum(len(json.loads(line)["text"].encode("utf-8")) for line in data.splitlines()) / 1e6
    return plain, gz, zst, text_mb


def cpu_best(fn, repeats: int) -> tuple[float, list]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-readers"))
    ap.add_argument("--mb", type=float, default=50.0, help="megabytes of text in the corpus")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    plain, gz, zst, text_mb = write_corpus(Path(args.out), args.mb)

    def bare_json():
        with open(plain, "rb") as f:
            return [json.loads(line.decode("utf-8")) for line in f if line.strip()]

    def bare_orjson():
        with open(plain, "rb") as f:
            return [orjson.loads(line) for line in f if line.strip()]

    def tokenmill_reader(path: Path):
        return lambda: [r.record for r in read_records(str(path))]

    runs = [
        ("bare json.loads(line.decode())", bare_json),
        ("bare orjson.loads(line)", bare_orjson),
        ("read_records .jsonl", tokenmill_reader(plain)),
        ("read_records .jsonl.gz", tokenmill_reader(gz)),
        ("read_records .jsonl.zst", tokenmill_reader(zst)),
    ]
    reference = None
    print(
        f"{text_mb:.1f} MB of text in {plain.stat().st_size / 1e6:.1f} MB of JSON lines; CPU-s best of {args.repeats}"
    )
    for name, fn in runs:
        seconds, records = cpu_best(fn, args.repeats)
        if reference is None:
            reference = records
        same = records == reference
        print(f"  {name:<34} {seconds:6.2f} CPU-s {text_mb / seconds:7.0f} MB/s   same records: {same}")
        if not same:
            raise SystemExit(f"{name}: records differ from the standard library's")


if __name__ == "__main__":
    main()
