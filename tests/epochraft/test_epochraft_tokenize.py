"""epochraft's tokenize and ensure_bos_eos on tokenmill, with transformers tokenizers of the three conventions
(trained here, never downloaded) and with a tokenmill tokenizer."""

from __future__ import annotations

import pytest
import torch
from epochraft_fixtures import (  # noqa: F401  (fixtures)
    bytelevel_folder,
    bytelevel_tokenizer,
    llama_folder,
    llama_tokenizer,
    t5_folder,
    t5_tokenizer,
)

from tokenmill.epochraft import CheckpointableDataset, testing
from tokenmill.epochraft.transforms.language_modeling.bos_eos import TokenizerBehavior

TEXTS = [{"text": "hello world"}, {"text": "this is a long sentence that will be tokenized"}]
TEXTS.append({"text": "this is another long sentence that will be tokenized"})


def test_tokenize_merges_what_the_tokenizer_returns(bytelevel_tokenizer):
    out = list(CheckpointableDataset.from_sequence(TEXTS).tokenize(bytelevel_tokenizer, max_workers=2))
    assert len(out) == 3
    for sample, record in zip(out, TEXTS):
        assert sample.keys() == {"text", "input_ids", "attention_mask"}
        assert sample["input_ids"] == bytelevel_tokenizer(record["text"])["input_ids"]
        assert isinstance(sample["attention_mask"], list) and len(sample["attention_mask"]) == len(
            sample["input_ids"]
        )


def test_tokenize_with_return_tensors(bytelevel_tokenizer):
    pt = list(
        CheckpointableDataset.from_sequence(TEXTS).tokenize(
            bytelevel_tokenizer, tokenizer_kwargs={"return_tensors": "pt"}
        )
    )
    for sample in pt:
        assert sample.keys() == {"text", "input_ids", "attention_mask"}
        assert isinstance(sample["input_ids"], torch.Tensor) and sample["input_ids"].shape[0] == 1
        assert sample["input_ids"].shape == sample["attention_mask"].shape


@pytest.mark.parametrize("kwargs", [None, {"return_tensors": "pt"}, {"return_tensors": "np"}])
def test_tokenize_then_concat_chunk(bytelevel_tokenizer, kwargs):
    chunks = list(
        CheckpointableDataset.from_sequence(TEXTS)
        .tokenize(bytelevel_tokenizer, tokenizer_kwargs=kwargs, parallel=kwargs is None)
        .concat_chunk(chunk_length=5)
    )
    assert chunks
    for c in chunks:
        assert (
            c.keys() == {"input_ids"} and c["input_ids"].shape == (5,) and c["input_ids"].dtype == torch.long
        )


def test_tokenize_kwargs_reach_the_tokenizer(llama_tokenizer):
    out = list(
        CheckpointableDataset.from_sequence(TEXTS).tokenize(
            llama_tokenizer,
            tokenizer_kwargs={"add_special_tokens": False, "truncation": True, "max_length": 3},
        )
    )
    assert all(len(s["input_ids"]) <= 3 and s["input_ids"][0] != llama_tokenizer.bos_token_id for s in out)


def test_tokenize_resumes(bytelevel_tokenizer):
    ds = CheckpointableDataset.from_sequence(TEXTS * 30, repeat=True, shuffle=True).tokenize(
        bytelevel_tokenizer
    )
    for ckpt in (0, 1, 70, 200):
        testing.check_resumption(ds, ds, ckpt)


@pytest.mark.parametrize(
    ("fixture", "equal", "bos_added", "eos_added"),
    [("bytelevel_tokenizer", True, False, False), ("llama_tokenizer", False, True, False)]
    + [("t5_tokenizer", False, False, True)],
)
def test_tokenizer_behavior(request, fixture, equal, bos_added, eos_added):
    behavior = TokenizerBehavior.from_tokenizer(request.getfixturevalue(fixture))
    assert (behavior.bos_eos_equal, behavior.bos_token_added, behavior.eos_token_added) == (
        equal,
        bos_added,
        eos_added,
    )


def _bounded(tokenizer, pass_tokenizer=True):
    ds = CheckpointableDataset.from_sequence(TEXTS).tokenize(tokenizer, max_workers=2)
    return list(ds.ensure_bos_eos(tokenizer) if pass_tokenizer else ds.ensure_bos_eos())


def test_ensure_bos_eos_bytelevel_adds_eos_only(bytelevel_tokenizer):
    for sample in _bounded(bytelevel_tokenizer):
        ids = sample["input_ids"]
        assert isinstance(ids, torch.Tensor) and ids.dim() == 1 and ids.dtype == torch.long
        assert ids[-1] == bytelevel_tokenizer.eos_token_id and ids[0] != bytelevel_tokenizer.bos_token_id
        assert int((ids == bytelevel_tokenizer.eos_token_id).sum()) == 1


def test_ensure_bos_eos_llama_keeps_its_bos_and_adds_eos(llama_tokenizer):
    for sample in _bounded(llama_tokenizer, pass_tokenizer=False):  # the tokenizer of tokenize by default
        ids = sample["input_ids"]
        assert ids[0] == llama_tokenizer.bos_token_id and ids[1] != llama_tokenizer.bos_token_id
        assert ids[-1] == llama_tokenizer.eos_token_id


def test_ensure_bos_eos_t5_adds_nothing_more(t5_tokenizer):
    for sample, record in zip(_bounded(t5_tokenizer), TEXTS):
        assert sample["input_ids"].tolist() == t5_tokenizer(record["text"])["input_ids"]


def test_a_tokenmill_tokenizer_works_the_same_way(bytelevel_folder):
    from tokenmill.tokenizer import load_tokenizer

    tok = load_tokenizer(str(bytelevel_folder / "tokenizer.json"))
    out = list(CheckpointableDataset.from_sequence(TEXTS).tokenize(tok).ensure_bos_eos())
    for sample, record in zip(out, TEXTS):
        assert sample["input_ids"].tolist() == list(tok.encode(record["text"])) + [tok.eos_id]
    path_form = list(
        CheckpointableDataset.from_sequence(TEXTS).tokenize(str(bytelevel_folder / "tokenizer.json"))
    )
    assert [s["input_ids"] for s in path_form] == [list(tok.encode(r["text"])) for r in TEXTS]
    with pytest.raises(ValueError, match="need a transformers tokenizer"):
        list(CheckpointableDataset.from_sequence(TEXTS).tokenize(tok, tokenizer_kwargs={"truncation": True}))
