"""epochraft's public surface on tokenmill's pipeline: change ``from epochraft import ...`` to
``from tokenmill.epochraft import ...`` and existing epochraft code runs.

docs/migrate/epochraft.md lists what differs on purpose (states are plain JSON, the shuffle order, DataLoader
workers split the data).
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenmill.epochraft import testing
from tokenmill.epochraft.dataset import (
    CheckpointableDataset,
    CheckpointableIterator,
    FileFormat,
    ParallelExecutorType,
    Sample,
    StateDict,
    TokenArray,
    concat_datasets,
    interleave_datasets,
)
from tokenmill.epochraft.errors import EpochraftValueError

__version__ = "0.1.0"


def braceexpand(pattern: str) -> Iterator[str]:
    """The expansions of a bash brace pattern (``"shard-{00..31}.jsonl"``), in order."""
    from tokenmill.sources.urls import expand_braces

    return iter(expand_braces(pattern))


__all__ = [
    "CheckpointableDataset",
    "CheckpointableIterator",
    "EpochraftValueError",
    "FileFormat",
    "ParallelExecutorType",
    "Sample",
    "StateDict",
    "TokenArray",
    "__version__",
    "braceexpand",
    "concat_datasets",
    "interleave_datasets",
    "testing",
]
