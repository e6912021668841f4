"""epochraft's token transforms on tokenmill: chunk, concat_chunk, pack_chunk, pad, add_bos_eos; tensors out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.epochraft import CheckpointableDataset, testing
from tokenmill.epochraft.transforms.language_modeling.tokenizer_utils import tensor_from_token_array

DOCS = [{"input_ids": [0, 1, 2, 3, 4, 5]}, {"input_ids": list(range(14, 22))}, {"input_ids": [0, 1, 2]}]
DOCS.append({"input_ids": list(range(4, 13))})


def _ids(samples):
    return [s["input_ids"].tolist() for s in samples]


def test_chunk_drops_or_keeps_each_items_tail():
    ds = CheckpointableDataset.from_sequence(DOCS)
    kept = list(ds.chunk(chunk_length=4).pad(chunk_length=4, pad_values={"input_ids": -1}))
    assert _ids(kept) == [[0, 1, 2, 3], [14, 15, 16, 17], [18, 19, 20, 21], [4, 5, 6, 7], [8, 9, 10, 11]]
    tails = _ids(ds.chunk(4, target_columns=["input_ids"], drop_remainder=False))
    assert tails == [[0, 1, 2, 3], [4, 5], [14, 15, 16, 17], [18, 19, 20, 21], [0, 1, 2], [4, 5, 6, 7]] + [
        [8, 9, 10, 11],
        [12],
    ]


def test_concat_chunk_joins_documents_into_long_tensors():
    docs = [{"input_ids": [0, 1, 2]}, {"input_ids": [3]}, {"input_ids": list(range(4, 12))}]
    chunks = list(CheckpointableDataset.from_sequence(docs).add_bos_eos(-1, -2).concat_chunk(chunk_length=4))
    assert _ids(chunks) == [[-1, 0, 1, 2], [-2, -1, 3, -2], [-1, 4, 5, 6], [7, 8, 9, 10]]
    for c in chunks:
        assert set(c) == {"input_ids"} and c["input_ids"].dtype == torch.long and c["input_ids"].dim() == 1


PACK_DOCS = [[0, 1], [3], list(range(4, 12)), [0, 1, 2], [0, 1, 3], [5], [1], [2], [3], [4]]


def test_pack_chunk_is_greedy_and_cuts_long_items():
    ds = CheckpointableDataset.from_sequence([{"input_ids": d} for d in PACK_DOCS])
    # pad(pad_values, chunk_length) in epochraft's order
    packed = ds.pack_chunk(chunk_length=4, target_columns=["input_ids"]).pad({"input_ids": -1}, 4)
    want = [[0, 1, 3, -1], [4, 5, 6, 7], [0, 1, 2, -1], [0, 1, 3, 5], [1, 2, 3, 4]]
    assert _ids(packed) == want
    dropped = ds.pack_chunk(4, ["input_ids"], discard_long_samples=True).pad({"input_ids": -1}, 4)
    assert _ids(dropped) == [w for w in want if w != [4, 5, 6, 7]]


def test_pack_chunk_keeps_columns_together():
    docs = [{"input_ids": [0, 1, 2], "labels": [3, 4, 5]}, {"input_ids": [6], "labels": [7]}]
    docs.append({"input_ids": [8, 9], "labels": [10, 11]})
    packed = list(
        CheckpointableDataset.from_sequence(docs)
        .pack_chunk(chunk_length=4, target_columns=["input_ids", "labels"])
        .pad(chunk_length=4, pad_values={"input_ids": -1, "labels": -2})
    )
    assert _ids(packed) == [[0, 1, 2, 6], [8, 9, -1, -1]]
    assert [p["labels"].tolist() for p in packed] == [[3, 4, 5, 7], [10, 11, -2, -2]]


def test_pad_refuses_what_does_not_fit():
    ds = CheckpointableDataset.from_sequence([{"input_ids": [1, 2, 3]}])
    with pytest.raises(ValueError, match="more than chunk_length"):
        list(ds.pad({"input_ids": 0}, 2))
    with pytest.raises(ValueError, match="not found"):
        list(ds.pad({"labels": 0}, 4))


CHAINS = {
    "chunk": lambda ds: ds.chunk(5),
    "chunk_tail": lambda ds: ds.chunk(5, drop_remainder=False),
    "concat_chunk": lambda ds: ds.add_bos_eos(-1, -2).concat_chunk(chunk_length=5),
    "pack_chunk": lambda ds: ds.pack_chunk(5, target_columns=["input_ids"]).pad({"input_ids": -1}, 5),
    "pack_chunk_discard": lambda ds: ds.pack_chunk(3, ["input_ids"], discard_long_samples=True),
}


@settings(max_examples=25, deadline=None)
@given(chain=st.sampled_from(sorted(CHAINS)), ckpt=st.integers(0, 150), seed=st.integers(0, 3))
def test_token_transforms_resume_anywhere(chain, ckpt, seed):
    docs = testing.generate_tokenized_samples(seed=seed)
    ds = CHAINS[chain](CheckpointableDataset.from_sequence(docs, repeat=True, shuffle=True))
    testing.check_resumption(ds, ds, ckpt)


@pytest.mark.parametrize(
    "array",
    [
        [1, 2, 3],
        np.array([1, 2, 3], dtype=np.int8),
        np.array([1, 2, 3], dtype=np.int32),
        torch.tensor([1, 2, 3]),
    ],
)
def test_token_arrays_become_long_tensors(array):
    assert torch.equal(tensor_from_token_array(array), torch.tensor([1, 2, 3], dtype=torch.long))
    assert tensor_from_token_array(torch.tensor([[1, 2, 3]])).tolist() == [1, 2, 3]  # batch of one
    assert tensor_from_token_array([]).dtype == torch.long


@pytest.mark.parametrize(
    "array",
    [
        np.array([1.0, 2.0]),
        torch.tensor([1.0, 2.0]),
        np.array([[1, 2], [3, 4]]),
        np.array(1),
        torch.tensor(1),
        np.array([], dtype=np.float64),
        np.array([[], []], dtype=np.int64),
    ],
)
def test_bad_token_arrays_are_value_errors(array):
    with pytest.raises(ValueError):
        tensor_from_token_array(array)
