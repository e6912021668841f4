"""ragged_arange equals the concatenation of aranges it replaces, for any starts and lengths (zeros included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sampling.ragged import ragged_arange

runs = st.lists(st.tuples(st.integers(-(10**12), 10**12), st.integers(0, 50)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(runs)
def test_equals_concatenated_aranges(pairs):
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    lengths = np.array([n for _, n in pairs], dtype=np.int64)
    want = np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in pairs] or [np.zeros(0, np.int64)])
    got = ragged_arange(starts, lengths)
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_scalar_start_numbers_positions_within_runs_and_rejects_negative_lengths():
    assert ragged_arange([5, 0], [2, 3]).tolist() == [5, 6, 0, 1, 2]
    assert ragged_arange(0, [3, 0, 2]).tolist() == [0, 1, 2, 0, 1]
    assert ragged_arange([], []).size == 0
    with pytest.raises(ValueError, match="non-negative"):
        ragged_arange([0], [-1])
