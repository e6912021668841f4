"""epochraft's sources on tokenmill: from_sequence, from_iterable, from_files."""

from __future__ import annotations

import itertools

import pytest
from epochraft_fixtures import cbor_files, jsonl_files, shard_sizes  # noqa: F401  (fixtures)

from tokenmill.epochraft import CheckpointableDataset, testing


def test_sequence_in_order_and_shuffled():
    items = testing.generate_example_sequence()
    assert list(CheckpointableDataset.from_sequence(items)) == items
    shuffled = list(CheckpointableDataset.from_sequence(items, shuffle=True))
    assert shuffled != items
    assert sorted(shuffled, key=testing.sort_key_fn) == items


@pytest.mark.parametrize("shuffle", [False, True])
def test_sequence_repeat_gives_whole_epochs(shuffle):
    items = testing.generate_example_sequence(5)
    out = list(itertools.islice(CheckpointableDataset.from_sequence(items, repeat=True, shuffle=shuffle), 20))
    if not shuffle:
        assert out == items * 4
    else:
        assert out != items * 4
        for epoch in range(4):  # every epoch is a permutation of the items
            assert sorted(out[epoch * 5 : epoch * 5 + 5], key=testing.sort_key_fn) == items


@pytest.mark.parametrize(
    ("n", "ckpt", "shuffle", "repeat"),
    [
        (20, 5, False, False),
        (20, 19, True, False),
        (5, 2, False, True),
        (5, 24, True, True),
        (5, 10, True, True),
    ],
)
def test_sequence_resumes(n, ckpt, shuffle, repeat):
    items = testing.generate_example_sequence(n)
    testing.check_resumption_with_instantiation(
        lambda: CheckpointableDataset.from_sequence(items, repeat=repeat, shuffle=shuffle), ckpt
    )


def test_iterable_repeat_and_end():
    items = [{"value": i} for i in range(3)]
    it = CheckpointableDataset.from_iterable(items, repeat=True).iter()
    assert [next(it)["value"] for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    it = CheckpointableDataset.from_iterable(items).iter()
    assert [next(it) for _ in range(3)] == items
    with pytest.raises(StopIteration):
        next(it)


def test_iterable_takes_a_generator_once():
    def naturals():
        i = 0
        while True:
            yield {"value": i}
            i += 1

    it = CheckpointableDataset.from_iterable(naturals()).iter()
    assert [next(it)["value"] for _ in range(10)] == list(range(10))


@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize("size", [1, 3])
def test_iterable_resumes(repeat, size):
    ds = CheckpointableDataset.from_iterable([{"value": i} for i in range(size)], repeat=repeat)
    for ckpt in [0, 1, 2, 3, 4, 6, 100] if repeat else range(size + 1):
        testing.check_resumption(ds, ds, ckpt)


def _file_indices(samples):
    return [s["file_index"] for s in samples]


def test_files_round_robin_over_active_shards(jsonl_files, shard_sizes):
    samples = list(
        CheckpointableDataset.from_files(
            jsonl_files, n_active_shards=2, n_standby_shards=1, shuffle_shards=False
        )
    )
    got = _file_indices(samples)
    assert [got.count(i) for i in range(len(shard_sizes))] == list(shard_sizes)
    assert got[:6] == [0, 1, 0, 1, 0, 1]  # two active shards, one record each in turn


def test_files_repeat_gives_whole_epochs(cbor_files, shard_sizes):
    per_epoch = sum(shard_sizes)
    it = CheckpointableDataset.from_files(
        cbor_files, repeat=True, n_active_shards=2, n_standby_shards=1
    ).iter()
    for _ in range(3):
        got = _file_indices(itertools.islice(it, per_epoch))
        assert [got.count(i) for i in range(len(shard_sizes))] == list(shard_sizes)
        assert got[:6] == [0, 1, 0, 1, 0, 1]
    it.close()


@pytest.mark.parametrize(("active", "standby"), [(1, 0), (1, 2), (3, 1), (3, 10), (10, 10)])
def test_files_shuffled_epochs_differ(jsonl_files, shard_sizes, active, standby):
    per_epoch = sum(shard_sizes)
    ds = CheckpointableDataset.from_files(
        jsonl_files, repeat=True, shuffle_shards=True, n_active_shards=active, n_standby_shards=standby
    )
    it = ds.iter()
    epochs = [list(itertools.islice(it, per_epoch)) for _ in range(3)]
    it.close()
    for epoch in epochs:
        got = _file_indices(epoch)
        assert [got.count(i) for i in range(len(shard_sizes))] == list(shard_sizes)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


@pytest.mark.parametrize(("active", "standby"), [(1, 0), (3, 1), (10, 10)])
def test_files_resume(cbor_files, active, standby):
    ds = CheckpointableDataset.from_files(
        cbor_files, repeat=True, shuffle_shards=True, n_active_shards=active, n_standby_shards=standby
    )
    for ckpt in (0, 1, 3, 13, 100):
        testing.check_resumption(ds, ds, ckpt)


def test_files_empty_with_repeat_is_a_value_error():
    with pytest.raises(ValueError, match="no files"):
        CheckpointableDataset.from_files([], repeat=True)


def test_files_single_url_string(jsonl_files, shard_sizes):
    assert len(list(CheckpointableDataset.from_files(jsonl_files[0]))) == shard_sizes[0]
