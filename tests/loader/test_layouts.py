"""Every layout reads the right tokens: windows cover the stream, packed bins hold whole documents, padded
samples hold one piece each; memmap and Lance reads agree; masks survive into the labels."""

from __future__ import annotations

import numpy as np
import pytest

from loader.helpers import expected_labels, split_stream
from tokenmill.labels import IGNORE_INDEX
from tokenmill.loader import (
    BatchIterator,
    TokenDataset,
)


# ------------------------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("read", ["memmap", "lance"])
def test_windows_cover_the_stream_with_aligned_labels_and_shift_labels(sft_cache, read):
    flat, mask, _ = split_stream(sft_cache)
    seq_len = 48
    ds = TokenDataset(sft_cache, seq_len=seq_len, shuffle=False, read=read)
    assert len(ds) == (flat.size - 1) // seq_len
    batch = ds.get_batch(np.arange(len(ds)))
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (len(ds), seq_len)
    covered = len(ds) * seq_len
    assert np.array_equal(batch["input_ids"].reshape(-1), flat[:covered])
    # every token of the stream after the first is the target of exactly one input: shift_labels[t] of input t
    want = np.where(mask[1 : covered + 1], flat[1 : covered + 1], IGNORE_INDEX)
    assert np.array_equal(batch["shift_labels"].reshape(-1), want)
    assert (batch["shift_labels"] == IGNORE_INDEX).any()  # the prompts are masked
    # labels are aligned with the inputs (Hugging Face): each token where trained, never the window's first
    aligned = np.where(mask[:covered], flat[:covered], IGNORE_INDEX).reshape(len(ds), seq_len)
    aligned[:, 0] = IGNORE_INDEX
    assert np.array_equal(batch["labels"], aligned)
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
