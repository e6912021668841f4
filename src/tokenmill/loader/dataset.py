"""One split of one cache as random-access samples of ``seq_len`` tokens, in a seeded per-epoch order.

Sample ``i`` of epoch ``e`` is ``layout sample perm_e(i)`` with a Feistel permutation keyed by (seed, epoch), so
the position of a training run is one small number per epoch, and resuming it (on any number of ranks) is O(1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.cache import CacheReader, store
from tokenmill.cache.index import materialize_stream, packing_plan, stream_dir
from tokenmill.config import digest
from tokenmill.errors import CacheError, ConfigError
from tokenmill.loader.layouts import (
    LONG_DOCUMENTS,
    MODES,
    PAD_TO,
    Mode,
    PaddedLayout,
    SegmentsLayout,
    WindowsLayout,
    cu_seqlens_from_position_ids,
)
from tokenmill.loader.streams import READS, LanceStream, MemmapStream
from tokenmill.sampling.grouping import group_order
from tokenmill.sampling.permutation import epoch_permutation


class TokenDataset:
    """Samples of ``seq_len`` tokens from one split of a token cache, in a seeded per-epoch order.

    ``mode``: ``"windows"`` (the split's documents concatenated, with their EOS, cut into non-overlapping windows
    of ``seq_len`` inputs plus one target), ``"packed"`` (whole documents packed best-fit-decreasing into bins,
    longer ones cut into ``seq_len`` pieces first) or ``"padded"`` (one document, or one ``seq_len`` piece of one,
    per sample; ``long_documents="truncate"`` keeps only the first piece). ``group_by_length=M`` (padded mode)
    orders each mega-batch of ``M`` positions longest first so batches hold similar lengths, and
    ``pad_to="longest"`` then trims each batch to its longest sample.

    ``read``: ``"memmap"`` (a derived flat copy of the split's tokens, local), ``"lance"`` (Lance ``take``), or
    ``"auto"`` (memmap for a local cache, Lance for object storage). ``follow=True`` lets a
    :class:`BatchIterator` move to the cache's newest committed version at each epoch boundary.
    """

    def __init__(
        self,
        cache: str | os.PathLike | CacheReader,
        *,
        split: str = "train",
        seq_len: int,
        mode: Mode = "windows",
        shuffle: bool = True,
        seed: int = 0,
        read: str = "auto",
        storage_options: dict[str, str] | None = None,
        local_dir: str | None = None,
        long_documents: str = "split",
        group_by_length: int | None = None,
        pad_to: str = "seq_len",
        pad_id: int | None = None,
        follow: bool = False,
        version: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if read not in READS:
            raise ConfigError(f"unknown read {read!r}; expected one of {', '.join(READS)}")
        if int(seq_len) < 1:
            raise ConfigError(f"seq_len must be at least 1, got {seq_len}")
        if long_documents not in LONG_DOCUMENTS:
            raise ConfigError(
                f"long_documents must be one of {', '.join(LONG_DOCUMENTS)}, got {long_documents!r}"
            )
        if pad_to not in PAD_TO:
            raise ConfigError(f"pad_to must be one of {', '.join(PAD_TO)}, got {pad_to!r}")
        if group_by_length is not None and (mode != "padded" or group_by_length < 1):
            raise ConfigError("group_by_length takes a positive mega-batch size and needs mode='padded'")
        if isinstance(cache, CacheReader):
            self.reader = cache
        else:
            self.reader = CacheReader(str(cache), storage_options=storage_options, version=version)
        self._options = {
            "split": split,
            "seq_len": int(seq_len),
            "mode": mode,
            "shuffle": shuffle,
            "seed": int(seed),
            "read": read,
            "local_dir": local_dir,
            "long_documents": long_documents,
            "group_by_length": group_by_length,
            "pad_to": pad_to,
            "pad_id": pad_id,
            "follow": follow,
        }
        self.cache = self.reader.cache
        self.split, self.seq_len, self.mode = split, int(seq_len), mode
        self.shuffle, self.seed, self.read = shuffle, int(seed), read
        self.local_dir, self.long_documents = local_dir, long_documents
        self.group_by_length, self.pad_to, self.follow = group_by_length, pad_to, follow
        tok = self.reader.manifest.tokenizer or {}
        default_pad = tok.get("pad_id") if tok.get("pad_id") is not None else tok.get("eos_id")
        self.pad_id = int(pad_id if pad_id is not None else (default_pad if default_pad is not None else 0))
        self.epoch = 0
        self._group_cache: tuple[int, int, np.ndarray] | None = None
        self._open()

    # opening ------------------------------------------------------------------------------------------
    def _open(self) -> None:
        index = self.reader.split_index(self.split)
        if index.num_tokens == 0:
            raise CacheError(
                f"{self.cache}: split {self.split!r} has no tokens (splits with data: "
                f"{', '.join(self.reader.splits) or 'none'})"
            )
        self.index = index
        manifest = self.reader.manifest
        self._cache_identity = digest(
            {
                "identity": manifest.config.get("identity"),
                "tokenizer": (manifest.tokenizer or {}).get("fingerprint"),
            }
        )
        use_memmap = self.read == "memmap" or (self.read == "auto" and store.is_local(self.cache))
        if use_memmap:
            ids_path, mask_path = materialize_stream(
                self.reader, self.split, stream_dir(self.cache, self.local_dir)
            )
            self.stream: LanceStream | MemmapStream = MemmapStream(ids_path, mask_path)
        else:
            self.stream = LanceStream(self.reader, self.split)
        if self.mode == "windows":
            self.layout: Any = WindowsLayout(index, self.seq_len)
        elif self.mode == "packed":
            plan = packing_plan(self.reader, self.split, self.seq_len, self.seed, self.local_dir)
            self.packing = plan
            self.layout = SegmentsLayout(
                index, self.seq_len, plan.bin_offsets, plan.seg_doc, plan.seg_start, plan.seg_length
            )
        else:
            self.layout = PaddedLayout(index, self.seq_len, self.long_documents)
        if self.layout.num_samples == 0:
            raise CacheError(
                f"{self.cache}: split {self.split!r} has {index.num_tokens} tokens, too few for one sample of "
                f"seq_len={self.seq_len} in {self.mode} mode"
            )
        self._group_cache = None

    def refresh(self) -> bool:
        """Move to the cache's newest committed version (a prepare appended since); True when it changed."""
        if not self.reader.refresh():
            return False
        self._open()
        return True

    def latest_versions(self) -> list[int]:
        """The version :meth:`refresh` would move to (the current one unless ``follow``)."""
        return [int(self.reader.latest_version())] if self.follow else self.versions

    def checkout(self, version: int) -> None:
        """Open a given committed version of the cache (used when a saved state pins one)."""
        if version == self.reader.version:
            return
        self.reader = CacheReader(self.cache, storage_options=self.reader.storage_options, version=version)
        self._open()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the recipe, not the open handles: Lance datasets must not cross a fork or a pickle, so a copy
        sent to a spawned DataLoader worker reopens the same cache version itself (the index files make that
        cheap)."""
        return {
            "cache": self.cache,
            "storage_options": self.reader.storage_options,
            "version": int(self.reader.version),
            "options": self._options,
            "epoch": self.epoch,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["cache"],
            storage_options=state["storage_options"],
            version=state["version"],
            **state["options"],
        )
        self.epoch = state["epoch"]

    # sizes and order ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.layout.num_samples

    def epoch_length(self, epoch: int) -> int:
        return self.layout.num_samples

    @property
    def versions(self) -> list[int]:
        return [int(self.reader.version)]

    @property
    def padding_fraction(self) -> float:
        """Share of padding in the packed bins (packed mode) or in the padded samples (padded mode)."""
        if self.mode == "windows":
            return 0.0
        return 1.0 - float(self.layout.seg_length.sum()) / (self.layout.num_samples * self.seq_len)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order ``ds[i]`` and ``get_batch`` use (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def sample_ids(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Samples at ``positions`` of the order of ``epoch``."""
        positions = np.asarray(positions, dtype=np.int64)
        n = self.layout.num_samples
        if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= n):
            raise IndexError(f"position out of range for an epoch of {n} samples")
        order = epoch_permutation(n, self.seed, epoch, shuffle=self.shuffle)
        if self.group_by_length is None:
            return order(positions)
        out = np.empty_like(positions)
        mega = self.group_by_length
        for m in np.unique(positions // mega).tolist():
            sel = positions // mega == m
            out[sel] = self._grouped(order, epoch, m)[positions[sel] - m * mega]
        return out

    def _grouped(self, order, epoch: int, m: int) -> np.ndarray:
        if self._group_cache is not None and self._group_cache[:2] == (epoch, m):
            return self._group_cache[2]
        lo = m * self.group_by_length
        hi = min(lo + self.group_by_length, self.layout.num_samples)
        samples = order(np.arange(lo, hi))
        grouped = samples[group_order(self.layout.lengths(samples))]
        self._group_cache = (epoch, m, grouped)
        return grouped

    # reading ------------------------------------------------------------------------------------------
    def fetch(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Samples by their index in cache order (not epoch order), as arrays of shape ``[n, seq_len]``."""
        samples = np.asarray(samples, dtype=np.int64).reshape(-1)
        if samples.size and (int(samples.min()) < 0 or int(samples.max()) >= self.layout.num_samples):
            raise IndexError(f"sample out of range [0, {self.layout.num_samples})")
        return self.layout.fetch(self.stream, samples, self.pad_id)

    def finalize(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batch-level fields: ``cu_seqlens``/``max_seqlen`` (packed), trimming to the longest (padded)."""
        if self.mode == "packed":
            cu, longest = cu_seqlens_from_position_ids(batch["position_ids"])
            batch["cu_seqlens"] = cu
            batch["max_seqlen"] = np.int64(longest)
        elif self.mode == "padded" and self.pad_to == "longest" and batch["attention_mask"].size:
            width = max(1, int(batch["attention_mask"].sum(axis=1).max()))
            for key in ("input_ids", "labels", "attention_mask"):
                batch[key] = np.ascontiguousarray(batch[key][:, :width])
        return batch

    def get_batch(
        self, positions: Sequence[int] | np.ndarray, epoch: int | None = None
    ) -> dict[str, np.ndarray]:
        """Samples at ``positions`` of the epoch order, batched; one read of the storage for all of them."""
        epoch = self.epoch if epoch is None else int(epoch)
        return self.finalize(self.fetch(self.sample_ids(epoch, np.asarray(positions, dtype=np.int64))))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        batch = self.get_batch(np.array([i]))
        out = {k: v[0] for k, v in batch.items() if k not in ("cu_seqlens", "max_seqlen")}
        if self.mode == "packed":
            out["cu_seqlens"], longest = cu_seqlens_from_position_ids(out["position_ids"])
            out["max_seqlen"] = np.int64(longest)
        return out

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # identity -----------------------------------------------------------------------------------------
    def cache_identity(self) -> str:
        """A short hash of what decides the cache's content (prepare identity and tokenizer), not its version."""
        return self._cache_identity

    def data_fingerprints(self) -> list[dict[str, Any] | None]:
        """The data fingerprint of the cache version read (cache.fingerprint); None for caches made before them."""
        return [self.reader.data_fingerprint()]

    def fingerprint(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cache": self.cache_identity(),
            "split": self.split,
            "mode": self.mode,
            "seq_len": self.seq_len,
            "shuffle": self.shuffle,
        }
        if self.mode == "padded":
            out["long_documents"] = self.long_documents
            out["group_by_length"] = self.group_by_length
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (for ``tokenmill batches --json`` and logs)."""
        return {
            "cache": self.cache,
            "version": int(self.reader.version),
            "split": self.split,
            "mode": self.mode,
            "seq_len": self.seq_len,
            "samples": len(self),
            "tokens": self.index.num_tokens,
            "documents": self.index.num_documents,
            "read": self.stream.kind,
            "padding_fraction": round(self.padding_fraction, 6),
        }

    def __repr__(self) -> str:
        return (
            f"TokenDataset({self.cache!r}, split={self.split!r}, mode={self.mode!r}, seq_len={self.seq_len}, "
            f"samples={len(self)}, read={self.stream.kind!r})"
        )
