"""Several datasets (caches or splits) interleaved by weight, closed-form and random-access.

Which dataset and which of its samples feed mixture position ``p`` of epoch ``e`` is index math alone
(:class:`tokenmill.sampling.mixture.MixtureSchedule`); this module puts the datasets behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError
from tokenmill.loader.dataset import TokenDataset
from tokenmill.sampling.mixture import MixtureSchedule


class Mixture:
    """Several datasets (caches or splits) interleaved by weight, closed-form and random-access.

    ``policy="repeat"``: the epoch lasts until every dataset has been drawn in full at least once; smaller or
    heavier-weighted datasets cycle, each cycle in a fresh order. ``policy="stop"``: the epoch ends just before the
    first dataset would repeat a sample. The mixture's ``seed`` and ``shuffle`` decide every order; the
    components' own ``seed``/``shuffle``/``group_by_length`` are not used. All components must share ``mode`` and
    ``seq_len``. Batches carry ``source``: the component index of each sample.
    """

    def __init__(
        self,
        components: Sequence[tuple[TokenDataset, float]],
        *,
        policy: str = "repeat",
        seed: int = 0,
        shuffle: bool = True,
        samples_per_epoch: int | None = None,
        block_size: int | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if not components:
            raise ConfigError("a mixture needs at least one dataset")
        self.datasets = [d for d, _ in components]
        self.weights = [float(w) for _, w in components]
        first = self.datasets[0]
        for i, d in enumerate(self.datasets):
            if (d.mode, d.seq_len) != (first.mode, first.seq_len):
                raise ConfigError(
                    f"mixture component {i} is {d.mode}/seq_len={d.seq_len}, component 0 is "
                    f"{first.mode}/seq_len={first.seq_len}; all components must match"
                )
        self.names = list(names) if names is not None else [f"{d.cache}:{d.split}" for d in self.datasets]
        self.mode, self.seq_len = first.mode, first.seq_len
        self.policy, self.seed, self.shuffle = policy, int(seed), shuffle
        self._samples_per_epoch, self._block_size = samples_per_epoch, block_size
        self.follow = any(d.follow for d in self.datasets)
        self.epoch = 0
        self._build_schedule()

    def _build_schedule(self) -> None:
        try:
            self.schedule = MixtureSchedule(
                [len(d) for d in self.datasets],
                self.weights,
                seed=self.seed,
                policy=self.policy,  # type: ignore[arg-type]
                shuffle=self.shuffle,
                block_size=self._block_size,
                samples_per_epoch=self._samples_per_epoch,
            )
        except ValueError as exc:
            raise ConfigError(f"mixture: {exc}") from exc

    def __len__(self) -> int:
        return len(self.schedule)

    def epoch_length(self, epoch: int) -> int:
        return self.schedule.epoch_length(epoch)

    @property
    def versions(self) -> list[int]:
        return [v for d in self.datasets for v in d.versions]

    def refresh(self) -> bool:
        changed = [d.refresh() for d in self.datasets if d.follow]
        if any(changed):
            self._build_schedule()
        return any(changed)

    def latest_versions(self) -> list[int]:
        return [v for d in self.datasets for v in d.latest_versions()]

    def checkout(self, versions: Sequence[int]) -> None:
        if [int(v) for v in versions] == self.versions:
            return
        for d, v in zip(self.datasets, versions, strict=True):
            d.checkout(int(v))
        self._build_schedule()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample_ids(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """``[n, 2]`` array of (component, sample index within it) for mixture ``positions`` of ``epoch``."""
        k, j = self.schedule.locate(epoch, np.asarray(positions, dtype=np.int64))
        return np.stack([k.reshape(-1), j.reshape(-1)], axis=1)

    def fetch(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, 2)
        n = ids.shape[0]
        out: dict[str, np.ndarray] = {}
        for k in np.unique(ids[:, 0]).tolist():
            rows = np.flatnonzero(ids[:, 0] == k)
            part = self.datasets[k].fetch(ids[rows, 1])
            for key, value in part.items():
                if key not in out:
                    out[key] = np.empty((n,) + value.shape[1:], dtype=value.dtype)
                out[key][rows] = value
        out["source"] = ids[:, 0].copy()
        return out

    def finalize(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.datasets[0].finalize(batch)

    def get_batch(
        self, positions: Sequence[int] | np.ndarray, epoch: int | None = None
    ) -> dict[str, np.ndarray]:
        epoch = self.epoch if epoch is None else int(epoch)
        return self.finalize(self.fetch(self.sample_ids(epoch, np.asarray(positions, dtype=np.int64))))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        batch = self.get_batch(np.array([int(i)]))
        return {k: (v[0] if k not in ("cu_seqlens", "max_seqlen") else v) for k, v in batch.items()}

    def fingerprint(self) -> dict[str, Any]:
        return {
            "mixture": {
                "components": [d.fingerprint() for d in self.datasets],
                "weights": self.weights,
                "policy": self.policy,
                "shuffle": self.shuffle,
                "block_size": self.schedule.block_size,
                "samples_per_epoch": self._samples_per_epoch,
            },
            "mode": self.mode,
            "seq_len": self.seq_len,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "mixture": [
                {"name": name, "weight": w, "share": float(s), **d.describe()}
                for name, w, s, d in zip(
                    self.names, self.weights, self.schedule.shares, self.datasets, strict=True
                )
            ],
            "policy": self.policy,
            "mode": self.mode,
            "seq_len": self.seq_len,
            "samples": len(self),
        }
