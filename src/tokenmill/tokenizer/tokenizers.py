"""The `tokenizers` engine: the reference for every ``tokenizer.json``, and the fallback when no faster engine
gives the same ids."""

from __future__ import annotations

from typing import Any

from tokenmill.tokenizer.base import scrub_surrogates
from tokenmill.tokenizer.engine import Engine


class TokenizersEngine(Engine):
    """``encode_batch_fast`` (no offsets: the fastest `tokenizers` call; its threads release the GIL) on a
    ``tokenizers.Tokenizer`` whose ``encode_special_tokens`` is on, so special-token text in data stays text."""

    name = "tokenizers"
    native = True

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        tok = self.tokenizer
        fn = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
        try:
            encs = fn(texts, add_special_tokens=False)
        except TypeError:  # lone surrogates cannot cross into Rust; tiktoken replaces them, so do we
            if not all(isinstance(t, str) for t in texts):
                raise
            encs = fn([scrub_surrogates(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encs]
