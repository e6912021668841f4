"""prepare end to end with real Lance and a real tokenizer: round trip, resume after kill -9, worker invariance,
bad input, refusals, subsets, append."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from prepare_helpers import build, doc_hashes, documents_of

from conftest import make_documents, write_jsonl
from tokenizer import tokenizer_families as families  # tests/tokenizer: the tokenizer shapes users hold
from tokenmill.cache import CacheReader, read_manifest
from tokenmill.errors import CacheError, RecordError
from tokenmill.tokenizer import load_tokenizer


def test_round_trip_every_token_equals_the_tokenizer(tmp_path, jsonl_shards, documents, tokenizer_path):
    summary = build(jsonl_shards, tmp_path / "c", tokenizer_path, row_tokens=64)
    tok = load_tokenizer(str(tokenizer_path))
    expected = sorted(
        hashlib.sha1(np.array(ids + [tok.eos_id], dtype=np.uint32).tobytes()).hexdigest()
        for ids in tok.encode_batch(documents)
    )
    assert doc_hashes(tmp_path / "c") == expected
    assert summary.documents == len(documents)
    manifest = read_manifest(str(tmp_path / "c"))
    assert manifest.complete
    assert manifest.tokenizer["fingerprint"] == tok.fingerprint
    assert manifest.tokens == sum(len(x) for x in documents_of(tmp_path / "c"))
    # the cache carries its own tokenizer
    assert load_tokenizer(str(tmp_path / "c" / "tokenizer")).fingerprint == tok.fingerprint
    # long documents were cut into bounded rows
    reader = CacheReader(str(tmp_path / "c"))
    assert reader.dataset.to_table(columns=["num_tokens"]).column("num_tokens").to_numpy().max() <= 64


def test_second_run_does_nothing(tmp_path, jsonl_shards, tokenizer_path):
    build(jsonl_shards, tmp_path / "c", tokenizer_path)
    version = CacheReader(str(tmp_path / "c")).version
    again = build(jsonl_shards, tmp_path / "c", tokenizer_path)
    assert again.status == "nothing to do"
    assert CacheReader(str(tmp_path / "c")).version == version


def test_worker_count_changes_neither_content_nor_split(tmp_path, jsonl_shards, tokenizer_path):
    kw = dict(validation=0.2, seed=3, unit_bytes=20_000)
    build(jsonl_shards, tmp_path / "a", tokenizer_path, workers=0, **kw)
    build(jsonl_shards, tmp_path / "b", tokenizer_path, workers=2, **kw)
    for split in ("train", "validation"):
        assert doc_hashes(tmp_path / "a", split) == doc_hashes(tmp_path / "b", split)
    assert doc_hashes(tmp_path / "a", "validation")  # the split is not empty
    # units are committed in plan order, so even the row order agrees
    a = [d.tolist() for d in documents_of(tmp_path / "a")]
    b = [d.tolist() for d in documents_of(tmp_path / "b")]
    assert a == b


@pytest.mark.parametrize("tokenizer", ["trained", "bytes", "unigram"])
def test_threads_and_processes_write_the_same_cache(
    tmp_path, jsonl_shards, tokenizer_path, tokenizer, documents
):
    """Units on threads sharing the coordinator's engine, or on spawned processes loading their own: the same
    documents, split and row order (the byte tokenizer holds the GIL, so ``local`` gives it processes; the
    Unigram runs on `tokenizers`, the fallback)."""
    tok = {"trained": str(tokenizer_path), "bytes": "bytes"}.get(tokenizer)
    if tokenizer == "unigram":
        tok = str(families.unigram(documents[:100], tmp_path / "unigram" / "tokenizer.json", 300))
        assert load_tokenizer(tok).engine == "tokenizers"
    kw = dict(validation=0.2, seed=3, unit_bytes=20_000, workers=2)
    build(jsonl_shards, tmp_path / "t", tok, executor="thread", **kw)
    build(jsonl_shards, tmp_path / "p", tok, executor="process", **kw)
    build(jsonl_shards, tmp_path / "l", tok, **kw)
    docs = {k: [d.tolist() for d in documents_of(tmp_path / k)] for k in "tpl"}
    assert docs["t"] == docs["p"] == docs["l"] and len(docs["t"]) > 100
    assert doc_hashes(tmp_path / "t", "validation") == doc_hashes(tmp_path / "p", "validation")


def test_local_executor_is_threads_for_native_engines_else_processes(tokenizer_path):
    from dataclasses import replace

    from tokenmill.prepare import PrepareConfig, executor_kind

    config = PrepareConfig(sources=["x.jsonl"], output="out", tokenizer=str(tokenizer_path), workers=2)
    trained, byte = load_tokenizer(str(tokenizer_path)), load_tokenizer("bytes")
    assert executor_kind(config, trained) == "thread"
    assert executor_kind(config, byte) == "process"
    assert executor_kind(replace(config, executor="process"), trained) == "process"
    assert executor_kind(replace(config, executor="thread"), byte) == "thread"
    assert (
        executor_kind(replace(config, workers=0, executor="process"), trained) == "thread"
    )  # in this process
    assert executor_kind(replace(config, executor="ray"), trained) == "ray"
    # make_executor without a kind decides the same way (a tokenizer to share, or none to judge by)
    from tokenmill.prepare import LocalExecutor, ThreadExecutor, WorkerFunctions, WorkerSetup, make_executor

    setup = WorkerSetup(tokenizer_dir=str(tokenizer_path), config={}, dtype="uint16")
    functions = WorkerFunctions(init=lambda setup, tokenizer=None: None, run=lambda task, loaded=None: None)
    assert isinstance(make_executor(config, setup, functions, trained), ThreadExecutor)
    assert isinstance(make_executor(config, setup, functions), LocalExecutor)
    assert isinstance(make_executor(replace(config, workers=0), setup, functions), ThreadExecutor)


def test_validation_count_is_exact(tmp_path, jsonl_shards, tokenizer_path):
    build(jsonl_shards, tmp_path / "c", tokenizer_path, validation=25)
    manifest = read_manifest(str(tmp_path / "c"))
    assert manifest.splits["validation"].documents == 25
    assert len(documents_of(tmp_path / "c", "validation")) == 25


def test_kill_minus_nine_then_resume_gives_the_uninterrupted_documents(tmp_path, tokenizer_path):
    src = tmp_path / "src"
    shards = []
    for i in range(40):
        docs = make_documents(150, seed=100 + i)
        shards.append(write_jsonl(src / f"s{i:02d}.jsonl", [{"text": t} for t in docs]))
    reference = tmp_path / "ref"
    build(shards, reference, tokenizer_path, unit_bytes=60_000)
    cache = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "tokenmill.cli",
        "prepare",
        f"{src}/*.jsonl",
        "--tokenizer",
        str(tokenizer_path),
        "--output",
        str(cache),
        "--workers",
        "2",
        "--no-progress",
        "--unit-bytes",
        "60000",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        committed = cache / "ledger" / "committed.json"
        if committed.exists() and json.loads(committed.read_text())["through"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_manifest(str(cache))
    assert not partial.complete
    # what was committed before the kill is readable
    assert CacheReader(str(cache)).split_index("train").num_rows > 0
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_manifest(str(cache)).complete
    assert doc_hashes(cache) == doc_hashes(reference)


def test_mismatched_tokenizer_is_refused(tmp_path, jsonl_shards, tokenizer_path):
    build(jsonl_shards, tmp_path / "c", tokenizer_path)
    with pytest.raises(CacheError, match="different tokenizer or configuration"):
        build(jsonl_shards, tmp_path / "c", "bytes")
    with pytest.raises(CacheError, match="different tokenizer or configuration"):
        build(jsonl_shards, tmp_path / "c", tokenizer_path, min_tokens=5)
    rebuilt = build(jsonl_shards, tmp_path / "c", "bytes", overwrite=True)
    assert rebuilt.documents > 0
    assert read_manifest(str(tmp_path / "c")).tokenizer["fingerprint"] == load_tokenizer("bytes").fingerprint


def test_max_documents_takes_the_first_documents(tmp_path, jsonl_shards, tokenizer_path):
    full = tmp_path / "full"
    build(jsonl_shards, full, tokenizer_path, unit_bytes=20_000)
    part = tmp_path / "part"
    summary = build(jsonl_shards, part, tokenizer_path, unit_bytes=20_000, max_documents=57, workers=2)
    assert summary.documents == 57
    assert [d.tolist() for d in documents_of(part)] == [d.tolist() for d in documents_of(full)][:57]
    tokens = build(jsonl_shards, tmp_path / "tok", tokenizer_path, unit_bytes=20_000, max_total_tokens=5000)
    assert 0 < tokens.tokens <= 5000


def test_length_filters_are_counted(tmp_path, jsonl_shards, tokenizer_path):
    all_docs = [len(d) for d in documents_of(_full(tmp_path, jsonl_shards, tokenizer_path))]
    summary = build(
        jsonl_shards, tmp_path / "f", tokenizer_path, min_tokens=50, max_tokens=1000, truncate="drop"
    )
    kept = [n for n in all_docs if 50 <= n <= 1000]
    assert summary.documents == len(kept)
    assert sum(summary.skipped.values()) == len(all_docs) - len(kept)
    assert set(summary.skipped) <= {"too_short", "too_long"}


def _full(tmp_path, shards, tok):
    out = tmp_path / "full-ref"
    if not out.exists():
        build(shards, out, tok)
    return out


def test_append_adds_new_sources(tmp_path, jsonl_shards, tokenizer_path):
    build(jsonl_shards[:2], tmp_path / "c", tokenizer_path)
    with pytest.raises(CacheError, match="--append"):
        build(jsonl_shards, tmp_path / "c", tokenizer_path)
    summary = build(jsonl_shards, tmp_path / "c", tokenizer_path, append=True)
    assert summary.status == "appended"
    assert doc_hashes(tmp_path / "c") == doc_hashes(_full(tmp_path, jsonl_shards, tokenizer_path))


BAD_CASES = {
    "malformed_json": (b'{"text": "fine"}\n{"text": "broken\n', 2, None),
    "missing_field": (b'{"text": "fine"}\n{"body": "no text"}\n', 2, "text"),
    "not_string": (b'{"text": "fine"}\n{"text": 42}\n', 2, "text"),
    "invalid_utf8": (b'{"text": "fine"}\n{"text": "bad \xff\xfe bytes"}\n', 2, None),
    "empty": (b'{"text": "fine"}\n{"text": ""}\n', 2, "text"),
}


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_input_raises_naming_file_line_and_field(tmp_path, tokenizer_path, reason):
    data, line, field = BAD_CASES[reason]
    good = write_jsonl(tmp_path / "src" / "a-good.jsonl", [{"text": "hello world"}] * 3)
    bad = tmp_path / "src" / "b-bad.jsonl"
    bad.write_bytes(data)
    with pytest.raises(RecordError) as info:
        build([good, bad], tmp_path / "c", tokenizer_path, unit_bytes=10)
    err = info.value
    assert err.path.endswith("b-bad.jsonl") and err.line == line and err.reason == reason
    assert "b-bad.jsonl" in str(err) and f"line {line}" in str(err)
    if field:
        assert err.field == field and repr(field) in str(err)
    # what was committed before the failure (the good file, and the bad file's first line when it was a unit
    # of its own) stays readable
    assert CacheReader(str(tmp_path / "c")).split_index("train").num_documents in (3, 4)


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_input_skipped_and_counted(tmp_path, tokenizer_path, reason):
    data, _, _ = BAD_CASES[reason]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data)
    summary = build([bad], tmp_path / "c", tokenizer_path, on_error="skip")
    assert summary.documents == 1
    assert summary.skipped == {reason: 1}
    assert read_manifest(str(tmp_path / "c")).skipped == {reason: 1}


def test_unreadable_file_is_named(tmp_path, tokenizer_path):
    bad = tmp_path / "broken.jsonl.gz"
    bad.write_bytes(b"this is not gzip data at all")
    with pytest.raises(Exception) as info:
        build([bad], tmp_path / "c", tokenizer_path)
    assert "broken.jsonl.gz" in str(info.value)


def test_compressed_and_parquet_sources(tmp_path, documents, tokenizer_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        for t in documents[:100]:
            f.write(json.dumps({"text": t}) + "\n")
    pq.write_table(pa.table({"text": documents[100:200]}), tmp_path / "docs.parquet", row_group_size=17)
    summary = build([gz, tmp_path / "docs.parquet"], tmp_path / "c", tokenizer_path, workers=2)
    assert summary.documents == 200


def test_cli_prepare_json_and_inspect(tmp_path, jsonl_shards, tokenizer_path):
    out = tmp_path / "c"
    pattern = str(jsonl_shards[0].parent / "part-{00..03}.jsonl")
    run = subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", "prepare", pattern, "--tokenizer", str(tokenizer_path),
         "--output", str(out), "--validation", "0.1", "--workers", "1", "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["documents"] == 400 and summary["status"] == "complete"
    inspect = subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", "inspect", str(out), "--json", "--plot", str(tmp_path / "h.png")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    report = json.loads(inspect.stdout)
    assert report["documents"] == 400
    assert report["tokens"] == summary["tokens"]
    assert report["splits"]["train"]["documents"] + report["splits"]["validation"]["documents"] == 400
    assert report["tokenizer"]["fingerprint"]
    assert report["skipped"] == {}
    assert (tmp_path / "h.png").stat().st_size > 1000
    again = subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", "prepare", pattern, "--tokenizer", str(tokenizer_path),
         "--output", str(out), "--validation", "0.1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "nothing to do" in again.stdout, again.stderr
