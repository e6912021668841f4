"""``Pipeline.from_files`` on real files (JSONL plain and gzip) and on a real S3 API (moto) with dropped
connections: exact resume by seek, round-robin order, files and threads closed, nothing lost or repeated."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.helpers import assert_resumes, plain, run
from s3_server import moto_server, s3  # noqa: F401  (pytest fixtures)
from tokenmill.errors import ConfigError, RecordError, StateError
from tokenmill.pipeline import Pipeline
from tokenmill.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(str(tokenizer_path))


@pytest.fixture(scope="module")
def gz_shards(jsonl_shards, tmp_path_factory) -> list[Path]:
    """The fixture shards gzipped, a few records per gzip member (as large .gz corpora are written)."""
    root = tmp_path_factory.mktemp("gz")
    out = []
    for shard in jsonl_shards:
        lines = shard.read_bytes().splitlines(keepends=True)
        path = root / (shard.name + ".gz")
        path.write_bytes(b"".join(gzip.compress(b"".join(lines[i : i + 7])) for i in range(0, len(lines), 7)))
        out.append(path)
    return out


def records_of(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def round_robin(lists: list[list]) -> list:
    out, iters = [], [iter(x) for x in lists]
    while iters:
        nxt = []
        for it in iters:
            try:
                out.append(next(it))
                nxt.append(it)
            except StopIteration:
                pass
        iters = nxt
    return out


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tokenmill-")]


def open_files(paths: list[Path]) -> int:
    names = {str(p.resolve()) for p in paths}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in names
        except OSError:
            pass
    return count


def wait_closed(paths: list[Path]) -> None:
    deadline = time.time() + 5
    while (pipeline_threads() or open_files(paths)) and time.time() < deadline:
        time.sleep(0.02)
    assert not pipeline_threads(), pipeline_threads()
    assert open_files(paths) == 0


# --- order and content ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "gz"])
def test_reads_every_record_round_robin(kind, jsonl_shards, gz_shards):
    shards = jsonl_shards if kind == "plain" else gz_shards
    expected = round_robin([records_of(p) for p in shards])
    got = run(Pipeline.from_files([str(p) for p in shards], n_active_shards=4))
    assert got == expected
    # two active shards, two opened ahead: shard 3 only starts when one of the first two ends
    two = run(Pipeline.from_files([str(p) for p in shards], n_active_shards=2, n_standby_shards=2))
    assert sorted(json.dumps(r) for r in two) == sorted(json.dumps(r) for r in expected)
    wait_closed(list(shards))


def test_brace_patterns_and_repeat_with_shuffled_shards(jsonl_shards):
    root = jsonl_shards[0].parent
    pipe = Pipeline.from_files(
        str(root / "part-{00..03}.jsonl"), repeat=True, shuffle_shards=True, seed=3, n_active_shards=1
    )
    n = sum(len(records_of(p)) for p in jsonl_shards)
    two_epochs = run(pipe.take(2 * n))
    key = [json.dumps(r, sort_keys=True) for r in two_epochs]
    assert sorted(key[:n]) == sorted(key[n:])  # each epoch is the whole corpus ...
    assert key[:n] != key[n:]  # ... in a new shard order
    ids_first = [r["id"] for r in two_epochs[:5]]
    assert ids_first == list(range(5))  # one active shard: records in file order


# --- resume ----------------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    k=st.integers(0, 120),
    active=st.integers(1, 5),
    standby=st.integers(0, 2),
    shuffle=st.booleans(),
    gz=st.booleans(),
)
def test_resume_property_on_files(k, active, standby, shuffle, gz, jsonl_shards, gz_shards):
    shards = gz_shards if gz else jsonl_shards
    pipe = Pipeline.from_files(
        [str(p) for p in shards],
        repeat=True,
        shuffle_shards=shuffle,
        n_active_shards=active,
        n_standby_shards=standby,
    ).take(450)
    assert_resumes(pipe, k, limit=450)


@settings(max_examples=8, deadline=None)
@given(k=st.integers(0, 40), gz=st.booleans(), buffer=st.integers(1, 50))
def test_resume_property_tokenized_chain(k, gz, buffer, jsonl_shards, gz_shards, tok):
    shards = gz_shards if gz else jsonl_shards
    pipe = (
        Pipeline.from_files([str(p) for p in shards], n_active_shards=3)
        .tokenize(tok)
        .ensure_bos_eos()
        .concat_chunk(64)
        .shuffle(buffer)
        .batch(4)
    )
    state = assert_resumes(pipe, k)
    assert len(json.dumps(state)) < 4096


def test_resume_seeks_instead_of_rereading(tmp_path, documents, tok):
    """After a resume, the bytes before the saved offsets are never read: garbage there changes nothing."""
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents), encoding="utf-8")
    pipe = Pipeline.from_files([str(path)]).tokenize(tok).concat_chunk(128)
    full = run(pipe)
    it = pipe.iter()
    head = [plain(next(it)) for _ in range(700)]  # past the first tokenizer batch (64 records)
    state = it.state_dict()
    it.close()
    files_state = state["state"]["parent"]["parent"]  # concat_chunk > tokenize > from_files
    offset = files_state["active"][0]["position"]["offset"]
    assert offset > 10_000
    data = bytearray(path.read_bytes())
    data[: offset - 1] = b"#" * (offset - 1)  # anything read before the offset would now be malformed JSON
    path.write_bytes(bytes(data))
    assert head + run(pipe, state) == full
    with pytest.raises(RecordError, match="line 1"):
        run(pipe)  # the same file read from the start fails: the resume really skipped those bytes


def test_state_names_files_and_refuses_other_files(jsonl_shards, tmp_path):
    pipe = Pipeline.from_files([str(p) for p in jsonl_shards], n_active_shards=2)
    it = pipe.iter()
    next(it)
    state = it.state_dict()
    it.close()
    renamed = [tmp_path / f"x-{p.name}" for p in jsonl_shards]
    for src, dst in zip(jsonl_shards, renamed):
        dst.write_bytes(src.read_bytes())
    with pytest.raises(StateError):
        Pipeline.from_files([str(p) for p in renamed], n_active_shards=2).iter(state_dict=state)


# --- errors and cleanup ----------------------------------------------------------------------------------


def test_bad_records_raise_or_are_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": broken\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad.jsonl, line 2"):
        run(Pipeline.from_files([str(path)]))
    pipe = Pipeline.from_files([str(path)], on_error="skip")
    it = pipe.iter()
    assert [r["text"] for r in it] == ["a", "c"]
    assert it.state_dict()["state"]["skipped"] == [["malformed_json", 1]]
    it.close()


def test_files_and_threads_closed_early_and_at_end(jsonl_shards, gz_shards):
    shards = list(jsonl_shards) + list(gz_shards)
    it = Pipeline.from_files([str(p) for p in shards], n_active_shards=3, n_standby_shards=2).iter()
    for _ in range(5):
        next(it)
    assert pipeline_threads()
    it.close()
    wait_closed(shards)
    with Pipeline.from_files([str(p) for p in shards]).prefetch(3).iter() as it2:
        list(it2)
    wait_closed(shards)


def test_memory_is_bounded_by_buffers(tmp_path):
    """Reading a file much larger than the prefetch buffers keeps only the buffers in memory."""
    import tracemalloc

    path = tmp_path / "large.jsonl"
    with open(path, "w") as f:
        for i in range(4000):
            f.write(json.dumps({"text": f"{i} " + "word " * 2000}) + "\n")  # ~40 MB
    tracemalloc.start()
    n = 0
    for _ in Pipeline.from_files([str(path)], n_prefetch_samples=4).iter():
        n += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 4000
    assert peak < 8 << 20, peak


# --- S3 ------------------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_dropped_connections_lose_and_repeat_nothing(s3, documents, tok):  # noqa: F811
    lines = [json.dumps({"text": d, "i": i}) + "\n" for i, d in enumerate(documents * 4)]
    data = "".join(lines).encode()
    assert len(data) > 400_000
    urls = [s3.put(f"corpus/part-{j}.jsonl", "".join(lines[j::2]).encode()) for j in range(2)]
    urls.append(s3.put("corpus/part-2.jsonl.gz", gzip.compress(data[:200_000].rsplit(b"\n", 1)[0] + b"\n")))
    clean = s3.storage_options

    def chain(so):
        return (
            Pipeline.from_files(s3.url("corpus/part-*"), storage_options=so, backoff=0.01, n_active_shards=3)
            .tokenize(tok)
            .ensure_bos_eos()
            .concat_chunk(256)
            .batch(4)
        )

    expected = run(chain(clean))
    assert len(expected) > 50
    faulty = s3.faulty_storage_options(default_block_size=64 * 1024)
    s3.proxy.arm(after_bytes=120_000, times=3)
    before = s3.proxy.drops
    got = run(chain(faulty))
    assert s3.proxy.drops - before == 3  # the faults really cut the reader's connections mid-file
    assert got == expected
    # and a resume in the middle, over the faulty connection, continues exactly
    it = chain(faulty).iter()
    head = [plain(next(it)) for _ in range(17)]
    state = json.loads(json.dumps(it.state_dict()))
    it.close()
    s3.proxy.arm(after_bytes=90_000, times=2)
    assert head + run(chain(faulty), state) == expected
    assert np.asarray(expected[0]["input_ids"]).shape == (4, 256)


def test_epochs_are_not_mixed_when_shards_are_fewer_than_active(jsonl_shards):
    pipe = Pipeline.from_files([str(p) for p in jsonl_shards], repeat=True, n_active_shards=10)
    n = sum(len(records_of(p)) for p in jsonl_shards)
    out = run(pipe.take(2 * n))
    first = sorted(json.dumps(r, sort_keys=True) for r in out[:n])
    assert first == sorted(json.dumps(r, sort_keys=True) for p in jsonl_shards for r in records_of(p))
    it = pipe.iter()
    for _ in range(3):
        next(it)
    active = it.state_dict()["state"]["active"]
    assert {tuple(a["shard"])[0] for a in active} == {0} and len(active) == len(jsonl_shards)
    it.close()


@pytest.mark.parametrize("repeat", [False, True])
def test_no_files_is_an_error_not_an_empty_or_endless_stream(repeat):
    with pytest.raises(ConfigError, match="no files given"):
        Pipeline.from_files([], repeat=repeat)
