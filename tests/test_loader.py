"""The loader over real caches built by `prepare`: every mode reads the right tokens, orders are exact
permutations, sharding and resume are exact under any world size, mixtures keep their weights, states refuse
the wrong dataset, and a followed cache is picked up at epoch boundaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_documents, write_jsonl
from tokenmill.cache import CacheReader
from tokenmill.errors import CacheError, ConfigError, StateError
from tokenmill.loader import (
    IGNORE_INDEX,
    BatchIterator,
    Mixture,
    TokenDataset,
    aligned_labels,
    cu_seqlens_from_position_ids,
    load_state,
    resolve_world,
    save_state,
)
from tokenmill.prepare import PrepareConfig, prepare


def build(sources, out, tokenizer, **kw) -> Path:
    kw.setdefault("workers", 0)
    kw.setdefault("row_tokens", 64)
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    prepare(config, progress=False)
    return Path(out)


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory, jsonl_shards, tokenizer_path) -> Path:
    """The fixture documents (some spanning several 64-token rows) with a 10% validation split."""
    return build(jsonl_shards, tmp_path_factory.mktemp("loader") / "text", tokenizer_path, validation=0.1)


@pytest.fixture(scope="module")
def sft_cache(tmp_path_factory, tokenizer_path) -> Path:
    """Prompt/completion records: prompts are loss-masked, so masks must survive into the labels."""
    root = tmp_path_factory.mktemp("sft")
    docs = make_documents(120, seed=11, max_words=150)
    records = [{"prompt": d[: len(d) // 3], "completion": d[len(d) // 3 :]} for d in docs]
    shard = write_jsonl(root / "sft.jsonl", records)
    return build([shard], root / "cache", tokenizer_path, format={"format": "prompt-completion"})


def split_stream(cache: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Reference: the split's tokens and loss mask, concatenated in cache order, and its documents."""
    reader = CacheReader(str(cache))
    index = reader.split_index(split)
    flat, _, mask = reader.take_rows(index.rows)
    flat = flat.astype(np.int64)
    mask = np.ones(flat.size, bool) if mask is None else mask
    starts, ends = index.document_bounds()
    return flat, mask, [flat[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def expected_labels(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shifted targets of a run of tokens: the next token where it is trained, else -100; the last has none."""
    labels = np.full(tokens.size, IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = np.where(mask[1:], tokens[1:], IGNORE_INDEX)
    return labels


# ------------------------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("read", ["memmap", "lance"])
def test_windows_cover_the_stream_with_shifted_labels(sft_cache, read):
    flat, mask, _ = split_stream(sft_cache)
    seq_len = 48
    ds = TokenDataset(sft_cache, seq_len=seq_len, shuffle=False, read=read)
    assert len(ds) == (flat.size - 1) // seq_len
    batch = ds.get_batch(np.arange(len(ds)))
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (len(ds), seq_len)
    covered = len(ds) * seq_len
    assert np.array_equal(batch["input_ids"].reshape(-1), flat[:covered])
    want = np.where(mask[1 : covered + 1], flat[1 : covered + 1], IGNORE_INDEX)
    assert np.array_equal(batch["labels"].reshape(-1), want)
    assert (batch["labels"] == IGNORE_INDEX).any()  # the prompts are masked
    assert ds.describe()["read"] == read


@pytest.mark.parametrize("which", ["sft_cache", "text_cache"])  # with and without loss masks
def test_memmap_and_lance_reads_agree_in_every_mode(request, which):
    cache = request.getfixturevalue(which)
    for mode in ("windows", "packed", "padded"):
        a = TokenDataset(cache, seq_len=40, mode=mode, read="memmap", seed=3)
        b = TokenDataset(cache, seq_len=40, mode=mode, read="lance", seed=3)
        positions = np.random.default_rng(0).permutation(len(a))[:50]
        x, y = a.get_batch(positions, epoch=2), b.get_batch(positions, epoch=2)
        assert x.keys() == y.keys()
        assert all(np.array_equal(x[k], y[k]) for k in x), mode


def _segments(sample: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(start, length) of each real segment of a packed sample, from its position_ids and attention_mask."""
    real = int(sample["attention_mask"].sum())
    starts = np.flatnonzero(sample["position_ids"][:real] == 0)
    ends = np.append(starts[1:], real)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


def test_packed_samples_hold_whole_documents(sft_cache):
    flat, mask, docs = split_stream(sft_cache)
    seq_len = 96
    ds = TokenDataset(sft_cache, seq_len=seq_len, mode="packed", shuffle=False)
    plan = ds.packing
    assert ds.padding_fraction == pytest.approx(plan.padding_fraction)
    doc_starts = np.cumsum([0] + [d.size for d in docs])
    seen = np.zeros(flat.size, dtype=np.int64)
    for b in range(len(ds)):
        sample = ds[b]
        segs = _segments(sample)
        assert [s[1] for s in segs] == [seg[2] for seg in plan.segments(b)]
        for (at, length), (doc, start, _) in zip(segs, plan.segments(b), strict=True):
            lo = doc_starts[doc] + start
            tokens = flat[lo : lo + length]
            assert np.array_equal(sample["input_ids"][at : at + length], tokens)
            assert np.array_equal(sample["position_ids"][at : at + length], np.arange(length))
            assert np.array_equal(
                sample["labels"][at : at + length], expected_labels(tokens, mask[lo : lo + length])
            )
            seen[lo : lo + length] += 1
            if docs[doc].size <= seq_len:
                assert start == 0 and length == docs[doc].size  # a document that fits is never split
        real = int(sample["attention_mask"].sum())
        assert np.all(sample["labels"][real:] == IGNORE_INDEX)
        assert np.all(sample["input_ids"][real:] == ds.pad_id)
        cu = sample["cu_seqlens"]
        assert cu[0] == 0 and cu[-1] == seq_len and np.all(np.diff(cu) > 0)
    assert np.all(seen == 1)  # every token of the split in exactly one bin


def test_packing_plan_is_stored_and_reused(text_cache):
    ds = TokenDataset(text_cache, seq_len=128, mode="packed", seed=5)
    files = [f for f in os.listdir(text_cache / "index") if f.startswith("packed-train-L128-s5-")]
    assert len(files) == 1
    path = text_cache / "index" / files[0]
    before = path.stat().st_mtime_ns
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["bin_offsets"], ds.packing.bin_offsets)
    again = TokenDataset(text_cache, seq_len=128, mode="packed", seed=5)
    assert path.stat().st_mtime_ns == before
    assert np.array_equal(again.packing.seg_doc, ds.packing.seg_doc)
    other_seed = TokenDataset(text_cache, seq_len=128, mode="packed", seed=6)
    assert not np.array_equal(other_seed.packing.seg_doc, ds.packing.seg_doc)


def test_padded_split_truncate_grouping_and_trim(sft_cache):
    flat, mask, docs = split_stream(sft_cache)
    seq_len = 64
    split = TokenDataset(sft_cache, seq_len=seq_len, mode="padded", shuffle=False)
    assert len(split) == sum(-(-d.size // seq_len) for d in docs)
    trunc = TokenDataset(sft_cache, seq_len=seq_len, mode="padded", shuffle=False, long_documents="truncate")
    assert len(trunc) == len(docs)
    offsets = np.cumsum([0] + [d.size for d in docs])
    for i in range(len(docs)):
        sample = trunc[i]
        n = min(seq_len, docs[i].size)
        assert np.array_equal(sample["input_ids"][:n], docs[i][:n])
        assert np.array_equal(sample["attention_mask"], (np.arange(seq_len) < n).astype(np.int64))
        want = expected_labels(docs[i][:n], mask[offsets[i] : offsets[i] + n])
        assert np.array_equal(sample["labels"][:n], want)
        assert np.all(sample["labels"][n:] == IGNORE_INDEX)
    grouped = TokenDataset(sft_cache, seq_len=seq_len, mode="padded", group_by_length=32, pad_to="longest")
    it = BatchIterator(grouped, 8, rank=0, world_size=1, epochs=1)
    widths, seen = [], []
    for _ in range(4):
        batch = next(it)
        lengths = batch["attention_mask"].sum(axis=1)
        widths.append(batch["input_ids"].shape[1])
        assert batch["input_ids"].shape[1] == lengths.max()
        seen.append(lengths)
    within = np.concatenate(seen)
    assert np.all(np.diff(within) <= 0)  # one mega-batch of 32: longest first, in four batches of 8
    assert widths == sorted(widths, reverse=True)


# ------------------------------------------------------------------------------------- order and shards
def test_orders_are_permutations_that_change_per_epoch(text_cache):
    ds = TokenDataset(text_cache, seq_len=32, seed=1)
    n = len(ds)
    e0 = ds.sample_ids(0, np.arange(n))
    e1 = ds.sample_ids(1, np.arange(n))
    assert np.array_equal(np.sort(e0), np.arange(n)) and np.array_equal(np.sort(e1), np.arange(n))
    assert not np.array_equal(e0, e1)
    assert np.array_equal(TokenDataset(text_cache, seq_len=32, seed=1).sample_ids(0, np.arange(n)), e0)
    assert np.array_equal(
        TokenDataset(text_cache, seq_len=32, shuffle=False).sample_ids(3, np.arange(n)), np.arange(n)
    )
    ds.set_epoch(1)
    assert np.array_equal(ds[5]["input_ids"], ds.fetch(e1[5:6])["input_ids"][0])


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
    resumed = [BatchIterator(ds, B, rank=r, world_size=world_after) for r in range(world_after)]
    for it in resumed:
        it.load_state_dict(state)
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
            BatchIterator(other, 4, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(StateError, match="not a tokenmill loader state"):
        it.load_state_dict({"epoch": 1})
    with pytest.raises(StateError, match="global batch"):
        BatchIterator(ds, 3, rank=0, world_size=1).load_state_dict(state)


def test_state_files_round_trip(tmp_path, text_cache):
    it = BatchIterator(TokenDataset(text_cache, seq_len=64), 4, rank=0, world_size=1)
    next(it)
    save_state(it.state_dict(), tmp_path / "s" / "state.json")
    assert load_state(tmp_path / "s" / "state.json") == it.state_dict()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StateError, match="bad.json"):
        load_state(tmp_path / "bad.json")


# --------------------------------------------------------------------------------------------- mixtures
def test_mixture_shares_and_resume(text_cache, sft_cache):
    a = TokenDataset(text_cache, seq_len=32)
    b = TokenDataset(sft_cache, seq_len=32)
    mix = Mixture([(a, 0.7), (b, 0.3)], seed=4)
    it = BatchIterator(mix, 100, rank=0, world_size=1)
    sources = np.concatenate([next(it)["source"] for _ in range(100)])
    shares = np.bincount(sources, minlength=2) / sources.size
    assert sources.size == 10_000 and abs(shares[0] - 0.7) < 0.01 and abs(shares[1] - 0.3) < 0.01
    # a sample from the mixture is the component's sample
    ids = mix.sample_ids(0, np.arange(20))
    batch = mix.get_batch(np.arange(20), epoch=0)
    for row, (k, j) in enumerate(ids.tolist()):
        comp = (a, b)[k].fetch(np.array([j]))
        assert np.array_equal(batch["input_ids"][row], comp["input_ids"][0])
    # exact resume of the mixture on another world size
    ref = BatchIterator(mix, 8, rank=0, world_size=1)
    want = [next(ref)["input_ids"] for _ in range(12)]
    first = BatchIterator(mix, 8, rank=0, world_size=1)
    for _ in range(5):
        next(first)
    halves = [BatchIterator(mix, 8, rank=r, world_size=2) for r in range(2)]
    for h in halves:
        h.load_state_dict(first.state_dict())
    for step in range(5, 12):
        assert np.array_equal(np.concatenate([next(h)["input_ids"] for h in halves]), want[step])
    with pytest.raises(StateError, match="weights"):
        BatchIterator(Mixture([(a, 0.5), (b, 0.5)], seed=4), 8, rank=0, world_size=1).load_state_dict(
            first.state_dict()
        )


def test_mixture_stop_policy_and_mismatch(text_cache, sft_cache):
    a = TokenDataset(text_cache, seq_len=32)
    b = TokenDataset(sft_cache, seq_len=32)
    mix = Mixture([(a, 0.5), (b, 0.5)], policy="stop", seed=1)
    ids = mix.sample_ids(0, np.arange(len(mix)))
    for k in (0, 1):
        js = ids[ids[:, 0] == k, 1]
        assert np.unique(js).size == js.size
    with pytest.raises(ConfigError, match="seq_len"):
        Mixture([(a, 0.5), (TokenDataset(sft_cache, seq_len=16), 0.5)])
    with pytest.raises(ConfigError, match="positive"):
        Mixture([(a, 0.5), (b, -1.0)])


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
    again = BatchIterator(TokenDataset(cache, seq_len=32, follow=True), 4, rank=0, world_size=1)
    again.load_state_dict(saved)
    assert again.source.versions == [v0]
    with pytest.raises(StateError, match="cache changed"):
        BatchIterator(TokenDataset(cache, seq_len=32), 4, rank=0, world_size=1).load_state_dict(saved)
    assert len(static) == n0  # an open, non-following dataset keeps its version


# --------------------------------------------------------------------------------------------- helpers
def test_helpers_and_errors(text_cache, monkeypatch):
    labels = np.array([[5, 6, -100, 7]])
    assert aligned_labels(labels).tolist() == [[-100, 5, 6, -100]]
    cu, longest = cu_seqlens_from_position_ids(np.array([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]))
    assert cu.tolist() == [0, 3, 5, 10] and longest == 5
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert resolve_world() == (3, 4)
    assert resolve_world(1, 2) == (1, 2)
    with pytest.raises(ConfigError, match="divisible"):
        BatchIterator(TokenDataset(text_cache, seq_len=32), 6)
    with pytest.raises(ConfigError, match="mode"):
        TokenDataset(text_cache, seq_len=32, mode="sliding")
    with pytest.raises(CacheError, match="unknown split"):
        TokenDataset(text_cache, seq_len=32, split="test")
    with pytest.raises(CacheError, match="too few"):
        TokenDataset(text_cache, seq_len=10**7)
    with pytest.raises(CacheError, match="fewer than one global batch"):
        list(
            BatchIterator(
                TokenDataset(text_cache, seq_len=2048, split="validation"), 64, rank=0, world_size=1
            )
        )
    with pytest.raises(IndexError):
        TokenDataset(text_cache, seq_len=32).get_batch([10**6])
