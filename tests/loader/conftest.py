"""Caches the loader tests read, built once per session by the real `prepare` from the shared fixture documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build, make_documents, write_jsonl


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory, jsonl_shards, tokenizer_path) -> Path:
    """The fixture documents (some spanning several 64-token rows) with a 10% validation split."""
    return build(jsonl_shards, tmp_path_factory.mktemp("loader") / "text", tokenizer_path, validation=0.1)


@pytest.fixture(scope="session")
def sft_cache(tmp_path_factory, tokenizer_path) -> Path:
    """Prompt/completion records: prompts are loss-masked, so masks must survive into the labels."""
    root = tmp_path_factory.mktemp("sft")
    docs = make_documents(120, seed=11, max_words=150)
    records = [{"prompt": d[: len(d) // 3], "completion": d[len(d) // 3 :]} for d in docs]
    shard = write_jsonl(root / "sft.jsonl", records)
    return build([shard], root / "cache", tokenizer_path, format={"format": "prompt-completion"})
