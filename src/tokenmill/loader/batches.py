"""Global batches of a dataset or mixture, this rank's slice of each, and the position as a small JSON state.

:class:`Batches` is the description (immutable; ``iter(state)``), :class:`BatchIterator` its iterator (the one
contract of :mod:`tokenmill.state`).

Global batch ``g`` of an epoch is positions ``[g*B, (g+1)*B)`` of the epoch order whatever the world size; rank
``r`` of ``W`` takes its contiguous ``B/W`` slice, so the stream does not depend on ``W``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenmill.errors import CacheError, ConfigError, StateError
from tokenmill.loader.dataset import TokenDataset
from tokenmill.loader.mixture import Mixture
from tokenmill.loader.state_files import (
    STATE_FORMAT,
    check_data_fingerprints,
    check_state_fields,
    describe_differences,
)
from tokenmill.loader.world import agreed_versions, resolve_world
from tokenmill.sampling.sharding import batch_positions, batches_per_epoch, check_world
from tokenmill.state import ResumableIterator


@dataclass(frozen=True)
class BatchPlan:
    """What one step reads: the epoch, the global batch, this rank's sample ids, and the state after it."""

    epoch: int
    batch: int
    ids: np.ndarray
    state: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Batches:
    """Global batches of a :class:`TokenDataset` or :class:`Mixture`, this rank's slice of each: a description.

    Immutable (the one contract of :mod:`tokenmill.state`): ``batches.iter(state=None)`` opens a
    :class:`BatchIterator` at the start or, in O(1), exactly where ``state`` (a ``state_dict()`` of an earlier
    iterator, on any world size dividing ``B``) left off; the state is refused, with what differs, when it belongs
    to another dataset.

    Global batch ``g`` of an epoch is positions ``[g*B, (g+1)*B)`` of the epoch order whatever the world size;
    rank ``r`` of ``W`` gets the contiguous ``B/W`` samples at ``r*B/W``. ``epochs``/``steps`` bound the run
    (``None``: endless; ``steps`` counts global steps from the start of training, not from the state);
    ``drop_last`` drops an epoch's last partial global batch. Rank and world size default to torch.distributed,
    else ``RANK``/``WORLD_SIZE``, else 0/1, and are fixed when the description is made.
    """

    source: TokenDataset | Mixture
    global_batch_size: int
    rank: int | None = None
    world_size: int | None = None
    epochs: int | None = None
    steps: int | None = None
    drop_last: bool = True
    plan_chunk: int = 8192

    def __post_init__(self) -> None:
        rank, world_size = resolve_world(self.rank, self.world_size)
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "world_size", world_size)
        object.__setattr__(self, "global_batch_size", int(self.global_batch_size))
        try:
            check_world(self.global_batch_size, rank, world_size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def iter(self, state: dict[str, Any] | None = None) -> BatchIterator:
        """A fresh iterator at the start, or resumed from ``state`` (which is not modified)."""
        it = BatchIterator(self)
        if state is not None:
            it._resume(state)
        return it

    def replace(self, **changes: Any) -> Batches:
        """The same batches with some fields changed (``steps=``, ``epochs=``, ``rank=`` ...)."""
        return dataclasses.replace(self, **changes)


class BatchIterator(ResumableIterator[dict[str, np.ndarray]]):
    """The iterator of :class:`Batches`: this rank's part of each global batch, as a dict of numpy arrays.

    ``state_dict()`` is small and JSON-able (epoch, position in it, steps, seed, fingerprint, cache versions) and
    is the position after the last batch returned; resume with ``Batches(...).iter(state)``.
    ``BatchIterator(source, global_batch_size, ...)`` is ``Batches(source, global_batch_size, ...).iter()``.
    """

    def __init__(
        self,
        source: TokenDataset | Mixture | Batches,
        global_batch_size: int | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = None,
        steps: int | None = None,
        drop_last: bool = True,
        plan_chunk: int = 8192,
    ) -> None:
        if isinstance(source, Batches):
            self.batches = source
        else:
            if global_batch_size is None:
                raise ConfigError("BatchIterator needs a global_batch_size")
            self.batches = Batches(
                source, global_batch_size, rank, world_size, epochs, steps, drop_last, plan_chunk
            )
        self.source = self.batches.source
        self._chunk_batches = max(1, int(self.batches.plan_chunk) // self.global_batch_size)
        self._ids_cache: tuple[int, int, np.ndarray] | None = None
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.samples_consumed = 0
        self._versions = list(self.source.versions)

    # the description's settings, read-only ----------------------------------------------------------
    @property
    def global_batch_size(self) -> int:
        return self.batches.global_batch_size

    @property
    def rank(self) -> int:
        return int(self.batches.rank)  # type: ignore[arg-type]

    @property
    def world_size(self) -> int:
        return int(self.batches.world_size)  # type: ignore[arg-type]

    @property
    def epochs(self) -> int | None:
        return self.batches.epochs

    @property
    def steps(self) -> int | None:
        return self.batches.steps

    @property
    def drop_last(self) -> bool:
        return self.batches.drop_last

    # position arithmetic ------------------------------------------------------------------------------
    def _epoch_samples(self, epoch: int) -> int:
        return int(self.source.epoch_length(epoch))

    def _epoch_batches(self, epoch: int) -> int:
        return batches_per_epoch(self._epoch_samples(epoch), self.global_batch_size, self.drop_last)

    def _batch_samples(self, epoch: int, batch: int) -> int:
        return min(self.global_batch_size, self._epoch_samples(epoch) - batch * self.global_batch_size)

    def _next_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        self._ids_cache = None
        if self.source.follow:
            target = agreed_versions(self.source.latest_versions())
            if target != list(self.source.versions):
                self.source.checkout(target if isinstance(self.source, Mixture) else target[0])
        self._versions = list(self.source.versions)

    def _settle(self) -> bool:
        """Move past finished epochs; False when the run is over (epochs or steps exhausted)."""
        if self.steps is not None and self.step >= self.steps:
            return False
        while self.batch_in_epoch >= self._epoch_batches(self.epoch):
            if self.epochs is not None and self.epoch + 1 >= self.epochs:
                return False
            if self._epoch_batches(self.epoch) == 0:
                raise CacheError(
                    f"epoch {self.epoch} holds {self._epoch_samples(self.epoch)} samples, fewer than one global "
                    f"batch of {self.global_batch_size}; lower the batch size or pass drop_last=False"
                )
            self._next_epoch()
        return True

    def _rank_ids(self, epoch: int, batch: int) -> np.ndarray:
        """This rank's sample ids of one global batch; orders are computed a chunk of batches at a time."""
        first = (batch // self._chunk_batches) * self._chunk_batches
        if self._ids_cache is None or self._ids_cache[:2] != (epoch, first):
            n = self._epoch_samples(epoch)
            lo = first * self.global_batch_size
            hi = min(n, (first + self._chunk_batches) * self.global_batch_size)
            self._ids_cache = (epoch, first, self.source.sample_ids(epoch, np.arange(lo, hi, dtype=np.int64)))
        positions = batch_positions(
            batch, self.global_batch_size, self._epoch_samples(epoch), self.rank, self.world_size
        )
        return self._ids_cache[2][positions - first * self.global_batch_size]

    # iteration ----------------------------------------------------------------------------------------
    def next_plan(self) -> BatchPlan | None:
        """Advance by one global batch and say what this rank reads for it (no I/O); None when finished."""
        if not self._settle():
            return None
        epoch, batch = self.epoch, self.batch_in_epoch
        ids = self._rank_ids(epoch, batch)
        self.samples_consumed += self._batch_samples(epoch, batch)
        self.batch_in_epoch += 1
        self.step += 1
        return BatchPlan(epoch, batch, ids, self.state_dict())

    def fetch(self, plan: BatchPlan) -> dict[str, np.ndarray]:
        """Read the samples of a plan (thread-safe for memmap reads; safe to run ahead in a prefetch thread)."""
        return self.source.finalize(self.source.fetch(plan.ids))

    def next(self) -> dict[str, np.ndarray]:
        plan = self.next_plan()
        if plan is None:
            raise StopIteration
        return self.fetch(plan)

    def __len__(self) -> int:
        """Global batches left in this run (needs ``epochs`` or ``steps``)."""
        if self.epochs is None and self.steps is None:
            raise TypeError("an endless BatchIterator has no length; pass epochs= or steps=")
        left_in_epochs = None
        if self.epochs is not None:
            left_in_epochs = max(0, self._epoch_batches(self.epoch) - self.batch_in_epoch) + sum(
                self._epoch_batches(e) for e in range(self.epoch + 1, self.epochs)
            )
        left_in_steps = None if self.steps is None else max(0, self.steps - self.step)
        return min(x for x in (left_in_epochs, left_in_steps) if x is not None)

    def skip(self, n_batches: int) -> None:
        """Jump ``n_batches`` global batches ahead without reading them (after a loss spike, say)."""
        left = int(n_batches)
        if left < 0:
            raise ValueError("skip takes a non-negative number of batches")
        while left > 0 and self._settle():
            batches = self._epoch_batches(self.epoch)
            take = min(left, batches - self.batch_in_epoch)
            if self.steps is not None:
                take = min(take, self.steps - self.step)
            end = self.batch_in_epoch + take
            samples_before = min(
                self.batch_in_epoch * self.global_batch_size, self._epoch_samples(self.epoch)
            )
            samples_after = min(end * self.global_batch_size, self._epoch_samples(self.epoch))
            self.samples_consumed += samples_after - samples_before
            self.batch_in_epoch = end
            self.step += take
            left -= take

    # state --------------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_in_epoch": min(
                self.batch_in_epoch * self.global_batch_size, self._epoch_samples(self.epoch)
            ),
            "step": self.step,
            "samples_consumed": self.samples_consumed,
            "global_batch_size": self.global_batch_size,
            "drop_last": self.drop_last,
            "seed": self.source.seed,
            "fingerprint": self.source.fingerprint(),
            "cache_versions": list(self._versions),
            "epoch_samples": self._epoch_samples(self.epoch),
            "data": self.source.data_fingerprints(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Deprecated: open ``Batches(...).iter(state)`` (``it.batches.iter(state)``) instead of moving an iterator."""
        warnings.warn(
            "BatchIterator.load_state_dict is deprecated; resume with Batches(...).iter(state)",
            DeprecationWarning,
            stacklevel=2,
        )
        self._resume(state)

    def _resume(self, state: dict[str, Any]) -> None:
        """Move a fresh iterator to the saved position. Refused, with what differs, when the state belongs to
        another dataset."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise StateError(f"not a tokenmill loader state (expected format {STATE_FORMAT!r})")
        check_state_fields(state)
        saved = state.get("fingerprint", {})
        if isinstance(self.source, Mixture) and int(state.get("epoch", 0)) == 0:
            saved = self.source.adopt_schedule(saved, int(state.get("samples_in_epoch", 0)))
        problems = describe_differences(saved, self.source.fingerprint())
        if state.get("seed") != self.source.seed:
            problems.append(f"seed: saved {state.get('seed')!r}, now {self.source.seed!r}")
        if bool(state.get("drop_last")) != self.drop_last:
            problems.append(f"drop_last: saved {state.get('drop_last')!r}, now {self.drop_last!r}")
        if problems:
            raise StateError("the saved loader state does not fit this dataset: " + "; ".join(problems))
        versions = [int(v) for v in state.get("cache_versions", [])]
        if versions != list(self.source.versions):
            if not self.source.follow:
                raise StateError(
                    f"the cache changed since the state was saved (versions {versions} then, "
                    f"{list(self.source.versions)} now); open the dataset with version= the saved one, or "
                    "with follow=True to continue on the saved version and move on at the next epoch"
                )
            self.source.checkout(versions if isinstance(self.source, Mixture) else versions[0])
        check_data_fingerprints(state.get("data"), self.source.data_fingerprints())
        samples_in_epoch = int(state["samples_in_epoch"])
        epoch_samples = self.source.epoch_length(int(state["epoch"]))
        if int(state.get("epoch_samples", epoch_samples)) != epoch_samples:
            raise StateError(
                f"the saved epoch had {state['epoch_samples']} samples, this dataset has {epoch_samples}"
            )
        if samples_in_epoch % self.global_batch_size and samples_in_epoch < epoch_samples:
            raise StateError(
                f"the state is {samples_in_epoch} samples into its epoch, not a whole number of global batches "
                f"of {self.global_batch_size}; resume with the saved global batch size "
                f"{state.get('global_batch_size')}"
            )
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = -(-samples_in_epoch // self.global_batch_size)
        self.step = int(state["step"])
        self.samples_consumed = int(state["samples_consumed"])
        self._versions = list(self.source.versions)
        self._ids_cache = None
