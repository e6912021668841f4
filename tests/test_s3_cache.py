"""Sources and caches in object storage (a real S3 API: moto on 127.0.0.1), and training while a prepare appends.

The same documents as a local build, token for token and in order, whether the credentials come from the usual
``AWS_*`` variables or from ``--storage-option`` flags; credentials never reach the manifest or the output; a
cache in a bucket reads like a local one; a reader on a growing cache sees only whole committed units.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import s3_server
from conftest import make_documents, write_jsonl
from tokenmill.cache import CacheReader, read_manifest, store
from tokenmill.errors import CacheError
from tokenmill.loader import BatchIterator, TokenDataset
from tokenmill.prepare import PrepareConfig, prepare

moto_server, s3 = s3_server.moto_server, s3_server.s3  # the shared S3 fixtures
pytestmark = pytest.mark.s3

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


CLI = [sys.executable, "-c", "import sys; from tokenmill.cli import main; sys.exit(main())"]


def build(sources, out, tokenizer, **kw):
    kw.setdefault("workers", 0)
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    return prepare(config, progress=False)


def documents_of(reader: CacheReader, split: str) -> list[list[int]]:
    index = reader.split_index(split)
    if index.num_rows == 0:
        return []
    flat, offsets, _ = reader.take_rows(index.rows)
    starts = offsets[:-1][index.doc_start]
    ends = np.append(starts[1:], offsets[-1])
    return [flat[s:e].astype(np.int64).tolist() for s, e in zip(starts, ends)]


def assert_same_documents(a: CacheReader, b: CacheReader) -> None:
    for split in ("train", "validation"):
        assert documents_of(a, split) == documents_of(b, split), split


def upload(s3, shards: list[Path], prefix: str = "src") -> str:
    for shard in shards:
        s3.put(f"{prefix}/{shard.name}", shard.read_bytes())
    return s3.url(f"{prefix}/{shards[0].name.split('-')[0]}-*{''.join(shards[0].suffixes)}")


# --------------------------------------------------------------------------------------------------------


def test_prepare_from_and_to_s3_equals_local(tmp_path, s3, jsonl_shards, tokenizer_path):
    """Credentials and endpoint from the AWS variables only (the fixture sets them); two spawned workers."""
    pattern = upload(s3, jsonl_shards)
    kw = dict(validation=0.2, seed=3, unit_bytes=20_000, row_tokens=64)
    local = build(jsonl_shards, tmp_path / "local", tokenizer_path, **kw)
    remote = s3.url("caches/c")
    summary = build([pattern], remote, tokenizer_path, workers=2, **kw)
    assert summary.documents == local.documents == 400 and summary.splits == local.splits
    reader = CacheReader(remote)
    assert reader.manifest.complete
    assert_same_documents(CacheReader(str(tmp_path / "local")), reader)
    assert reader.tokenizer.fingerprint == CacheReader(str(tmp_path / "local")).tokenizer.fingerprint
    # per-source progress names the bucket's files
    assert sorted(s["url"].rsplit("/", 1)[-1] for s in reader.manifest.sources) == [
        p.name for p in jsonl_shards
    ]
    # run again without --tokenizer: the cache's own copy (in the bucket) is the tokenizer
    again = build([pattern], remote, "", **kw)
    assert again.status == "nothing to do"


def test_storage_option_flags_without_environment(tmp_path, s3, jsonl_shards, tokenizer_path, monkeypatch):
    """`--storage-option` alone reaches both fsspec (sources) and Lance (cache); secrets are never written."""
    pattern = upload(s3, jsonl_shards)
    secret_options = {
        "endpoint": s3.endpoint_url,
        "aws_access_key_id": s3.key,
        "aws_secret_access_key": s3.secret,
        "region": s3.region,
    }
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    remote = s3.url("caches/flags")
    cmd = [
        *CLI, "prepare", pattern, "--tokenizer", str(tokenizer_path),
        "--output", remote, "--workers", "1", "--validation", "0.2", "--seed", "3", "--json",
    ]  # fmt: skip
    for key, value in secret_options.items():
        cmd += ["--storage-option", f"{key}={value}"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] == 400
    assert s3.secret not in done.stdout + done.stderr
    manifest_bytes = s3.client().get_object(Bucket=s3.bucket, Key="caches/flags/manifest.json")["Body"].read()
    assert s3.secret.encode() not in manifest_bytes and s3.key.encode() not in manifest_bytes
    assert set(read_manifest(remote, secret_options).config["prepare"]["storage_options"]) >= set(
        secret_options
    )
    for key in s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="caches/flags/ledger/")["Contents"]:
        body = s3.client().get_object(Bucket=s3.bucket, Key=key["Key"])["Body"].read()
        assert s3.secret.encode() not in body
    build(jsonl_shards, tmp_path / "local", tokenizer_path, validation=0.2, seed=3)
    assert_same_documents(CacheReader(str(tmp_path / "local")), CacheReader(remote, secret_options))


@pytest.mark.slow
def test_prepare_to_s3_killed_then_resumed(tmp_path, s3, tokenizer_path):
    """kill -9 a prepare writing to a bucket after a few commits; the same command finishes the job exactly."""
    shards = [
        write_jsonl(
            tmp_path / "src" / f"k-{i:02d}.jsonl", [{"text": t} for t in make_documents(150, seed=900 + i)]
        )
        for i in range(12)
    ]
    pattern = upload(s3, shards)
    build(shards, tmp_path / "local", tokenizer_path, unit_bytes=60_000)
    remote = s3.url("caches/killed")
    cmd = [
        *CLI, "prepare", pattern, "--tokenizer", str(tokenizer_path), "--output", remote, "--workers", "2",
        "--unit-bytes", "60000", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fs, _ = store.get_fs(remote)
    deadline = time.time() + 120
    committed = f"{s3.bucket}/caches/killed/ledger/committed.json"
    while time.time() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        if fs.exists(committed) and json.loads(fs.cat_file(committed))["through"] >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the prepare finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not read_manifest(remote).complete
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    assert_same_documents(CacheReader(str(tmp_path / "local")), CacheReader(remote))


def test_reading_a_cache_from_s3(tmp_path, s3, jsonl_shards, tokenizer_path):
    """A cache copied into a bucket as plain files reads exactly like the local one (windows, rows, tokenizer)."""
    local = tmp_path / "local"
    build(jsonl_shards, local, tokenizer_path, validation=0.1, row_tokens=64)
    fs, _ = store.get_fs(s3.url("copied"))
    fs.put(str(local) + "/", f"{s3.bucket}/copied/", recursive=True)
    a, b = CacheReader(str(local)), CacheReader(s3.url("copied"))
    assert b.version == a.version
    assert b.tokenizer.fingerprint == a.tokenizer.fingerprint
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        ia, ib = a.split_index(split), b.split_index(split)
        assert np.array_equal(ia.token_offsets, ib.token_offsets) and np.array_equal(ia.rows, ib.rows)
        starts = rng.integers(0, ia.num_tokens - 100, size=64)
        wa, ma = a.read_windows(split, starts, 100)
        wb, mb = b.read_windows(split, starts, 100)
        assert np.array_equal(wa, wb) and ma is None and mb is None
        rows = rng.choice(ia.rows, size=min(20, ia.num_rows), replace=False)
        for x, y in zip(a.take_rows(rows), b.take_rows(rows)):
            assert (x is None and y is None) or np.array_equal(x, y)
    _check_loader_modes(str(local), s3.url("copied"), tmp_path)


def _check_loader_modes(local: str, remote: str, tmp_path: Path) -> None:
    """Every sample mode of the loader, reading through Lance or through a local memmap copy of the stream,
    gives the same samples from the bucket as from the local cache."""
    for mode in ("windows", "packed", "padded"):
        a = TokenDataset(local, seq_len=32, mode=mode, seed=1, read="memmap")
        for read in ("lance", "memmap"):
            b = TokenDataset(remote, seq_len=32, mode=mode, seed=1, read=read, local_dir=str(tmp_path / read))
            assert len(a) == len(b) > 0
            positions = np.arange(len(a))
            ba, bb = a.get_batch(positions), b.get_batch(positions)
            assert set(ba) == set(bb)
            for key in ba:
                assert np.array_equal(ba[key], bb[key]), (mode, read, key)
        # the training iterator, two ranks of a global batch of 4, over the bucket
        for rank in range(2):
            ia = BatchIterator(a, 4, rank=rank, world_size=2, epochs=1)
            ib = BatchIterator(b, 4, rank=rank, world_size=2, epochs=1)
            for xa, xb in zip(ia, ib, strict=True):
                assert np.array_equal(xa["input_ids"], xb["input_ids"])


def test_resolve_storage_options_allows_a_plain_http_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert store.resolve_storage_options(None, "s3://b/c") == {"allow_http": "true"}
    assert store.resolve_storage_options(None, "/local/cache") is None
    given = {"endpoint": "https://s3.example.com", "aws_access_key_id": "k"}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert store.resolve_storage_options(given, "s3://b/c") == given
    assert store.resolve_storage_options({"allow_http": "false", "endpoint": "http://x"}, "s3://b") == {
        "allow_http": "false",
        "endpoint": "http://x",
    }
    assert store.fsspec_options(dict(given, allow_http="true", region="eu-west-1"), "s3://b/c") == {
        "key": "k",
        "client_kwargs": {"endpoint_url": "https://s3.example.com", "region_name": "eu-west-1"},
    }


# --------------------------------------------------------------------------------------------------------
# Train while preparing
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def growing_shards(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("growing")
    return [
        write_jsonl(root / f"g-{i:02d}.jsonl", [{"text": t} for t in make_documents(150, seed=500 + i)])
        for i in range(24)
    ]


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.slow)])
def test_reader_follows_a_growing_cache(tmp_path, request, growing_shards, tokenizer_path, where):
    """A reader polling a cache that a prepare (another process) appends to sees growing prefixes of the final
    documents: whole committed units only, never part of a unit, never a half-written fragment."""
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        sources, cache = [upload(s3, growing_shards)], s3.url("caches/growing")
    else:
        sources, cache = [f"{growing_shards[0].parent}/g-*.jsonl"], str(tmp_path / "growing")
    # moto serves from this process, so polling competes with the prepare; and fewer, larger commits there
    poll, unit_bytes = (0.02, "20000") if where == "local" else (0.3, "150000")
    cmd = [
        *CLI, "prepare", *sources, "--tokenizer", str(tokenizer_path),
        "--output", cache, "--workers", "1", "--unit-bytes", unit_bytes, "--validation", "0.1", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[int, list[list[int]]]] = []
    reader = follower = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            finished = proc.poll() is not None
            if reader is None:
                try:
                    reader = CacheReader(cache)
                except (CacheError, FileNotFoundError, ValueError, OSError):
                    if finished:
                        break
                    time.sleep(0.02)
                    continue
                changed = True
            else:
                changed = reader.refresh()
            if changed:
                seen.append((reader.version, documents_of(reader, "train")))
                if follower is None and not finished:
                    # a training loader opened mid-build on the version committed so far
                    follower = TokenDataset(cache, seq_len=8, shuffle=False, read="lance", follow=True)
            if finished and not reader.refresh():
                break
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    final = documents_of(CacheReader(cache), "train")
    assert seen and seen[-1][1] == final
    growing = [docs for _, docs in seen if len(docs) < len(final)]
    assert len(growing) >= 2, f"saw only {len(seen)} versions; the prepare finished too fast to follow"
    for version, docs in seen:
        assert docs == final[: len(docs)], f"version {version} is not a prefix of the final documents"
    counts = [len(docs) for _, docs in seen]
    assert counts == sorted(counts)

    # the loader's follow mode: the first epoch runs on the version it opened, the next one on the newest
    assert follower is not None
    first_version, final_version = follower.versions[0], CacheReader(cache).version
    assert first_version < final_version
    final_ds = TokenDataset(cache, seq_len=8, shuffle=False, read="lance")
    assert len(follower) < len(final_ds)
    batches = BatchIterator(follower, 1)
    batches.skip(len(follower))  # to the end of epoch 0, without reading
    assert batches.state_dict()["cache_versions"] == [first_version]
    sample = next(batches)
    state = batches.state_dict()
    assert state["epoch"] == 1 and state["cache_versions"] == [final_version]
    assert len(follower) == len(final_ds)
    assert np.array_equal(sample["input_ids"][0], final_ds[0]["input_ids"])
