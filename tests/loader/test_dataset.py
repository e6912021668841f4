"""TokenDataset: orders are seeded permutations that change per epoch, the packing plan is stored once in the
cache's index folder and reused, and bad arguments are clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tokenmill.errors import CacheError, ConfigError
from tokenmill.loader import (
    BatchIterator,
    TokenDataset,
    aligned_labels,
    cu_seqlens_from_position_ids,
    resolve_world,
)


def test_orders_are_permutations_that_change_per_epoch(text_cache):
    ds = TokenDataset(text_cache, seq_len=32, seed=1)
    n = len(ds)
    e0 = ds.sample_ids(0, np.arange(n))
    e1 = ds.sample_ids(1, np.arange(n))
    assert np.array_equal(np.sort(e0), np.arange(n)) and np.array_equal(np.sort(e1), np.arange(n))
    assert not np.array_equal(e0, e1)
    assert np.array_equal(TokenDataset(text_cache, seq_len=32, seed=1).sample_ids(0, np.arange(n)), e0)
    assert np.array_equal(
        TokenDataset(text_cache, seq_len=32, shuffle=False).sample_ids(3, np.arange(n)), np.arange(n)
    )
    ds.set_epoch(1)
    assert np.array_equal(ds[5]["input_ids"], ds.fetch(e1[5:6])["input_ids"][0])


def test_packing_plan_is_stored_and_reused(text_cache):
    ds = TokenDataset(text_cache, seq_len=128, mode="packed", seed=5)
    files = [f for f in os.listdir(text_cache / "index") if f.startswith("packed-train-L128-s5-")]
    assert len(files) == 1
    path = text_cache / "index" / files[0]
    before = path.stat().st_mtime_ns
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["bin_offsets"], ds.packing.bin_offsets)
    again = TokenDataset(text_cache, seq_len=128, mode="packed", seed=5)
    assert path.stat().st_mtime_ns == before
    assert np.array_equal(again.packing.seg_doc, ds.packing.seg_doc)
    other_seed = TokenDataset(text_cache, seq_len=128, mode="packed", seed=6)
    assert not np.array_equal(other_seed.packing.seg_doc, ds.packing.seg_doc)


# --------------------------------------------------------------------------------------------- helpers
def test_helpers_and_errors(text_cache, monkeypatch):
    labels = np.array([[5, 6, -100, 7]])
    assert aligned_labels(labels).tolist() == [[-100, 5, 6, -100]]
    cu, longest = cu_seqlens_from_position_ids(np.array([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]))
    assert cu.tolist() == [0, 3, 5, 10] and longest == 5
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert resolve_world() == (3, 4)
    assert resolve_world(1, 2) == (1, 2)
    with pytest.raises(ConfigError, match="divisible"):
        BatchIterator(TokenDataset(text_cache, seq_len=32), 6)
    with pytest.raises(ConfigError, match="mode"):
        TokenDataset(text_cache, seq_len=32, mode="sliding")
    with pytest.raises(CacheError, match="unknown split"):
        TokenDataset(text_cache, seq_len=32, split="test")
    with pytest.raises(CacheError, match="too few"):
        TokenDataset(text_cache, seq_len=10**7)
    with pytest.raises(CacheError, match="fewer than one global batch"):
        list(
            BatchIterator(
                TokenDataset(text_cache, seq_len=2048, split="validation"), 64, rank=0, world_size=1
            )
        )
    with pytest.raises(IndexError):
        TokenDataset(text_cache, seq_len=32).get_batch([10**6])
