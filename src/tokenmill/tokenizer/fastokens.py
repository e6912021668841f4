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

from tokenmill.tokenizer.base import scrub_surrogates
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
        SentencePiece-style BPE gets its byte-level rewrite, with the file as it is for partial characters: the
        two are built one after the other. Building the file as it is on a second thread while the rewrite is
        made (0.2-0.3 s each for Mistral v1) made `tokenmill prepare` slower, not faster: there the preload
        already shares the 2 cores with the imports, and one thread fewer cut the median of 8 interleaved
        Mistral v1 builds from 5.44 to 5.26 s (faster in 7 of the 8 pairs, 0.4 CPU-s less)."""
        try:
            import fastokens  # noqa: F401
        except ImportError:
            return "is not installed"
        if not might_rewrite(text):
            return _loaded(text)
        rewrite = sentencepiece_rewrite(text)
        fast = _loaded(rewrite.tokenizer_json) if isinstance(rewrite, Rewrite) else None
        plain = _loaded(text)
        if (
            isinstance(plain, str)
            or not isinstance(rewrite, Rewrite)
            or not isinstance(fast, FastokensEngine)
        ):
            return plain  # the file as it is still runs (or says why it cannot)
        return ByteLevelRewriteEngine(fast, plain, rewrite.first_extra, rewrite.spaces, rewrite.classes)

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
    """fastokens on the byte-level rewrite of a SentencePiece-style BPE (:mod:`tokenmill.tokenizer.bytelevel`),
    with the file as it is for the documents where the rewrite stops at a partial character (an id from
    ``first_extra`` up: a character outside the vocabulary that starts like one inside).

    Where such documents are common (scripts the vocabulary covers partly), encoding them twice would cost more
    than it saves: past a quarter of the first 1,024 documents, every document goes the original way.
    """

    name = "fastokens"
    native = True

    def __init__(
        self,
        rewritten: FastokensEngine,
        plain: FastokensEngine,
        first_extra: int,
        spaces: bool = False,
        classes: bool = False,
    ) -> None:
        self.rewritten, self.plain, self.first_extra, self.spaces = rewritten, plain, first_extra, spaces
        self.note = "SentencePiece-style BPE run as byte-level BPE" + (
            ", words cut where the character class changes" if classes else ""
        )
        self.documents = 0
        self.redone = 0

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        ids, offsets = self.encode_flat(texts)
        bounds = offsets.tolist()
        return [ids[bounds[i] : bounds[i + 1]].tolist() for i in range(len(texts))]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.documents >= 1024 and self.redone * 4 > self.documents:
            return self.plain.encode_flat(texts)
        ids, offsets = self.rewritten.encode_flat(metaspace_as_spaces(texts) if self.spaces else texts)
        self.documents += len(texts)
        if not ids.size or int(ids.max()) < self.first_extra:
            return ids, offsets
        docs = np.unique(np.searchsorted(offsets, np.flatnonzero(ids >= self.first_extra), side="right") - 1)
        self.redone += len(docs)
        again, again_offsets = self.plain.encode_flat([texts[d] for d in docs.tolist()])
        lengths = np.diff(offsets)
        lengths[docs] = np.diff(again_offsets)
        pieces, start = [], 0
        for k, d in enumerate(docs.tolist()):
            pieces += [ids[offsets[start] : offsets[d]], again[again_offsets[k] : again_offsets[k + 1]]]
            start = d + 1
        pieces.append(ids[offsets[start] :])
        new_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        return np.concatenate(pieces).astype(np.uint32, copy=False), new_offsets


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
