"""Mixture schedules: exact quotas, a stream that follows the schedule in every window, resumes from any position
on any world size, keeps each dataset's own epochs, and equals the fixed mixture when the weights never move."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sampling.mixture import TICK, MixtureSchedule, ScheduledMixture, mixture_order
from tokenmill.sampling.schedule import WeightSchedule, resolve_points, schedule_of
from tokenmill.sampling.sharding import batch_positions

WINDOW = 10_000


@st.composite
def schedules(draw, max_sources: int = 4, horizon: int = 60_000) -> WeightSchedule:
    """Random schedules: 1-5 points, weights with zeros (sources entering and leaving), both segment kinds."""
    k = draw(st.integers(1, max_sources))
    ats = sorted(draw(st.sets(st.integers(1, horizon), max_size=4)))
    points = []
    for at in [0, *ats]:
        w = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1.0)), min_size=k, max_size=k))
        if sum(w) == 0:
            w[draw(st.integers(0, k - 1))] = 1.0
        points.append((at, w))
    kinds = draw(
        st.lists(st.sampled_from(["linear", "constant"]), min_size=len(points), max_size=len(points))
    )
    return WeightSchedule(points, kinds)


def stream(mix: ScheduledMixture, n: int) -> tuple[np.ndarray, np.ndarray]:
    return mix.draws(0, np.arange(n))


# ----------------------------------------------------------------------------------------------- schedule
def test_quota_is_the_exact_integral_of_the_shares():
    s = WeightSchedule(
        [(0, [3.0, 1.0]), (100, [1.0, 1.0]), (300, [0.0, 1.0])], ["linear", "constant", "linear"]
    )
    assert s.quota(100) == (
        Fraction(100) * (Fraction(3, 4) + Fraction(1, 2)) / 2,
        Fraction(100) * Fraction(3, 8),
    )
    assert s.quota(300)[0] - s.quota(100)[0] == 100  # held at 1/2 for 200 positions
    assert s.quota(1300)[0] == s.quota(300)[0]  # weight 0 after the last point: the source has left
    for x in (0, 7, 99, 100, 101, 250, 299, 300, 10**12 + 3):
        assert sum(s.quota(x)) == x  # shares sum to 1 everywhere, exactly
    for x in (
        0,
        1,
        99,
        100,
        150,
        299,
        300,
        301,
        10**12 + 3,
    ):  # the integer hot path agrees with the fractions
        floors, due = s.rounded_quota(x)
        assert floors == [int(q + Fraction(1, 2)) for q in s.quota(x)]
        assert due == [float(f + 1 - q - Fraction(1, 2)) for f, q in zip(floors, s.quota(x))]
    inc = s.increments(50, np.arange(0, 400, 7))
    exact = np.array([[float(a - b) for a, b in zip(s.quota(50 + o), s.quota(50))] for o in range(0, 400, 7)])
    np.testing.assert_allclose(inc.T, exact, atol=1e-9)
    np.testing.assert_allclose(s.shares(np.array([0, 50, 100, 299, 300]))[:, 0], [0.75, 0.625, 0.5, 0.5, 0.0])


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="at 0"):
        WeightSchedule([(5, [1.0])])
    with pytest.raises(ValueError, match="increase"):
        WeightSchedule([(0, [1.0]), (10, [1.0]), (10, [2.0])])
    with pytest.raises(ValueError, match=">= 0"):
        WeightSchedule([(0, [1.0, -1.0])])
    with pytest.raises(ValueError, match="positive"):
        WeightSchedule([(0, [1.0, 1.0]), (10, [0.0, 0.0])])
    with pytest.raises(ValueError, match="segment"):
        WeightSchedule([(0, [1.0])], ["cosine"])
    with pytest.raises(ValueError, match="one weight per source"):
        WeightSchedule([(0, [1.0]), (10, [1.0, 2.0])])


def test_splice_and_agreement():
    old = WeightSchedule([(0, [0.9, 0.1]), (2000, [0.5, 0.5])])
    edited = WeightSchedule([(0, [0.9, 0.1]), (2000, [0.5, 0.5]), (5000, [0.0, 1.0])])
    # the new last point bends the segment after 2000, which was constant before
    assert old.agrees_until(edited, 2001) and not old.agrees_until(edited, 2002)
    held = WeightSchedule(
        [(0, [0.9, 0.1]), (2000, [0.5, 0.5]), (5000, [0.0, 1.0])], ["linear", "constant", "linear"]
    )
    assert old.agrees_until(held, 5000) and not old.agrees_until(held, 5001)
    moved = WeightSchedule([(0, [0.9, 0.1]), (3000, [0.5, 0.5])])
    assert old.agrees_until(moved, 1) and not old.agrees_until(moved, 1000)
    both = old.spliced(1000, moved)
    assert both.agrees_until(old, 1000)
    assert both.shares_at(1000) == moved.shares_at(1000) and both.shares_at(4000) == moved.shares_at(4000)
    assert WeightSchedule.from_json(both.to_json()) == both
    assert sum(both.quota(7777)) == 7777


# ------------------------------------------------------------------------------------------------ stream
@settings(max_examples=20, deadline=None)
@given(schedule=schedules(), seed=st.integers(0, 2**32))
def test_every_window_follows_the_schedule_and_draws_are_numbered(schedule, seed):
    n = 72_000
    sizes = [997, 50, 20_000, 3][: schedule.num_sources]
    mix = ScheduledMixture(sizes, schedule, seed=seed)
    k, j = stream(mix, n)
    onehot = np.zeros((n + 1, schedule.num_sources))
    onehot[np.arange(1, n + 1), k] = 1
    realised = np.cumsum(onehot, axis=0)
    quota = schedule.increments(0, np.arange(n + 1)).T  # expected draws before each position
    got = (realised[WINDOW:] - realised[:-WINDOW]) / WINDOW
    want = (quota[WINDOW:] - quota[:-WINDOW]) / WINDOW
    assert np.abs(got - want).max() < 0.01  # every window of 10,000 samples, every source: within 1 pp
    assert np.abs(realised - quota).max() <= 1 + schedule.num_sources  # and every prefix within a few draws
    for d in range(schedule.num_sources):
        mine = j[k == d]
        assert np.array_equal(mine, np.arange(mine.size))  # draws 0, 1, 2, ... in order of appearance


@settings(max_examples=15, deadline=None)
@given(
    schedule=schedules(horizon=30_000),
    seed=st.integers(0, 2**32),
    batch=st.sampled_from([8, 24, 64, 96]),
    stop=st.integers(0, 400),
    world=st.sampled_from([1, 2, 4, 8]),
)
def test_resumed_stream_equals_the_uninterrupted_one_on_any_world_size(schedule, seed, batch, stop, world):
    sizes = [31, 400, 7, 5000][: schedule.num_sources]
    steps = stop + 25
    whole = np.stack(ScheduledMixture(sizes, schedule, seed=seed).locate(0, np.arange(steps * batch)), axis=1)
    # a fresh process resumes at global step `stop` on `world` ranks: each rank computes only its own slices
    ranks = [ScheduledMixture(sizes, schedule, seed=seed) for _ in range(world)]
    resumed = []
    for step in range(stop, steps):
        parts = [
            np.stack(r.locate(0, batch_positions(step, batch, 1 << 62, rank, world)), axis=1)
            for rank, r in enumerate(ranks)
        ]
        resumed.append(np.concatenate(parts))
    assert np.array_equal(np.concatenate(resumed), whole[stop * batch :])


def test_each_dataset_cycles_through_its_own_epochs():
    schedule = WeightSchedule([(0, [1.0, 0.0]), (3000, [0.5, 0.5]), (9000, [0.0, 1.0])], ["linear"] * 3)
    mix = ScheduledMixture([100, 70], schedule, seed=2)
    k, j = mix.locate(0, np.arange(20_000))
    for d, size in enumerate([100, 70]):
        mine = j[k == d]
        full = mine.size // size * size
        cycles = mine[:full].reshape(-1, size)
        assert all(np.array_equal(np.sort(c), np.arange(size)) for c in cycles)  # every sample once per cycle
        assert len({tuple(c) for c in cycles}) == len(cycles)  # each cycle in a fresh order
    # entering (the first draw is due when the quota reaches 1/2, near position 77) and leaving
    assert not np.any(k[:70] == 1) and not np.any(k[-100:] == 0)


def test_random_access_and_far_positions():
    schedule = WeightSchedule([(0, [0.9, 0.1, 0.0]), (40_000, [0.2, 0.3, 0.5])])
    mix = ScheduledMixture([1000, 400, 9000], schedule, seed=11)
    k_all, j_all = mix.locate(0, np.arange(60_000))
    idx = np.random.default_rng(0).permutation(60_000)[:3000]
    k, j = ScheduledMixture([1000, 400, 9000], schedule, seed=11).locate(0, idx)
    assert np.array_equal(k, k_all[idx]) and np.array_equal(j, j_all[idx])
    far = 10**12 + np.arange(5000)  # a trillion samples in: O(1), and still the right shares
    k, _ = mix.draws(0, far)
    np.testing.assert_allclose(np.bincount(k, minlength=3) / 5000, [0.2, 0.3, 0.5], atol=0.002)


def test_a_constant_schedule_is_the_fixed_mixture():
    sizes, weights = [500, 3000, 40], [0.7, 0.2, 0.1]
    fixed = MixtureSchedule(sizes, weights, seed=4)
    for schedule in (
        WeightSchedule([(0, weights)]),
        WeightSchedule([(0, weights), (5000, [1.4, 0.4, 0.2])], ["constant", "linear"]),
    ):
        order = mixture_order(sizes, schedule, seed=4)
        assert isinstance(order, MixtureSchedule)
        for epoch in (0, 3):
            idx = np.arange(order.epoch_length(epoch))
            assert np.array_equal(np.stack(order.locate(epoch, idx)), np.stack(fixed.locate(epoch, idx)))
    moving = WeightSchedule([(0, weights), (5000, [0.1, 0.2, 0.7])])
    assert isinstance(mixture_order(sizes, moving), ScheduledMixture)
    with pytest.raises(ValueError, match="stop"):
        mixture_order(sizes, moving, policy="stop")


@settings(max_examples=10, deadline=None)
@given(old=schedules(max_sources=3, horizon=20_000), data=st.data(), seed=st.integers(0, 2**16))
def test_an_edit_after_a_checkpoint_continues_every_dataset_without_repeat_or_skip(old, data, seed):
    k_sources = old.num_sources
    new = data.draw(
        schedules(max_sources=k_sources, horizon=20_000).filter(lambda s: s.num_sources == k_sources)
    )
    position = data.draw(st.integers(0, 25_000))
    sizes = [300, 40, 9000][:k_sources]
    before = ScheduledMixture(sizes, old, seed=seed)
    tick = before.tick_of(position)
    spliced = old.spliced((tick + 1) * TICK, new)
    after = ScheduledMixture(sizes, spliced, seed=seed)
    n = 40_000
    k0, j0 = before.draws(0, np.arange(n))
    k1, j1 = after.draws(0, np.arange(n))
    keep = before.tick_start(tick + 1)
    assert keep > position
    assert np.array_equal(k0[:keep], k1[:keep]) and np.array_equal(j0[:keep], j1[:keep])
    for d in range(k_sources):
        mine = j1[k1 == d]
        assert np.array_equal(mine, np.arange(mine.size))


# ------------------------------------------------------------------------------------- as a user writes it
def test_points_as_written_resolve_to_samples():
    names = ["web", "code", "hq"]
    points = [
        {"at": 0, "weights": {"web": 0.9, "code": 0.1}},
        {"at": 2000, "weights": {"web": 0.5, "code": 0.5}, "segment": "constant"},
        {"at": 3000, "weights": {"hq": 1}},
    ]
    resolved = resolve_points(points, names, global_batch_size=64)
    assert resolved == [
        {"at": 0, "weights": [0.9, 0.1, 0.0], "segment": "linear"},
        {"at": 128_000, "weights": [0.5, 0.5, 0.0], "segment": "constant"},
        {"at": 192_000, "weights": [0.0, 0.0, 1.0], "segment": "linear"},
    ]
    assert schedule_of(resolved).shares_at(150_000) == (Fraction(1, 2), Fraction(1, 2), 0)
    by_tokens = [{"tokens": 0, "weights": {"web": 1}}, {"tokens": "2e6", "weights": {"code": 1}}]
    assert resolve_points(by_tokens, names, seq_len=1000)[1]["at"] == 2000


@pytest.mark.parametrize(
    "points, message",
    [
        ([], "list of points"),
        ([{"at": 5, "weights": {"web": 1}}], "first point must be at 0"),
        ([{"at": 0, "weights": {"wbe": 1}}], "unknown source.*wbe.*sources: web, code"),
        ([{"at": 0, "weights": {"web": -1}}], "weight of web must be a number >= 0"),
        ([{"at": 0, "weights": {"web": 0}}], "at least one weight"),
        ([{"at": 0, "step": 3, "weights": {"web": 1}}], "unknown key.*step"),
        (
            [{"at": 0, "weights": {"web": 1}}, {"tokens": 10, "weights": {"web": 1}}],
            "mixes 'at' and 'tokens'",
        ),
        ([{"at": 0, "weights": {"web": 1}}, {"at": 0, "weights": {"code": 1}}], "point 1: points must move"),
        ([{"at": 0.5, "weights": {"web": 1}}], "whole global step"),
        ([{"at": 0, "weights": {"web": 1}, "segment": "cosine"}], "segment must be one of linear, constant"),
    ],
)
def test_bad_points_name_the_point_and_key(points, message):
    with pytest.raises(ValueError, match=message):
        resolve_points(points, ["web", "code"], global_batch_size=8)
