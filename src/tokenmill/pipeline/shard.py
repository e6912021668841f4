"""``shard(rank, world_size)``: give each rank (or DataLoader worker) a disjoint part of the data.

Sharding happens at the sources, so no rank reads what it then throws away where that can be avoided: files are
dealt out by index, cached documents and sequence items by position. A source that cannot split itself (fewer
files than ranks, an iterable) keeps every ``world_size``-th record from ``rank`` on. Sharding a sharded pipeline
again subdivides each part, which is how DataLoader workers split a rank's share.
"""

from __future__ import annotations

from tokenmill.pipeline.base import Node
from tokenmill.pipeline.count import CountNode


def shard_node(node: Node, rank: int, world_size: int) -> Node:
    if world_size == 1:
        return node
    children = node.children()
    if children:
        return node.with_children(tuple(shard_node(c, rank, world_size) for c in children))
    sharded = node.shard_source(rank, world_size)
    if sharded is not None:
        return sharded
    return CountNode(node, "stride", n=world_size, offset=rank)
