"""Tokenizer objects users hold (transformers fast and slow, `tokenizers`, tiktoken) work wherever a tokenizer is
taken, with the same engine choice and BOS/EOS convention as the path form; transformers' keyword arguments give
what transformers gives, or a refusal that says what to use. Written for transformers 5 and 4 alike (`make
test-transformers4` runs them under 4.57)."""

from __future__ import annotations

import pytest

from tokenmill.errors import ConfigError, TokenizerError
from tokenmill.pipeline import Pipeline
from tokenmill.tokenizer import load_tokenizer

from .tokenizer_families import qwen_tiktoken_path, sentencepiece_bpe, unigram

transformers = pytest.importorskip("transformers")
V5 = int(transformers.__version__.split(".")[0]) >= 5


def run(pipe) -> list:
    it = pipe.iter()
    try:
        return list(it)
    finally:
        it.close()


def ids_of(pipe) -> list[list[int]]:
    return [s["input_ids"].tolist() for s in run(pipe)]


@pytest.fixture(scope="module")
def llama_style(tmp_path_factory, stdlib_docs):
    """A SentencePiece-style BPE whose post-processor adds <s>, saved as a folder transformers loads."""
    root = tmp_path_factory.mktemp("sp")
    sentencepiece_bpe(stdlib_docs[:40], root / "tokenizer.json")
    # the class named as hub folders name it: transformers v4 needs it (or a config.json) to load a folder
    (root / "tokenizer_config.json").write_text(
        '{"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"}'
    )
    return root


@pytest.fixture(scope="module")
def t5_style(tmp_path_factory, stdlib_docs):
    root = tmp_path_factory.mktemp("t5")
    unigram(stdlib_docs[:6], root / "tokenizer.json", 400)
    (root / "tokenizer_config.json").write_text(
        '{"eos_token": "</s>", "pad_token": "<pad>", "tokenizer_class": "PreTrainedTokenizerFast"}'
    )
    return root


def test_transformers_object_runs_as_its_folder(llama_style, stdlib_docs):
    hf = transformers.AutoTokenizer.from_pretrained(str(llama_style))
    assert type(hf).__name__ == ("TokenizersBackend" if V5 else "PreTrainedTokenizerFast")
    by_path, by_object = load_tokenizer(llama_style), load_tokenizer(hf)
    assert by_object.fingerprint == by_path.fingerprint
    assert by_object.engine == by_path.engine == "fastokens"
    assert (by_object.bos_id, by_object.eos_id, by_object.adds_bos) == (by_path.bos_id, by_path.eos_id, True)
    records = [{"text": d} for d in stdlib_docs[:30]]
    want = ids_of(Pipeline.from_sequence(records).tokenize(llama_style).ensure_bos_eos())
    got = ids_of(Pipeline.from_sequence(records).tokenize(hf).ensure_bos_eos())
    assert got == want
    assert got[0][0] == hf.bos_token_id and got[0][-1] == hf.eos_token_id
    assert got == ids_of(Pipeline.from_sequence(records).tokenize(hf).ensure_bos_eos(hf))
    assert [x[1:-1] for x in got] == hf([d for d in stdlib_docs[:30]], add_special_tokens=False)["input_ids"]


def test_tokenizers_and_tiktoken_objects(llama_style, stdlib_docs):
    import tokenizers

    raw = tokenizers.Tokenizer.from_file(str(llama_style / "tokenizer.json"))
    tok = load_tokenizer(raw)
    assert tok.engine == "fastokens" and tok.adds_bos and tok.bos_id == raw.token_to_id("<s>")
    assert tok.encode_batch(stdlib_docs[:10]) == [
        e.ids for e in raw.encode_batch(stdlib_docs[:10], add_special_tokens=False)
    ]
    encoding = load_tokenizer(qwen_tiktoken_path()).encoding
    qwen = load_tokenizer(encoding)
    assert qwen.engine == "fastokens" and qwen.eos_id == encoding.eot_token
    assert ids_of(Pipeline.from_sequence(stdlib_docs[:5]).tokenize(encoding)) == [
        encoding.encode_ordinary(d) for d in stdlib_docs[:5]
    ]


def test_slow_tiktoken_based_transformers_class(stdlib_docs):
    from .tokenizer_slow import TikTokenSlow

    encoding = load_tokenizer(qwen_tiktoken_path()).encoding
    hf = TikTokenSlow(encoding, eos_token="<|endoftext|>")
    tok = load_tokenizer(hf)
    assert tok.engine == "fastokens" and tok.eos_id == hf.eos_token_id
    got = ids_of(Pipeline.from_sequence(stdlib_docs[:8]).tokenize(hf).ensure_bos_eos())
    assert got == [hf.encode(d) + [hf.eos_token_id] for d in stdlib_docs[:8]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"add_special_tokens": True},
        {"add_special_tokens": False},
        {"add_special_tokens": True, "truncation": True, "max_length": 8},
        {"add_special_tokens": False, "truncation": True, "max_length": 5, "return_tensors": None},
        {"add_special_tokens": True, "truncation": "longest_first", "max_length": 3, "padding": False},
    ],
)
def test_transformers_kwargs_give_what_transformers_gives(llama_style, t5_style, stdlib_docs, kwargs):
    texts = [d[:300] for d in stdlib_docs[:12]] + ["", "x"]
    for folder in (llama_style, t5_style):
        hf = transformers.AutoTokenizer.from_pretrained(str(folder))
        want = hf(texts, **{k: v for k, v in kwargs.items() if k != "return_tensors"})["input_ids"]
        got = ids_of(Pipeline.from_sequence(texts).tokenize(hf, tokenizer_kwargs=kwargs))
        assert got == want, (folder.name, kwargs)


def test_split_special_tokens_false_parses_control_tokens_as_transformers_does(llama_style):
    hf = transformers.AutoTokenizer.from_pretrained(str(llama_style))
    text = ["a </s> b"]
    plain = ids_of(Pipeline.from_sequence(text).tokenize(hf))
    parsed = ids_of(
        Pipeline.from_sequence(text).tokenize(hf, tokenizer_kwargs={"split_special_tokens": False})
    )
    assert hf.eos_token_id not in plain[0]
    assert parsed == hf(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"return_tensors": "pt"}, "batch(n, return_tensors='pt')"),
        ({"padding": "max_length", "max_length": 8}, "pad("),
        ({"return_attention_mask": True}, "attention mask"),
        ({"truncation": True}, "needs max_length"),
        ({"is_split_into_words": True}, "tokenize takes add_special_tokens"),
    ],
)
def test_transformers_kwargs_refused_with_what_to_use(llama_style, kwargs, says):
    hf = transformers.AutoTokenizer.from_pretrained(str(llama_style))
    with pytest.raises(ConfigError, match=r"tokenizer_kwargs") as e:
        Pipeline.from_sequence(["x"]).tokenize(hf, tokenizer_kwargs=kwargs)
    assert says in str(e.value)


def test_unsupported_object_says_what_is_accepted():
    with pytest.raises(TokenizerError, match="transformers tokenizer"):
        Pipeline.from_sequence(["x"]).tokenize(object())


def test_prepare_takes_the_object_and_names_the_engine(llama_style, jsonl_shards, tmp_path):
    import json

    from tokenmill.cache.reader import CacheReader
    from tokenmill.prepare import PrepareConfig, prepare

    hf = transformers.AutoTokenizer.from_pretrained(str(llama_style))
    sources = [str(p) for p in jsonl_shards]
    streams = {}
    for label, tokenizer, engine in (
        ("object", hf, "auto"),
        ("path", str(llama_style), "auto"),
        ("forced", str(llama_style), "tokenizers"),
    ):
        out = tmp_path / label
        cfg = PrepareConfig(sources=sources, output=str(out), tokenizer=tokenizer, workers=1, engine=engine)
        prepare(cfg, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["tokenizer"]["engine"] == ("tokenizers" if engine == "tokenizers" else "fastokens")
        reader = CacheReader(str(out))
        streams[label] = reader.take_rows(reader.split_index("train").rows, with_mask=False)[0].tolist()
        assert manifest["tokenizer"]["fingerprint"] == load_tokenizer(llama_style).fingerprint
    assert streams["object"] == streams["path"] == streams["forced"]
