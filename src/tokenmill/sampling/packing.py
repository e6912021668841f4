"""Best-fit-decreasing packing of documents into ``seq_len`` bins (Ding et al. 2024, "Fewer Truncations").

Documents longer than ``seq_len`` are first cut into ``seq_len`` pieces (the remainder is one more, shorter
piece); every piece is then placed, longest first, into the open bin with the least room that still fits it.
A document that fits in ``seq_len`` is therefore never split, and no bin ever holds more than ``seq_len`` tokens.

Best fit on 10^6 pieces one at a time costs seconds of Python. This implementation works on *groups* of equal
length instead. Bins are kept in buckets by remaining capacity (FIFO within a bucket). When the next group holds
``k`` pieces of length ``s``, best fit takes the emptiest-fitting bucket ``c >= s``; after one piece that bin has
``c - s`` left, which (if still ``>= s``) is now the best fit, because every bucket in ``[s, c)`` was empty. So a
bin, once chosen, takes ``c // s`` pieces in a row and drops to capacity ``c % s``: the whole group is placed by a
cumulative sum over the buckets ``>= s``. The result is identical, piece for piece, to the one-at-a-time
algorithm with FIFO tie-breaking (the tests check this against a plain reference implementation).

Ties between pieces of equal length are ordered by a seeded permutation, so different seeds give different
(equally good) packings; ``seed=None`` keeps document order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenmill.sampling.permutation import FeistelPermutation, derive_key
from tokenmill.sampling.ragged import ragged_arange


@dataclass(frozen=True)
class PackingPlan:
    """Bins in CSR form: bin ``b`` holds segments ``bin_offsets[b]:bin_offsets[b+1]``; segment ``k`` is the
    tokens ``[seg_start[k], seg_start[k] + seg_length[k])`` of document ``seg_doc[k]``."""

    seq_len: int
    bin_offsets: np.ndarray
    seg_doc: np.ndarray
    seg_start: np.ndarray
    seg_length: np.ndarray

    @property
    def num_bins(self) -> int:
        return int(self.bin_offsets.size - 1)

    @property
    def num_tokens(self) -> int:
        return int(self.seg_length.sum())

    @property
    def padding_fraction(self) -> float:
        """Share of the ``num_bins * seq_len`` token slots that are padding."""
        slots = self.num_bins * self.seq_len
        return 0.0 if slots == 0 else 1.0 - self.num_tokens / slots

    def bin_fill(self) -> np.ndarray:
        """Tokens in each bin."""
        if self.num_bins == 0:
            return np.zeros(0, dtype=np.int64)
        return (
            np.add.reduceat(self.seg_length, self.bin_offsets[:-1]) if self.seg_length.size else np.zeros(0)
        )

    def segments(self, bin_index: int) -> list[tuple[int, int, int]]:
        """The (document, start, length) segments of one bin, in packing order."""
        lo, hi = int(self.bin_offsets[bin_index]), int(self.bin_offsets[bin_index + 1])
        return list(
            zip(
                self.seg_doc[lo:hi].tolist(),
                self.seg_start[lo:hi].tolist(),
                self.seg_length[lo:hi].tolist(),
                strict=True,
            )
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The plan as named arrays (for ``np.save``; no pickle needed)."""
        return {
            "bin_offsets": self.bin_offsets,
            "seg_doc": self.seg_doc,
            "seg_start": self.seg_start,
            "seg_length": self.seg_length,
        }

    @classmethod
    def from_arrays(cls, seq_len: int, arrays: dict[str, np.ndarray]) -> PackingPlan:
        return cls(
            seq_len=int(seq_len),
            bin_offsets=np.asarray(arrays["bin_offsets"], dtype=np.int64),
            seg_doc=np.asarray(arrays["seg_doc"], dtype=np.int64),
            seg_start=np.asarray(arrays["seg_start"], dtype=np.int64),
            seg_length=np.asarray(arrays["seg_length"], dtype=np.int64),
        )


def split_documents(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces (doc, start, length) of each document: whole if it fits, else ``seq_len`` pieces plus the rest."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_pieces = np.maximum(1, -(-lengths // seq_len))
    n_pieces[lengths == 0] = 0
    doc = np.repeat(np.arange(lengths.size, dtype=np.int64), n_pieces)
    k = ragged_arange(0, n_pieces)
    start = k * seq_len
    length = np.minimum(seq_len, lengths[doc] - start)
    return doc, start, length


class _Buckets:
    """Open bins grouped by remaining capacity; FIFO within a capacity."""

    def __init__(self, seq_len: int) -> None:
        self.count = np.zeros(seq_len + 1, dtype=np.int64)
        self.bins: list[list[np.ndarray]] = [[] for _ in range(seq_len + 1)]

    def take_all(self, cap: int) -> np.ndarray:
        parts = self.bins[cap]
        ids = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.bins[cap] = []
        self.count[cap] = 0
        return ids

    def put(self, cap: int, ids: np.ndarray) -> None:
        if cap > 0 and ids.size:
            self.bins[cap].append(ids)
            self.count[cap] += ids.size


def _place_group(buckets: _Buckets, s: int, k: int, seq_len: int, next_bin: int) -> tuple[np.ndarray, int]:
    """Bin ids for ``k`` consecutive pieces of length ``s`` under best fit; returns (ids, next free bin id)."""
    caps = np.flatnonzero(buckets.count[s:]) + s
    per_bin = caps // s
    per_cap = buckets.count[caps] * per_bin
    cum = np.cumsum(per_cap)
    full = int(np.searchsorted(cum, k, side="left")) if cum.size else 0
    out: list[np.ndarray] = []
    for cap, take in zip(caps[:full].tolist(), per_bin[:full].tolist(), strict=True):
        ids = buckets.take_all(cap)
        out.append(np.repeat(ids, take))
        buckets.put(cap % s, ids)
    placed = int(cum[full - 1]) if full else 0
    if full < caps.size and placed < k:
        cap, take = int(caps[full]), int(per_bin[full])
        ids = buckets.take_all(cap)
        rest = k - placed
        whole, partial = divmod(rest, take)
        out.append(np.repeat(ids[:whole], take))
        buckets.put(cap % s, ids[:whole])
        if partial:
            out.append(np.full(partial, ids[whole], dtype=np.int64))
            buckets.put(cap - partial * s, ids[whole : whole + 1])
            whole += 1
        buckets.put(cap, ids[whole:])
        placed = k
    if placed < k:
        take = seq_len // s
        rest = k - placed
        whole, partial = divmod(rest, take)
        ids = np.arange(next_bin, next_bin + whole, dtype=np.int64)
        out.append(np.repeat(ids, take))
        buckets.put(seq_len % s, ids)
        next_bin += whole
        if partial:
            out.append(np.full(partial, next_bin, dtype=np.int64))
            buckets.put(seq_len - partial * s, np.array([next_bin], dtype=np.int64))
            next_bin += 1
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int64)), next_bin


def pack_documents(lengths: np.ndarray, seq_len: int, seed: int | None = 0) -> PackingPlan:
    """Pack documents of the given token counts into bins of ``seq_len`` by best-fit decreasing.

    Deterministic for a given (lengths, seq_len, seed). Empty documents are left out.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and int(lengths.min()) < 0:
        raise ValueError("document lengths must not be negative")
    doc, start, length = split_documents(lengths, seq_len)
    n = doc.size
    if seed is None:
        tie = np.arange(n, dtype=np.int64)
    else:
        tie = FeistelPermutation(n, derive_key(seed, "packing-ties"))(np.arange(n))
    order = np.lexsort((tie, -length))
    sizes = length[order]
    group_starts = np.flatnonzero(np.r_[True, sizes[1:] != sizes[:-1]]) if n else np.zeros(0, dtype=np.int64)
    group_ends = np.append(group_starts[1:], n) if n else group_starts
    buckets = _Buckets(seq_len)
    bin_of_sorted = np.empty(n, dtype=np.int64)
    next_bin = 0
    for lo, hi in zip(group_starts.tolist(), group_ends.tolist(), strict=True):
        ids, next_bin = _place_group(buckets, int(sizes[lo]), hi - lo, seq_len, next_bin)
        bin_of_sorted[lo:hi] = ids
    # CSR: segments grouped by bin, in placement order within a bin
    by_bin = np.argsort(bin_of_sorted, kind="stable")
    seg = order[by_bin]
    counts = np.bincount(bin_of_sorted, minlength=next_bin)
    bin_offsets = np.zeros(next_bin + 1, dtype=np.int64)
    np.cumsum(counts, out=bin_offsets[1:])
    return PackingPlan(
        seq_len=seq_len,
        bin_offsets=bin_offsets,
        seg_doc=doc[seg],
        seg_start=start[seg],
        seg_length=length[seg],
    )
