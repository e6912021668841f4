"""Adapter for the Hugging Face ``Trainer``: a dataset, a data collator, and a callback that checkpoints the data.

The Trainer resumes a plain ``IterableDataset`` by replaying it: it iterates and throws away every batch it
already trained on (``skip_first_batches``), which costs as long as the training read did. Here the data position
is saved instead: the callback writes ``tokenmill_data_state.json`` into each ``checkpoint-N`` folder the Trainer
saves, and on ``trainer.train(resume_from_checkpoint=...)`` it loads that position into the dataset before the
first batch is read, so the run continues with exactly the next samples, at once. Set
``TrainingArguments(ignore_data_skip=True)`` so the Trainer does not also replay (the callback refuses to resume
otherwise), and keep ``dataloader_num_workers=0``: the loader reads tens of thousands of samples a second in the
main process, and the dataset must live there for the callback to see its position.

    data = HFTrainerData(tm.TokenDataset("cache/", seq_len=1024, seed=0))
    trainer = Trainer(model, args, train_dataset=data.dataset, data_collator=data.collator,
                      callbacks=[data.callback])
    trainer.train(resume_from_checkpoint=True)

How the position is known: the dataset yields samples from the loader's iterator in chunks of
``per_device_train_batch_size`` and remembers the iterator's state at every chunk boundary it produced (a small
ring of JSON dicts, because the DataLoader reads a batch or two ahead of training). After optimizer step ``g`` the
Trainer has consumed exactly ``g * per_device * accumulation * world_size`` samples, a chunk boundary, so the
callback looks that position up in the ring.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from tokenmill.errors import ConfigError, StateError
from tokenmill.labels import IGNORE_INDEX
from tokenmill.state import Resumable, with_states

DATA_STATE_FILE = "tokenmill_data_state.json"
STATE_FORMAT = "tokenmill.hf-trainer/1"
_KEEP = ("input_ids", "labels", "shift_labels", "attention_mask", "position_ids", "loss_mask")
_MODEL = ("input_ids", "labels", "shift_labels", "attention_mask", "position_ids")
_RING = 1024


def _chunks(source: Any, chunk: int) -> Resumable[Any]:
    """``source`` as a description of chunks of ``chunk`` samples: a pipeline's samples grouped into lists, or
    the loader's batches. Everything downstream is one code path over chunks."""
    from tokenmill.pipeline import Pipeline

    if isinstance(source, Pipeline):
        return source.batch(chunk, collate_fn=list)
    from tokenmill.loader import Batches

    return Batches(source, chunk, rank=0, world_size=1)


def _rows(chunk: Any) -> list[dict[str, Any]]:
    """The samples of a chunk (a list of samples, or a batch of arrays), with the columns the collator uses."""
    if isinstance(chunk, list):
        return [{k: np.asarray(s[k]) for k in _KEEP if s.get(k) is not None} for s in chunk]
    keys = [k for k in _KEEP if chunk.get(k) is not None]
    return [{k: chunk[k][i] for k in keys} for i in range(len(chunk["input_ids"]))]


class TokenmillTrainerDataset(torch.utils.data.IterableDataset):
    """Samples (dicts of numpy arrays) in the global order of the source, with a recoverable position.

    ``source`` is a ``tokenmill.TokenDataset`` or ``Mixture`` (read through the loader's ``BatchIterator``), or a
    ``tokenmill.Pipeline`` that yields single samples; labels, if any, are aligned (:mod:`tokenmill.labels`).
    """

    def __init__(self, source: Any, chunk: int = 8) -> None:
        super().__init__()
        self.source = source
        self.chunk = chunk
        self.start_state: dict[str, Any] | None = None  # where the current run began
        self.produced = 0  # samples produced since start_state
        self._states: collections.OrderedDict[int, dict[str, Any] | None] = collections.OrderedDict()
        self._iterator: Any = None

    def restart(self, state: dict[str, Any] | None, chunk: int | None = None) -> None:
        """Start producing from ``state`` (None: the beginning) in chunks of ``chunk`` samples."""
        if chunk is not None:
            self.chunk = int(chunk)
        if self._iterator is not None:
            self._iterator.close()
        self._iterator = None
        self.start_state = state
        self.produced = 0
        self._states = collections.OrderedDict([(0, state)])

    def state_at(self, samples: int) -> dict[str, Any] | None:
        """The source's state after ``samples`` samples of this run (must be a chunk boundary not yet forgotten)."""
        if samples not in self._states:
            known = list(self._states)
            raise StateError(
                f"no data position recorded after {samples} samples (recorded: {known[:1]}..{known[-1:]}); the "
                "Trainer consumed a number of samples that is not a multiple of per_device_train_batch_size, or "
                "the dataset is read in DataLoader workers (use dataloader_num_workers=0)"
            )
        return self._states[samples]

    def __iter__(self):
        if torch.utils.data.get_worker_info() is not None:
            raise ConfigError(
                "TokenmillTrainerDataset keeps its position in the main process: use num_workers=0"
            )
        if self._iterator is None:
            self._iterator = _chunks(self.source, self.chunk).iter(self.start_state)
        # each chunk comes with the state right after it (tokenmill.state.with_states); the Trainer's DataLoader
        # reads ahead, so states are kept by sample count until the callback asks for the one it consumed
        for chunk, state in with_states(self._iterator):
            rows = _rows(chunk)
            yield from rows
            self.produced += len(rows)
            self._states[self.produced] = json.loads(json.dumps(state))
            while len(self._states) > _RING:
                self._states.popitem(last=False)


class TokenmillCollator:
    """Stacks samples into int64 tensors (``input_ids``, ``labels``, and ``shift_labels``, ``attention_mask``,
    ``position_ids`` when the samples have them).

    ``labels`` follow the one convention (:mod:`tokenmill.labels`, Hugging Face's: aligned with ``input_ids``, -100
    on tokens that are not trained); samples without labels get them from ``loss_mask``. The loader's windows also
    carry ``shift_labels``, the target of every input including the last one, which transformers' causal-LM loss
    uses as is, so the loss equals the reference trainer's.
    """

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = {}
        for key in _MODEL:
            if key in samples[0]:
                out[key] = np.stack([np.asarray(s[key]) for s in samples]).astype(np.int64)
        if "labels" not in out:
            labels = out["input_ids"].copy()
            if "loss_mask" in samples[0]:
                mask = np.stack([np.asarray(s["loss_mask"], dtype=bool) for s in samples])
                labels[~mask] = IGNORE_INDEX
            out["labels"] = labels
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


class DataStateCallback(TrainerCallback):
    """Saves the data position into the Trainer's checkpoints and restores it when the Trainer resumes."""

    def __init__(
        self, dataset: TokenmillTrainerDataset, resume_from: str | os.PathLike | None = None
    ) -> None:
        self.dataset = dataset
        self.resume_from = resume_from
        self.start_step = 0

    def _per_step(self, args) -> int:
        return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)

    def on_train_begin(self, args, state, control, **kwargs):
        steps_of = getattr(
            self.dataset.source, "global_batch_size", None
        )  # a Mixture's schedule counts steps
        if steps_of is not None and steps_of != self._per_step(args):
            raise ConfigError(
                f"the mixture's schedule counts steps of {steps_of} samples, but each Trainer step reads "
                f"{self._per_step(args)} (per device x accumulation x processes); build the Mixture with "
                f"global_batch_size={self._per_step(args)}"
            )
        self.start_step = state.global_step
        if state.global_step == 0:
            self.dataset.restart(None, args.per_device_train_batch_size)
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(
            self.resume_from or Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        )
        path = folder / DATA_STATE_FILE
        if not path.is_file():
            raise StateError(
                f"resuming at step {state.global_step} but {path} does not exist; pass the checkpoint folder as "
                "DataStateCallback(..., resume_from=PATH) when it is not under output_dir"
            )
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != STATE_FORMAT or saved.get("step") != state.global_step:
            raise StateError(f"{path} is not the data state of step {state.global_step}")
        if not args.ignore_data_skip:
            raise ConfigError(
                "the data position is restored from the checkpoint; set TrainingArguments(ignore_data_skip=True) "
                "so the Trainer does not also skip batches by replaying them"
            )
        if saved.get("samples_per_step") != self._per_step(args):
            raise StateError(
                f"the checkpoint consumed {saved.get('samples_per_step')} samples per step and this run "
                f"{self._per_step(args)}: keep the global batch (per device x accumulation x processes)"
            )
        self.dataset.restart(saved["data"], args.per_device_train_batch_size)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            return
        consumed = (state.global_step - self.start_step) * self._per_step(args)
        record = {
            "format": STATE_FORMAT,
            "step": state.global_step,
            "samples_per_step": self._per_step(args),
            "data": self.dataset.state_at(consumed),
        }
        tmp = folder / (DATA_STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, folder / DATA_STATE_FILE)


class HFTrainerData:
    """The three pieces the Trainer takes: ``dataset``, ``collator`` and ``callback``."""

    def __init__(self, source: Any, resume_from: str | os.PathLike | None = None) -> None:
        self.dataset = TokenmillTrainerDataset(source)
        self.collator = TokenmillCollator()
        self.callback = DataStateCallback(self.dataset, resume_from=resume_from)
