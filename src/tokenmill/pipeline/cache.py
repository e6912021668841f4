"""``cache(path)``: run the pipeline so far once into a local token cache, then read the cache.

Made for validation sets and other data read many times: the first ``iter()`` writes every document
(``input_ids``, ``loss_mask``) of the parent pipeline into ``path`` with the cache layer's writer (Lance
fragments, committed at the end, a manifest and a copy of the tokenizer), and every later ``iter()``, in this
process or another, reads it with ``from_cache`` (resumable by position, shardable by document). The manifest
records the parent pipeline's signature; a cache at ``path`` built by another pipeline is refused.

A file lock serialises builders, so DataLoader workers that start together build the cache once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path
from typing import Any

import numpy as np

from tokenmill.errors import CacheError, ConfigError
from tokenmill.pipeline.base import Node, Stage, StateDict
from tokenmill.pipeline.cache_source import CacheNode
from tokenmill.pipeline.tokens import MASK

WRITE_DOCS = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class CacheToNode(Node):
    parent: Node
    path: str
    options: dict[str, Any]
    rank: int = 0
    world_size: int = 1
    name = "cache"

    def describe(self) -> str:
        return f"cache({Path(self.path).name}, shard={self.rank}/{self.world_size})"

    # from downstream, a cached pipeline is a source: sharding splits the cache's documents, not the writer
    def children(self) -> tuple[Node, ...]:
        return ()

    def signature(self) -> str:
        return f"{self.parent.signature()} > {self.describe()}"

    def shard_source(self, rank: int, world_size: int) -> Node:
        return dataclasses.replace(
            self, rank=self.rank + self.world_size * rank, world_size=self.world_size * world_size
        )

    @property
    def tokenizer(self) -> Any:
        return self.parent.tokenizer

    def reader(self) -> CacheNode:
        unknown = set(self.options) - {"repeat", "shuffle", "seed"}
        if unknown:
            raise ConfigError(f"cache() options are repeat, shuffle and seed; unknown: {sorted(unknown)}")
        return CacheNode(self.path, rank=self.rank, world_size=self.world_size, **self.options)

    def build(self, state: StateDict | None) -> Stage:
        ensure_cache(self.parent, self.path)
        return self.reader().build(state)


def ensure_cache(parent: Node, path: str) -> None:
    """Build the cache at ``path`` from ``parent`` unless a complete one built from the same pipeline is there."""
    from tokenmill.cache import read_manifest

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "manifest.json").exists():
            manifest = read_manifest(str(target))
            built_from = manifest.config.get("pipeline")
            if built_from != parent.signature():
                raise CacheError(
                    f"{path} holds a cache built from another pipeline ({built_from!r}); remove it or choose "
                    "another path"
                )
            if manifest.complete:
                return
        _write(parent, str(target))


def _write(parent: Node, path: str) -> None:
    from tokenmill.cache import (
        DEFAULT_ROW_TOKENS,
        CacheCommitter,
        Manifest,
        SplitStats,
        cache_schema,
        documents_to_batch,
        split_hash,
        token_dtype,
        write_fragments,
        write_manifest,
    )

    tok = parent.tokenizer
    dtype = token_dtype(tok.vocab_size) if tok is not None else np.dtype(np.uint32)
    schema = cache_schema(dtype)
    committer = CacheCommitter(path, schema)
    committer.reset()  # an unfinished earlier build of the same pipeline starts over
    stats = SplitStats()
    fragments: list[dict[str, Any]] = []
    ids: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []

    def flush() -> None:
        if not ids:
            return
        if max(int(a.max(initial=0)) for a in ids) >= np.iinfo(dtype).max + 1:
            raise CacheError(f"cache(): a token id does not fit the cache's {dtype.name} column")
        hashes = [split_hash(a, 0) for a in ids]
        batch = documents_to_batch(ids, masks, hashes, dtype, DEFAULT_ROW_TOKENS)
        fragments.extend(write_fragments([batch], path, schema))
        stats.rows += batch.num_rows
        ids.clear()
        masks.clear()

    stage = parent.build(None)
    try:
        for item in stage:
            if not isinstance(item, dict) or "input_ids" not in item:
                raise ConfigError("cache() stores token documents: put it after tokenize() or format()")
            a = np.asarray(item["input_ids"])
            if a.size and a.min() < 0:
                raise CacheError("cache(): negative token ids cannot be stored")
            m = None if item.get(MASK) is None else np.asarray(item[MASK], dtype=bool)
            ids.append(a)
            masks.append(m if m is not None and not m.all() else None)
            stats.documents += 1
            stats.tokens += len(a)
            stats.trained_tokens += len(a) if m is None else int(m.sum())
            if len(ids) >= WRITE_DOCS:
                flush()
        flush()
    finally:
        stage.close()
    state = committer.commit(fragments, through=1, stats={})
    if tok is not None and hasattr(tok, "save"):
        tok.save(os.path.join(path, "tokenizer"))
    manifest = Manifest(
        tokenizer=tok.to_json_meta() if tok is not None and hasattr(tok, "to_json_meta") else {},
        config={"pipeline": parent.signature()},
        dtype=dtype.name,
        row_tokens=DEFAULT_ROW_TOKENS,
        split_threshold=0,  # every document in "train"
        splits={"train": stats, "validation": SplitStats()},
        complete=True,
        lance_version=state.version,
    )
    write_manifest(path, manifest)
