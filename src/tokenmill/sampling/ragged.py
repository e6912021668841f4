"""Ragged ranges: the index math under every batch read (rows to tokens, segments to cells, masks to rows).

A batch of token runs is described by where each run starts and how long it is; reading them means gathering
``arange(s, s + n)`` for every run, one after the other. Done with one ``repeat`` and one ``arange`` instead of a
Python loop or ``np.concatenate`` of aranges (20-100x faster for thousands of short runs).
"""

from __future__ import annotations

import numpy as np


def ragged_arange(starts: np.ndarray | int, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), as int64.

    ``ragged_arange([5, 0], [2, 3]) -> [5, 6, 0, 1, 2]``; ``ragged_arange(0, lengths)`` numbers the positions
    within each run. Zero lengths contribute nothing; negative lengths are an error.
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    starts = np.broadcast_to(np.asarray(starts, dtype=np.int64), lengths.shape)
    if lengths.size and int(lengths.min()) < 0:
        raise ValueError("ragged_arange needs non-negative lengths")
    total = int(lengths.sum())
    base = np.cumsum(lengths) - lengths
    return np.repeat(starts - base, lengths) + np.arange(total, dtype=np.int64)
