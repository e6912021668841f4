"""Exact dedup and random subsets in prepare: the kept copy is the first in plan order whatever the workers or an
interruption, counted in the manifest; a random subset is seeded, deterministic and not a prefix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_documents, write_jsonl
from tokenmill.cache import CacheReader, read_manifest
from tokenmill.dedup import SeenKeys, normalize_text, read_cache_keys, record_key
from tokenmill.errors import RecordError
from tokenmill.prepare import PrepareConfig, prepare
from tokenmill.tokenizer import load_tokenizer

POOL = make_documents(40, seed=11, max_words=60)


def build(sources, out, tokenizer, **kw):
    kw.setdefault("workers", 0)
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    return prepare(config, progress=False)


def cache_docs(cache: Path) -> list[list[int]]:
    """Every document of the cache in cache order, as token lists."""
    reader = CacheReader(str(cache))
    out = []
    for split in ("train", "validation"):
        index = reader.split_index(split)
        if index.num_rows == 0:
            continue
        flat, offsets, _ = reader.take_rows(index.rows)
        starts = offsets[:-1][index.doc_start]
        ends = np.append(starts[1:], offsets[-1])
        out += [flat[s:e].tolist() for s, e in zip(starts, ends)]
    return out


def test_normalization_matches_spacing_and_composition_variants():
    assert normalize_text("  a\u0301  b\n\tc ") == normalize_text("\u00e1 b c")
    keys = ("text",)
    assert record_key({"text": "x  y", "id": 1}, keys) == record_key({"text": " x y\n", "id": 2}, keys)
    assert record_key({"text": "x y"}, keys) != record_key({"text": "x z"}, keys)
    assert record_key({"other": "x"}, keys) is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=200), st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_seen_keys_is_a_set(added, probe):
    seen = SeenKeys()
    seen.MERGE_AT = 7  # exercise the merge of recent keys into the sorted array
    for i in range(0, len(added), 13):
        seen.add(added[i : i + 13])
    expected = set(added)
    assert len(seen) >= len(expected)
    assert seen.intersect(probe + added[:3]) == list(
        dict.fromkeys(k for k in probe + added[:3] if k in expected)
    )
    assert seen.to_array().tolist() == sorted(expected)


def one_unit_per_file(paths: list[Path]) -> int:
    """A unit size that keeps every file whole and alone in its unit (several units, never byte ranges)."""
    return max(p.stat().st_size for p in paths)


def _write_shards(root: Path, layout: list[list[int]], spacing: list[list[bool]]) -> list[Path]:
    """Shards whose records are POOL documents by index; some copies differ only in whitespace."""
    paths = []
    for s, (picks, spaced) in enumerate(zip(layout, spacing)):
        recs = []
        for j, (i, sp) in enumerate(zip(picks, spaced)):
            text = POOL[i].replace(" ", "  ") + "\n" if sp else POOL[i]
            recs.append({"text": text, "id": f"{s}-{j}"})
        paths.append(write_jsonl(root / f"shard-{s:02d}.jsonl", recs))
    return paths


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_kept_documents_are_the_first_copies_in_file_order(tmp_path_factory, tokenizer_path, data):
    n_shards = data.draw(st.integers(1, 4))
    layout = [data.draw(st.lists(st.integers(0, 12), min_size=1, max_size=12)) for _ in range(n_shards)]
    spacing = [data.draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p))) for p in layout]
    root = tmp_path_factory.mktemp("dedup")
    shards = _write_shards(root, layout, spacing)
    summary = build(
        shards, root / "cache", tokenizer_path, dedup="exact", unit_bytes=one_unit_per_file(shards)
    )

    tok = load_tokenizer(str(tokenizer_path))
    first, kept_texts = set(), []
    for picks, spaced in zip(layout, spacing):
        for i, sp in zip(picks, spaced):
            if i not in first:
                first.add(i)
                kept_texts.append(POOL[i].replace(" ", "  ") + "\n" if sp else POOL[i])
    expected = [ids + [tok.eos_id] for ids in tok.encode_batch(kept_texts)]
    assert cache_docs(root / "cache") == expected
    total = sum(len(p) for p in layout)
    assert summary.skipped.get("duplicate", 0) == total - len(kept_texts)
    assert read_manifest(str(root / "cache")).skipped.get("duplicate", 0) == total - len(kept_texts)
    assert len(read_cache_keys(str(root / "cache"))) == len(kept_texts)


def test_dedup_with_workers_and_across_caches(tmp_path, tokenizer_path):
    layout = [[0, 1, 2, 3, 1], [2, 4, 5, 0], [6, 5, 7], [8, 1, 9]]
    shards = _write_shards(tmp_path / "a", layout, [[i % 2 == 0 for i in range(len(p))] for p in layout])
    unit = one_unit_per_file(shards)
    serial = build(shards, tmp_path / "c0", tokenizer_path, dedup="exact", unit_bytes=unit)
    parallel = build(shards, tmp_path / "c2", tokenizer_path, dedup="exact", unit_bytes=unit, workers=2)
    assert cache_docs(tmp_path / "c0") == cache_docs(tmp_path / "c2")
    assert serial.skipped == parallel.skipped == {"duplicate": 5}

    # a second cache that names the first in dedup_seen drops what the first already holds
    other = _write_shards(tmp_path / "b", [[0, 10, 11, 9]], [[True, False, False, False]])
    later = build(other, tmp_path / "d", tokenizer_path, dedup="exact", dedup_seen=[str(tmp_path / "c0")])
    assert later.documents == 2 and later.skipped == {"duplicate": 2}


def test_dedup_survives_an_interrupted_build(tmp_path, tokenizer_path):
    layout = [[0, 1, 2], [1, 3], [4, 0, 5], [3, 6]]
    shards = _write_shards(tmp_path / "a", layout, [[False] * len(p) for p in layout])
    unit = one_unit_per_file(shards) + 20
    clean = build(shards, tmp_path / "clean", tokenizer_path, dedup="exact", unit_bytes=unit)

    # the third shard is broken at first: the run stops there, with the first units committed
    good = shards[2].read_text()
    shards[2].write_text(good + "{not json\n")
    with pytest.raises(RecordError):
        build(shards, tmp_path / "c", tokenizer_path, dedup="exact", unit_bytes=unit)
    assert not read_manifest(str(tmp_path / "c")).complete
    shards[2].write_text(good)
    resumed = build(shards, tmp_path / "c", tokenizer_path, dedup="exact", unit_bytes=unit)
    assert resumed.status == "resumed"
    assert cache_docs(tmp_path / "c") == cache_docs(tmp_path / "clean")
    assert resumed.skipped == clean.skipped == {"duplicate": 3}


def test_random_sample_is_seeded_and_not_a_prefix(tmp_path, tokenizer_path):
    docs = make_documents(240, seed=5, max_words=40)
    shards = [
        write_jsonl(tmp_path / "in" / f"s{i}.jsonl", [{"text": t} for t in docs[i * 30 : (i + 1) * 30]])
        for i in range(8)
    ]
    kw = dict(sample="random", sample_buffer=16, max_documents=50, unit_bytes=one_unit_per_file(shards))
    a = build(shards, tmp_path / "a", tokenizer_path, **kw)
    b = build(shards, tmp_path / "b", tokenizer_path, workers=2, **kw)
    assert a.documents == b.documents == 50
    assert cache_docs(tmp_path / "a") == cache_docs(tmp_path / "b")
    c = build(shards, tmp_path / "c", tokenizer_path, seed=1, **kw)
    first = build(shards, tmp_path / "f", tokenizer_path, max_documents=50)
    assert c.documents == first.documents == 50
    assert cache_docs(tmp_path / "c") != cache_docs(tmp_path / "a")
    assert cache_docs(tmp_path / "a") != cache_docs(tmp_path / "f")
    # the sample is spread over shards (whole shards in a shuffled order, records shuffled inside each)
    tok = load_tokenizer(str(tokenizer_path))
    index = {tuple(ids + [tok.eos_id]): i for i, ids in enumerate(tok.encode_batch(docs))}
    picked = [index[tuple(d)] for d in cache_docs(tmp_path / "a")]
    assert len(set(picked)) == 50
    assert sorted(picked) != picked
    # the manifest records the options, so a rebuild with another seed is refused rather than mixed
    config = json.loads((tmp_path / "a" / "manifest.json").read_text())["config"]["identity"]
    assert config["sample"] == "random" and config["sample_buffer"] == 16
