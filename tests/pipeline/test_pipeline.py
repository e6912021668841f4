"""The generic resume property, for every stage and random chains of stages (torchdata.nodes' testing idea):
save the state after k items, JSON round-trip it, build a fresh pipeline, resume, and compare the rest with the
uninterrupted run. Plus the semantics of each transform on small data."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.helpers import assert_resumes, run
from tokenmill.errors import StateError
from tokenmill.pipeline import Pipeline

# --- helpers -------------------------------------------------------------------------------------------------


def docs(n: int = 60, seed: int = 0, mask: bool = False) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.choice([0, 1, 3, 7, 12, 30, 64]) if i % 9 else 0
        d = {"id": i, "input_ids": np.arange(1000 * i, 1000 * i + length, dtype=np.int32)}
        if mask:
            d["loss_mask"] = np.asarray([(j + i) % 3 != 0 for j in range(length)], dtype=bool)
        out.append(d)
    return out


# --- stage catalogue: each entry turns a pipeline of token dicts into another ---------------------------------


def _add_len(x):
    return {**x, "n": len(x["input_ids"])}


def _keep_even_sum(x):
    return int(np.sum(x["input_ids"])) % 2 == 0


def _drop_short(x):
    return None if len(x["input_ids"]) < 2 else {**x, "input_ids": x["input_ids"][::-1].copy()}


STAGES = {
    "map": lambda p, r: p.map(_add_len),
    "filter": lambda p, r: p.filter(_keep_even_sum),
    "filter_map": lambda p, r: p.filter_map(_drop_short),
    "parallel_map": lambda p, r: p.parallel_map(
        _add_len, max_workers=2, prefetch_factor=r.randint(1, 3), executor_type="thread"
    ),
    "parallel_filter": lambda p, r: p.parallel_filter(
        _keep_even_sum, max_workers=2, prefetch_factor=2, executor_type="thread"
    ),
    "shuffle": lambda p, r: p.shuffle(r.randint(1, 9), seed=r.randint(0, 9)),
    "chunk": lambda p, r: p.chunk(r.randint(1, 8), drop_remainder=r.random() < 0.5),
    "concat_chunk": lambda p, r: p.concat_chunk(r.randint(1, 20)),
    "pack": lambda p, r: p.pack(r.randint(4, 40), buffer_size=r.randint(1, 12), pad_id=7),
    "add_bos_eos": lambda p, r: p.add_bos_eos(1, 2),
    "take": lambda p, r: p.take(r.randint(0, 80)),
    "skip": lambda p, r: p.skip(r.randint(0, 10)),
    "stride": lambda p, r: p.stride(3, r.randint(0, 2)),
    "enumerate": lambda p, r: p.enumerate(),
    "repeat": lambda p, r: p.repeat(2),
    "prefetch": lambda p, r: p.prefetch(r.randint(1, 4)),
}
# stages after which every item has the same length (so a batch can stack them)
FIXED = {"chunk", "concat_chunk", "pack"}


def build_chain(names: list[str], seed: int, mask: bool) -> Pipeline:
    r = random.Random(seed)
    pipe = Pipeline.from_sequence(docs(40, seed, mask), shuffle=r.random() < 0.5, shuffle_seed=seed)
    fixed = False
    for name in names:
        if name == "chunk":
            fixed = False  # drop_remainder may be False
        pipe = STAGES[name](pipe, r)
        if name in ("concat_chunk", "pack"):
            fixed = True
        if name == "chunk" and isinstance(pipe.node.drop_remainder, bool) and pipe.node.drop_remainder:
            fixed = True
        if name in ("filter_map", "add_bos_eos"):
            fixed = False
    if fixed:
        pipe = pipe.batch(r.randint(1, 4))
    return pipe


@pytest.mark.parametrize("name", sorted(STAGES))
@pytest.mark.parametrize("k", [0, 1, 5, 23])
def test_every_stage_resumes(name, k):
    r = random.Random(k)
    pipe = STAGES[name](Pipeline.from_sequence(docs(40, 3, mask=k % 2 == 1)), r)
    assert_resumes(pipe, k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(sorted(STAGES)), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    k=st.integers(0, 60),
    mask=st.booleans(),
)
def test_random_chains_resume(names, seed, k, mask):
    assert_resumes(build_chain(names, seed, mask), k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(0, 40), stop=st.sampled_from(["first", "all", "never"]))
def test_interleave_and_concat_resume(seed, k, stop):
    a = Pipeline.from_sequence([{"input_ids": [i], "src": 0} for i in range(25)]).shuffle(4, seed=seed)
    b = Pipeline.from_sequence([{"input_ids": [100 + i], "src": 1} for i in range(7)])
    c = Pipeline.from_iterable([{"input_ids": [200 + i], "src": 2} for i in range(12)])
    mixed = Pipeline.interleave([a, b, c], weights=[0.5, 0.3, 0.2], stop=stop, seed=seed)
    if stop == "never":
        mixed = mixed.take(120)
    assert_resumes(mixed, k)
    assert_resumes(Pipeline.concat([a, b, c]).concat_chunk(3), k)


def test_resume_at_every_position_of_a_long_chain():
    pipe = (
        Pipeline.from_sequence(docs(30, 5, mask=True), repeat=True, shuffle=True)
        .map(_add_len)
        .concat_chunk(16)
        .shuffle(5, seed=3)
        .batch(2)
        .take(40)
    )
    full = run(pipe)
    assert len(full) == 40
    for k in range(0, 41, 3):
        assert_resumes(pipe, k)


# --- semantics -----------------------------------------------------------------------------------------------


def test_concat_chunk_concatenates_and_drops_the_tail():
    items = [{"input_ids": np.arange(s, s + n)} for s, n in [(0, 3), (10, 0), (20, 6), (30, 1)]]
    out = run(Pipeline.from_sequence(items).concat_chunk(4))
    assert out == [{"input_ids": [0, 1, 2, 20]}, {"input_ids": [21, 22, 23, 24]}]


def test_chunk_keeps_or_drops_the_remainder():
    items = [{"input_ids": np.arange(7)}]
    assert [x["input_ids"] for x in run(Pipeline.from_sequence(items).chunk(3))] == [[0, 1, 2], [3, 4, 5]]
    kept = run(Pipeline.from_sequence(items).chunk(3, drop_remainder=False))
    assert [x["input_ids"] for x in kept] == [[0, 1, 2], [3, 4, 5], [6]]


def test_shuffle_is_a_permutation_and_depends_on_seed():
    items = [{"i": i} for i in range(100)]
    a = [x["i"] for x in run(Pipeline.from_sequence(items).shuffle(30, seed=1))]
    b = [x["i"] for x in run(Pipeline.from_sequence(items).shuffle(30, seed=2))]
    assert sorted(a) == list(range(100)) and a != list(range(100)) and a != b
    # block shuffle: every item leaves within its block of 30
    assert all(i // 30 == j // 30 for j, i in enumerate(a))


def test_shuffle_state_holds_no_samples():
    items = [{"input_ids": np.arange(1000)} for _ in range(50)]
    it = Pipeline.from_sequence(items).shuffle(40).iter()
    next(it)
    assert len(json.dumps(it.state_dict())) < 400


def test_batch_labels_mask_and_tensors():
    items = [
        {"input_ids": np.array([5, 6, 7]), "loss_mask": np.array([False, True, True])},
        {"input_ids": [8, 9, 10]},
    ]
    (batch,) = run(Pipeline.from_sequence(items).batch(2))
    assert batch["labels"] == [[-100, 6, 7], [8, 9, 10]]
    assert batch["loss_mask"] == [[False, True, True], [True, True, True]]
    torch = pytest.importorskip("torch")
    (tb,) = list(Pipeline.from_sequence(items).batch(2, return_tensors="pt").iter())
    assert isinstance(tb["input_ids"], torch.Tensor) and tb["input_ids"].dtype == torch.int64


def test_batch_refuses_ragged_items():
    from tokenmill.errors import ConfigError

    with pytest.raises(ConfigError, match="different lengths"):
        run(Pipeline.from_sequence([{"input_ids": [1]}, {"input_ids": [1, 2]}]).batch(2))


def test_pack_rows():
    items = [{"input_ids": np.arange(100 * i, 100 * i + n)} for i, n in enumerate([5, 3, 9, 2, 12])]
    rows = run(Pipeline.from_sequence(items).pack(10, buffer_size=5, pad_id=-1))
    tokens = sorted(t for r in rows for t, m in zip(r["input_ids"], r["position_ids"]) if t != -1)
    assert tokens == sorted(int(t) for x in items for t in x["input_ids"])  # nothing lost or repeated
    for r in rows:
        cu = r["cu_seqlens"]
        assert cu[0] == 0 and cu[-1] == 10 and len(r["input_ids"]) == 10
        for a, b in zip(cu[:-1], cu[1:]):
            assert r["position_ids"][a:b] == list(range(b - a))
            assert r["loss_mask"][a] is False or a == 0
        used = sum(1 for t in r["input_ids"] if t != -1)
        assert not any(r["loss_mask"][used:])


def test_pad_and_attention_mask():
    (row,) = run(Pipeline.from_sequence([{"input_ids": [3, 4]}]).pad(4))
    assert row["input_ids"] == [3, 4, 0, 0]
    assert row["attention_mask"] == [1, 1, 0, 0]
    assert row["loss_mask"] == [True, True, False, False]
    (b,) = run(Pipeline.from_sequence([{"input_ids": [3, 4]}]).pad({"input_ids": 9}, chunk_length=3).batch(1))
    assert b["labels"] == [[3, 4, -100]]


def test_take_skip_stride_enumerate_repeat():
    seq = Pipeline.from_sequence(list(range(10)))
    assert run(seq.skip(2).take(3)) == [2, 3, 4]
    assert run(seq.stride(4, 1)) == [1, 5, 9]
    assert run(seq.take(2).repeat(3)) == [0, 1, 0, 1, 0, 1]
    assert run(Pipeline.from_sequence([{"a": 1}, {"a": 2}]).enumerate()) == [
        {"a": 1, "step": 0},
        {"a": 2, "step": 1},
    ]


def test_interleave_policies():
    a = Pipeline.from_sequence([("a", i) for i in range(50)])
    b = Pipeline.from_sequence([("b", i) for i in range(5)])
    first = run(Pipeline.interleave([a, b], [0.5, 0.5], stop="first"))
    assert sum(1 for s, _ in first if s == "b") == 5 and len(first) < 55
    everything = run(Pipeline.interleave([a, b], [0.5, 0.5], stop="all"))
    assert sorted(everything) == sorted([["a", i] for i in range(50)] + [["b", i] for i in range(5)])
    endless = run(Pipeline.interleave([a, b], [0.9, 0.1], stop="never").take(2000))
    share = sum(1 for s, _ in endless if s == "b") / len(endless)
    assert 0.07 < share < 0.13  # weights hold while the small source restarts


def test_shard_partitions_sources():
    seq = Pipeline.from_sequence(list(range(23)), shuffle=True)
    parts = [run(seq.shard(r, 3)) for r in range(3)]
    assert sorted(x for p in parts for x in p) == list(range(23))
    it = Pipeline.from_iterable(list(range(10)))
    assert [run(it.shard(r, 2)) for r in range(2)] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    # sharding twice subdivides (DataLoader workers within a rank)
    sub = [run(seq.shard(r, 3).shard(w, 2)) for r in range(3) for w in range(2)]
    assert sorted(x for p in sub for x in p) == list(range(23))


def test_unordered_parallel_map_loses_and_repeats_nothing():
    items = list(range(300))
    pipe = Pipeline.from_sequence(items).parallel_map(
        _slow_square, max_workers=3, prefetch_factor=4, ordered=False, executor_type="thread"
    )
    it = pipe.iter()
    head = [next(it) for _ in range(37)]
    state = json.loads(json.dumps(it.state_dict()))
    it.close()
    rest = run(pipe, state)
    assert sorted(head + rest) == [i * i for i in items]


def _slow_square(x: int) -> int:
    import time

    time.sleep(0.0005 * (x % 5))
    return x * x


def test_parallel_map_in_processes_resumes():
    pipe = Pipeline.from_sequence(list(range(40))).parallel_map(_square, max_workers=2, prefetch_factor=2)
    assert run(pipe) == [i * i for i in range(40)]
    assert_resumes(pipe, 13)


def _square(x: int) -> int:
    return x * x


def test_foreign_state_is_refused():
    it = Pipeline.from_sequence([1, 2, 3]).shuffle(2).iter()
    next(it)
    state = it.state_dict()
    with pytest.raises(StateError, match="another pipeline"):
        Pipeline.from_sequence([1, 2, 3]).shuffle(3).iter(state_dict=state)
    with pytest.raises(StateError):
        Pipeline.from_sequence([1, 2, 3]).iter(state_dict={"index": 1})


def test_from_iterable_resume_is_by_count():
    state = {"format": "tokenmill.pipeline/1", "chain": "from_iterable", "state": {"epoch": 0, "count": 3}}
    assert run(Pipeline.from_iterable(range(6)), state) == [3, 4, 5]
