"""BatchIterator: every sample once per epoch across ranks, exact resume on any world size, skip, lengths,
states that refuse another dataset, state files, and a followed cache picked up at epoch boundaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build, make_documents, write_jsonl
from tokenmill.cache import CacheReader
from tokenmill.errors import StateError
from tokenmill.loader import (
    Batches,
    BatchIterator,
    Mixture,
    TokenDataset,
    load_state,
    save_state,
)
from tokenmill.testing import assert_resumes


@settings(max_examples=12, deadline=None)
@given(world=st.sampled_from([1, 2, 4]), per_rank=st.integers(1, 6), seed=st.integers(0, 1000))
def test_every_sample_once_per_epoch_across_ranks(text_cache, world, per_rank, seed):
    ds = TokenDataset(text_cache, seq_len=16, seed=seed)
    batch = world * per_rank
    its = [BatchIterator(ds, batch, rank=r, world_size=world, epochs=1) for r in range(world)]
    seen = []
    for plans in zip(*[iter(it.next_plan, None) for it in its], strict=True):
        assert len({p.batch for p in plans}) == 1
        seen.extend(np.concatenate([p.ids for p in plans]).tolist())
    assert len(seen) == (len(ds) // batch) * batch
    assert len(set(seen)) == len(seen)


def _stream(it: BatchIterator, steps: int) -> list[np.ndarray]:
    out = []
    for _ in range(steps):
        batch = next(it)
        out.append(np.concatenate([batch["input_ids"], batch["labels"]], axis=1))
    return out


@settings(max_examples=10, deadline=None)
@given(
    stop_at=st.integers(0, 40),
    world_before=st.sampled_from([1, 2, 4]),
    world_after=st.sampled_from([1, 2, 4, 8]),
    mode=st.sampled_from(["windows", "packed"]),
)
def test_resume_at_any_step_on_any_world_size_continues_the_stream(
    text_cache, stop_at, world_before, world_after, mode
):
    B, total = 8, 45
    ds = TokenDataset(text_cache, seq_len=512, mode=mode, seed=7)
    ref_it = BatchIterator(ds, B, rank=0, world_size=1)
    reference = _stream(ref_it, total)
    assert ref_it.epoch == 1  # the run crosses an epoch boundary (about 25 batches per epoch)
    ranks = [BatchIterator(ds, B, rank=r, world_size=world_before) for r in range(world_before)]
    for it in ranks:
        for _ in range(stop_at):
            it.next_plan()
    state = json.loads(json.dumps(ranks[0].state_dict()))
    assert all(it.state_dict() == state for it in ranks)  # every rank holds the same global position
    resumed = [Batches(ds, B, rank=r, world_size=world_after).iter(state) for r in range(world_after)]
    for step in range(stop_at, total):
        parts = [next(it) for it in resumed]
        got = np.concatenate([np.concatenate([p["input_ids"], p["labels"]], axis=1) for p in parts])
        assert np.array_equal(got, reference[step]), step


def test_skip_equals_reading_and_state_is_small_json(text_cache):
    ds = TokenDataset(text_cache, seq_len=64, seed=2)
    a = BatchIterator(ds, 4, rank=0, world_size=1)
    b = BatchIterator(ds, 4, rank=0, world_size=1)
    n = len(ds) // 4 + 7  # into the second epoch
    for _ in range(n):
        next(a)
    b.skip(n)
    assert a.state_dict() == b.state_dict()
    assert np.array_equal(next(a)["input_ids"], next(b)["input_ids"])
    assert a.state_dict()["epoch"] >= 1
    assert len(json.dumps(a.state_dict())) < 1000


def test_epochs_steps_and_length(text_cache):
    ds = TokenDataset(text_cache, seq_len=64)
    per_epoch = len(ds) // 8
    it = BatchIterator(ds, 8, rank=0, world_size=1, epochs=2)
    assert len(it) == 2 * per_epoch
    assert sum(1 for _ in it) == 2 * per_epoch
    it = BatchIterator(ds, 8, rank=0, world_size=1, steps=5)
    assert len(it) == 5 and sum(1 for _ in it) == 5
    keep = BatchIterator(ds, 8, rank=0, world_size=1, epochs=1, drop_last=False)
    sizes = [b["input_ids"].shape[0] for b in keep]
    assert sum(sizes) == len(ds) and sizes[-1] == len(ds) % 8 or len(ds) % 8 == 0


def test_state_refuses_another_dataset(text_cache, sft_cache):
    ds = TokenDataset(text_cache, seq_len=64, seed=2)
    it = BatchIterator(ds, 4, rank=0, world_size=1)
    next(it)
    state = it.state_dict()
    for other, needle in [
        (TokenDataset(text_cache, seq_len=32, seed=2), "seq_len: saved 64, now 32"),
        (TokenDataset(text_cache, seq_len=64, seed=2, mode="packed"), "mode: saved 'windows', now 'packed'"),
        (TokenDataset(text_cache, seq_len=64, seed=3), "seed: saved 2, now 3"),
        (TokenDataset(sft_cache, seq_len=64, seed=2), "cache: saved"),
        (TokenDataset(text_cache, seq_len=64, seed=2, split="validation"), "split: saved 'train'"),
    ]:
        with pytest.raises(StateError, match=needle):
            Batches(other, 4, rank=0, world_size=1).iter(state)
    with pytest.raises(StateError, match="not a tokenmill loader state"):
        it.batches.iter({"epoch": 1})
    with pytest.raises(StateError, match="global batch"):
        Batches(ds, 3, rank=0, world_size=1).iter(state)


def test_state_files_round_trip(tmp_path, text_cache):
    it = BatchIterator(TokenDataset(text_cache, seq_len=64), 4, rank=0, world_size=1)
    next(it)
    save_state(it.state_dict(), tmp_path / "s" / "state.json")
    assert load_state(tmp_path / "s" / "state.json") == it.state_dict()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StateError, match="bad.json"):
        load_state(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------- following
def test_follow_picks_up_appends_at_epoch_boundaries(tmp_path, tokenizer_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in make_documents(40, seed=1, max_words=60)])
    second = write_jsonl(
        tmp_path / "b.jsonl", [{"text": t} for t in make_documents(40, seed=2, max_words=60)]
    )
    cache = build([first], tmp_path / "cache", tokenizer_path)
    ds = TokenDataset(cache, seq_len=32, follow=True)
    static = TokenDataset(cache, seq_len=32)
    n0, v0 = len(ds), ds.versions[0]
    it = BatchIterator(ds, 4, rank=0, world_size=1)
    for _ in range(3):
        next(it)
    saved = it.state_dict()
    build([first, second], cache, tokenizer_path, append=True)
    assert CacheReader(str(cache)).version > v0
    while it.epoch == 0:  # the epoch in progress stays on the version it started with
        next(it)
        assert len(ds) == n0 or it.epoch == 1
    assert len(ds) > n0 and ds.versions[0] > v0
    # a saved state pins its version: a following dataset goes back to it, a static one refuses
    again = Batches(TokenDataset(cache, seq_len=32, follow=True), 4, rank=0, world_size=1).iter(saved)
    assert again.source.versions == [v0]
    with pytest.raises(StateError, match="cache changed"):
        Batches(TokenDataset(cache, seq_len=32), 4, rank=0, world_size=1).iter(saved)
    assert len(static) == n0  # an open, non-following dataset keeps its version


@settings(max_examples=8, deadline=None)
@given(
    mode=st.sampled_from(["windows", "packed", "padded"]),
    world=st.sampled_from([1, 2, 4]),
    rank=st.integers(0, 3),
    seed=st.integers(0, 1000),
    mixed=st.booleans(),
)
def test_batches_follow_the_resume_contract(text_cache, sft_cache, mode, world, rank, seed, mixed):
    """assert_resumes on the description: from the start, mid-epoch, each side of every epoch end, across epochs and
    at the end of a bounded run, on any rank of any world size; states are small JSON of one structure."""
    ds = TokenDataset(text_cache, seq_len=512, mode=mode, seed=seed)
    source = (
        Mixture([(ds, 0.6), (TokenDataset(sft_cache, seq_len=512, mode=mode), 0.4)], seed=seed)
        if mixed
        else ds
    )
    per_epoch = source.epoch_length(0) // 8
    batches = Batches(source, 8, rank=rank % world, world_size=world, epochs=2)
    items = assert_resumes(batches, max_items=10**6, epoch_length=per_epoch)
    assert len(items) == sum(source.epoch_length(e) // 8 for e in range(2))
