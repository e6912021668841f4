"""Issue 13, item 1: one writer at a time. A second prepare into a cache being written is told who holds it; a
lock left by a killed run is taken over; two prepares started together never double the data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from prepare_helpers import build

from tokenmill.cache.lock import LOCK_NAME, CacheLock
from tokenmill.errors import CacheError


def test_a_second_writer_is_told_who_holds_the_cache(tmp_path, jsonl_shards, tokenizer_path):
    cache = tmp_path / "c"
    held = rf"being written by another prepare \(process {os.getpid()} on"
    with CacheLock(str(cache)), pytest.raises(CacheError, match=held):
        build(jsonl_shards, cache, tokenizer_path)
    assert not (cache / LOCK_NAME).exists()
    assert build(jsonl_shards, cache, tokenizer_path).documents == 400
    assert not (cache / LOCK_NAME).exists()


def test_a_stale_lock_of_a_killed_run_is_taken_over(tmp_path, jsonl_shards, tokenizer_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = tmp_path / "c"
    cache.mkdir()
    record = {"token": "x", "host": socket.gethostname(), "pid": dead.pid, "started": "then", "heartbeat": 0}
    (cache / LOCK_NAME).write_text(json.dumps(record))
    assert build(jsonl_shards, cache, tokenizer_path).documents == 400
    # a holder on another host is alive while its heartbeat is fresh
    record.update(host="elsewhere", heartbeat=time.time())
    (cache / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(CacheError, match="on elsewhere"):
        build(jsonl_shards, cache, tokenizer_path)


def test_two_prepares_started_together_never_double_the_data(tmp_path, jsonl_shards, tokenizer_path):
    cache = tmp_path / "c"
    cmd = [sys.executable, "-m", "tokenmill.cli", "prepare", *map(str, jsonl_shards), "--tokenizer"]
    cmd += [str(tokenizer_path), "--output", str(cache), "--workers", "0", "--json", "--no-progress"]
    runs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outcomes = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outcomes):
        assert run.returncode == 0 or "being written by another prepare" in err, err
    assert any(run.returncode == 0 for run in runs)
    again = build(jsonl_shards, cache, tokenizer_path)
    assert again.documents == 400
