"""epochraft's item transforms on tokenmill: map/filter, parallel maps, counting, shuffle, batch, DataLoader."""

from __future__ import annotations

import pytest
import torch

from tokenmill.epochraft import CheckpointableDataset, testing

ITEMS = [{"id": i} for i in range(30)]


def _double(sample):
    return {"id": sample["id"] * 2}


def _even(sample):
    return sample["id"] % 2 == 0


def _triple_even(sample):
    return {"id": sample["id"] * 3} if sample["id"] % 2 == 0 else None


class Boom(Exception):
    pass


def _fail_at_ten(sample):
    if sample["id"] == 10:
        raise Boom()
    return sample


def test_map_filter_filter_map():
    ds = CheckpointableDataset.from_sequence(ITEMS)
    assert list(ds.map(_double)) == [_double(s) for s in ITEMS]
    assert list(ds.filter(_even)) == [s for s in ITEMS if _even(s)]
    assert list(ds.filter_map(_triple_even)) == [_triple_even(s) for s in ITEMS if _even(s)]


def test_filter_map_resumes():
    ds = CheckpointableDataset.from_sequence(ITEMS, repeat=True, shuffle=True).filter_map(_triple_even)
    for ckpt in (0, 1, 123):
        testing.check_resumption(ds, ds, ckpt)


@pytest.mark.parametrize(("workers", "prefetch"), [(None, 2), (2, 1), (4, 5)])
def test_parallel_thread(workers, prefetch):
    ds = CheckpointableDataset.from_sequence(ITEMS)
    kw = {"max_workers": workers, "prefetch_factor": prefetch, "executor_type": "thread"}
    assert list(ds.parallel_map(_double, **kw)) == [_double(s) for s in ITEMS]
    it = ds.parallel_filter(_even, **kw).iter()
    assert list(it) == [s for s in ITEMS if _even(s)]
    it.close()
    it.close()  # idempotent
    with ds.parallel_filter_map(_triple_even, **kw).iter() as it:
        assert list(it) == [_triple_even(s) for s in ITEMS if _even(s)]
    unordered = ds.parallel_filter_map(_triple_even, ordered=False, **kw)
    assert sorted(unordered, key=testing.sort_key_fn) == [_triple_even(s) for s in ITEMS if _even(s)]
    resumable = CheckpointableDataset.from_sequence(ITEMS, repeat=True, shuffle=True).parallel_filter_map(
        _triple_even, **kw
    )
    for ckpt in (0, 1, 123):
        testing.check_resumption(resumable, resumable, ckpt)


@pytest.mark.parametrize("ordered", [True, False])
def test_parallel_thread_raises_the_functions_error(ordered):
    ds = CheckpointableDataset.from_sequence(ITEMS).parallel_filter_map(
        _fail_at_ten, max_workers=2, prefetch_factor=1, executor_type="thread", ordered=ordered
    )
    with pytest.raises(Boom):
        list(ds)


@pytest.mark.slow
@pytest.mark.parametrize("ordered", [True, False])
def test_parallel_process(ordered):
    """Processes are spawned (slow to start on a loaded machine): results, resume and errors as with threads."""
    ds = CheckpointableDataset.from_sequence(ITEMS, repeat=True, shuffle=True).parallel_filter_map(
        _triple_even, max_workers=2, prefetch_factor=2, executor_type="process", ordered=ordered
    )
    testing.check_resumption(ds, ds, 37)
    failing = CheckpointableDataset.from_sequence(ITEMS).parallel_map(
        _fail_at_ten, max_workers=2, prefetch_factor=1, executor_type="process", ordered=ordered
    )
    with pytest.raises(Boom):
        list(failing)


def test_enumerate_take_stride():
    ds = CheckpointableDataset.from_sequence(ITEMS)
    assert [(s["index"], s["id"]) for s in ds.enumerate(count_column="index")] == [(i, i) for i in range(30)]
    assert len(list(ds.take(max_count=5))) == 5
    for interval, offset in [(1, 0), (2, 1), (5, 4), (100, 99)]:
        assert list(ds.stride(interval, offset)) == ITEMS[offset::interval]
    counted = CheckpointableDataset.from_sequence(ITEMS[:5], repeat=True, shuffle=True).enumerate().take(35)
    for ckpt in (0, 1, 10, 34, 35):
        testing.check_resumption(counted, counted, ckpt)


def test_shuffle():
    assert list(CheckpointableDataset.from_sequence(ITEMS).shuffle(1)) == ITEMS
    for size in (2, 10, 100):
        out = list(CheckpointableDataset.from_sequence(ITEMS).shuffle(size))
        assert out != ITEMS and sorted(out, key=testing.sort_key_fn) == ITEMS
    with pytest.raises(ValueError):
        CheckpointableDataset.from_sequence(ITEMS).shuffle(0)


@pytest.mark.parametrize("size", [1, 2, 10, 100])
def test_shuffle_resumes(size):
    ds = CheckpointableDataset.from_sequence(ITEMS, repeat=True).shuffle(size)
    for ckpt in (0, 1, 3, 13, 100):
        testing.check_resumption(ds, ds, ckpt)


def test_batch_stacks_tensors():
    ds = CheckpointableDataset.from_sequence([{"data": torch.tensor(i)} for i in range(10)])
    for i, batch in enumerate(ds.batch(batch_size=2)):
        assert torch.equal(batch["data"], torch.tensor([2 * i, 2 * i + 1]))
    assert [len(b["data"]) for b in ds.batch(3)] == [3, 3, 3, 1]
    assert [len(b["data"]) for b in ds.batch(3, drop_last=True)] == [3, 3, 3]
    nine = CheckpointableDataset.from_sequence([{"data": torch.tensor(i)} for i in range(9)])
    assert [len(b["data"]) for b in nine.batch(3)] == [3, 3, 3]
    assert [len(b["data"]) for b in nine.batch(3, drop_last=True)] == [3, 3, 3]


def test_batch_resumes_and_takes_a_collate_fn():
    ds = CheckpointableDataset.from_sequence(
        [{"data": torch.tensor(i)} for i in range(10)], repeat=True, shuffle=True
    )
    batched = ds.batch(batch_size=3)
    for ckpt in (0, 1, 2, 10):
        testing.check_resumption(batched, batched, ckpt)
    assert next(iter(ds.batch(2, collate_fn=len))) == 2


def test_a_dataloader_takes_the_dataset():
    ds = CheckpointableDataset.from_sequence([{"input_ids": [i, i + 1]} for i in range(6)]).chunk(2)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=3))
    assert [b["input_ids"].tolist() for b in batches] == [[[0, 1], [1, 2], [2, 3]], [[3, 4], [4, 5], [5, 6]]]
    assert isinstance(ds, torch.utils.data.IterableDataset)


def test_states_are_plain_json_and_a_subclass_can_bring_its_own_iter():
    import json

    from tokenmill.epochraft import CheckpointableIterator

    class Countdown(CheckpointableDataset):
        def iter(self, state_dict=None):
            return CountdownIterator((state_dict or {}).get("left", 3))

    class CountdownIterator(CheckpointableIterator):
        def __init__(self, left):
            self.left = left

        def __next__(self):
            if self.left == 0:
                raise StopIteration
            self.left -= 1
            return {"left": self.left}

        def state_dict(self):
            return {"left": self.left}

        def close(self):
            pass

    ds = Countdown().map(lambda s: {"left": s["left"] * 10})
    assert list(ds) == [{"left": 20}, {"left": 10}, {"left": 0}]
    it = ds.iter()
    next(it)
    state = it.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert list(ds.iter(state_dict=state)) == [{"left": 10}, {"left": 0}]


def test_dataloader_workers_split_the_stream():
    """Each worker reads its own share (epochraft would give every worker the whole stream)."""
    ds = CheckpointableDataset.from_sequence([{"input_ids": [i, i + 1]} for i in range(8)]).chunk(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(b["input_ids"].tolist() for b in loader) == [[i, i + 1] for i in range(8)]
