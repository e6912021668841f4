"""Rank sharding: every sample of an epoch exactly once across ranks; batches independent of world size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sampling.permutation import epoch_permutation
from tokenmill.sampling.sharding import batch_positions, batches_per_epoch, check_world, rank_bounds


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3000),
    world=st.integers(1, 8),
    per_rank=st.integers(1, 16),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 100),
)
def test_every_sample_once_across_ranks(n, world, per_rank, drop_last, seed, epoch):
    batch = world * per_rank
    order = epoch_permutation(n, seed, epoch)
    seen = []
    for g in range(batches_per_epoch(n, batch, drop_last)):
        parts = [order(batch_positions(g, batch, n, r, world)) for r in range(world)]
        seen.extend(np.concatenate(parts).tolist())
        # the ranks' parts of a step, in rank order, are the single-process batch
        assert np.array_equal(np.concatenate(parts), order(batch_positions(g, batch, n)))
    covered = n if not drop_last else (n // batch) * batch
    assert len(seen) == covered and len(set(seen)) == covered


def test_partial_last_batch_is_split_evenly():
    assert [rank_bounds(10, r, 4) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert [rank_bounds(2, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert batches_per_epoch(10, 4, drop_last=True) == 2
    assert batches_per_epoch(10, 4, drop_last=False) == 3


def test_world_checks():
    check_world(8, 3, 4)
    with pytest.raises(ValueError, match="divisible"):
        check_world(6, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        check_world(8, 4, 4)
    with pytest.raises(IndexError):
        batch_positions(3, 4, 12)
