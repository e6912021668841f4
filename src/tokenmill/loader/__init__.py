"""Random-access training samples over a token cache: windows, packed or padded; shuffled, sharded, mixed, resumable.

A sample is found by index math alone (:mod:`tokenmill.sampling`), so the position of a training run is one small
number per epoch, and resuming it (on any number of ranks) is O(1).

- :class:`TokenDataset` (``dataset.py``) turns one split of a cache into samples of ``seq_len`` tokens; ``ds[i]``
  is sample ``i`` of the current epoch's order; ``ds.get_batch(positions)`` reads many with one pass over storage.
- ``layouts.py``: the three sample layouts (windows, packed, padded); ``streams.py``: where tokens are read from
  (a memory-mapped flat copy, or Lance ``take``).
- :class:`Mixture` (``mixture.py``) interleaves several datasets by weight, closed-form.
- :class:`Batches` (``batches.py``) describes the global batches of a dataset or mixture and each rank's slice;
  ``batches.iter(state=None)`` opens a :class:`BatchIterator` (the one resume contract of :mod:`tokenmill.state`);
  ``state_files.py`` saves its state; ``world.py`` finds the rank and world size.

Every sample is a dict of numpy arrays of length ``seq_len``: ``input_ids`` and ``labels`` in the one convention of
:mod:`tokenmill.labels` (Hugging Face's: aligned with the inputs, -100 where the token is loss-masked, padding, or
the first of a packed document), so ``model(**batch)`` on a transformers causal LM computes the right loss.
Windows add ``shift_labels`` (the target of every input, the last one's included: a window reads ``seq_len + 1``
tokens). Packed samples add ``position_ids`` (restarting at every document), ``attention_mask`` and, per batch,
``cu_seqlens``/``max_seqlen`` for variable-length attention kernels; padded samples add ``attention_mask``;
mixtures add ``source_index``.

The names are imported lazily, so ``tokenmill.loader.layouts.MODES`` is cheap to reach from a config module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BatchIterator": "batches",
    "Batches": "batches",
    "BatchPlan": "batches",
    "IGNORE_INDEX": "tokenmill.labels",
    "LanceStream": "streams",
    "MODES": "layouts",
    "MemmapStream": "streams",
    "Mixture": "mixture",
    "Mode": "layouts",
    "PLAN_FORMAT": "tokenmill.cache.index",
    "READS": "streams",
    "STATE_FORMAT": "state_files",
    "TokenDataset": "dataset",
    "agreed_versions": "world",
    "aligned_labels": "tokenmill.labels",
    "cu_seqlens_from_position_ids": "layouts",
    "load_state": "state_files",
    "materialize_stream": "tokenmill.cache.index",
    "resolve_world": "world",
    "save_state": "state_files",
}

__all__ = [
    "BatchIterator",
    "Batches",
    "BatchPlan",
    "IGNORE_INDEX",
    "LanceStream",
    "MODES",
    "MemmapStream",
    "Mixture",
    "Mode",
    "PLAN_FORMAT",
    "READS",
    "STATE_FORMAT",
    "TokenDataset",
    "agreed_versions",
    "aligned_labels",
    "cu_seqlens_from_position_ids",
    "load_state",
    "materialize_stream",
    "resolve_world",
    "save_state",
]

if TYPE_CHECKING:
    from tokenmill.cache.index import PLAN_FORMAT, materialize_stream
    from tokenmill.labels import IGNORE_INDEX, aligned_labels
    from tokenmill.loader.batches import Batches, BatchIterator, BatchPlan
    from tokenmill.loader.dataset import TokenDataset
    from tokenmill.loader.layouts import MODES, Mode, cu_seqlens_from_position_ids
    from tokenmill.loader.mixture import Mixture
    from tokenmill.loader.state_files import STATE_FORMAT, load_state, save_state
    from tokenmill.loader.streams import READS, LanceStream, MemmapStream
    from tokenmill.loader.world import agreed_versions, resolve_world


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenmill.loader' has no attribute {name!r}")
    path = module if module.startswith("tokenmill.") else f"tokenmill.loader.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
