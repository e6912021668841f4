"""Which positions of an epoch's order make global batch ``g``, and which of them rank ``r`` of ``W`` reads.

Global batch ``g`` is positions ``[g * B, (g + 1) * B)`` of the epoch order, whatever the number of ranks; rank
``r`` takes the contiguous slice ``[r * B / W, (r + 1) * B / W)`` of it. So the sequence of global batches is a
function of (order, B) alone, and a run resumed on a different number of GPUs with the same global batch size
continues with exactly the samples that were next.
"""

from __future__ import annotations

import numpy as np


def check_world(global_batch_size: int, rank: int, world_size: int) -> None:
    """Reject a (batch, rank, world) triple that cannot split global batches evenly."""
    if global_batch_size < 1:
        raise ValueError(f"the global batch size must be positive, got {global_batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    if global_batch_size % world_size:
        raise ValueError(
            f"the global batch size {global_batch_size} is not divisible by the world size {world_size}; "
            "every rank must read the same number of samples per step"
        )


def batches_per_epoch(num_samples: int, global_batch_size: int, drop_last: bool = True) -> int:
    """Global batches in an epoch of ``num_samples`` (the last partial one counts unless ``drop_last``)."""
    full, rest = divmod(int(num_samples), int(global_batch_size))
    return full + (1 if rest and not drop_last else 0)


def rank_bounds(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Slice ``[lo, hi)`` of a batch of ``batch_size`` that ``rank`` reads.

    Even slices for a full global batch; a partial last batch is split as evenly as possible (the first
    ``batch_size % world_size`` ranks get one more), so some ranks may read one sample fewer, or none.
    """
    base, extra = divmod(int(batch_size), int(world_size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def batch_positions(
    batch: int, global_batch_size: int, num_samples: int, rank: int = 0, world_size: int = 1
) -> np.ndarray:
    """Positions in the epoch order that ``rank`` reads for global batch ``batch`` (int64)."""
    start = int(batch) * int(global_batch_size)
    stop = min(start + int(global_batch_size), int(num_samples))
    if start >= stop:
        raise IndexError(f"global batch {batch} is past the end of an epoch of {num_samples} samples")
    lo, hi = rank_bounds(stop - start, rank, world_size)
    return np.arange(start + lo, start + hi, dtype=np.int64)
