"""Closed-form mixtures: shares match weights, random access equals the sequential order, policies hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sampling.mixture import MixtureSchedule, apportion, choose_block_size


def test_apportion_sums_and_rounds_fairly():
    assert apportion([1, 1, 1], 10).tolist() == [4, 3, 3]
    counts = apportion([0.7, 0.2, 0.1], 1024)
    assert counts.sum() == 1024 and np.all(np.abs(counts - np.array([0.7, 0.2, 0.1]) * 1024) < 1)


@pytest.mark.parametrize("weights", [[0.7, 0.2, 0.1], [0.5, 0.5], [0.05, 0.15, 0.3, 0.5], [0.98, 0.02]])
def test_observed_shares_match_weights(weights):
    sizes = [50_000, 3_000, 700, 20_000][: len(weights)]
    mix = MixtureSchedule(sizes, weights, seed=5)
    k, _ = mix.locate(0, np.arange(10_000))
    shares = np.bincount(k, minlength=len(weights)) / 10_000
    assert np.all(np.abs(shares - np.asarray(weights) / sum(weights)) < 0.01), shares
    # and in any later stretch too
    k, _ = mix.locate(1, np.arange(30_000, 40_000))
    shares = np.bincount(k, minlength=len(weights)) / 10_000
    assert np.all(np.abs(shares - np.asarray(weights) / sum(weights)) < 0.01), shares


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
    data=st.data(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 5),
)
def test_repeat_policy_sees_every_sample_and_never_repeats_within_a_cycle(sizes, data, seed, epoch):
    weights = data.draw(st.lists(st.floats(0.05, 1.0), min_size=len(sizes), max_size=len(sizes)))
    mix = MixtureSchedule(sizes, weights, seed=seed, policy="repeat", block_size=1024)
    n = mix.epoch_length(epoch)
    k, j = mix.locate(epoch, np.arange(n))
    draws_k, draw_no = mix.draws(epoch, np.arange(n))
    assert np.array_equal(k, draws_k)
    for d, size in enumerate(sizes):
        mine = j[k == d]
        assert mine.min() >= 0 and mine.max() < size
        assert np.array_equal(np.unique(mine), np.arange(size))  # every sample at least once
        # draws of one dataset are numbered 0, 1, 2, ... in order of appearance
        assert np.array_equal(draw_no[k == d], np.arange(mine.size))
        cycles = draw_no[k == d] // size
        for c in np.unique(cycles):
            assert np.unique(mine[cycles == c]).size == np.sum(cycles == c)
    # the epoch is the shortest prefix that does it: dropping the last sample loses one
    last = int(k[-1])
    assert np.unique(j[:-1][k[:-1] == last]).size == sizes[last] - 1 or sizes[last] == 1


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    data=st.data(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 5),
)
def test_stop_policy_never_repeats_and_stops_at_first_exhaustion(sizes, data, seed, epoch):
    weights = data.draw(st.lists(st.floats(0.05, 1.0), min_size=len(sizes), max_size=len(sizes)))
    mix = MixtureSchedule(sizes, weights, seed=seed, policy="stop", block_size=1024)
    n = mix.epoch_length(epoch)
    k, j = mix.locate(epoch, np.arange(n))
    for d, size in enumerate(sizes):
        mine = j[k == d]
        assert np.unique(mine).size == mine.size and (mine.size == 0 or mine.max() < size)
    # one more slot would have needed a sample of some dataset that is already used up
    block, slot = divmod(n, mix.block_size)
    owner, rank = mix.block_layout(epoch, block)
    nxt = int(owner[slot])
    assert block * mix.counts[nxt] + rank[slot] >= sizes[nxt]


def test_random_access_equals_sequential_order():
    mix = MixtureSchedule([1000, 400, 9000], [0.3, 0.3, 0.4], seed=11)
    n = mix.epoch_length(2)
    k_all, j_all = mix.locate(2, np.arange(n))
    idx = np.random.default_rng(0).permutation(n)[:3000]
    k, j = mix.locate(2, idx)
    assert np.array_equal(k, k_all[idx]) and np.array_equal(j, j_all[idx])
    # a fresh schedule (a resumed run) computes the same thing without replaying anything
    again = MixtureSchedule([1000, 400, 9000], [0.3, 0.3, 0.4], seed=11)
    k2, j2 = again.locate(2, idx[::-1])
    assert np.array_equal(k2, k_all[idx[::-1]]) and np.array_equal(j2, j_all[idx[::-1]])


def test_epochs_and_seeds_reshuffle():
    a = MixtureSchedule([500, 500], [0.5, 0.5], seed=1)
    b = MixtureSchedule([500, 500], [0.5, 0.5], seed=2)
    first = np.stack(a.locate(0, np.arange(1000)))
    assert not np.array_equal(first, np.stack(a.locate(1, np.arange(1000))))
    assert not np.array_equal(first, np.stack(b.locate(0, np.arange(1000))))
    unshuffled = MixtureSchedule([500, 500], [0.5, 0.5], seed=1, shuffle=False)
    k, j = unshuffled.locate(0, np.arange(len(unshuffled)))
    assert np.array_equal(j[k == 0][:500], np.arange(500))


def test_samples_per_epoch_and_errors():
    mix = MixtureSchedule([100, 100], [0.5, 0.5], samples_per_epoch=5000)
    assert len(mix) == 5000 and mix.epoch_length(3) == 5000
    with pytest.raises(ValueError, match="stop"):
        MixtureSchedule([100, 100], [0.5, 0.5], policy="stop", samples_per_epoch=5000)
    with pytest.raises(ValueError, match="positive"):
        MixtureSchedule([10, 10], [0.5, -1])
    with pytest.raises(ValueError, match="positive"):
        MixtureSchedule([10, 10], [0.5, float("nan")])
    with pytest.raises(ValueError, match="policy"):
        MixtureSchedule([10], [1.0], policy="cycle")
    with pytest.raises(ValueError, match="no samples"):
        MixtureSchedule([10, 0], [0.5, 0.5])
    with pytest.raises(IndexError):
        MixtureSchedule([10], [1.0]).locate(0, np.array([10**6]))
    with pytest.raises(ValueError, match="too small"):
        choose_block_size([1.0, 1e-9])
