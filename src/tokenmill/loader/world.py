"""Which rank this process is, and how ranks agree on one value (the cache versions of the next epoch).

``torch.distributed`` is looked up in ``sys.modules`` only: the loader never imports torch itself.
"""

from __future__ import annotations

import os
import sys


def resolve_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else torch.distributed when initialised, else RANK/WORLD_SIZE, else 0/1."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    dist_rank = dist_world = None
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist_rank, dist_world = dist.get_rank(), dist.get_world_size()
    elif "WORLD_SIZE" in os.environ:
        dist_rank, dist_world = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    r = rank if rank is not None else (dist_rank if dist_rank is not None else 0)
    w = world_size if world_size is not None else (dist_world if dist_world is not None else 1)
    return int(r), int(w)


def agreed_versions(versions: list[int]) -> list[int]:
    """The cache versions every rank moves to at an epoch boundary: rank 0's choice, broadcast, when
    torch.distributed is initialised (ranks that look at different moments must not see different epochs);
    otherwise this process's own (the same unless a commit lands between the ranks' epoch boundaries)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return versions
    box = [versions]
    dist.broadcast_object_list(box, src=0)
    return [int(v) for v in box[0]]
