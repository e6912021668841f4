"""Token stages with a real tokenizer and a real prepared cache: tokenize matches the tokenizer, BOS/EOS follow its
convention and are never doubled, from_cache hands out the cache's documents and resumes by position."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.helpers import assert_resumes, run
from tokenmill.pipeline import Pipeline
from tokenmill.pipeline.bos_eos import bos_eos_of
from tokenmill.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(str(tokenizer_path))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path):
    from tokenmill.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("cache") / "c"
    prepare(
        PrepareConfig(
            sources=[str(p) for p in jsonl_shards], output=str(out), tokenizer=str(tokenizer_path), workers=1
        ),
        progress=False,
    )
    return out


def test_tokenize_equals_the_tokenizer(documents, tok):
    out = run(Pipeline.from_sequence([{"text": d, "i": i} for i, d in enumerate(documents)]).tokenize(tok))
    assert [x["i"] for x in out] == list(range(len(documents)))
    assert [x["input_ids"] for x in out] == [tok.encode(d) for d in documents]
    assert out[0]["text"] == documents[0]  # other fields pass through


def test_tokenize_accepts_a_tokenizer_path(tokenizer_path, documents, tok):
    out = run(
        Pipeline.from_sequence([{"body": documents[0]}]).tokenize(str(tokenizer_path), target_column="body")
    )
    assert out[0]["input_ids"] == tok.encode(documents[0])


def test_ensure_bos_eos_follows_the_convention_and_never_doubles(tok):
    bos, eos = bos_eos_of(tok)
    assert eos == tok.eos_id and bos is None  # this byte-level BPE ends documents with EOS and has no BOS
    items = [{"text": "hello world"}, {"text": ""}, {"text": "hi<|endoftext|>"}]
    pipe = Pipeline.from_sequence(items).tokenize(tok).map(_parse_special(tok)).ensure_bos_eos()
    out = [x["input_ids"] for x in run(pipe)]
    assert out[0] == tok.encode("hello world") + [eos]
    assert out[1] == [eos]
    assert out[2][-1] == eos and out[2][-2] != eos  # already ended with EOS: not added again


def _parse_special(tok):
    def fn(x):
        if x["text"].endswith("<|endoftext|>"):
            return {**x, "input_ids": np.asarray(tok.encode_batch([x["text"]], parse_special=True)[0])}
        return x

    return fn


def llama_style_tokenizer(folder):
    """A real BPE whose post-processor prepends <s> (as Llama's does), with a tokenizer_config.json."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    from conftest import make_documents

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    t.train_from_iterator(make_documents(50, seed=1), trainer=trainer)
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    folder.mkdir(parents=True, exist_ok=True)
    t.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return load_tokenizer(str(folder))


def test_ensure_bos_eos_adds_bos_for_tokenizers_that_use_it(tmp_path):
    llama = llama_style_tokenizer(tmp_path / "llama")
    assert llama.adds_bos and (llama.bos_id, llama.eos_id) == (0, 1)
    items = [{"text": "def f(x): return x"}, {"input_ids": [0, 7, 1]}]
    out = run(Pipeline.from_sequence(items[:1]).tokenize(llama).ensure_bos_eos())
    assert out[0]["input_ids"] == [0] + llama.encode(items[0]["text"]) + [1]
    again = run(Pipeline.from_sequence(items[1:]).ensure_bos_eos(llama))
    assert again[0]["input_ids"] == [0, 7, 1]  # already there: never doubled


def test_ensure_bos_eos_needs_a_tokenizer():
    from tokenmill.errors import ConfigError

    with pytest.raises(ConfigError, match="tokenizer"):
        Pipeline.from_sequence([]).ensure_bos_eos()


def test_from_cache_yields_the_documents(cache, tok, documents):
    from tokenmill.cache import CacheReader

    out = run(Pipeline.from_cache(str(cache)))
    reader = CacheReader(str(cache))
    index = reader.split_index("train")
    assert len(out) == index.num_documents
    assert sum(len(x["input_ids"]) for x in out) == index.num_tokens
    expected = sorted(tuple(tok.encode(d) + [tok.eos_id]) for d in documents)
    assert sorted(tuple(x["input_ids"]) for x in out) == expected


@settings(max_examples=10, deadline=None)
@given(k=st.integers(0, 450), shuffle=st.booleans(), seed=st.integers(0, 99))
def test_from_cache_resumes(k, shuffle, seed, cache):
    pipe = Pipeline.from_cache(str(cache), repeat=True, shuffle=shuffle, seed=seed).take(500)
    assert_resumes(pipe, k)


def test_from_cache_shuffles_per_epoch_and_shards(cache):
    n = len(run(Pipeline.from_cache(str(cache))))
    two = run(Pipeline.from_cache(str(cache), repeat=True, shuffle=True).take(2 * n))
    first, second = [tuple(x["input_ids"]) for x in two[:n]], [tuple(x["input_ids"]) for x in two[n:]]
    assert sorted(first) == sorted(second) and first != second
    parts = [run(Pipeline.from_cache(str(cache)).shard(r, 3)) for r in range(3)]
    assert sorted(tuple(x["input_ids"]) for p in parts for x in p) == sorted(
        tuple(x["input_ids"]) for x in run(Pipeline.from_cache(str(cache)))
    )


def test_pack_from_cache_keeps_every_token(cache):
    docs = run(Pipeline.from_cache(str(cache)))
    rows = run(Pipeline.from_cache(str(cache)).pack(256, buffer_size=100, pad_id=-1))
    packed = sorted(t for r in rows for t in r["input_ids"] if t != -1)
    assert packed == sorted(t for d in docs for t in d["input_ids"])
    assert_resumes(Pipeline.from_cache(str(cache)).pack(256, buffer_size=100).batch(2), 9)


def test_cache_builds_once_then_reads(tmp_path, documents, tok):
    from tokenmill.errors import CacheError

    records = [{"text": d} for d in documents[:120]]
    source = Pipeline.from_sequence(records).tokenize(tok).ensure_bos_eos()
    cached = source.cache(str(tmp_path / "val"))
    expected = run(source)
    assert [x["input_ids"] for x in run(cached)] == [x["input_ids"] for x in expected]
    built = (tmp_path / "val" / "manifest.json").stat().st_mtime_ns
    # a second pipeline object over the same data reads the cache without rebuilding it
    again = Pipeline.from_sequence(records).tokenize(tok).ensure_bos_eos().cache(str(tmp_path / "val"))
    assert [x["input_ids"] for x in run(again)] == [x["input_ids"] for x in expected]
    assert (tmp_path / "val" / "manifest.json").stat().st_mtime_ns == built
    assert_resumes(cached.concat_chunk(64).batch(2), 5)
    other = Pipeline.from_sequence(records).tokenize(tok).cache(str(tmp_path / "val"))
    with pytest.raises(CacheError, match="another pipeline"):
        run(other)


def test_format_prompt_completion_masks_the_prompt(tok):
    from tokenmill.formats import FormatConfig, RecordFormatter

    records = [{"prompt": f"Q{i}: what is {i}?", "completion": f" A: {i * i}."} for i in range(30)]
    pipe = Pipeline.from_sequence(records).format(FormatConfig(format="prompt-completion"), tokenizer=tok)
    out = run(pipe)
    expected = RecordFormatter(FormatConfig(format="prompt-completion"), tok).encode_records(records)
    assert [x["input_ids"] for x in out] == [list(e.ids) for e in expected]
    assert [x["loss_mask"] for x in out] == [list(e.mask) for e in expected]
    assert (
        not out[0]["loss_mask"][0] and out[0]["loss_mask"][-1]
    )  # prompt masked, completion (and EOS) trained
    (batch,) = run(pipe.pad(64).batch(30))
    assert batch["labels"][0][0] == -100
    assert_resumes(pipe.concat_chunk(16).batch(2), 7)
    # keyword options instead of a FormatConfig, and the tokenizer inherited from an upstream stage
    assert run(Pipeline.from_sequence(records).format(format="prompt-completion", tokenizer=tok)) == out


def test_format_bad_records_raise_or_are_counted(tok):
    from tokenmill.errors import RecordError

    records = [{"text": "good"}, {"text": 5}, {"other": "x"}, {"text": "fine"}]
    with pytest.raises(RecordError, match="text"):
        run(Pipeline.from_sequence(records).format(format="text", tokenizer=tok))
    pipe = Pipeline.from_sequence(records).format(format="text", tokenizer=tok, on_error="skip")
    it = pipe.iter()
    assert len(list(it)) == 2
    skipped = it.state_dict()["state"]["skipped"]
    assert sum(count for _, count in skipped) == 2
    it.close()


def test_from_hf_saved_dataset_resumes(tmp_path, documents):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": documents[:200], "i": list(range(200))}).save_to_disk(
        str(tmp_path / "ds")
    )
    pipe = Pipeline.from_hf(str(tmp_path / "ds"))
    out = run(pipe)
    assert [x["i"] for x in out] == list(range(200))
    assert_resumes(pipe, 77)


def test_tokenize_an_item_that_is_not_text_is_a_clear_error():
    from tokenmill.errors import ConfigError
    from tokenmill.pipeline import Pipeline
    from tokenmill.tokenizer import load_tokenizer

    pipe = Pipeline.from_sequence([{"text": "fine"}, 7]).tokenize(load_tokenizer("bytes"))
    with pytest.raises(ConfigError, match="not text"):
        list(pipe.iter())
