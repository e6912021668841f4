"""Window index math: stream positions to rows, and range plans that read each touched row once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sampling.windows import locate, num_windows, plan_ranges, window_starts


def _stream(row_lengths):
    rng = np.random.default_rng(len(row_lengths))
    rows = [rng.integers(0, 50_000, size=n) for n in row_lengths]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=offsets[1:])
    return rows, offsets


@settings(max_examples=80, deadline=None)
@given(
    row_lengths=st.lists(st.integers(0, 40), min_size=1, max_size=30).filter(lambda x: sum(x) >= 2),
    data=st.data(),
)
def test_plan_reads_the_right_tokens(row_lengths, data):
    rows, offsets = _stream(row_lengths)
    stream = np.concatenate(rows)
    total = stream.size
    n = data.draw(st.integers(1, 10))
    starts = np.array(data.draw(st.lists(st.integers(0, total - 1), min_size=n, max_size=n)))
    lengths = np.array([data.draw(st.integers(1, total - s)) for s in starts])
    plan = plan_ranges(offsets, starts, lengths)
    assert np.all(np.diff(plan.rows) > 0)
    flat = np.concatenate([rows[r] for r in plan.rows]) if plan.rows.size else np.zeros(0)
    got = flat[plan.flat_index()]
    want = np.concatenate([stream[s : s + m] for s, m in zip(starts, lengths, strict=True)])
    assert np.array_equal(got, want)
    # only rows that hold a requested token (or lie between two that do) are read
    needed = set()
    for s, m in zip(starts.tolist(), lengths.tolist(), strict=True):
        first = int(np.searchsorted(offsets, s, "right") - 1)
        last = int(np.searchsorted(offsets, s + m - 1, "right") - 1)
        needed.update(range(first, last + 1))
    assert set(plan.rows.tolist()) == needed


def test_equal_windows_gather_index():
    rows, offsets = _stream([5, 0, 7, 3, 11, 2])
    stream = np.concatenate(rows)
    seq_len = 4
    n = num_windows(stream.size, seq_len)
    assert n == (stream.size - 1) // seq_len
    starts = window_starts(np.arange(n), seq_len)
    plan = plan_ranges(offsets, starts, seq_len + 1)
    flat = np.concatenate([rows[r] for r in plan.rows])
    windows = flat[plan.gather_index()]
    for i in range(n):
        assert np.array_equal(windows[i], stream[i * seq_len : i * seq_len + seq_len + 1])
    # consecutive windows overlap by exactly the one label token
    assert np.array_equal(windows[:-1, -1], windows[1:, 0])


def test_locate_skips_empty_rows():
    offsets = np.array([0, 3, 3, 3, 5])
    row, off = locate(offsets, np.array([0, 2, 3, 4]))
    assert row.tolist() == [0, 0, 3, 3]
    assert off.tolist() == [0, 2, 0, 1]


def test_errors():
    offsets = np.array([0, 3, 5])
    with pytest.raises(IndexError):
        plan_ranges(offsets, np.array([4]), 2)
    with pytest.raises(ValueError):
        plan_ranges(offsets, np.array([0]), 0)
    with pytest.raises(ValueError):
        num_windows(10, 0)
    assert num_windows(1, 4) == 0 and num_windows(5, 4) == 1
    assert plan_ranges(offsets, np.zeros(0, dtype=np.int64), 3).rows.size == 0
