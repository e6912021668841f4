"""Why a SentencePiece-style BPE stays slower than cl100k in fastokens: its two pre-tokenizer paths, measured.

fastokens runs a ``Split`` pre-tokenizer through a hand-written scanner when the pattern is one it knows (cl100k's,
o200k's, GPT-2's and a few more, compared as strings) and through PCRE2 plus a generic loop over the pieces
otherwise. tokenmill's byte-level rewrite of a SentencePiece-style BPE (`tokenmill.tokenizer.bytelevel`) needs a
cut that none of the known patterns makes: a run of "▁" stays with the word after it, because the merges decide
whether the last "▁" of a run joins the run or the word ("a  1" is ``▁a ▁▁ 1`` in Mistral v1, ``▁a ▁ ▁ 1`` when cut
as cl100k cuts). So the rewrite takes the generic path. This encodes the same texts with fastokens three ways, on
Mistral v1's rewrite (taking turns, medians):

  rewrite              the rewrite as tokenmill builds it (its ids are the tokenizer's own)
  cl100k cut           the same vocabulary and merges, cut by cl100k's pattern: a known one, the fast path
  cl100k cut, unknown  cl100k's pattern with a branch that never matches appended: the same cuts, the generic path

and counts the documents whose ids the cl100k cut changes.

    .venv/bin/python benchmarks/bench_split_paths.py [--out bench-engines] [--shards 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_engines  # noqa: E402


def encode_all(tok, texts: list[str]) -> list[bytes]:
    """Every text's ids as bytes, in batches of 1024 (as prepare encodes)."""
    out: list[bytes] = []
    for i in range(0, len(texts), 1024):
        ids, offsets = tok.encode_batch_flat(texts[i : i + 1024], split_special_tokens=True)
        ids, bounds = memoryview(ids).cast("B"), memoryview(offsets).cast("Q").tolist()
        out.extend(bytes(ids[4 * a : 4 * b]) for a, b in zip(bounds, bounds[1:]))
    return out


def main() -> None:
    import fastokens

    from tokenmill.tokenizer.bytelevel import metaspace_as_spaces, sentencepiece_rewrite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", default="bench-engines", help="bench_engines.py's folder (corpus made if missing)"
    )
    ap.add_argument("--shards", type=int, default=2, help="corpus shards to encode")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out = Path(args.out)
    shards = sorted((out / "corpus").glob("*.jsonl.gz"))
    if not shards:
        bench_engines.write_corpus(out, 100.0)
        shards = sorted((out / "corpus").glob("*.jsonl.gz"))
    paths = bench_engines.make_tokenizers(out, shards, ["mistral", "cl100k"])
    texts = []
    for shard in shards[: args.shards]:
        with gzip.open(shard, "rb") as f:
            texts.extend(json.loads(line)["text"] for line in f)
    normalized = metaspace_as_spaces(texts)  # what the rewrite is given, as tokenmill's engine gives it

    rewrite = sentencepiece_rewrite(paths["mistral"].read_text(encoding="utf-8"))
    if isinstance(rewrite, str):
        sys.exit(f"Mistral v1's tokenizer.json was not rewritten: {rewrite}")
    spec = json.loads(rewrite.tokenizer_json)
    cl100k = json.loads(paths["cl100k"].read_text(encoding="utf-8"))
    known = cl100k["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]

    def cut_by(pattern: str) -> str:
        s = copy.deepcopy(spec)
        s["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": pattern}
        return json.dumps(s)

    variants = {
        "rewrite": rewrite.tokenizer_json,
        "cl100k cut": cut_by(known),
        "cl100k cut, unknown": cut_by(known + "|(?!)"),
    }
    toks = {name: fastokens.Tokenizer.from_json_str(text) for name, text in variants.items()}
    ids = {name: encode_all(tok, normalized) for name, tok in toks.items()}  # also warms the word caches
    times: dict[str, list[float]] = {name: [] for name in toks}
    for _ in range(args.repeat):
        for name, tok in toks.items():
            t = time.process_time()
            for i in range(0, len(normalized), 1024):
                tok.encode_batch_flat(normalized[i : i + 1024], split_special_tokens=True)
            times[name].append(time.process_time() - t)

    chars = sum(map(len, texts))
    print(
        f"{len(texts)} documents, {chars / 1e6:.1f}M characters, Mistral v1 rewritten; CPU-s, median of {args.repeat}"
    )
    base = statistics.median(times["rewrite"])
    for name, runs in times.items():
        differ = sum(a != b for a, b in zip(ids[name], ids["rewrite"]))
        m = statistics.median(runs)
        print(
            f"  {name:<20} {m:6.3f} CPU-s  {base / m:5.2f}x the rewrite  documents with other ids: {differ}"
        )
    from tokenizers import Tokenizer

    own = Tokenizer.from_file(str(paths["mistral"]))
    print(f"  'a  1' tokenizers    {own.encode('a  1', add_special_tokens=False).tokens}")
    for name in ("rewrite", "cl100k cut"):
        got = toks[name].encode_batch(metaspace_as_spaces(["a  1"]), split_special_tokens=True)[0].ids
        print(f"  'a  1' {name:<12} {[own.id_to_token(i) for i in got]}")


if __name__ == "__main__":
    main()
