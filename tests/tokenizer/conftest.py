"""Fixtures shared by the tokenizer tests: real corpora, and the tokenizer families people use, built offline."""

from __future__ import annotations

import pytest

from tokenmill.tokenizer import load_tokenizer, train_tokenizer

from . import tokenizer_families as families
from .tokenizer_corpus import stdlib_documents


@pytest.fixture(scope="session")
def stdlib_docs() -> list[str]:
    return stdlib_documents(1_000_000)


@pytest.fixture(scope="session")
def family_tokenizers(tmp_path_factory, stdlib_docs) -> dict:
    """Each family loaded once (engine "auto"); trained ones learn from a slice of the stdlib corpus."""
    root = tmp_path_factory.mktemp("families")
    train = stdlib_docs[:60]
    specs = {
        "cl100k-tokenizer.json": lambda: families.cl100k_tokenizer_json(root / "cl100k" / "tokenizer.json"),
        "deepseek": families.deepseek_folder,
        "qwen.tiktoken": families.qwen_tiktoken_path,
        "cl100k.tiktoken": families.cl100k_ranks_path,
        "byte-level-bpe": lambda: train_tokenizer(train, 3000).save(root / "bpe"),
        "sentencepiece-bpe": lambda: families.sentencepiece_bpe(train, root / "sp" / "tokenizer.json"),
        "mistral-v1": lambda: families.mistral_v1_tokenizer_json(root / "mistral" / "tokenizer.json"),
        "unigram": lambda: families.unigram(train[:8], root / "unigram" / "tokenizer.json", 500),
        "wordpiece": lambda: families.wordpiece(train, root / "wordpiece" / "tokenizer.json"),
    }
    return {name: load_tokenizer(make()) for name, make in specs.items()}
