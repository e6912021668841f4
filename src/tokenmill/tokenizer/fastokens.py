"""The `fastokens` engine (Apache-2.0): a Rust re-implementation of the `tokenizers` encoder that also loads
tiktoken ranks. It runs a tokenizer only after :func:`tokenmill.tokenizer.engine.choose_engine` has seen it give
the reference ids.

Measured on the stdlib corpus, 2 cores under load (docs/benchmarks.md): 15-30x `tokenizers`' ``encode_batch_fast``
on tiktoken-converted and DeepSeek tokenizer.json files, 5-7x tiktoken on tiktoken ranks, about 3x on a
SentencePiece-style BPE trained with `tokenizers` as the file is and 3-4x more on its byte-level rewrite
(:class:`ByteLevelRewriteEngine`; another 20% where the rewrite may cut words by character class, as for
Mistral v1). ``encode_batch_flat`` returns one uint32 buffer plus offsets, another 2x on the
pipeline and prepare paths, which never build a Python int per token. It refuses at load what it does not
implement (NFKC and BERT normalizers, for instance), which is how Unigram and WordPiece tokenizers reach the
fallback.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from tokenmill.tokenizer.base import gc_paused, scrub_surrogates
from tokenmill.tokenizer.bytelevel import Rewrite, metaspace_as_spaces, might_rewrite, sentencepiece_rewrite
from tokenmill.tokenizer.engine import Engine


class FastokensEngine(Engine):
    name = "fastokens"
    native = True  # encode_batch and encode_batch_flat release the GIL (2 threads: 1.8x one, measured)

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    @classmethod
    def from_tokenizer_json(cls, text: str) -> FastokensEngine | str:
        """The engine for a ``tokenizer.json`` (without its truncation and padding), or why not. A
        SentencePiece-style BPE runs as its byte-level rewrite, which needs nothing of the file as it is: that
        one is built only where the rewrite cannot be (0.2 s of build for Mistral v1 saved while prepare
        starts)."""
        try:
            import fastokens  # noqa: F401
        except ImportError:
            return "is not installed"
        if might_rewrite(text):
            with gc_paused():  # its 0.6M objects would set off collections: 0.29 -> 0.21 s for Mistral v1
                rewrite = sentencepiece_rewrite(text)
            if isinstance(rewrite, Rewrite):
                fast = _loaded(rewrite.tokenizer_json)
                if isinstance(fast, FastokensEngine):
                    return ByteLevelRewriteEngine(fast, rewrite)
        return _loaded(text)

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


class ByteLevelRewriteEngine(Engine):
    """fastokens on the byte-level rewrite of a SentencePiece-style BPE (:mod:`tokenmill.tokenizer.bytelevel`).
    Where the rewrite stops at a partial character (an id from ``first_extra`` up: a character outside the
    vocabulary that starts like one inside), that id is replaced by the ``<0xXX>`` ids of its bytes, in numpy:
    the original's ids for that character, without encoding the document a second time."""

    name = "fastokens"
    native = True

    def __init__(self, rewritten: FastokensEngine, rewrite: Rewrite) -> None:
        self.rewritten, self.first_extra, self.spaces = rewritten, rewrite.first_extra, rewrite.spaces
        self.note = "SentencePiece-style BPE run as byte-level BPE" + (
            ", words cut where the character class changes" if rewrite.classes else ""
        )
        lengths = np.fromiter((len(p) for p in rewrite.partials), dtype=np.int64, count=len(rewrite.partials))
        self._partial_len = lengths
        self._partial_start = np.cumsum(lengths) - lengths
        self._partial_ids = np.fromiter(
            (i for p in rewrite.partials for i in p), dtype=np.uint32, count=int(lengths.sum())
        )

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        ids, offsets = self.encode_flat(texts)
        bounds = offsets.tolist()
        return [ids[bounds[i] : bounds[i + 1]].tolist() for i in range(len(texts))]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self.rewritten.encode_flat(metaspace_as_spaces(texts) if self.spaces else texts)
        if not ids.size or int(ids.max()) < self.first_extra:
            return ids, offsets
        return self._bytes_for_partials(ids, offsets)

    def _bytes_for_partials(self, ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.flatnonzero(ids >= self.first_extra)
        which = ids[at].astype(np.int64) - self.first_extra
        counts = np.ones(len(ids), dtype=np.int64)
        counts[at] = self._partial_len[which]
        ends = np.cumsum(counts)
        out = np.repeat(ids, counts)
        n = counts[at]
        occurrence = np.repeat(np.arange(len(at)), n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        out[(ends[at] - n)[occurrence] + within] = self._partial_ids[
            self._partial_start[which][occurrence] + within
        ]
        new_offsets = np.concatenate(([0], ends))[offsets]
        return out, new_offsets


def _loaded(text: str) -> FastokensEngine | str:
    import fastokens

    try:
        tok = fastokens.Tokenizer.from_json_str(text)
    except Exception as e:  # fastokens raises ValueError/RuntimeError for what it does not implement
        return f"cannot load it ({_short(e)})"
    tok.no_truncation()  # ids never depend on a truncation or padding stored in the file
    tok.no_padding()
    return FastokensEngine(tok)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
