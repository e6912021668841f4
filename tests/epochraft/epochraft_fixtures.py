"""Fixtures for the epochraft surface (imported by the tests here; a second conftest.py would shadow the
shared one): transformers tokenizers of the three conventions epochraft handles, trained in a second, never
downloaded, and shards whose records say which file they came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: records per shard: skewed, with an empty shard, so round-robin and epoch ends are exercised
SHARD_SIZES = (5, 3, 20, 4, 0, 5)


def _shard_records(index: int, count: int) -> list[dict]:
    return [{"text": f"record {j} of shard {index}", "file_index": index} for j in range(count)]


@pytest.fixture(scope="session")
def shard_sizes() -> tuple[int, ...]:
    return SHARD_SIZES


@pytest.fixture(scope="session")
def jsonl_files(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("er_jsonl")
    paths = []
    for i, n in enumerate(SHARD_SIZES):
        path = root / f"file_{i}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _shard_records(i, n)))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def cbor_files(tmp_path_factory) -> list[str]:
    cbor2 = pytest.importorskip("cbor2")
    root = tmp_path_factory.mktemp("er_cbor")
    paths = []
    for i, n in enumerate(SHARD_SIZES):
        path = root / f"file_{i}.cbor"
        path.write_bytes(b"".join(cbor2.dumps(r) for r in _shard_records(i, n)))
        paths.append(str(path))
    return paths


def _save(tok, folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _texts() -> list[str]:
    words = "the of and to in is was for it with as on be at by hello world this is a long sentence tokenized".split()
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 40)) + "." for i in range(300)]


@pytest.fixture(scope="session")
def bytelevel_folder(tmp_path_factory) -> Path:
    """gpt2 / neox convention: byte-level BPE, BOS = EOS = <|endoftext|>, nothing added by the tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(
        _texts(),
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    e = "<|endoftext|>"
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": e, "eos_token": e, "unk_token": e}
    return _save(tok, tmp_path_factory.mktemp("er_tok") / "bytelevel", config)


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory) -> Path:
    """Llama convention: SentencePiece-style BPE with byte fallback; the tokenizer adds BOS <s>, EOS is </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(
        _texts(), trainers.BpeTrainer(vocab_size=800, special_tokens=specials, show_progress=False)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
    }
    return _save(tok, tmp_path_factory.mktemp("er_tok") / "llama", config)


@pytest.fixture(scope="session")
def t5_folder(tmp_path_factory) -> Path:
    """T5 convention: a Unigram model with no BOS; the tokenizer adds EOS </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        _texts(),
        trainers.UnigramTrainer(
            vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    config = {
        "tokenizer_class": "T5Tokenizer",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    return _save(tok, tmp_path_factory.mktemp("er_tok") / "t5", config)


@pytest.fixture(scope="session")
def bytelevel_tokenizer(bytelevel_folder):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(bytelevel_folder))


@pytest.fixture(scope="session")
def llama_tokenizer(llama_folder):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(llama_folder))


@pytest.fixture(scope="session")
def t5_tokenizer(t5_folder):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(t5_folder))
