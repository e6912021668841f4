"""Several datasets (caches or splits) interleaved by weight, closed-form and random-access; the weights fixed or
following a schedule over training progress.

Which dataset and which of its samples feed mixture position ``p`` of epoch ``e`` is index math alone
(:func:`tokenmill.sampling.mixture.mixture_order`); this module puts the datasets behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, StateError
from tokenmill.loader.dataset import TokenDataset
from tokenmill.sampling.mixture import TICK, ScheduledMixture, is_fixed, mixture_order
from tokenmill.sampling.schedule import WeightSchedule, resolve_points, schedule_of

log = logging.getLogger("tokenmill")


class Mixture:
    """Several datasets (caches or splits) interleaved by weight, closed-form and random-access.

    ``policy="repeat"``: the epoch lasts until every dataset has been drawn in full at least once; smaller or
    heavier-weighted datasets cycle, each cycle in a fresh order. ``policy="stop"``: the epoch ends just before the
    first dataset would repeat a sample. The mixture's ``seed`` and ``shuffle`` decide every order; the
    components' own ``seed``/``shuffle``/``group_by_length`` are not used. All components must share ``mode`` and
    ``seq_len``. Batches carry ``source_index``: the component index of each sample (not ``source``, which
    transformers' loss functions take as a keyword of their own, so ``model(**batch)`` would fail).

    ``schedule`` makes the weights move with training progress: a list of points as a recipe writes them,
    ``[{"at": STEP, "weights": {NAME: W, ...}, "segment": "linear"|"constant"}, ...]`` (or ``"tokens"`` instead of
    ``"at"``), where names are ``names`` and ``at`` counts global batches of ``global_batch_size``. The components
    are then given as datasets alone (the schedule holds the weights), the mixture is one endless stream in which
    every dataset cycles through its own epochs (policy "repeat"), and a schedule whose weights never change is the
    fixed-weight mixture, sample for sample.
    """

    def __init__(
        self,
        components: Sequence[tuple[TokenDataset, float]]
        | Sequence[TokenDataset]
        | Mapping[str, TokenDataset],
        *,
        policy: str = "repeat",
        seed: int = 0,
        shuffle: bool = True,
        samples_per_epoch: int | None = None,
        block_size: int | None = None,
        names: Sequence[str] | None = None,
        schedule: Sequence[Mapping[str, Any]] | None = None,
        global_batch_size: int | None = None,
    ) -> None:
        if isinstance(components, Mapping):
            names = list(components) if names is None else names
            components = list(components.values())
        if not components:
            raise ConfigError("a mixture needs at least one dataset")
        paired = [isinstance(c, tuple) for c in components]
        if schedule is not None and any(paired):
            raise ConfigError("with a schedule the weights come from its points; pass the datasets alone")
        if schedule is None and not all(paired):
            raise ConfigError("a mixture without a schedule takes (dataset, weight) pairs")
        self.datasets = [c[0] if isinstance(c, tuple) else c for c in components]
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
        self.global_batch_size = None if global_batch_size is None else int(global_batch_size)
        # the schedule in force: pieces {"from": sample, "points": resolved points}, one more per edit mid-run
        self.schedule: list[dict[str, Any]] | None = None
        if schedule is not None:
            try:
                points = resolve_points(
                    schedule, self.names, global_batch_size=global_batch_size, seq_len=self.seq_len
                )
            except ValueError as exc:
                raise ConfigError(f"mixture: {exc}") from exc
            self.schedule = [{"from": 0, "points": points}]
            self.weights = list(points[0]["weights"])
        else:
            self.weights = [float(c[1]) for c in components]  # type: ignore[index]
        self.follow = any(d.follow for d in self.datasets)
        self.epoch = 0
        self._build_order()

    def weight_schedule(self) -> WeightSchedule | None:
        """The shares over stream positions (samples) in force, edits mid-run spliced in; None when fixed."""
        return None if self.schedule is None else _spliced(self.schedule)

    def _build_order(self) -> None:
        weights = self.weight_schedule()
        try:
            self.order = mixture_order(
                [len(d) for d in self.datasets],
                self.weights if weights is None else weights,
                seed=self.seed,
                policy=self.policy,  # type: ignore[arg-type]
                shuffle=self.shuffle,
                block_size=self._block_size,
                samples_per_epoch=self._samples_per_epoch,
            )
        except ValueError as exc:
            raise ConfigError(f"mixture: {exc}") from exc

    @property
    def scheduled(self) -> bool:
        """True when the weights move during the run (one endless stream)."""
        return isinstance(self.order, ScheduledMixture)

    def __len__(self) -> int:
        return len(self.order)

    def epoch_length(self, epoch: int) -> int:
        return self.order.epoch_length(epoch)

    @property
    def versions(self) -> list[int]:
        return [v for d in self.datasets for v in d.versions]

    def refresh(self) -> bool:
        changed = [d.refresh() for d in self.datasets if d.follow]
        if any(changed):
            self._build_order()
        return any(changed)

    def latest_versions(self) -> list[int]:
        return [v for d in self.datasets for v in d.latest_versions()]

    def checkout(self, versions: Sequence[int]) -> None:
        if [int(v) for v in versions] == self.versions:
            return
        for d, v in zip(self.datasets, versions, strict=True):
            d.checkout(int(v))
        self._build_order()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample_ids(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """``[n, 2]`` array of (component, sample index within it) for mixture ``positions`` of ``epoch``."""
        k, j = self.order.locate(epoch, np.asarray(positions, dtype=np.int64))
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
        out["source_index"] = ids[:, 0].copy()
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

    # schedule edits ------------------------------------------------------------------------------------
    def adopt_schedule(self, saved: dict[str, Any], position: int) -> dict[str, Any]:
        """Continue a run saved ``position`` samples in under another schedule; returns the saved fingerprint
        to compare with this mixture's once the schedules are reconciled.

        Allowed when only points at or after the checkpoint changed: the new points take over at the next tick
        boundary (within :data:`TICK` samples of the checkpoint), so every dataset's draws go on without a
        repeat or a gap, and the edit is logged and kept in the state so later resumes rebuild the same stream.
        Points before the checkpoint that changed are refused, naming them."""
        mixture = saved.get("mixture") or {}
        old = mixture.get("schedule")
        if self.schedule is None or not old or old == self.schedule:
            return saved
        ours, theirs = self.schedule[-1]["points"], old[-1]["points"]
        early = sorted({p["at"] for p in _point_changes(theirs, ours) if p["at"] < position})
        step = self._step_of(position)
        if early:
            raise StateError(
                f"the schedule changed before the checkpoint at step {step}: the points at step(s) "
                f"{', '.join(self._step_of(at) for at in early)} differ from the saved run's; only points at or "
                "after the checkpoint may change (restore the others, or start a new run)"
            )
        pieces = [dict(p) for p in old]
        if ours != theirs:
            before = _spliced(pieces)
            if is_fixed(before):
                raise StateError(
                    f"the run up to step {step} had fixed weights (a schedule whose weights never change), which "
                    "orders samples by epochs; a schedule that moves is one endless stream and needs a new run"
                )
            tick = ScheduledMixture([len(d) for d in self.datasets], before, seed=self.seed).tick_of(position)
            start = TICK * (tick + 1)
            pieces.append({"from": start, "points": ours})
            log.warning(
                "the schedule was edited after the checkpoint at step %s; the new points apply from step %s "
                "(sample %d), the old ones until then",
                step,
                self._step_of(start),
                start,
            )
        self.schedule = pieces
        self.weights = list(pieces[0]["points"][0]["weights"])
        self._build_order()
        return {**saved, "mixture": {**mixture, "schedule": self.schedule}}

    def _step_of(self, samples: int) -> str:
        b = self.global_batch_size
        return f"{samples / b:g}" if b else f"{samples} samples"

    # identity -----------------------------------------------------------------------------------------
    def data_fingerprints(self) -> list[dict[str, Any] | None]:
        return [fp for d in self.datasets for fp in d.data_fingerprints()]

    def fingerprint(self) -> dict[str, Any]:
        out = {
            "mixture": {
                "components": [d.fingerprint() for d in self.datasets],
                "weights": self.weights,
                "policy": self.policy,
                "shuffle": self.shuffle,
                "block_size": getattr(self.order, "block_size", None),
                "samples_per_epoch": self._samples_per_epoch,
            },
            "mode": self.mode,
            "seq_len": self.seq_len,
        }
        if self.schedule is not None:
            out["mixture"]["schedule"] = self.schedule
        return out

    def describe(self) -> dict[str, Any]:
        out = {
            "mixture": [
                {"name": name, "weight": w, "share": float(s), **d.describe()}
                for name, w, s, d in zip(
                    self.names, self.weights, self.order.shares, self.datasets, strict=True
                )
            ],
            "policy": self.policy,
            "mode": self.mode,
            "seq_len": self.seq_len,
            "samples": len(self),
        }
        if self.schedule is not None:
            out["schedule"] = self.schedule
        return out


def _point_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points present in one list and not the other (by position, weights and segment kind)."""
    a = {(p["at"], tuple(p["weights"]), p["segment"]) for p in old}
    b = {(p["at"], tuple(p["weights"]), p["segment"]) for p in new}
    return sorted(({"at": at, "weights": w, "segment": s} for at, w, s in a ^ b), key=lambda p: p["at"])


def _spliced(pieces: list[dict[str, Any]]) -> WeightSchedule:
    """The shares of a run whose schedule was edited mid-run: each piece's points from its ``from`` on."""
    out = schedule_of(pieces[0]["points"])
    for piece in pieces[1:]:
        out = out.spliced(piece["from"], schedule_of(piece["points"]))
    return out
