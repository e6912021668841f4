"""Length-grouped order for the padded mode: batches of similar length waste less padding.

The shuffled epoch order is cut into mega-batches of ``M`` positions; within each, positions are reordered by
decreasing sample length (stable), so consecutive batches hold neighbours in length and the longest batch of a
mega-batch comes first (an out-of-memory error shows at once, as in Hugging Face's ``LengthGroupedSampler``).
Reordering inside fixed windows keeps the epoch a permutation and keeps sample ``i`` computable from ``M``
lengths, not from the whole epoch.
"""

from __future__ import annotations

import numpy as np


def group_order(lengths: np.ndarray) -> np.ndarray:
    """Offsets within one mega-batch, longest first; ties keep their shuffled order."""
    lengths = np.asarray(lengths)
    return np.argsort(-lengths.astype(np.int64), kind="stable")


def megabatch_bounds(position: int, megabatch: int, num_samples: int) -> tuple[int, int]:
    """``[lo, hi)`` of the mega-batch holding epoch position ``position`` (the last may be short)."""
    lo = (int(position) // megabatch) * megabatch
    return lo, min(lo + megabatch, int(num_samples))
