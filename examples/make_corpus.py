"""Build a real local code corpus: the Python standard library's .py files, one JSONL record per file.

Used by `make demo` and the benchmarks; needs nothing from the network. Usage:
    python examples/make_corpus.py OUT_DIR [--shards 8] [--gzip] [--repeat K] [--max-files N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sysconfig
from pathlib import Path


def stdlib_files(max_files: int | None = None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )
    return files[:max_files] if max_files else files


def stdlib_texts(limit_bytes: int | None = None) -> list[str]:
    """The readable, non-empty standard-library sources, in path order, until ``limit_bytes`` of text."""
    texts, total = [], 0
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        texts.append(text)
        total += len(text.encode())
        if limit_bytes is not None and total >= limit_bytes:
            break
    return texts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="write the corpus K times (for size-scaling runs)")
    ap.add_argument("--max-files", type=int)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = stdlib_files(args.max_files)
    root = Path(sysconfig.get_paths()["stdlib"])
    suffix = ".jsonl.gz" if args.gzip else ".jsonl"
    opener = gzip.open if args.gzip else open
    handles = [opener(out / f"stdlib-{i:03d}{suffix}", "wt", encoding="utf-8") for i in range(args.shards)]
    n = size = 0
    for rep in range(args.repeat):
        for i, path in enumerate(files):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            record = {"text": text, "path": str(path.relative_to(root)), "copy": rep}
            handles[(i + rep) % args.shards].write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
            size += len(text.encode())
    for h in handles:
        h.close()
    print(
        f"wrote {n} documents ({size / 1e6:.1f} MB of text) to {out}/stdlib-*{suffix} in {args.shards} shards"
    )


if __name__ == "__main__":
    main()
