"""Scheduled mixtures over real caches: batches follow the schedule in every mode, resume exactly at any step on
any world size, a schedule that never moves is the fixed mixture, and a schedule edited after a checkpoint is
refused unless only later points changed (then the run goes on with every source's draws unbroken)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.errors import ConfigError, StateError
from tokenmill.loader import Batches, BatchIterator, Mixture, TokenDataset
from tokenmill.sampling.mixture import TICK

B = 16
SCHEDULE = [
    {"at": 0, "weights": {"text": 0.9, "sft": 0.1}},
    {"at": 40, "weights": {"text": 0.2, "sft": 0.8}, "segment": "constant"},
    {"at": 100, "weights": {"text": 1.0}},
]


def mixture(text_cache, sft_cache, mode="windows", schedule=SCHEDULE, batch=B, seed=3) -> Mixture:
    parts = {
        "text": TokenDataset(text_cache, seq_len=32, mode=mode),
        "sft": TokenDataset(sft_cache, seq_len=32, mode=mode),
    }
    return Mixture(parts, schedule=schedule, global_batch_size=batch, seed=seed)


def batches(it: BatchIterator, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("mode", ["windows", "packed", "padded"])
def test_batches_follow_the_schedule_in_every_mode(text_cache, sft_cache, mode):
    mix = mixture(text_cache, sft_cache, mode)
    got = batches(BatchIterator(mix, B, rank=0, world_size=1), 120)
    sources = np.stack([b["source_index"] for b in got])  # [step, sample]
    sft = sources.mean(axis=1)
    assert sft[:4].mean() < 0.2 and abs(sft[50:100].mean() - 0.8) < 0.02 and sft[101:].max() == 0
    # between steps 0 and 40 the share of sft grows linearly from 0.1 to 0.8
    assert abs(sources[:40].mean() - 0.45) < 0.01
    # a sample of the mixture is its component's sample
    ids = mix.sample_ids(0, np.arange(64))
    for row, (k, j) in enumerate(ids.tolist()[:16]):
        want = mix.datasets[k].fetch(np.array([j]))["input_ids"][0]
        have = got[0]["input_ids"][row]
        assert np.array_equal(have[: want.size], want[: have.size])
    assert len(mix) > 10**15  # one endless stream


@st.composite
def schedules(draw) -> list[dict]:
    """Random schedules over the two sources: 1-4 points in the first 150 steps, zeros included."""
    ats = sorted(draw(st.sets(st.integers(1, 150), max_size=3)))
    points = []
    for at in [0, *ats]:
        w = {n: draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])) for n in ("text", "sft")}
        if not any(w.values()):
            w["text"] = 1.0
        points.append({"at": at, "weights": w, "segment": draw(st.sampled_from(["linear", "constant"]))})
    return points


@settings(max_examples=10, deadline=None)
@given(
    schedule=schedules(),
    stop=st.integers(0, 130),
    world=st.sampled_from([1, 2, 4]),
    mode=st.sampled_from(["windows", "packed", "padded"]),
    seed=st.integers(0, 100),
)
def test_resume_at_any_step_on_any_world_size(text_cache, sft_cache, schedule, stop, world, mode, seed):
    mix = mixture(text_cache, sft_cache, mode, schedule=schedule, seed=seed)
    ref = BatchIterator(mix, B, rank=0, world_size=1)
    for _ in range(stop):
        ref.next_plan()
    state = ref.state_dict()
    want = [np.concatenate([p.ids for p in [ref.next_plan()]]) for _ in range(6)]
    ranks = [
        Batches(
            mixture(text_cache, sft_cache, mode, schedule=schedule, seed=seed), B, rank=r, world_size=world
        ).iter(state)
        for r in range(world)
    ]
    for step in range(6):
        assert np.array_equal(np.concatenate([it.next_plan().ids for it in ranks]), want[step])


def test_a_schedule_that_never_moves_is_the_fixed_mixture(text_cache, sft_cache):
    a, b = TokenDataset(text_cache, seq_len=32), TokenDataset(sft_cache, seq_len=32)
    fixed = Mixture([(a, 0.7), (b, 0.3)], names=["text", "sft"], seed=5)
    only = [{"at": 0, "weights": {"text": 0.7, "sft": 0.3}}]
    held = Mixture({"text": a, "sft": b}, schedule=only, global_batch_size=B, seed=5)
    n = 2 * len(fixed) // B + 3  # across an epoch end
    x, y = BatchIterator(fixed, B, rank=0, world_size=1), BatchIterator(held, B, rank=0, world_size=1)
    for _ in range(n):
        p, q = next(x), next(y)
        assert all(np.array_equal(p[k], q[k]) for k in p)


def test_an_edit_after_the_checkpoint_continues_and_an_earlier_one_is_refused(text_cache, sft_cache, caplog):
    old = mixture(text_cache, sft_cache)
    run = BatchIterator(old, B, rank=0, world_size=1)
    for _ in range(50):
        run.next_plan()
    state = run.state_dict()
    later = [*SCHEDULE[:2], {"at": 60, "weights": {"sft": 1.0}}, {"at": 300, "weights": {"text": 1.0}}]
    new = mixture(text_cache, sft_cache, schedule=later)
    with caplog.at_level(logging.WARNING, logger="tokenmill"):
        resumed = Batches(new, B, rank=0, world_size=1).iter(state)
    assert "edited after the checkpoint at step 50" in caplog.text
    start = TICK * (1 + 50 * B // TICK)  # the next tick boundary: at most TICK samples on the old points
    uninterrupted = mixture(text_cache, sft_cache)
    ids = np.concatenate([resumed.next_plan().ids for _ in range(70)])
    before = uninterrupted.sample_ids(0, np.arange(50 * B, 120 * B))
    cut = start - 50 * B
    assert np.array_equal(ids[:cut], before[:cut]) and not np.array_equal(ids[cut:], before[cut:])
    # every source's draws go on without a repeat or a gap across the edit
    whole = np.concatenate([uninterrupted.sample_ids(0, np.arange(50 * B)), ids])
    _, draws = new.order.draws(0, np.arange(120 * B))
    for k in (0, 1):
        mine = draws[whole[:, 0] == k]
        assert np.array_equal(mine, np.arange(mine.size))
    # the state after the edit keeps it: a later resume rebuilds the same stream without a new warning
    again = Batches(mixture(text_cache, sft_cache, schedule=later), B, rank=0, world_size=1).iter(
        resumed.state_dict()
    )
    caplog.clear()
    assert np.array_equal(again.next_plan().ids, resumed.next_plan().ids) and "edited" not in caplog.text
    # a point before the checkpoint changed: refused, naming its step
    earlier = [SCHEDULE[0], {"at": 30, "weights": {"text": 0.2, "sft": 0.8}}, SCHEDULE[2]]
    with pytest.raises(StateError, match=r"changed before the checkpoint at step 50.*step\(s\) 30, 40"):
        Batches(mixture(text_cache, sft_cache, schedule=earlier), B, rank=0, world_size=1).iter(state)


def test_schedule_errors(text_cache, sft_cache):
    a, b = TokenDataset(text_cache, seq_len=32), TokenDataset(sft_cache, seq_len=32)
    with pytest.raises(ConfigError, match="datasets alone"):
        Mixture([(a, 0.5), (b, 0.5)], names=["text", "sft"], schedule=SCHEDULE, global_batch_size=B)
    with pytest.raises(ConfigError, match="global batch size"):
        Mixture({"text": a, "sft": b}, schedule=SCHEDULE)
    with pytest.raises(ConfigError, match="unknown source"):
        Mixture({"web": a, "sft": b}, schedule=SCHEDULE, global_batch_size=B)
    with pytest.raises(ConfigError, match="stop"):
        Mixture({"text": a, "sft": b}, schedule=SCHEDULE, global_batch_size=B, policy="stop")
    # the stream is by position: read in chunks of another size (the HF adapter reads per device), it is the same
    chunks = BatchIterator(mixture(text_cache, sft_cache), 8, rank=0, world_size=1)
    whole = BatchIterator(mixture(text_cache, sft_cache), B, rank=0, world_size=1)
    halves = np.concatenate([chunks.next_plan().ids for _ in range(10)])
    assert np.array_equal(halves, np.concatenate([whole.next_plan().ids for _ in range(5)]))
    with pytest.raises(StateError, match="schedule"):  # a fixed run is not resumed on a schedule
        fixed = BatchIterator(
            Mixture([(a, 0.9), (b, 0.1)], names=["text", "sft"], seed=3), B, rank=0, world_size=1
        )
        next(fixed)
        Batches(mixture(text_cache, sft_cache), B, rank=0, world_size=1).iter(fixed.state_dict())


class _Prefetched:
    """The scheduled mixture's batches as the trainer reads them: PrefetchIterator over a resumed BatchIterator."""

    def __init__(self, mix: Mixture) -> None:
        self.mix = mix

    def iter(self, state=None):
        from tokenmill.torch import PrefetchIterator

        return PrefetchIterator(Batches(self.mix, B, rank=0, world_size=1).iter(state), depth=3, workers=2)


def test_the_one_resume_contract_holds_across_every_segment(text_cache, sft_cache):
    pytest.importorskip("torch")
    from tokenmill.testing import assert_resumes

    # 110 batches cross the ramp (to step 40), the jump at step 100 and the constant tail after it
    assert_resumes(
        _Prefetched(mixture(text_cache, sft_cache, "packed")),
        max_items=110,
        checkpoints=[0, 39, 40, 99, 100, 101, 110],
    )


def test_the_hf_adapter_reads_a_schedule_per_device_and_checks_its_steps(text_cache, sft_cache):
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from tokenmill.train.hf import HFTrainerData

    data = HFTrainerData(mixture(text_cache, sft_cache))
    args = SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=2, world_size=2)
    data.callback.on_train_begin(args, SimpleNamespace(global_step=0), None)  # 4 x 2 x 2 = 16: the schedule's
    rows = [row for row, _ in zip(iter(data.dataset), range(32))]
    want = mixture(text_cache, sft_cache).sample_ids(0, np.arange(32))
    got = [mixture(text_cache, sft_cache).datasets[k].fetch(np.array([j]))["input_ids"][0] for k, j in want]
    assert all(np.array_equal(r["input_ids"], g) for r, g in zip(rows, got))
    with pytest.raises(ConfigError, match="steps of 16 samples.*reads 8"):
        data.callback.on_train_begin(
            SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=1, world_size=2),
            SimpleNamespace(global_step=0),
            None,
        )


def test_a_run_on_fixed_weights_cannot_become_a_moving_schedule(text_cache, sft_cache):
    held = [{"at": 0, "weights": {"text": 0.7, "sft": 0.3}}]
    run = BatchIterator(mixture(text_cache, sft_cache, schedule=held), B, rank=0, world_size=1)
    for _ in range(5):
        run.next_plan()
    moving = [*held, {"at": 20, "weights": {"sft": 1.0}}]
    with pytest.raises(StateError, match="had fixed weights"):
        Batches(mixture(text_cache, sft_cache, schedule=moving), B, rank=0, world_size=1).iter(
            run.state_dict()
        )
