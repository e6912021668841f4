"""The `fastokens` engine (Apache-2.0): a Rust re-implementation of the `tokenizers` encoder that also loads
tiktoken ranks. It runs a tokenizer only after :func:`tokenmill.tokenizer.engine.choose_engine` has seen it give
the reference ids.

Measured on the stdlib corpus, 2 cores under load (docs/benchmarks.md): 15-30x `tokenizers`' ``encode_batch_fast``
on tiktoken-converted and DeepSeek tokenizer.json files, 5-7x tiktoken on tiktoken ranks, about 3x on a
SentencePiece-style BPE trained with `tokenizers` as the file is and 3-4x more on its byte-level rewrite
(:class:`ByteLevelRewriteEngine`; another 20% where the rewrite may cut words by character class, and 3x more
where it may be cut by a pattern fastokens' scanner knows: both for Mistral v1). ``encode_batch_flat`` returns
one uint32 buffer plus offsets, another 2x on the pipeline and prepare paths, which never build a Python int per token. It refuses at load what it does not
implement (NFKC and BERT normalizers, for instance), which is how Unigram and WordPiece tokenizers reach the
fallback.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from typing import Any

import numpy as np

from tokenmill.errors import TokenizerError
from tokenmill.sampling.ragged import ragged_arange
from tokenmill.tokenizer.base import gc_paused, scrub_surrogates
from tokenmill.tokenizer.bytelevel import (
    APOSTROPHE_STAND_IN,
    Rewrite,
    metaspace_as_spaces,
    might_rewrite,
    sentencepiece_rewrite,
)
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
                if rewrite.known_cut is not None:
                    fast = _loaded(rewrite.known_cut)
                    if isinstance(fast, FastokensEngine):
                        return ByteLevelRewriteEngine(fast, rewrite, known_cut=True)
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
    the original's ids for that character, without encoding the document a second time.

    With ``known_cut`` the engine runs :attr:`Rewrite.known_cut`, cut by a pattern fastokens' scanner knows: "'"
    becomes :data:`APOSTROPHE_STAND_IN` in the text, and each run of "▁" gets the tokens of the run alone, in
    numpy (:meth:`_runs_joined`). A text holding a hazard (:attr:`Rewrite.hazards`), or the stand-in itself
    before a contraction (the swap makes it "'" there), takes the generic cut, built when one first comes."""

    name = "fastokens"
    native = True

    def __init__(self, rewritten: FastokensEngine, rewrite: Rewrite, known_cut: bool = False) -> None:
        self.rewritten, self.first_extra, self.spaces = rewritten, rewrite.first_extra, rewrite.spaces
        self.known_cut = known_cut
        self.note = "SentencePiece-style BPE run as byte-level BPE" + (
            ", cut by a pattern fastokens knows, runs of spaces joined as SentencePiece joins them"
            if known_cut
            else ", words cut where the character class changes"
            if rewrite.classes
            else ""
        )
        lengths = np.fromiter((len(p) for p in rewrite.partials), dtype=np.int64, count=len(rewrite.partials))
        self._partial_len = lengths
        self._partial_start = np.cumsum(lengths) - lengths
        self._partial_ids = np.fromiter(
            (i for p in rewrite.partials for i in p), dtype=np.uint32, count=int(lengths.sum())
        )
        if known_cut:
            self._generic_json: str | None = rewrite.tokenizer_json
            self._generic: FastokensEngine | None = None
            self._lock = threading.Lock()
            self._hazards = rewrite.hazards  # none is ASCII (else no known cut is made)
            self._run_len = np.zeros(self.first_extra + len(rewrite.partials), dtype=np.int64)
            for i, n in rewrite.runs:
                self._run_len[i] = n
            self._space = next(i for i, n in rewrite.runs if n == 1)
            self._run_tokens: dict[int, np.ndarray] = {}

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        ids, offsets = self.encode_flat(texts)
        bounds = offsets.tolist()
        return [ids[bounds[i] : bounds[i + 1]].tolist() for i in range(len(texts))]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        texts = metaspace_as_spaces(texts) if self.spaces else texts
        if self.known_cut:
            ids, offsets = self._known_cut_flat(texts)
        else:
            ids, offsets = self.rewritten.encode_flat(texts)
        if not ids.size or int(ids.max()) < self.first_extra:
            return ids, offsets
        return self._bytes_for_partials(ids, offsets)

    def _known_cut_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        # a text holding a hazard, or the stand-in before a contraction (where the swap makes it "'"), takes the
        # generic cut; most texts are ASCII, which holds none of the hazards (isascii reads a flag)
        odd = {i for i, t in enumerate(texts) if not t.isascii() and any(h in t for h in self._hazards)}
        odd.update(i for i, t in enumerate(texts) if APOSTROPHE_STAND_IN in t and _CONTRACTION.search(t))
        if odd:
            return self._with_generic(texts, sorted(odd))
        return self._known_cut_plain(texts)

    def _known_cut_plain(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts that need no generic cut, by the known cut: "'" swapped, runs put back."""
        ids, offsets = self.rewritten.encode_flat(
            [
                t.translate(_SWAP) if APOSTROPHE_STAND_IN in t else t.replace("'", APOSTROPHE_STAND_IN)
                for t in texts
            ]
        )
        return self._runs_joined(ids, offsets)

    def _with_generic(self, texts: list[str], odd: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The texts at ``odd`` by the generic cut, the others by the known cut, back in their order."""
        plain = sorted(set(range(len(texts))) - set(odd))
        a_ids, a_offsets = self._known_cut_plain([texts[i] for i in plain])
        b_ids, b_offsets = self._generic_engine().encode_flat([texts[i] for i in odd])
        order = np.argsort(np.array(plain + odd, dtype=np.int64), kind="stable")
        starts = np.concatenate((a_offsets[:-1], b_offsets[:-1] + len(a_ids)))[order]
        lengths = np.concatenate((np.diff(a_offsets), np.diff(b_offsets)))[order]
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return np.concatenate((a_ids, b_ids))[ragged_arange(starts, lengths)], offsets

    def _generic_engine(self) -> FastokensEngine:
        with self._lock:
            if self._generic is None:
                generic = _loaded(self._generic_json or "")
                if isinstance(generic, str):
                    raise TokenizerError(f"fastokens cannot load the rewrite's generic cut: {generic}")
                self._generic, self._generic_json = generic, None
            return self._generic

    def _runs_joined(self, ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each run of "▁" with the tokens of the run alone (:mod:`tokenmill.tokenizer.bytelevel` says why that
        is exact). The pattern gives a run but its last "▁" a piece of its own and the last "▁" to the word after
        it; where the word does not take it, it is a single "▁" token at the end of the run's tokens, the only
        place they can differ: so only runs of "▁" tokens that end in the single "▁" are put again. Only those
        places are looked at, and the batch is copied once (0.55 -> 0.15 s for a 100 MB corpus)."""
        ends = np.flatnonzero(ids == self._space)
        if not ends.size:
            return ids, offsets
        n = len(ids)
        doc = np.searchsorted(offsets, ends, side="right") - 1
        first, stop = offsets[doc], offsets[doc + 1]
        before = self._run_len[ids[np.maximum(ends - 1, 0)]]
        after = self._run_len[ids[np.minimum(ends + 1, n - 1)]]
        last = (ends > first) & (before > 0) & ((ends + 1 >= stop) | (after == 0))
        ends, doc, first = ends[last], doc[last], first[last]
        if not ends.size:
            return ids, offsets
        starts, count = ends.copy(), np.ones(len(ends), dtype=np.int64)
        active = np.arange(len(ends))
        while active.size:  # back to the run's first token: a few steps (a token holds up to 16 "▁")
            prior = starts[active] - 1
            lens = self._run_len[ids[np.maximum(prior, 0)]]
            more = (prior >= first[active]) & (lens > 0)
            active, prior = active[more], prior[more]
            starts[active] = prior
            count[active] += lens[more]
        counts, which = np.unique(count, return_inverse=True)
        rows = [self._run_tokens_of(int(c)) for c in counts]
        row_len = np.array([len(r) for r in rows], dtype=np.int64)
        table = np.zeros((len(rows), int(row_len.max())), dtype=np.uint32)
        for k, r in enumerate(rows):
            table[k, : len(r)] = r
        new_len, old_len = row_len[which], ends - starts + 1
        # a run whose tokens are already the run's own is left as it is
        same = new_len == old_len
        if same.any():
            width = int(old_len[same].max())
            at = starts[same, None] + np.arange(width)
            inside = np.arange(width) < old_len[same, None]
            now = np.where(inside, ids[np.minimum(at, n - 1)], 0)
            same[same] = (now == np.where(inside, table[which[same], :width], 0)).all(axis=1)
        change = ~same
        if not change.any():
            return ids, offsets
        new_len, which = new_len[change], which[change]
        put = table[which[np.repeat(np.arange(len(which)), new_len)], ragged_arange(0, new_len)]
        return _splice(ids, offsets, starts[change], old_len[change], doc[change], new_len, put)

    def _run_tokens_of(self, count: int) -> np.ndarray:
        """The tokens of ``count`` "▁" alone: the pattern keeps a run at the end of a text whole."""
        tokens = self._run_tokens.get(count)
        if tokens is None:
            tokens, _ = self.rewritten.encode_flat([" " * count])
            self._run_tokens[count] = tokens = tokens.copy()
        return tokens

    def _bytes_for_partials(self, ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.flatnonzero(ids >= self.first_extra)
        which = ids[at].astype(np.int64) - self.first_extra
        n = self._partial_len[which]
        put = self._partial_ids[ragged_arange(self._partial_start[which], n)]
        doc = np.searchsorted(offsets, at, side="right") - 1
        return _splice(ids, offsets, at, np.ones(len(at), dtype=np.int64), doc, n, put)


_SWAP = {ord("'"): APOSTROPHE_STAND_IN, ord(APOSTROPHE_STAND_IN): "'"}
#: the stand-in where the swap makes it "'" before a contraction that the pattern would cut off
_CONTRACTION = re.compile(f"{APOSTROPHE_STAND_IN}(?:[sS\u017fdDmMtT]|[lL][lL]|[rRvV][eE])")  # ſ folds to s


def _splice(
    ids: np.ndarray,
    offsets: np.ndarray,
    starts: np.ndarray,
    old_len: np.ndarray,
    doc: np.ndarray,
    new_len: np.ndarray,
    put: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` with the ``old_len[k]`` tokens from ``starts[k]`` (in document ``doc[k]``; sorted, apart) replaced
    by the next ``new_len[k]`` of ``put``, and the offsets that go with it. The batch is copied once or twice,
    the rest is over the places alone."""
    drop = np.zeros(len(ids), dtype=bool)
    drop[ragged_arange(starts, old_len)] = True
    kept = ids[~drop]
    at = starts - (np.cumsum(old_len) - old_len)  # where each place starts among the kept tokens
    out = np.insert(kept, np.repeat(at, new_len), put)
    shift = np.bincount(doc, weights=new_len - old_len, minlength=len(offsets) - 1).astype(np.int64)
    moved = offsets.copy()
    moved[1:] += np.cumsum(shift)
    return out, moved


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
