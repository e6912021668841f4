"""Pure index math of the loader: orders, windows, packing plans, mixtures (fixed or scheduled) and rank
shards. No I/O here, so every property (bijection, exactly-once, resume equality) can be tested exhaustively on
small numbers."""

from tokenmill.sampling.grouping import group_order, megabatch_bounds
from tokenmill.sampling.mixture import (
    MixtureSchedule,
    ScheduledMixture,
    apportion,
    choose_block_size,
    mixture_order,
)
from tokenmill.sampling.packing import PackingPlan, pack_documents, split_documents
from tokenmill.sampling.permutation import (
    FeistelPermutation,
    IdentityPermutation,
    derive_key,
    epoch_permutation,
)
from tokenmill.sampling.ragged import ragged_arange
from tokenmill.sampling.schedule import WeightSchedule
from tokenmill.sampling.sharding import batch_positions, batches_per_epoch, check_world, rank_bounds
from tokenmill.sampling.windows import RangePlan, locate, num_windows, plan_ranges, window_starts

__all__ = [
    "FeistelPermutation",
    "IdentityPermutation",
    "MixtureSchedule",
    "PackingPlan",
    "RangePlan",
    "ScheduledMixture",
    "WeightSchedule",
    "apportion",
    "batch_positions",
    "batches_per_epoch",
    "check_world",
    "choose_block_size",
    "derive_key",
    "epoch_permutation",
    "group_order",
    "locate",
    "megabatch_bounds",
    "mixture_order",
    "num_windows",
    "pack_documents",
    "plan_ranges",
    "ragged_arange",
    "rank_bounds",
    "split_documents",
    "window_starts",
]
