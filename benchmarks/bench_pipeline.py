"""Streaming pipeline against epochraft, side by side, on the same shards, tokenizer and chain.

    from_files -> tokenize -> ensure_bos_eos -> concat_chunk(1024) -> shuffle(1000) -> batch(8)

Corpus: the Python standard library's .py files, one JSONL record per file (examples/make_corpus.py), written
``--repeat`` times (default 12, ~96M tokens) into 8 shards, so that 10,000 batches (82M tokens) stay inside the
first epoch and a resume position really is deep inside each shard. Tokenizer: a 32k byte-level BPE trained with ``tokenmill tokenizer
train`` (tokenmill runs it with its exact tiktoken fast path; epochraft with transformers' PreTrainedTokenizerFast
over the same tokenizer.json, as its users do).

Measured, each in its own process:
  ceiling    tokenmill's ``Tokenizer.encode_batch`` over the documents, in memory (no reading, no pipeline)
  tokens/s   the chain over the first ``--batches`` batches (and the time to the first batch)
  state      the saved state's size: tokenmill's JSON, epochraft's pickle (torch.save)
  resume     seconds from ``iter(state)`` to the first batch after 100, 1,000 and 10,000 batches,
             in a fresh process, checked to be the very batch of the uninterrupted run; and to batch 130,
             minus 130 batches at the steady rate (epochraft serves its first 125 batches from the buffer
             stored in its state, so only the later figure shows what its re-reading costs)
  shuffle    the state/resume/quality trade-off of three shuffle-state designs (see docs/pipeline.md)

epochraft runs in its own virtual environment (``--epochraft-python``, default .bench-venv/bin/python; create it
with ``python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.13.0 && .bench-venv/bin/pip install
epochraft tokenizers transformers``). Results are printed and written to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CHAIN = "from_files -> tokenize -> ensure_bos_eos -> concat_chunk(1024) -> shuffle(1000) -> batch(8)"
TOKENS_PER_BATCH = 8 * 1024

CEILING = r"""
import glob, json, sys, time
from tokenmill.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
files = sorted(glob.glob(sys.argv[2] + "/*.jsonl"))
limit = int(sys.argv[3])
texts, chars = [], 0
for f in files:
    for line in open(f, encoding="utf-8"):
        texts.append(json.loads(line)["text"])
    if len(texts) > limit:
        break
texts = texts[:limit]
t = time.perf_counter()
n = sum(len(x) for x in tok.encode_batch(texts))
dt = time.perf_counter() - t
print(json.dumps({"tokens": n, "seconds": dt, "engine": tok.engine}))
"""

# --- tokenmill ---------------------------------------------------------------------------------------------
OURS = r"""
import glob, hashlib, json, sys, time
import numpy as np
from tokenmill.pipeline import Pipeline
from tokenmill.tokenizer import load_tokenizer

mode, tok_path, corpus, arg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
AFTER = 130  # past the 125 batches that a 1000-chunk shuffle buffer holds: new data must be read by then
tok = load_tokenizer(tok_path)

def chain(repeat):
    files = sorted(glob.glob(corpus + "/*.jsonl"))
    return (Pipeline.from_files(files, repeat=repeat).tokenize(tok).ensure_bos_eos()
            .concat_chunk(1024).shuffle(1000).batch(8))

def digest(batch):
    return hashlib.sha256(np.ascontiguousarray(batch["input_ids"]).tobytes()).hexdigest()[:16]

if mode == "throughput":
    n_batches = int(arg)
    t = time.perf_counter()
    it = chain(False).iter()
    next(it)
    first = time.perf_counter() - t
    got = 1
    for _ in it:
        got += 1
        if got == n_batches // 2:
            state_bytes = len(json.dumps(it.state_dict()))
        if got >= n_batches:
            break
    dt = time.perf_counter() - t
    it.close()
    print(json.dumps({"batches": got, "seconds": dt, "first_batch": first, "state_bytes": state_bytes}))
elif mode == "states":
    positions, out = [int(x) for x in arg.split(",")], sys.argv[5]
    it = chain(True).iter()
    done, res = 0, {}
    t = time.perf_counter()
    for p in positions:
        while done < p:
            next(it); done += 1
        state = it.state_dict()
        text = json.dumps(state)
        with open(f"{out}/ours-{p}.json", "w") as f:
            f.write(text)
        res[p] = {"state_bytes": len(text), "next": digest(next(it)), "reached_s": time.perf_counter() - t}
        done += 1
    it.close()
    print(json.dumps(res))
elif mode == "resume":
    with open(arg) as f:
        state = json.load(f)
    pipe = chain(True)
    t = time.perf_counter()
    it = pipe.iter(state)
    batch = next(it)
    dt = time.perf_counter() - t
    for _ in range(AFTER - 1):
        next(it)
    later = time.perf_counter() - t
    it.close()
    print(json.dumps({"seconds": dt, "seconds_to_batch_%d" % AFTER: later, "next": digest(batch)}))
"""

# --- epochraft (runs in the benchmark venv) -----------------------------------------------------------------
EPOCHRAFT = r"""
import glob, hashlib, io, json, os, sys, time
import numpy as np, torch
from epochraft import CheckpointableDataset
from transformers import PreTrainedTokenizerFast

mode, tok_path, corpus, arg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
AFTER = 130  # epochraft serves its first 125 batches from the buffer stored in its state; by 130 it reads again
tok = PreTrainedTokenizerFast(tokenizer_file=tok_path, eos_token="<|endoftext|>")

def chain(repeat):
    files = sorted(glob.glob(corpus + "/*.jsonl"))
    return (CheckpointableDataset.from_files(files, repeat=repeat).tokenize(tok).ensure_bos_eos(tok)
            .concat_chunk(1024).shuffle(1000).batch(8))

def digest(batch):
    return hashlib.sha256(batch["input_ids"].numpy().astype(np.int64).tobytes()).hexdigest()[:16]

def size(state):
    buf = io.BytesIO(); torch.save(state, buf); return buf.tell()

if mode == "throughput":
    n_batches = int(arg)
    t = time.perf_counter()
    it = chain(False).iter()
    next(it)
    first = time.perf_counter() - t
    got = 1
    for _ in it:
        got += 1
        if got == n_batches // 2:
            state_bytes = size(it.state_dict())
        if got >= n_batches:
            break
    dt = time.perf_counter() - t
    print(json.dumps({"batches": got, "seconds": dt, "first_batch": first, "state_bytes": state_bytes}))
elif mode == "states":
    positions, out = [int(x) for x in arg.split(",")], sys.argv[5]
    it = chain(True).iter()
    done, res = 0, {}
    t = time.perf_counter()
    for p in positions:
        while done < p:
            next(it); done += 1
        state = it.state_dict()
        torch.save(state, f"{out}/epochraft-{p}.pt")
        res[p] = {"state_bytes": size(state), "next": digest(next(it)), "reached_s": time.perf_counter() - t}
        done += 1
    print(json.dumps(res))
elif mode == "resume":
    state = torch.load(arg, weights_only=False)
    pipe = chain(True)
    t = time.perf_counter()
    it = pipe.iter(state)
    batch = next(it)
    dt = time.perf_counter() - t
    for _ in range(AFTER - 1):
        next(it)
    later = time.perf_counter() - t
    print(json.dumps({"seconds": dt, "seconds_to_batch_%d" % AFTER: later, "next": digest(batch)}))
# epochraft never closes its workers: its iterators' __del__ hangs the interpreter at exit
sys.stdout.flush()
os._exit(0)
"""


def run_json(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_inputs(out: Path, repeat: int) -> tuple[Path, Path]:
    corpus = out / f"corpus-x{repeat}"
    if not corpus.exists():
        subprocess.run(
            [
                PY,
                str(ROOT / "examples/make_corpus.py"),
                str(corpus),
                "--shards",
                "8",
                "--repeat",
                str(repeat),
            ],
            check=True,
        )
    tok = out / "tok32k" / "tokenizer.json"
    if not tok.exists():
        one = out / "corpus-x1"
        if not one.exists():
            subprocess.run([PY, str(ROOT / "examples/make_corpus.py"), str(one), "--shards", "8"], check=True)
        tokenmill = str(Path(PY).with_name("tokenmill"))
        subprocess.run(
            [
                tokenmill,
                "tokenizer",
                "train",
                f"{one}/*.jsonl",
                "--vocab-size",
                "32000",
                "--output",
                str(tok),
            ],
            check=True,
        )
    return corpus, tok


def shuffle_study(corpus: Path, tok: Path, env: dict[str, str]) -> dict:
    """State size, resume work and shuffle quality of three shuffle-state designs on the real chunk stream."""
    script = r"""
import glob, json, sys, random
import numpy as np
from tokenmill.pipeline import Pipeline
from tokenmill.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[1])
files = sorted(glob.glob(sys.argv[2] + "/*.jsonl"))
# the chunk stream of the chain, labelled by the document each chunk starts in
docs = [np.int64(len(x["input_ids"])) for x in Pipeline.from_files(files).tokenize(tok).ensure_bos_eos().take(4000).iter()]
lengths = np.asarray(docs); ends = np.cumsum(lengths); n_chunks = int(ends[-1] // 1024)
doc_of_chunk = np.searchsorted(ends, np.arange(n_chunks) * 1024, side="right")
B, rng = 1000, random.Random(0)

def reservoir(n):  # epochraft's algorithm: fill to B, emit a random slot, refill
    buf, out, born = [], [], []
    src = iter(range(n))
    for i in src:
        buf.append(i)
        if len(buf) < B: continue
        j = rng.randrange(len(buf)); buf[j], buf[-1] = buf[-1], buf[j]; out.append(buf.pop())
    while buf:
        j = rng.randrange(len(buf)); buf[j], buf[-1] = buf[-1], buf[j]; out.append(buf.pop())
    return out

def block(n, stratified):
    from tokenmill.pipeline.shuffle import block_permutation
    out = []
    for b, s in enumerate(range(0, n, B)):
        idx = np.arange(s, min(n, s + B))
        perm = block_permutation(len(idx), 42, b) if stratified else np.random.default_rng(s).permutation(len(idx))
        out.extend(idx[perm].tolist())
    return out

def quality(order):
    order = np.asarray(order); pos = np.arange(len(order))
    disp = np.abs(order - pos)
    d = doc_of_chunk[order]
    batches = d[: len(d) // 8 * 8].reshape(-1, 8)
    same = np.mean([len(set(b)) < 8 for b in batches.tolist()])
    adjacent = float(np.mean(d[1:] == d[:-1]))
    return {"mean_displacement": float(disp.mean()), "max_delay": int((pos - order).max()),
            "batches_with_two_chunks_of_one_doc": float(same), "adjacent_same_doc": adjacent}

def reservoir_checkpoints(n, every=97):
    # what a position-based reservoir state would have to rebuild: the span back to the oldest buffered item,
    # and the tokens of the documents that buffered chunks come from (each must be re-tokenized whole)
    buf, spans, retok = [], [], []
    for i in range(n):
        buf.append(i)
        if len(buf) < B: continue
        j = rng.randrange(len(buf)); buf[j], buf[-1] = buf[-1], buf[j]; buf.pop()
        if i % every == 0 and i > 3 * B:
            spans.append(i - min(buf)); retok.append(int(lengths[np.unique(doc_of_chunk[buf])].sum()))
    return float(np.mean(spans)), float(np.max(spans)), float(np.mean(retok))

span_mean, span_max, retok = reservoir_checkpoints(n_chunks)
print(json.dumps({"chunks": n_chunks, "identity": quality(list(range(n_chunks))),
                  "reservoir": quality(reservoir(n_chunks)), "block_uniform": quality(block(n_chunks, False)),
                  "block_stratified": quality(block(n_chunks, True)),
                  "reservoir_positions": {"reread_chunks_mean": span_mean, "reread_chunks_max": span_max,
                                          "retokenized_tokens_mean": retok}}))
"""
    return run_json([PY, "-c", script, str(tok), str(corpus)], env)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "pipeline"))
    ap.add_argument(
        "--repeat", type=int, default=12, help="corpus copies (12: ~96M tokens; 10k batches = 82M fit)"
    )
    ap.add_argument("--batches", type=int, default=1500, help="batches timed for tokens/s")
    ap.add_argument("--positions", default="100,1000,10000")
    ap.add_argument("--rounds", type=int, default=3, help="alternating ceiling/pipeline rounds (median)")
    ap.add_argument(
        "--epochraft-rounds", type=int, default=3, help="epochraft throughput runs (fewer: faster)"
    )
    ap.add_argument("--epochraft-python", default=str(ROOT / ".bench-venv" / "bin" / "python"))
    ap.add_argument("--skip-epochraft", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, tok = prepare_inputs(out, args.repeat)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true"}
    positions = [int(x) for x in args.positions.split(",")]
    have_epochraft = not args.skip_epochraft and Path(args.epochraft_python).exists()
    results: dict = {"chain": CHAIN, "cores": os.cpu_count(), "corpus": str(corpus)}

    # The ceiling and our pipeline alternate, `--rounds` times, and the ratio is the median of the per-round
    # ratios: on a shared machine the load moves between runs, and only side-by-side figures are comparable.
    docs_for_ceiling = 1758 * 2  # two copies of the corpus: about the text the timed batches cover
    peers = {"tokenmill": [PY, "-c", OURS]}
    if have_epochraft:
        peers["epochraft"] = [args.epochraft_python, "-c", EPOCHRAFT]
    rounds: dict[str, list[dict]] = {"ceiling": [], "tokenmill": [], "epochraft": []}
    for r in range(args.rounds):
        c = run_json([PY, "-c", CEILING, str(tok), str(corpus), str(docs_for_ceiling)], env)
        c["tokens_per_s"] = c["tokens"] / c["seconds"]
        rounds["ceiling"].append(c)
        print(
            f"[{r}] ceiling ({c['engine']} encode_batch, in memory): {c['tokens_per_s'] / 1e6:.2f}M tokens/s",
            flush=True,
        )
        for name, cmd in peers.items():
            if name == "epochraft" and r >= args.epochraft_rounds:
                continue
            t = run_json(cmd + ["throughput", str(tok), str(corpus), str(args.batches)], env)
            t["tokens_per_s"] = t["batches"] * TOKENS_PER_BATCH / t["seconds"]
            t["vs_ceiling"] = t["tokens_per_s"] / c["tokens_per_s"]
            rounds[name].append(t)
            print(
                f"[{r}] {name}: {t['tokens_per_s'] / 1e6:.2f}M tokens/s over {t['batches']} batches "
                f"({t['vs_ceiling']:.2f}x the ceiling of this round), first batch {t['first_batch']:.2f} s, "
                f"state {t['state_bytes']:,} bytes",
                flush=True,
            )
    results["ceiling"] = {
        "rounds": rounds["ceiling"],
        "tokens_per_s": median([x["tokens_per_s"] for x in rounds["ceiling"]]),
    }
    for name in peers:
        runs = rounds[name]
        results[name] = {
            "throughput": {
                "rounds": runs,
                "tokens_per_s": median([x["tokens_per_s"] for x in runs]),
                "vs_ceiling": median([x["vs_ceiling"] for x in runs]),
                "first_batch": median([x["first_batch"] for x in runs]),
                "state_bytes": runs[-1]["state_bytes"],
            }
        }
    for name, cmd in peers.items():
        states = run_json(
            cmd + ["states", str(tok), str(corpus), ",".join(map(str, positions)), str(out)], env
        )
        resume = {}
        for p in positions:
            path = out / (f"ours-{p}.json" if name == "tokenmill" else f"epochraft-{p}.pt")
            r = run_json(cmd + ["resume", str(tok), str(corpus), str(path)], env)
            r["state_bytes"] = states[str(p)]["state_bytes"]
            r["exact"] = r["next"] == states[str(p)]["next"]
            resume[p] = r
            steady = 130 / results[name]["throughput"]["tokens_per_s"] * TOKENS_PER_BATCH
            r["overhead_to_batch_130"] = r["seconds_to_batch_130"] - steady
            print(
                f"{name}: resume after {p:>6,} batches: {r['seconds']:.3f} s to the next batch, "
                f"{r['seconds_to_batch_130']:.2f} s to batch 130 ({r['overhead_to_batch_130']:+.2f} s over the "
                f"steady rate) (exact: {r['exact']}), state {r['state_bytes']:,} bytes",
                flush=True,
            )
        results[name]["resume"] = resume

    results["shuffle_study"] = s = shuffle_study(corpus, tok, env)
    print("shuffle designs (1000-chunk buffer, real chunk stream):", json.dumps(s, indent=1), flush=True)

    if "epochraft" in results:
        ours, theirs = results["tokenmill"], results["epochraft"]
        paired = [
            o["tokens_per_s"] / e["tokens_per_s"] for o, e in zip(rounds["tokenmill"], rounds["epochraft"])
        ]
        ratios: dict = {
            "tokens_per_s_vs_epochraft": median(paired),  # same round, side by side
            "state_size_vs_epochraft": ours["throughput"]["state_bytes"]
            / theirs["throughput"]["state_bytes"],
        }
        for p in positions:
            o, e = ours["resume"][p], theirs["resume"][p]
            ratios[f"resume_{p}"] = {
                "first_batch_s": {"tokenmill": o["seconds"], "epochraft": e["seconds"]},
                "batch_130_s": {
                    "tokenmill": o["seconds_to_batch_130"],
                    "epochraft": e["seconds_to_batch_130"],
                },
            }
        results["ratios"] = ratios
    results["ratio_vs_ceiling"] = results["tokenmill"]["throughput"]["vs_ceiling"]
    print(
        "ratios:",
        json.dumps({**results.get("ratios", {}), "vs_ceiling": results["ratio_vs_ceiling"]}, indent=1),
    )
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out / 'results.json'} ({time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
