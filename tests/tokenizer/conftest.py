"""Fixtures shared by the tokenizer tests: real corpora and tokenizers trained on them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizer_corpus import CL100K_STYLE, stdlib_documents
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as RawTokenizer

from tokenmill.tokenizer import HFTokenizer, train_tokenizer


@pytest.fixture(scope="module")
def stdlib_docs() -> list[str]:
    return stdlib_documents(2_000_000)


@pytest.fixture(scope="module")
def trained_on_stdlib(stdlib_docs) -> HFTokenizer:
    return train_tokenizer(stdlib_docs, 4000)


@pytest.fixture(scope="module")
def split_style_tokenizer(stdlib_docs, tmp_path_factory) -> Path:
    """A Llama-3/Qwen2-style byte-level BPE: a Split(regex) pre-tokenizer, then ByteLevel without its regex."""
    tok = RawTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CL100K_STYLE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(stdlib_docs[:100], trainer=trainer)
    path = tmp_path_factory.mktemp("split") / "tokenizer.json"
    tok.save(str(path))
    return path
