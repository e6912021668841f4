"""The `fastokens` engine (Apache-2.0): a Rust re-implementation of the `tokenizers` encoder that also loads
tiktoken ranks. It runs a tokenizer only after :func:`tokenmill.tokenizer.engine.choose_engine` has seen it give
the reference ids.

Measured on the stdlib corpus, 2 cores under load (docs/benchmarks.md): 15-30x `tokenizers`' ``encode_batch_fast``
on tiktoken-converted and DeepSeek tokenizer.json files, 5-7x tiktoken on tiktoken ranks, about 3x on a
SentencePiece-style BPE. ``encode_batch_flat`` returns one uint32 buffer plus offsets, another 2x on the
pipeline and prepare paths, which never build a Python int per token. It refuses at load what it does not
implement (NFKC and BERT normalizers, for instance), which is how Unigram and WordPiece tokenizers reach the
fallback.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from tokenmill.tokenizer.base import scrub_surrogates
from tokenmill.tokenizer.engine import Engine


class FastokensEngine(Engine):
    name = "fastokens"
    native = True  # encode_batch and encode_batch_flat release the GIL (2 threads: 1.8x one, measured)

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    @classmethod
    def from_tokenizer_json(cls, text: str) -> FastokensEngine | str:
        """The engine for a ``tokenizer.json`` (without its truncation and padding), or why not."""
        try:
            import fastokens
        except ImportError:
            return "is not installed"
        try:
            tok = fastokens.Tokenizer.from_json_str(text)
        except Exception as e:  # fastokens raises ValueError/RuntimeError for what it does not implement
            return f"cannot load it ({_short(e)})"
        tok.no_truncation()  # ids never depend on a truncation or padding stored in the file
        tok.no_padding()
        return cls(tok)

    @classmethod
    def from_tiktoken(
        cls, ranks: dict[bytes, int], pattern: str, specials: dict[str, int]
    ) -> FastokensEngine | str:
        """The engine for tiktoken ranks (fastokens reads them from a ``.tiktoken`` file, so one is written)."""
        import base64

        try:
            import fastokens
        except ImportError:
            return "is not installed"
        fd, path = tempfile.mkstemp(suffix=".tiktoken")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in ranks.items()))
            return cls(fastokens.Tokenizer.from_tiktoken(path, pattern=pattern, special_tokens=specials))
        except Exception as e:
            return f"cannot load it ({_short(e)})"
        finally:
            os.unlink(path)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        try:
            encs = self._tok.encode_batch(texts, split_special_tokens=True)
        except UnicodeEncodeError:  # lone surrogates: replaced, as every other engine does
            encs = self._tok.encode_batch([scrub_surrogates(t) for t in texts], split_special_tokens=True)
        return [e.ids for e in encs]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        try:
            ids, offsets = self._tok.encode_batch_flat(texts, split_special_tokens=True)
        except UnicodeEncodeError:
            ids, offsets = self._tok.encode_batch_flat(
                [scrub_surrogates(t) for t in texts], split_special_tokens=True
            )
        return np.frombuffer(ids, dtype=np.uint32), np.frombuffer(offsets, dtype=np.uint64).astype(np.int64)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
