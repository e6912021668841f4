"""Index math of the windows mode: the split's token stream cut into fixed windows, mapped onto cache rows.

A split is a list of cache rows whose tokens, concatenated, form one stream; ``token_offsets[p]`` is where row
position ``p`` starts in that stream (``token_offsets[-1]`` is the stream length). Sample ``i`` is the window
``[i * seq_len, i * seq_len + seq_len + 1)``: ``seq_len`` inputs plus the one extra token the last input is
trained to predict, so consecutive windows share one token and every token of the stream is a target once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenmill.sampling.ragged import ragged_arange


def num_windows(total_tokens: int, seq_len: int) -> int:
    """How many windows of ``seq_len + 1`` tokens (overlapping by one) fit in a stream of ``total_tokens``."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    return max(0, (int(total_tokens) - 1) // seq_len)


def window_starts(samples: np.ndarray, seq_len: int) -> np.ndarray:
    """Stream offsets of the windows of ``samples`` (int64)."""
    return np.asarray(samples, dtype=np.int64) * np.int64(seq_len)


def locate(token_offsets: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row position, offset in that row) of each stream position; rows of zero tokens are never returned."""
    positions = np.asarray(positions, dtype=np.int64)
    rows = np.searchsorted(token_offsets, positions, side="right") - 1
    return rows, positions - token_offsets[rows]


@dataclass(frozen=True)
class RangePlan:
    """Where token ranges of the stream lie once the rows they touch are read and concatenated.

    ``rows`` are the sorted, unique row positions (into the split's row list) that hold any requested token.
    Reading them in that order and concatenating their tokens gives a flat array in which range ``k`` is the
    contiguous slice ``[flat_starts[k], flat_starts[k] + lengths[k])``: every row between a range's first and last
    row is in ``rows``, so no range is ever broken by a missing row.
    """

    rows: np.ndarray
    flat_starts: np.ndarray
    lengths: np.ndarray

    def gather_index(self) -> np.ndarray:
        """An int64 ``[n, length]`` index into the flat tokens, for ranges of one common length."""
        if self.lengths.size == 0:
            return np.zeros((0, 0), dtype=np.int64)
        length = int(self.lengths[0])
        if not np.all(self.lengths == length):
            raise ValueError("gather_index needs ranges of equal length; use flat_index for ragged ranges")
        return self.flat_starts[:, None] + np.arange(length, dtype=np.int64)

    def flat_index(self) -> np.ndarray:
        """An int64 index into the flat tokens that lists every range's tokens one after the other."""
        return ragged_arange(self.flat_starts, self.lengths)


def _union_of_intervals(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Sorted unique integers covered by the closed intervals ``[first[k], last[k]]``."""
    return np.unique(ragged_arange(first, last - first + 1))


def plan_ranges(token_offsets: np.ndarray, starts: np.ndarray, lengths: np.ndarray | int) -> RangePlan:
    """Rows to read for the token ranges ``[starts[k], starts[k] + lengths[k])`` of the stream, and where each
    range then starts in their concatenation. Vectorised: two ``searchsorted`` calls and one ``unique``."""
    token_offsets = np.asarray(token_offsets, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64).ravel()
    lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64), starts.shape).copy()
    total = int(token_offsets[-1]) if token_offsets.size else 0
    if starts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return RangePlan(empty, empty, empty)
    if int(lengths.min()) < 1:
        raise ValueError("token ranges must hold at least one token")
    if int(starts.min()) < 0 or int((starts + lengths).max()) > total:
        raise IndexError(f"a token range falls outside the stream of {total} tokens")
    first, offset_in_first = locate(token_offsets, starts)
    last, _ = locate(token_offsets, starts + lengths - 1)
    rows = _union_of_intervals(first, last)
    row_lengths = token_offsets[rows + 1] - token_offsets[rows]
    row_flat_start = np.cumsum(row_lengths) - row_lengths
    flat_starts = row_flat_start[np.searchsorted(rows, first)] + offset_in_first
    return RangePlan(rows=rows, flat_starts=flat_starts, lengths=lengths)
