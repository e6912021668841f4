"""Fixtures of the record-format tests: the fixture tokenizer, its golden twin, and chat-template variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import processors

from tokenmill.tokenizer import load_tokenizer

from .format_helpers import CHATML, LLAMA3, Golden


@pytest.fixture(scope="module")
def golden(tokenizer_path) -> Golden:
    return Golden(tokenizer_path)


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def chat_dir(tokenizer_path, tmp_path_factory) -> Path:
    """The fixture tokenizer plus ChatML control tokens, with a ChatML template (default system prompt)."""
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    folder = tmp_path_factory.mktemp("chatml")
    raw.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|endoftext|>", "chat_template": CHATML})
    )
    return folder


@pytest.fixture(scope="module")
def llama_dir(tokenizer_path, tmp_path_factory) -> Path:
    """The fixture tokenizer with Llama-3-style specials, a post-processor that adds BOS, and a trimming template."""
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    bos = raw.token_to_id("<|begin_of_text|>")
    raw.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    folder = tmp_path_factory.mktemp("llama")
    raw.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3})
    )
    return folder
