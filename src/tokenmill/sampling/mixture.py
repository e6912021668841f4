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

Weights that move with training progress (a :class:`tokenmill.sampling.schedule.WeightSchedule`) need counts that
change from block to block, and a block layout keyed only by its index can no longer say how many draws of each
dataset came before it. :class:`ScheduledMixture` rounds the schedule's exact integrals instead (see its
docstring): still O(1) per position from (position, seed, schedule) alone, one endless stream, every dataset
cycling through its own epochs. :func:`mixture_order` picks the class: a schedule whose shares never change is a
fixed mixture and gets :class:`MixtureSchedule`, so its stream is the fixed-weight stream sample for sample.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tokenmill.sampling.permutation import FeistelPermutation, IdentityPermutation, derive_key
from tokenmill.sampling.ragged import ragged_arange
from tokenmill.sampling.schedule import WeightSchedule

Policy = Literal["repeat", "stop"]
POLICIES = ("repeat", "stop")
MAX_BLOCK = 1 << 20
TICK = 1024  # time units per tick of a scheduled mixture (also how soon an edited schedule takes over)
ENDLESS = 1 << 62  # the length of a scheduled mixture's one epoch: it never ends


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
        return _source_permutation(int(self.sizes[k]), self.seed, self.shuffle, epoch, k, cycle)

    def locate(self, epoch: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, sample index within that dataset) of mixture positions ``idx`` of ``epoch``."""
        k, j = self.draws(epoch, idx)
        return k, _samples_of_draws(self.source_permutation, self.sizes, epoch, k, j)


@functools.lru_cache(maxsize=256)
def _source_permutation(
    n: int, seed: int, shuffle: bool, epoch: int, k: int, cycle: int
) -> FeistelPermutation | IdentityPermutation:
    """Kept for the next chunk: a small source cycles many times per chunk of positions, and building a
    permutation (its round keys) costs more than applying it to a handful of indices."""
    if not shuffle:
        return IdentityPermutation(n)
    return FeistelPermutation(n, derive_key(seed, "mix-source", epoch, k, cycle))


def _samples_of_draws(permutation, sizes: np.ndarray, epoch: int, k: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Draw ``j`` of dataset ``k`` is element ``j mod n_k`` of that dataset's order for cycle ``j // n_k``.

    Draws are grouped by (dataset, cycle) with one sort of a 1-d key: grouping with a 2-d ``np.unique`` and a
    mask per group cost half of the mixture's index time (profiled at 8192 positions over 4 small datasets).
    """
    kf, jf = k.ravel(), j.ravel()
    out = np.empty_like(jf)
    if not kf.size:
        return out.reshape(j.shape)
    cycle, local = np.divmod(jf, sizes[kf])
    key = cycle * sizes.size + kf
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]]))
    ends = np.append(starts[1:], sorted_key.size)
    for lo, hi, group in zip(starts.tolist(), ends.tolist(), sorted_key[starts].tolist(), strict=True):
        rows = order[lo:hi]
        cc, kk = divmod(group, sizes.size)
        out[rows] = permutation(epoch, kk, cc)(local[rows])
    return out.reshape(j.shape)


class ScheduledMixture:
    """The order of a mixture whose weights follow a :class:`WeightSchedule`: one endless stream in which every
    dataset cycles through its own epochs, each cycle in a fresh order.

    Whole draws from exact quotas: dataset ``k`` has had ``D_k(x) = floor(quota_k(x) + 1/2)`` draws by time ``x``.
    Each ``D_k`` is a floor of an exact, non-decreasing rational, so it never steps back and stays within 1/2 of
    what the schedule asks, at every ``x``, for ever. The stream is cut into ticks of ``tick`` time units: tick
    ``t`` holds the ``D_k((t+1) T) - D_k(t T)`` draws of every dataset, so it starts at stream position
    ``S(t) = sum_k D_k(t T)``, within ``K/2`` of ``t T``; position ``p`` therefore lies in tick ``p // T - 1``,
    ``p // T`` or ``p // T + 1``, found by evaluating three sums (O(K) exact arithmetic, no replay).

    Inside a tick each draw is placed where its quota crosses it (float interpolation of the share curve:
    deterministic, and the counts are the exact ones above), so ramps and jumps are followed within a tick too and
    every window of the stream holds each dataset's expected count within a few draws; ties go to the lower
    dataset. Layouts cost O(T log T) per tick and the last few are kept, so a reader pays O(1) per sample.

    Draw ``j`` of dataset ``k`` is element ``j mod n_k`` of the order for cycle ``j // n_k``, keyed by (seed,
    k, cycle) exactly as epoch 0 of :class:`MixtureSchedule` keys them. The epoch argument is accepted for
    interface parity and ignored: the stream never ends (``epoch_length`` is :data:`ENDLESS`).
    """

    policy: Policy = "repeat"

    def __init__(
        self,
        sizes: Sequence[int],
        schedule: WeightSchedule,
        *,
        seed: int = 0,
        shuffle: bool = True,
        tick: int = TICK,
    ) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if self.sizes.size != schedule.num_sources or not self.sizes.size:
            raise ValueError(
                f"a schedule of {schedule.num_sources} sources cannot mix {self.sizes.size} datasets"
            )
        if np.any(self.sizes <= 0):
            empty = int(np.flatnonzero(self.sizes <= 0)[0])
            raise ValueError(f"dataset {empty} of the mixture has no samples")
        if int(tick) <= self.sizes.size:
            raise ValueError(f"a tick of {tick} is too short for {self.sizes.size} datasets")
        self.schedule = schedule
        self.seed = int(seed)
        self.shuffle = shuffle
        self.tick = int(tick)
        self._counts: dict[int, np.ndarray] = {}
        self._layouts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return ENDLESS

    def epoch_length(self, epoch: int) -> int:
        return ENDLESS

    @property
    def shares(self) -> np.ndarray:
        """The shares at the start of the stream."""
        return self.schedule.shares(np.array([0]))[0]

    def counts_before(self, tick: int) -> np.ndarray:
        """Draws of each dataset in the ticks before ``tick`` (exact)."""
        tick = int(tick)
        hit = self._counts.get(tick)
        if hit is None:
            hit = np.array(self.schedule.rounded_quota(tick * self.tick)[0], np.int64)
            if len(self._counts) >= 64:
                self._counts.pop(next(iter(self._counts)))
            self._counts[tick] = hit
        return hit

    def tick_start(self, tick: int) -> int:
        """Stream position of the first draw of ``tick``."""
        return int(self.counts_before(tick).sum())

    def tick_of(self, position: int) -> int:
        """The tick that holds stream position ``position``."""
        return int(self._ticks(np.array([int(position)], np.int64))[0][0])

    def tick_layout(self, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, rank within that dataset's draws of the tick) of every slot of one tick."""
        tick = int(tick)
        hit = self._layouts.get(tick)
        if hit is not None:
            return hit
        before, after = self.counts_before(tick), self.counts_before(tick + 1)
        x0 = tick * self.tick
        counts = after - before
        owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        rank = ragged_arange(0, counts)
        # draw before[k] + i is due when quota + 1/2 reaches before[k] + i + 1: after `due[k] + i` more quota
        level = np.asarray(self.schedule.rounded_quota(x0)[1])[owner] + rank
        time = self.schedule.time_to(x0, owner, level, self.tick)
        order = np.lexsort((owner, time))
        hit = (owner[order], rank[order])
        if len(self._layouts) >= 8:
            self._layouts.pop(next(iter(self._layouts)))
        self._layouts[tick] = hit
        return hit

    def _ticks(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tick, slot within it) of stream positions (see the class docstring for why 3 candidates do)."""
        base = np.unique(flat // self.tick)
        cand = np.unique(np.concatenate([base - 1, base, base + 1]))
        cand = cand[cand >= 0]
        starts = np.array([self.tick_start(c) for c in cand.tolist()], dtype=np.int64)
        at = np.searchsorted(starts, flat, "right") - 1
        return cand[at], flat - starts[at]

    def draws(self, epoch: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, draw number within that dataset) of stream positions ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.ravel()
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= ENDLESS):
            raise IndexError(f"mixture position out of range [0, {ENDLESS})")
        k = np.empty_like(flat)
        j = np.empty_like(flat)
        if flat.size:
            ticks, slots = self._ticks(flat)
            for t in np.unique(ticks).tolist():
                sel = ticks == t
                owner, rank = self.tick_layout(t)
                k[sel] = owner[slots[sel]]
                j[sel] = self.counts_before(t)[k[sel]] + rank[slots[sel]]
        return k.reshape(idx.shape), j.reshape(idx.shape)

    def source_permutation(self, epoch: int, k: int, cycle: int) -> FeistelPermutation | IdentityPermutation:
        """The order in which dataset ``k`` is drawn during its ``cycle``-th pass (the same for every epoch)."""
        return _source_permutation(int(self.sizes[k]), self.seed, self.shuffle, 0, k, cycle)

    def locate(self, epoch: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset, sample index within that dataset) of stream positions ``idx``."""
        k, j = self.draws(epoch, idx)
        return k, _samples_of_draws(self.source_permutation, self.sizes, 0, k, j)


def is_fixed(schedule: WeightSchedule) -> bool:
    """Whether a schedule is a fixed-weight mixture: shares that never change, all positive (a fixed mixture
    needs every weight positive; a source that a moving schedule keeps at 0 is simply never drawn)."""
    return schedule.is_constant and all(v > 0 for v in schedule.segments[0].first)


def mixture_order(
    sizes: Sequence[int],
    weights: Sequence[float] | WeightSchedule,
    *,
    seed: int = 0,
    policy: Policy = "repeat",
    shuffle: bool = True,
    block_size: int | None = None,
    samples_per_epoch: int | None = None,
) -> MixtureSchedule | ScheduledMixture:
    """The order of a mixture: fixed weights (or a schedule whose shares never change, all positive) give
    today's :class:`MixtureSchedule`, sample for sample; any other schedule gives a :class:`ScheduledMixture`."""
    if isinstance(weights, WeightSchedule):
        if is_fixed(weights):
            weights = (
                list(weights.points[0][1])
                if weights.points
                else [float(v) for v in weights.segments[0].first]
            )
        else:
            if policy != "repeat":
                raise ValueError(
                    "a schedule mixes over the whole run, every dataset cycling through its own epochs; "
                    f"the {policy!r} policy ends a pass and does not apply (use 'repeat' and bound the run by steps)"
                )
            if samples_per_epoch is not None:
                raise ValueError("a scheduled mixture is one endless stream; it has no samples_per_epoch")
            return ScheduledMixture(sizes, weights, seed=seed, shuffle=shuffle)
    return MixtureSchedule(
        sizes,
        weights,
        seed=seed,
        policy=policy,
        shuffle=shuffle,
        block_size=block_size,
        samples_per_epoch=samples_per_epoch,
    )
