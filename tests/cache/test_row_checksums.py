"""Per-row checksums: the one definition (token j of a row weighs ``_WEIGHTS[j % 2**16]``, sums mod 2**64) whatever
path computes it (long rows by ``np.dot``, short ones gathered together), since prepare writes them and the
reader, the stream index and ``verify --deep`` recompute them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.cache.fingerprint import _DOT_MIN, _WEIGHTS, row_checksums


def reference(flat: np.ndarray, offsets: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The definition, one row at a time in Python integers."""
    out = []
    w = [int(x) for x in _WEIGHTS]
    for s, e in zip(offsets[:-1] - offsets[0], offsets[1:] - offsets[0], strict=True):
        s, e = int(s), int(e)
        total = e - s
        for j in range(s, e):
            value = int(flat[j]) + 1 + (0 if mask is None or mask[j] else 1 << 40)
            total += value * w[(j - s) % len(w)]
        out.append(total % 2**64)
    return np.array(out, dtype=np.uint64)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(
        st.one_of(st.integers(0, 5), st.integers(_DOT_MIN - 2, _DOT_MIN + 2), st.integers(0, 3 * _DOT_MIN)),
        max_size=12,
    ),
    first=st.integers(0, 1000),
    masked=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_row_checksums_match_the_definition(lengths, first, masked, seed):
    rng = np.random.default_rng(seed)
    offsets = first + np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    flat = rng.integers(0, 2**32, size=int(sum(lengths)), dtype=np.uint64).astype(np.uint32)
    mask = rng.random(len(flat)) < 0.7 if masked else None
    assert np.array_equal(row_checksums(flat, offsets, mask), reference(flat, offsets, mask))


def test_a_row_longer_than_the_weights_starts_them_over():
    n = 5 + len(_WEIGHTS) + 300
    flat = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) % np.uint64(2**32)).astype(np.uint32)
    offsets = np.array([0, 5, n])
    assert np.array_equal(row_checksums(flat, offsets), reference(flat, offsets, None))


def test_any_changed_token_changes_its_row_only():
    rng = np.random.default_rng(7)
    offsets = np.array([0, 3, 600, 601, 2000])
    flat = rng.integers(0, 50_000, size=2000).astype(np.uint32)
    before = row_checksums(flat, offsets)
    for j in (0, 2, 3, 599, 600, 1999):
        changed = flat.copy()
        changed[j] ^= 1
        after = row_checksums(changed, offsets)
        row = int(np.searchsorted(offsets, j, side="right")) - 1
        assert after[row] != before[row]
        assert np.array_equal(np.delete(after, row), np.delete(before, row))
