"""epochraft's test helpers (``from epochraft import testing``), so suites written for epochraft keep running.

For tokenmill's own, stricter check (every position, across epochs, a state whose shape never changes) see
``tokenmill.testing`` where it exists.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tokenmill.epochraft.dataset import CheckpointableDataset, Sample


def generate_example_sequence(n_samples: int = 20) -> list[Sample]:
    """``[{"id": 0}, {"id": 1}, ...]``."""
    return [{"id": i} for i in range(n_samples)]


def sort_key_fn(sample: Sample) -> Any:
    """Sort samples by their ``id``."""
    return sample["id"]


def generate_tokenized_samples(
    min_length: int = 0, max_length: int = 10, n_examples: int = 20, vocab_size: int = 100, seed: int = 42
) -> list[dict[str, list[int]]]:
    """``n_examples`` samples of random length whose ``input_ids`` count up modulo ``vocab_size`` across samples."""
    rng = random.Random(seed)
    lengths = [rng.randint(min_length, max_length) for _ in range(n_examples)]
    ends = list(itertools.accumulate(lengths))
    return [{"input_ids": [t % vocab_size for t in range(end - n, end)]} for n, end in zip(lengths, ends)]


def assert_samples_equal(sample1: Sample, sample2: Sample) -> None:
    assert sample1.keys() == sample2.keys(), (
        f"samples have different keys: {sorted(sample1)} != {sorted(sample2)}"
    )
    for key, a in sample1.items():
        b = sample2[key]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            assert torch.equal(a, b), f"tensors differ in {key!r}"
        elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            assert np.array_equal(a, b), f"arrays differ in {key!r}"
        else:
            assert a == b, f"values differ in {key!r}"


def assert_sample_lists_equal(samples1: list[Sample], samples2: list[Sample]) -> None:
    assert len(samples1) == len(samples2), f"{len(samples1)} samples != {len(samples2)} samples"
    for a, b in zip(samples1, samples2):
        assert_samples_equal(a, b)


def check_resumption(
    original_dataset: CheckpointableDataset,
    resuming_dataset: CheckpointableDataset,
    ckpt_index: int,
    n_subsequent_samples: int = 10,
) -> None:
    """After ``ckpt_index`` samples of ``original_dataset``, its state resumes ``resuming_dataset`` so that the
    next ``n_subsequent_samples`` are the same."""
    it = iter(original_dataset)
    for _ in range(ckpt_index):
        next(it)
    state = it.state_dict()
    expected = list(itertools.islice(it, n_subsequent_samples))
    it.close()
    resumed_it = resuming_dataset.iter(state_dict=state)
    resumed = list(itertools.islice(resumed_it, n_subsequent_samples))
    resumed_it.close()
    assert_sample_lists_equal(expected, resumed)


def check_resumption_with_instantiation(
    dataset_factory: Callable[[], CheckpointableDataset], ckpt_index: int, n_subsequent_samples: int = 10
) -> None:
    """:func:`check_resumption` with a fresh dataset from ``dataset_factory`` for each side."""
    check_resumption(dataset_factory(), dataset_factory(), ckpt_index, n_subsequent_samples)
