"""Issue 13, items 2 and 3: a source changed since the cache read it is refused (or rebuilt), and --append works
on resolved files, so nothing is lost or doubled."""

from __future__ import annotations

import json
import os

import pytest
from prepare_helpers import build, doc_hashes

from conftest import make_documents, write_jsonl
from tokenmill.errors import CacheError, RecordError


def test_a_rewritten_source_is_refused_then_rebuilt(tmp_path, tokenizer_path):
    """Item 2: a file fails at a line, the user rewrites it; a resume must not reuse the old byte ranges."""
    docs = make_documents(300, seed=5)
    src = tmp_path / "data.jsonl"
    records = [{"text": t, "id": i, "unused": "x" * 20} for i, t in enumerate(docs)]
    records.insert(250, {"text": 42})
    write_jsonl(src, records)
    with pytest.raises(RecordError, match="line 251"):
        build([src], tmp_path / "c", tokenizer_path, unit_bytes=20_000)
    # the user fixes the file: the bad line and the unused field go, every later byte moves
    write_jsonl(src, [{"text": t, "id": i} for i, t in enumerate(docs)])
    with pytest.raises(CacheError, match=r"(?s)changed since.*data\.jsonl: .*size.*--rebuild-changed"):
        build([src], tmp_path / "c", tokenizer_path, unit_bytes=20_000)
    summary = build([src], tmp_path / "c", tokenizer_path, unit_bytes=20_000, rebuild_changed=True)
    fresh = build([src], tmp_path / "fresh", tokenizer_path, unit_bytes=20_000)
    assert summary.documents == fresh.documents == 300
    assert doc_hashes(tmp_path / "c") == doc_hashes(tmp_path / "fresh")


def test_a_touched_finished_cache_source_is_not_silently_confirmed(tmp_path, jsonl_shards, tokenizer_path):
    build(jsonl_shards, tmp_path / "c", tokenizer_path)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(jsonl_shards[0].read_bytes())
    build([copy], tmp_path / "d", tokenizer_path)
    with open(copy, "a") as f:
        f.write(json.dumps({"text": "one more document"}) + "\n")
    with pytest.raises(CacheError, match="copy.jsonl: "):
        build([copy], tmp_path / "d", tokenizer_path)
    os.remove(copy)
    with pytest.raises(CacheError, match="no longer exists|no file matches"):
        build([copy], tmp_path / "d", tokenizer_path)


def test_append_skips_files_already_in_and_finds_new_ones_under_a_pattern(tmp_path, tokenizer_path):
    """Item 3: --append of an included file (any spelling) adds nothing; a new file under the glob is found."""
    data = tmp_path / "data"
    write_jsonl(data / "base-0.jsonl", [{"text": t} for t in make_documents(60, seed=1)])
    pattern = str(data / "*.jsonl")
    first = build([pattern], tmp_path / "c", tokenizer_path)
    assert first.documents == 60
    for spelling in (str(data / "base-0.jsonl"), os.path.relpath(data / "base-0.jsonl")):
        again = build([spelling], tmp_path / "c", tokenizer_path, append=True)
        assert again.status == "nothing to do" and again.documents == 60
        assert any("already in the cache" in note for note in again.notes)
    write_jsonl(data / "base-1.jsonl", [{"text": t} for t in make_documents(40, seed=2)])
    with pytest.raises(CacheError, match=r"base-1\.jsonl.*--append"):
        build([pattern], tmp_path / "c", tokenizer_path)
    appended = build([pattern], tmp_path / "c", tokenizer_path, append=True)
    assert appended.status == "appended" and appended.documents == 100
    assert build([pattern], tmp_path / "c", tokenizer_path, append=True).documents == 100
