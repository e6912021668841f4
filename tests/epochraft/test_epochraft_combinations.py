"""epochraft's interleave_datasets, concat_datasets and in-memory cache() on tokenmill."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.epochraft import CheckpointableDataset, concat_datasets, interleave_datasets, testing


def _source(name, values, **kw):
    return CheckpointableDataset.from_sequence([{"data": name, "value": v} for v in values], **kw)


def test_interleave_alternates_in_a_fixed_order():
    ds = interleave_datasets([_source("a", [0, 1, 2], repeat=True), _source("b", [3, 4, 5], repeat=True)])
    assert [s["value"] for s in ds.take(10)] == [0, 3, 1, 4, 2, 5, 0, 3, 1, 4]


@settings(max_examples=20, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=2, max_size=4), steps=st.integers(1, 60))
def test_interleave_weights_hold_over_every_prefix(weights, steps):
    sources = [_source(str(i), [0, 1], repeat=True) for i in range(len(weights))]
    got = Counter(s["data"] for s in interleave_datasets(sources, weights=weights).take(steps))
    for i, w in enumerate(weights):
        assert abs(got[str(i)] - steps * w / sum(weights)) < 1.0 + 1e-9


def test_interleave_weights_one_two_give_three_and_six_of_nine():
    sources = [_source("a", [0, 1], repeat=True), _source("b", [3, 4], repeat=True)]
    got = Counter(s["data"] for s in interleave_datasets(sources, weights=[1, 2]).take(9))
    assert got == {"a": 3, "b": 6}


def test_interleave_ends_when_the_source_due_is_out():
    ds = interleave_datasets([_source("a", [0]), _source("b", [1, 2, 3], repeat=True)])
    assert [s["value"] for s in ds] == [0, 1]


def test_interleave_refuses_bad_weights():
    with pytest.raises(ValueError, match="must match"):
        interleave_datasets([_source("a", [0])], weights=[1, 2])
    with pytest.raises(ValueError, match="greater than 0"):
        interleave_datasets([_source("a", [0]), _source("b", [0])], weights=[0, 0])


def test_interleave_resumes():
    ds = interleave_datasets(
        [_source("a", [0, 1], repeat=True, shuffle=True), _source("b", [3, 4], repeat=True, shuffle=True)],
        [1, 2],
    )
    for ckpt in (0, 1, 10, 34, 35):
        testing.check_resumption(ds, ds, ckpt)


def test_concat_and_plus():
    a, b = _source("a", [0, 1, 2]), _source("b", [3, 4, 5])
    assert [s["value"] for s in concat_datasets([a, b]).take(6)] == [0, 1, 2, 3, 4, 5]
    assert [s["value"] for s in a + b] == [0, 1, 2, 3, 4, 5]
    resumable = concat_datasets([_source("a", [0, 1], shuffle=True), _source("b", [3, 4], shuffle=True)])
    for ckpt in range(5):
        testing.check_resumption(resumable, resumable, ckpt)


class CountingSequence:
    """A sequence that counts how often each item is read."""

    def __init__(self, n):
        self.n = n
        self.reads = Counter()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(i)
        self.reads[i] += 1
        return {"id": i}


def test_cache_reads_the_source_once():
    seq = CountingSequence(10)
    ds = CheckpointableDataset.from_sequence(seq).cache()
    assert not seq.reads
    assert list(ds) == [{"id": i} for i in range(10)]
    assert list(ds) == [{"id": i} for i in range(10)]
    assert all(seq.reads[i] == 1 for i in range(10))


def test_cache_after_a_partial_pass_reads_up_to_where_memory_ends():
    seq = CountingSequence(10)
    ds = CheckpointableDataset.from_sequence(seq).cache()
    assert list(itertools.islice(ds, 5)) == [{"id": i} for i in range(5)]
    assert list(ds) == [{"id": i} for i in range(10)]
    assert [seq.reads[i] for i in range(10)] == [2] * 5 + [1] * 5


def test_cache_resumes():
    ds = CheckpointableDataset.from_sequence(CountingSequence(10), repeat=True).cache()
    for ckpt in (0, 1, 3, 10, 100):
        testing.check_resumption(ds, ds, ckpt)


def test_cache_with_a_path_writes_a_token_cache(tmp_path, tokenizer_path):
    texts = [{"text": f"document number {i} " * (i + 1)} for i in range(12)]
    ds = CheckpointableDataset.from_sequence(texts).tokenize(str(tokenizer_path)).cache(tmp_path / "c")
    first = [s["input_ids"].tolist() for s in ds]
    assert len(first) == 12 and (tmp_path / "c").exists()
    assert [s["input_ids"].tolist() for s in ds] == first
