"""Closed-form weighted interleave of several datasets: sample ``i`` -> (dataset ``k``, sample ``j`` of ``k``).

Sampling a dataset per draw from a seeded generator is the usual recipe, but then sample ``i`` can only be found
by replaying ``i`` draws, and a resumed run must replay them all. Here the mixed order is cut into blocks of
``B`` slots. Every block holds the same number of slots per dataset, ``counts[k]`` (the weights apportioned to
``B`` by largest remainder), arranged dataset by dataset and then shuffled by a Feistel permutation keyed by
(seed, epoch, block). Slot ``s`` of block ``b`` belongs to the dataset whose range holds ``perm_b(s)`` and is that
dataset's draw number ``b * counts[k] + rank``, where ``rank`` counts the dataset's earlier slots in the block. A
block's layout is computed once from its permutation (O(B), kept for the next samples), so locating a sample
never replays the epoch and memory does not grow with it.

Draw ``j`` of dataset ``k`` is element ``j mod n_k`` of a per-(epoch, k, cycle) permutation of ``[0, n_k)``, so a
dataset that is drawn more often than its size ("repeat" policy) goes through all its samples in a fresh order on
every cycle. Under the "stop" policy the epoch ends at the first slot that would make any dataset repeat.

The realised share of dataset ``k`` over any whole block is ``counts[k] / B`` exactly; ``B`` is chosen so that the
smallest weight gets at least ``min_slots`` slots (relative rounding error under ``1 / min_slots``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tokenmill.sampling.permutation import FeistelPermutation, IdentityPermutation, derive_key

Policy = Literal["repeat", "stop"]
POLICIES = ("repeat", "stop")
MAX_BLOCK = 1 << 20


def apportion(weights: Sequence[float], total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainder; ties to lower k)."""
    w = np.asarray(weights, dtype=np.float64)
    quota = w / w.sum() * total
    counts = np.floor(quota).astype(np.int64)
    short = int(total - counts.sum())
    if short > 0:
        order = np.lexsort((np.arange(w.size), -(quota - counts)))
        counts[order[:short]] += 1
    return counts


def choose_block_size(weights: Sequence[float], min_slots: int = 256, minimum: int = 1024) -> int:
    """Smallest power of two >= ``minimum`` giving the smallest weight at least ``min_slots`` slots."""
    w = np.asarray(weights, dtype=np.float64)
    share = float(w.min() / w.sum())
    need = max(minimum, int(np.ceil(min_slots / share)))
    block = 1 << (need - 1).bit_length()
    if block > MAX_BLOCK:
        raise ValueError(
            f"a mixture weight share of {share:.3g} is too small to represent (needs blocks of {need} slots); "
            "raise the smallest weight or lower min_slots"
        )
    return block


class MixtureSchedule:
    """The order of a weighted mixture, evaluated per index. Pure index math: it knows sizes, not data."""

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        *,
        seed: int = 0,
        policy: Policy = "repeat",
        shuffle: bool = True,
        block_size: int | None = None,
        samples_per_epoch: int | None = None,
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("a mixture needs one weight per dataset and at least one dataset")
        if policy not in POLICIES:
            raise ValueError(f"unknown exhaustion policy {policy!r}; expected one of {POLICIES}")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"mixture weights must be positive numbers, got {list(weights)}")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if np.any(self.sizes <= 0):
            empty = int(np.flatnonzero(self.sizes <= 0)[0])
            raise ValueError(f"dataset {empty} of the mixture has no samples")
        self.weights = w / w.sum()
        self.seed = int(seed)
        self.policy: Policy = policy
        self.shuffle = shuffle
        self.block_size = int(block_size) if block_size else choose_block_size(self.weights)
        self.counts = apportion(self.weights, self.block_size)
        if np.any(self.counts == 0):
            raise ValueError(f"block size {self.block_size} leaves a dataset without slots; use a larger one")
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError("samples_per_epoch must be positive")
        self._fixed_length = None if samples_per_epoch is None else int(samples_per_epoch)
        self._lengths: dict[int, int] = {}
        self._layouts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.epoch_length(0)

    def __len__(self) -> int:
        """Samples in epoch 0 (other epochs may differ by less than one block; see :meth:`epoch_length`)."""
        return self.epoch_length(0)

    @property
    def shares(self) -> np.ndarray:
        """The exact long-run share of each dataset (``counts / block_size``)."""
        return self.counts / self.block_size

    def _block_perm(self, epoch: int, block: int) -> FeistelPermutation:
        return FeistelPermutation(self.block_size, derive_key(self.seed, "mix-block", epoch, block))

    def block_layout(self, epoch: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, rank within that dataset's slots of the block) of every slot of one block.

        Ranks follow slot order, so the first ``m`` slots of a block draw a prefix of every dataset's share of
        it. Computing a layout costs O(block_size log block_size); the last few are kept, so a sequential reader
        pays it once per block (O(1) per sample) and memory stays O(block_size) whatever the epoch length.
        """
        key = (int(epoch), int(block))
        hit = self._layouts.get(key)
        if hit is not None:
            return hit
        owner = np.searchsorted(
            self.starts, self._block_perm(epoch, block)(np.arange(self.block_size)), "right"
        )
        owner -= 1
        order = np.argsort(owner, kind="stable")
        rank = np.empty(self.block_size, dtype=np.int64)
        rank[order] = np.arange(self.block_size, dtype=np.int64) - self.starts[owner[order]]
        if len(self._layouts) >= 4:
            self._layouts.pop(next(iter(self._layouts)))
        self._layouts[key] = (owner, rank)
        return owner, rank

    def _natural_length(self, epoch: int) -> int:
        """Samples in ``epoch`` under the policy, before any ``samples_per_epoch`` override.

        "stop": the largest N such that no dataset is drawn more often than its size in the first N slots (no
        sample repeats within the epoch). "repeat": the smallest N such that every dataset has been drawn at
        least its size. Both depend on the epoch only through the arrangement of the block where they end.
        """
        if self.policy == "stop":
            full = int(np.min(self.sizes // self.counts))
            left = self.sizes - full * self.counts
            owner, rank = self.block_layout(epoch, full)
            over = np.flatnonzero(rank >= left[owner])
            return full * self.block_size + (int(over[0]) if over.size else self.block_size)
        length = 0
        for k, (n, c) in enumerate(zip(self.sizes.tolist(), self.counts.tolist(), strict=True)):
            blocks = -(-n // c) - 1
            owner, rank = self.block_layout(epoch, blocks)
            slot = int(np.flatnonzero((owner == k) & (rank == n - blocks * c - 1))[0])
            length = max(length, blocks * self.block_size + slot + 1)
        return length

    def epoch_length(self, epoch: int) -> int:
        """Number of samples in ``epoch`` (cached; computing it costs O(block_size) once per epoch)."""
        epoch = int(epoch)
        if epoch not in self._lengths:
            natural = self._natural_length(epoch)
            if self._fixed_length is None:
                length = natural
            elif self.policy == "stop" and self._fixed_length > natural:
                raise ValueError(
                    f"samples_per_epoch={self._fixed_length} exceeds the {natural} samples of epoch {epoch} "
                    "that the 'stop' policy allows before a dataset would repeat"
                )
            else:
                length = self._fixed_length
            if len(self._lengths) > 64:
                self._lengths.clear()
            self._lengths[epoch] = length
        return self._lengths[epoch]

    def draws(self, epoch: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, draw number within that dataset) of mixture positions ``idx`` of ``epoch``."""
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.ravel()
        n = self.epoch_length(epoch)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= n):
            raise IndexError(f"mixture position out of range [0, {n}) of epoch {epoch}")
        block, slot = np.divmod(flat, self.block_size)
        k = np.empty_like(slot)
        rank = np.empty_like(slot)
        for b in np.unique(block).tolist():
            sel = block == b
            owner, ranks = self.block_layout(epoch, b)
            k[sel] = owner[slot[sel]]
            rank[sel] = ranks[slot[sel]]
        j = block * self.counts[k] + rank
        return k.reshape(idx.shape), j.reshape(idx.shape)

    def source_permutation(self, epoch: int, k: int, cycle: int) -> FeistelPermutation | IdentityPermutation:
        """The order in which dataset ``k`` is drawn during its ``cycle``-th pass of ``epoch``."""
        n = int(self.sizes[k])
        if not self.shuffle:
            return IdentityPermutation(n)
        return FeistelPermutation(n, derive_key(self.seed, "mix-source", epoch, k, cycle))

    def locate(self, epoch: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, sample index within that dataset) of mixture positions ``idx`` of ``epoch``."""
        k, j = self.draws(epoch, idx)
        kf, jf = k.ravel(), j.ravel()
        cycle, local = np.divmod(jf, self.sizes[kf])
        out = np.empty_like(jf)
        keys = np.unique(np.stack([kf, cycle], axis=1), axis=0) if kf.size else np.zeros((0, 2), np.int64)
        for kk, cc in keys.tolist():
            sel = (kf == kk) & (cycle == cc)
            out[sel] = self.source_permutation(epoch, kk, cc)(local[sel])
        return k, out.reshape(j.shape)
