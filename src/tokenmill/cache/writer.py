"""Resumable writing of the token cache: workers write Lance fragments, one coordinator commits them in order.

Exactly-once under ``kill -9`` rests on a three-step ledger kept beside the dataset:

1. ``ledger/plan.json`` fixes the work units before any work starts, so a rerun splits the input the same way.
2. Before a commit, ``ledger/pending.json`` names the data files about to be committed and the unit count they
   complete.
3. After the Lance commit, ``ledger/committed.json`` records the new prefix of finished units.

A run killed between 2 and 3 is resolved on restart by asking the dataset whether the pending files are part of
its latest version. Units are committed strictly in plan order, so the finished work is always a prefix and the
cache's row order does not depend on the number of workers or on timing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import lance
import numpy as np
import pyarrow as pa

from tokenmill.cache import store
from tokenmill.cache.index import INDEX_DIR
from tokenmill.cache.layout import TOKENS_DATASET

LEDGER_DIR = "ledger"
CHECKSUM_DIR = "checksums"  # ledger/checksums/rows-FIRST-THROUGH.npz: per-row checksums of committed units


def write_fragments(
    batches: Iterable[pa.RecordBatch],
    cache: str,
    schema: pa.Schema,
    storage_options: dict[str, str] | None = None,
    max_rows_per_file: int = 1 << 20,
) -> list[dict[str, Any]]:
    """Stream record batches into new, uncommitted Lance fragments; returns their metadata as JSON-able dicts."""
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return []

    def chain():
        yield first
        yield from it

    reader = pa.RecordBatchReader.from_batches(schema, chain())
    fragments = lance.fragment.write_fragments(
        reader,
        store.join(cache, TOKENS_DATASET),
        schema=schema,
        max_rows_per_file=max_rows_per_file,
        storage_options=storage_options,
    )
    return [f.to_json() for f in fragments]


def fragment_files(fragments: list[dict[str, Any]]) -> list[str]:
    return sorted(f["path"] for frag in fragments for f in frag["files"])


@dataclass
class LedgerState:
    """How far a build got: ``through`` units of the plan are committed; ``stats`` are their summed counts."""

    through: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


class CacheCommitter:
    """The coordinator's side of the ledger: recovers after a crash and commits finished units in order."""

    def __init__(self, cache: str, schema: pa.Schema, storage_options: dict[str, str] | None = None) -> None:
        self.cache = cache
        self.schema = schema
        self.storage_options = storage_options
        self.dataset_uri = store.join(cache, TOKENS_DATASET)

    def _ledger(self, name: str) -> str:
        return store.join(self.cache, LEDGER_DIR, name)

    # plan -----------------------------------------------------------------------------------------------
    def read_plan(self) -> dict[str, Any] | None:
        uri = self._ledger("plan.json")
        return store.read_json(uri, self.storage_options) if store.exists(uri, self.storage_options) else None

    def write_plan(self, plan: dict[str, Any]) -> None:
        store.write_json(self._ledger("plan.json"), plan, self.storage_options)

    # state ----------------------------------------------------------------------------------------------
    def _dataset(self) -> lance.LanceDataset | None:
        if not store.exists(self.dataset_uri, self.storage_options):
            return None
        try:
            return lance.dataset(self.dataset_uri, storage_options=self.storage_options)
        except (ValueError, OSError):  # a folder of uncommitted fragments only: no version yet
            return None

    def committed_version(self) -> int | None:
        """The latest committed Lance version, None when the dataset has none yet."""
        ds = self._dataset()
        return ds.version if ds is not None else None

    def has_commits(self) -> bool:
        """Whether this cache's ledger records a commit (or one in flight)."""
        return any(
            store.exists(self._ledger(name), self.storage_options)
            for name in ("committed.json", "pending.json")
        )

    def _committed_files(self) -> set[str]:
        ds = self._dataset()
        if ds is None:
            return set()
        return {d.path for frag in ds.get_fragments() for d in frag.data_files()}

    def recover(self) -> LedgerState:
        """The committed state, after settling a commit that a crash left pending."""
        committed_uri = self._ledger("committed.json")
        pending_uri = self._ledger("pending.json")
        state = LedgerState()
        if store.exists(committed_uri, self.storage_options):
            state = LedgerState(**store.read_json(committed_uri, self.storage_options))
        if store.exists(pending_uri, self.storage_options):
            pending = store.read_json(pending_uri, self.storage_options)
            files = set(pending["files"])
            if pending["through"] > state.through and files and files <= self._committed_files():
                ds = self._dataset()
                state = LedgerState(pending["through"], pending["stats"], ds.version if ds else None)
                store.write_json(committed_uri, state.__dict__, self.storage_options)
            store.remove(pending_uri, self.storage_options)
        return state

    def commit(self, fragments: list[dict[str, Any]], through: int, stats: dict[str, Any]) -> LedgerState:
        """Commit the fragments of units up to ``through`` (exclusive) and record the new prefix."""
        ds = self._dataset()
        version = ds.version if ds is not None else None
        if fragments:
            metas = [lance.FragmentMetadata.from_json(json.dumps(f)) for f in fragments]
            files = fragment_files(fragments)
            if ds is None:
                operation = lance.LanceOperation.Overwrite(self.schema, metas)
            else:
                operation = lance.LanceOperation.Append(metas)
            store.write_json(
                self._ledger("pending.json"),
                {"through": through, "files": files, "stats": stats, "version": None},
                self.storage_options,
            )
            new = lance.LanceDataset.commit(
                self.dataset_uri, operation, read_version=version, storage_options=self.storage_options
            )
            version = new.version
        state = LedgerState(through, stats, version)
        store.write_json(self._ledger("committed.json"), state.__dict__, self.storage_options)
        store.remove(self._ledger("pending.json"), self.storage_options)
        return state

    def save_row_checksums(self, first: int, through: int, sums: np.ndarray) -> None:
        """The per-row checksums of units ``[first, through)``, written before the commit that makes them visible."""
        name = f"rows-{first:07d}-{through:07d}.npz"
        store.write_npz(
            self._ledger(CHECKSUM_DIR + "/" + name), self.storage_options, sums=sums.astype(np.uint64)
        )

    def read_row_checksums(self, through: int | None = None, rows: int | None = None) -> np.ndarray | None:
        """The per-row checksums of the committed units ``[0, through)`` (or of the first ``rows`` rows), in row
        order; None when the cache has none (built before they were written) or some are missing."""
        parts: dict[int, tuple[int, str]] = {}
        for name in store.list_names(self._ledger(CHECKSUM_DIR), self.storage_options):
            m = re.fullmatch(r"rows-(\d+)-(\d+)\.npz", name)
            if m:
                parts[int(m.group(1))] = (int(m.group(2)), name)
        out, at, count = [], 0, 0
        while (through is not None and at < through) or (rows is not None and count < rows):
            if at not in parts:
                return None
            end, name = parts[at]
            sums = store.read_npz(self._ledger(CHECKSUM_DIR + "/" + name), self.storage_options)["sums"]
            out.append(sums)
            at, count = end, count + len(sums)
        if rows is not None and count != rows:
            return None
        return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)

    def discard(self, fragments: list[dict[str, Any]]) -> None:
        """Delete the data files of fragments that will never be committed (a unit redone or cut short)."""
        for path in fragment_files(fragments):
            store.remove(store.join(self.dataset_uri, "data", path), self.storage_options)

    def reset(self) -> None:
        """Remove everything of a previous build (``--overwrite``)."""
        for name in (TOKENS_DATASET, LEDGER_DIR, INDEX_DIR, "tokenizer", "manifest.json"):
            store.remove(store.join(self.cache, name), self.storage_options, recursive=True)
