"""The loader Mixture keeps its weights, reads its components' samples, resumes exactly on another world size,
and honours the stop policy."""

from __future__ import annotations

import numpy as np
import pytest

from tokenmill.errors import ConfigError, StateError
from tokenmill.loader import (
    Batches,
    BatchIterator,
    Mixture,
    TokenDataset,
)


# --------------------------------------------------------------------------------------------- mixtures
def test_mixture_shares_and_resume(text_cache, sft_cache):
    a = TokenDataset(text_cache, seq_len=32)
    b = TokenDataset(sft_cache, seq_len=32)
    mix = Mixture([(a, 0.7), (b, 0.3)], seed=4)
    it = BatchIterator(mix, 100, rank=0, world_size=1)
    sources = np.concatenate([next(it)["source_index"] for _ in range(100)])
    shares = np.bincount(sources, minlength=2) / sources.size
    assert sources.size == 10_000 and abs(shares[0] - 0.7) < 0.01 and abs(shares[1] - 0.3) < 0.01
    # a sample from the mixture is the component's sample
    ids = mix.sample_ids(0, np.arange(20))
    batch = mix.get_batch(np.arange(20), epoch=0)
    for row, (k, j) in enumerate(ids.tolist()):
        comp = (a, b)[k].fetch(np.array([j]))
        assert np.array_equal(batch["input_ids"][row], comp["input_ids"][0])
    # exact resume of the mixture on another world size
    ref = BatchIterator(mix, 8, rank=0, world_size=1)
    want = [next(ref)["input_ids"] for _ in range(12)]
    first = BatchIterator(mix, 8, rank=0, world_size=1)
    for _ in range(5):
        next(first)
    halves = [Batches(mix, 8, rank=r, world_size=2).iter(first.state_dict()) for r in range(2)]
    for step in range(5, 12):
        assert np.array_equal(np.concatenate([next(h)["input_ids"] for h in halves]), want[step])
    with pytest.raises(StateError, match="weights"):
        Batches(Mixture([(a, 0.5), (b, 0.5)], seed=4), 8, rank=0, world_size=1).iter(first.state_dict())


def test_mixture_stop_policy_and_mismatch(text_cache, sft_cache):
    a = TokenDataset(text_cache, seq_len=32)
    b = TokenDataset(sft_cache, seq_len=32)
    mix = Mixture([(a, 0.5), (b, 0.5)], policy="stop", seed=1)
    ids = mix.sample_ids(0, np.arange(len(mix)))
    for k in (0, 1):
        js = ids[ids[:, 0] == k, 1]
        assert np.unique(js).size == js.size
    with pytest.raises(ConfigError, match="seq_len"):
        Mixture([(a, 0.5), (TokenDataset(sft_cache, seq_len=16), 0.5)])
    with pytest.raises(ConfigError, match="positive"):
        Mixture([(a, 0.5), (b, -1.0)])
