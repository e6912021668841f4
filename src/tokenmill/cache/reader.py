"""Random access to a token cache.

The loader needs two things without scanning: which rows belong to a split, and where token N of the split's
concatenated stream lives. :class:`SplitIndex` holds both as numpy arrays built from three small columns
(``piece``, ``num_tokens``, ``split_hash``) and is saved under ``index/`` per Lance version (by
:mod:`tokenmill.cache.index`, the folder's only owner), so opening a large cache a second time reads one small file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lance
import numpy as np
import pyarrow as pa

from tokenmill.cache import store
from tokenmill.cache.index import read_row_index, write_row_index
from tokenmill.cache.layout import TOKENS_DATASET
from tokenmill.cache.manifest import Manifest, SplitStats, read_manifest
from tokenmill.cache.store import lance_reads
from tokenmill.errors import CacheError
from tokenmill.sampling.ragged import ragged_arange

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class SplitIndex:
    """Rows of one split in cache order and the cumulative token offsets of the split's concatenated stream."""

    split: str
    rows: np.ndarray  # int64[n]: row offsets in the Lance dataset
    token_offsets: np.ndarray  # int64[n + 1]
    doc_start: np.ndarray  # bool[n]: the row begins a document
    trained: np.ndarray  # uint32[n]: trained tokens per row

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_tokens(self) -> int:
        return int(self.token_offsets[-1])

    @property
    def num_documents(self) -> int:
        return int(self.doc_start.sum())

    def document_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end token offsets of every document of the split (documents may span several rows)."""
        starts = self.token_offsets[:-1][self.doc_start]
        ends = np.append(starts[1:], self.token_offsets[-1])
        return starts, ends


def _latest_version(uri: str, storage_options: dict[str, str] | None) -> int | None:
    try:
        return int(lance.dataset(uri, storage_options=storage_options).version)
    except (ValueError, OSError, RuntimeError):
        return None


def _check_dtype(cache: str, dataset: lance.LanceDataset, manifest: Manifest) -> None:
    """The manifest's token dtype must be the Lance column's: a reader that trusted an edited one reads garbage."""
    try:
        stored = dataset.schema.field("input_ids").type.value_type.to_pandas_dtype()
    except (KeyError, AttributeError, NotImplementedError):
        raise CacheError(
            f"{cache}: the Lance dataset has no input_ids list column; not a tokenmill cache"
        ) from None
    if np.dtype(stored).name != manifest.dtype:
        raise CacheError(
            f"{cache}: the manifest says tokens are {manifest.dtype} but the Lance data holds {np.dtype(stored).name}; "
            f"the manifest was edited or belongs to another cache: run `tokenmill verify {cache}`"
        )


def threshold_for(manifest: Manifest, hashes_of_documents: np.ndarray | None = None) -> int:
    """The split hash below which a document is in the validation split."""
    if manifest.split_threshold is not None:
        return int(manifest.split_threshold)
    validation = manifest.validation or {}
    if "fraction" in validation:
        return int(float(validation["fraction"]) * 2.0**64)
    if "count" in validation and hashes_of_documents is not None:
        count = int(validation["count"])
        if count <= 0 or len(hashes_of_documents) == 0:
            return 0
        if count >= len(hashes_of_documents):
            return 2**64
        return int(np.partition(hashes_of_documents, count - 1)[count - 1]) + 1
    return 0


def in_validation(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Which rows are in the validation split, from their split hashes and the manifest's threshold."""
    if threshold <= 0:
        return np.zeros(len(hashes), dtype=bool)
    if threshold >= 2**64:
        return np.ones(len(hashes), dtype=bool)
    return hashes < np.uint64(threshold)


class CacheReader:
    """Read-only view of one version of a cache (the latest committed one by default).

    ``manifest`` may be given by a writer that is about to publish it (prepare's last step), so the split
    statistics it records come from the very index readers will use.
    """

    def __init__(
        self,
        cache: str,
        storage_options: dict[str, str] | None = None,
        version: int | None = None,
        manifest: Manifest | None = None,
    ):
        self.cache = str(cache)
        self.storage_options = storage_options = store.resolve_storage_options(storage_options, self.cache)
        self.manifest = manifest if manifest is not None else read_manifest(self.cache, storage_options)
        self.split_threshold: int | None = self.manifest.split_threshold
        uri = store.join(self.cache, TOKENS_DATASET)
        if not store.exists(uri, storage_options):
            raise CacheError(f"{self.cache} has no committed tokens yet")
        if version is None and self.manifest.lance_version is not None:
            # the last finished version, which the manifest describes: never the half-state of a running prepare
            version = int(self.manifest.lance_version)
        try:
            self.dataset = lance.dataset(uri, version=version, storage_options=storage_options)
        except (ValueError, OSError, RuntimeError) as exc:
            latest = _latest_version(uri, storage_options)
            if version is not None and latest is not None and latest < version:
                raise CacheError(
                    f"{self.cache}: the manifest names Lance version {version} but the dataset has only up to "
                    f"{latest} (a version file was lost); the cache is damaged: run `tokenmill verify {self.cache}` "
                    "and rebuild it (prepare with --overwrite)"
                ) from None
            raise CacheError(
                f"{self.cache}: cannot open the Lance dataset{f' at version {version}' if version else ''}: {exc}; "
                f"run `tokenmill verify {self.cache}`"
            ) from exc
        _check_dtype(self.cache, self.dataset, self.manifest)
        self._indexes: dict[str, SplitIndex] = {}
        self._lock = threading.Lock()
        self._expected: Any = False  # per-row checksums (None: the cache has none), loaded on the first take

    def row_checksums(self) -> np.ndarray | None:
        """The per-row checksums prepare wrote for this version's rows; None for caches made before them."""
        from tokenmill.cache.writer import CacheCommitter

        try:
            rows = self.dataset.count_rows()
            return CacheCommitter(self.cache, self.dataset.schema, self.storage_options).read_row_checksums(
                rows=rows
            )
        except (OSError, ValueError, KeyError, RuntimeError):
            return None

    def data_fingerprint(self) -> dict[str, Any] | None:
        """What this version holds (cache.fingerprint), as prepare recorded it; None for older caches."""
        return self.manifest.fingerprints.get(str(self.version))

    @property
    def version(self) -> int:
        return self.dataset.version

    def latest_version(self) -> int:
        return lance.dataset(
            store.join(self.cache, TOKENS_DATASET), storage_options=self.storage_options
        ).version

    def refresh(self) -> bool:
        """Move to the latest committed version; True when it changed (a prepare appended since)."""
        latest = self.latest_version()
        if latest == self.version:
            return False
        self.manifest = read_manifest(self.cache, self.storage_options)
        self.dataset = lance.dataset(
            store.join(self.cache, TOKENS_DATASET), version=latest, storage_options=self.storage_options
        )
        self._indexes.clear()
        self._expected = False
        return True

    @cached_property
    def tokenizer(self):
        from tokenmill.tokenizer import load_tokenizer

        # tokenizer libraries read local files only: a cache in a bucket lends a temporary copy of the folder
        return load_tokenizer(store.local_copy(store.join(self.cache, "tokenizer"), self.storage_options))

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.split_index(s).num_rows > 0]

    # index ----------------------------------------------------------------------------------------------
    def _build_indexes(self) -> None:
        arrays = read_row_index(self.cache, self.version, self.storage_options)
        if arrays is None:
            with lance_reads(self.cache):
                table = self.dataset.to_table(columns=["piece", "num_tokens", "num_trained", "split_hash"])
            piece = table.column("piece").to_numpy()
            num_tokens = table.column("num_tokens").to_numpy().astype(np.int64)
            trained = table.column("num_trained").to_numpy()
            hashes = table.column("split_hash").to_numpy()
            self.split_threshold = threshold_for(self.manifest, hashes[piece == 0])
            is_val = in_validation(hashes, self.split_threshold)
            arrays = {
                "piece": piece,
                "num_tokens": num_tokens,
                "trained": trained,
                "is_val": is_val,
                "threshold": np.array(str(self.split_threshold)),  # may be 2**64: kept as text, not pickled
            }
            if self.manifest.complete:
                write_row_index(self.cache, self.version, self.storage_options, arrays)
        elif "threshold" in arrays:
            self.split_threshold = int(str(arrays["threshold"]))
        for split, select in (("train", ~arrays["is_val"]), ("validation", arrays["is_val"])):
            rows = np.flatnonzero(select).astype(np.int64)
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(arrays["num_tokens"][rows], out=offsets[1:])
            self._indexes[split] = SplitIndex(
                split, rows, offsets, arrays["piece"][rows] == 0, arrays["trained"][rows].astype(np.uint32)
            )

    def split_stats(self) -> dict[str, SplitStats]:
        """Documents, tokens, trained tokens and rows per split, as the manifest records them."""
        out = {}
        for name in SPLITS:
            index = self.split_index(name)
            out[name] = SplitStats(
                documents=index.num_documents,
                tokens=index.num_tokens,
                trained_tokens=int(index.trained.astype(np.int64).sum()),
                rows=index.num_rows,
            )
        return out

    def split_index(self, split: str) -> SplitIndex:
        if split not in SPLITS:
            raise CacheError(f"unknown split {split!r}; a cache has the splits {', '.join(SPLITS)}")
        with self._lock:
            if split not in self._indexes:
                self._build_indexes()
        return self._indexes[split]

    # reads ----------------------------------------------------------------------------------------------
    def take_rows(
        self, rows: np.ndarray, with_mask: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Token ids of the given Lance rows, flat, with per-row offsets; the flat loss mask or None if all trained."""
        rows = np.asarray(rows, dtype=np.int64)
        columns = ["input_ids", "loss_mask"] if with_mask else ["input_ids"]
        with lance_reads(self.cache):
            table = self.dataset.take(pa.array(rows), columns=columns)
        ids_col = table.column("input_ids").combine_chunks()
        offsets = ids_col.offsets.to_numpy().astype(np.int64)
        flat = ids_col.values.to_numpy()[offsets[0] : offsets[-1]]
        offsets = offsets - offsets[0]
        mask = None
        if with_mask:
            mask_col = table.column("loss_mask").combine_chunks()
            if mask_col.null_count < len(mask_col):
                mask = np.ones(len(flat), dtype=bool)
                valid = ~np.asarray(mask_col.is_null().to_numpy(zero_copy_only=False))
                values = mask_col.flatten().to_numpy(zero_copy_only=False)
                mask[ragged_arange(offsets[:-1][valid], np.diff(offsets)[valid])] = values
        if with_mask or self.manifest_has_no_masked_tokens():
            self._check_taken(rows, flat, offsets, mask)
        return flat, offsets, mask

    def manifest_has_no_masked_tokens(self) -> bool:
        """Every token of the cache is trained (so rows read without their mask still match their checksums)."""
        splits = self.manifest.splits.values()
        return bool(splits) and all(s.trained_tokens == s.tokens for s in splits)

    def _check_taken(self, rows: np.ndarray, flat: np.ndarray, offsets: np.ndarray, mask) -> None:
        """Rows read straight from Lance against the checksums prepare wrote (a vectorised sum per row): a damaged
        data file is an error, never wrong tokens."""
        from tokenmill.cache.fingerprint import row_checksums

        if self._expected is False:
            self._expected = self.row_checksums()
        expected = self._expected
        if expected is None or expected is False or len(rows) == 0:
            return
        if int(rows.max()) >= len(expected) or (row_checksums(flat, offsets, mask) != expected[rows]).any():
            raise CacheError(
                f"{self.cache}: rows read from the Lance data differ from what prepare wrote; a data file is "
                f"damaged: run `tokenmill verify --deep {self.cache}` and rebuild the cache (prepare with --overwrite)"
            )

    def read_windows(
        self, split: str, starts: np.ndarray, length: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Tokens ``[s, s + length)`` of the split's concatenated stream for every start ``s``, in one take."""
        index = self.split_index(split)
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0:
            return np.zeros((0, length), dtype=np.int64), None
        if starts.min() < 0 or starts.max() + length > index.num_tokens:
            raise CacheError(f"window out of range of split {split!r} ({index.num_tokens} tokens)")
        first = np.searchsorted(index.token_offsets, starts, side="right") - 1
        last = np.searchsorted(index.token_offsets, starts + length, side="left") - 1
        needed = np.unique(ragged_arange(first, last - first + 1))
        flat, offsets, mask = self.take_rows(index.rows[needed])
        # rows of a split are taken in split order, so a window is contiguous in `flat`
        pos_of_needed = np.searchsorted(needed, first)
        flat_start = offsets[pos_of_needed] + (starts - index.token_offsets[first])
        gather = flat_start[:, None] + np.arange(length)
        # a window spanning a row that was not taken would break contiguity; `needed` holds every spanned row
        ids = flat[gather]
        return ids, (mask[gather] if mask is not None else None)
