"""prepare throughput and memory, side by side with its ceiling and the usual Hugging Face recipe.

Same corpus (the Python standard library's .py files, one JSONL record per file), same 32k byte-level BPE, same
2 cores, one run:
  ceiling   the tokenizer's own `encode_batch` over every text, in memory (no reading, no writing)
  hf        load_dataset("json") -> map(tokenize, batched, num_proc=2) -> save_to_disk
  tokenmill tokenmill prepare ... --workers 2
Peak memory is the RSS of each run's whole process tree; tokenmill is also run on the corpus written 3 times to
show that its memory does not grow with corpus size.

    .venv/bin/python benchmarks/bench_prepare.py [--out bench-out] [--repeat-large 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

CEILING = textwrap.dedent(
    """
    import glob, json, sys, time
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(sys.argv[1])
    texts = [json.loads(l)["text"] for f in sorted(glob.glob(sys.argv[2] + "/*.jsonl")) for l in open(f)]
    t = time.perf_counter()
    n = 0
    for i in range(0, len(texts), 1024):
        n += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + 1024], add_special_tokens=False))
    print(json.dumps({"tokens": n, "seconds": time.perf_counter() - t}))
    """
)

HF_RECIPE = textwrap.dedent(
    """
    import glob, json, sys, time
    from datasets import load_dataset
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=sys.argv[1], eos_token="<|endoftext|>")
    t = time.perf_counter()
    ds = load_dataset("json", data_files=sorted(glob.glob(sys.argv[2] + "/*.jsonl")), split="train",
                      cache_dir=sys.argv[3] + "/hf-cache")
    def tokenize(batch):
        return {"input_ids": [ids + [tok.eos_token_id] for ids in tok(batch["text"])["input_ids"]]}
    ds = ds.map(tokenize, batched=True, num_proc=2, remove_columns=ds.column_names)
    ds.save_to_disk(sys.argv[3] + "/hf-out")
    n = sum(len(x) for x in ds["input_ids"])
    print(json.dumps({"tokens": n, "seconds": time.perf_counter() - t}))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    ap.add_argument("--repeat-large", type=int, default=3)
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, large = out / "corpus", out / f"corpus-x{args.repeat_large}"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    if not corpus.exists():
        subprocess.run([PY, str(ROOT / "examples/make_corpus.py"), str(corpus), "--shards", "8"], check=True)
    if not large.exists():
        subprocess.run(
            [
                PY,
                str(ROOT / "examples/make_corpus.py"),
                str(large),
                "--shards",
                "8",
                "--repeat",
                str(args.repeat_large),
            ],
            check=True,
        )
    tok = out / "tok32k" / "tokenizer.json"
    if not tok.exists():
        subprocess.run(
            [
                PY,
                "-m",
                "tokenmill.cli",
                "tokenizer",
                "train",
                f"{corpus}/*.jsonl",
                "--vocab-size",
                "32000",
                "--output",
                str(tok),
            ],
            check=True,
        )
    results: dict[str, dict] = {}
    ceiling = run_measured([PY, "-c", CEILING, str(tok), str(corpus)], env=env)
    c = json.loads(ceiling["stdout"])
    results["ceiling"] = {"tokens": c["tokens"], "seconds": c["seconds"], "peak_rss": ceiling["peak_rss"]}

    def ours(src: Path, name: str) -> None:
        cache = out / f"cache-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        r = run_measured(
            [
                PY,
                "-m",
                "tokenmill.cli",
                "prepare",
                f"{src}/*.jsonl",
                "--tokenizer",
                str(tok),
                "--output",
                str(cache),
                "--workers",
                "2",
                "--json",
                "--no-progress",
            ],
            env=env,
        )
        s = json.loads(r["stdout"])
        results[name] = {
            "tokens": s["tokens"],
            "seconds": r["seconds"],
            "peak_rss": r["peak_rss"],
            "internal_seconds": s["seconds"],
        }

    ours(corpus, "tokenmill")
    ours(large, f"tokenmill-x{args.repeat_large}")
    if not args.skip_hf:
        hf_dir = out / "hf"
        shutil.rmtree(hf_dir, ignore_errors=True)
        hf_dir.mkdir()
        r = run_measured([PY, "-c", HF_RECIPE, str(tok), str(corpus), str(hf_dir)], env=env)
        h = json.loads(r["stdout"])
        results["hf-datasets"] = {"tokens": h["tokens"], "seconds": r["seconds"], "peak_rss": r["peak_rss"]}

    base = results["tokenmill"]
    print(f"{'run':<18}{'tokens':>12}{'seconds':>9}{'tokens/s':>12}{'peak RSS':>11}")
    for name, r in results.items():
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        print(
            f"{name:<18}{r['tokens']:>12}{r['seconds']:>9.2f}{r['tokens_per_s'] / 1e6:>10.2f}M"
            f"{r['peak_rss'] / 2**20:>9.0f}MiB"
        )
    print(
        f"tokenmill / ceiling (encode_batch, 2 threads): {base['tokens_per_s'] / results['ceiling']['tokens_per_s']:.2f}x"
    )
    if "hf-datasets" in results:
        print(
            f"tokenmill / HF datasets recipe: {base['tokens_per_s'] / results['hf-datasets']['tokens_per_s']:.2f}x"
        )
    big = results[f"tokenmill-x{args.repeat_large}"]
    print(
        f"peak RSS at 1x and {args.repeat_large}x corpus: {base['peak_rss'] / 2**20:.0f} MiB, {big['peak_rss'] / 2**20:.0f} MiB"
    )
    (out / "bench_prepare.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
