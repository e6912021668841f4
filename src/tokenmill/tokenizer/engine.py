"""Engines: what actually turns text into ids, and the choice of the fastest one that gives the reference ids.

A tokenizer (a ``tokenizer.json``, a tiktoken vocabulary) is defined by its own library, the *reference engine*:
`tokenizers` for a ``tokenizer.json``, tiktoken for ranks files and encoding names, the object itself for a
transformers tokenizer that has neither. Another engine may run it only where it gives exactly the reference's
ids. Measured on 2 cores (docs/benchmarks.md): `fastokens` encodes tiktoken-converted and DeepSeek
tokenizer.json files 15-30x faster than `tokenizers`' ``encode_batch_fast`` and tiktoken ranks 5-7x faster than
tiktoken itself, so it is the only candidate; the earlier tiktoken "twin" of byte-level BPE tokenizer.json files
ran at a third of fastokens' speed and was removed.

How identity is established, in this order (:func:`choose_engine`): the candidate must load (fastokens refuses
what it does not implement, e.g. the NFKC normalizer of Unigram tokenizers or BERT's); a structural check of
what the two libraries read differently (:func:`tokenmill.tokenizer.identity.known_divergence`); the same ids
as the reference on the built-in probe set (every Unicode category, whitespace runs, digits, CJK, emoji,
special-token look-alikes, long repeats); and, while a budget of text lasts, the same ids on the first
documents actually encoded (:class:`VerifiedEngine`). Any failure falls back to the reference with one logged
line saying why.
"""

from __future__ import annotations

import array
import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from tokenmill.errors import TokenizerError

log = logging.getLogger("tokenmill.tokenizer")

#: the names ``--engine`` accepts; "auto" picks the fastest proven one
ENGINES = ("auto", "fastokens", "tiktoken", "tokenizers", "bytes")

#: characters of the first documents that every process compares with the reference before trusting an engine
#: alone (about 0.2 s of `tokenizers` time at 0.3M tokens/s on a 150k vocabulary)
VERIFY_CHARS = 1 << 18


class Engine(ABC):
    """Plain-text encoding: no special tokens added, the text of a special token encoded as plain text.

    ``native``: the engine encodes in native code with the GIL released, so threads of one process encode in
    parallel (prepare then runs its units on threads that share one engine instead of spawning processes that
    each load it again).
    """

    name: str = ""
    native: bool = False

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """All ids of ``texts`` in one int64-free array plus ``len(texts) + 1`` offsets (no Python int per
        token where the engine can avoid it)."""
        return flatten(self.encode_batch(texts))


def flatten(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ids -> one uint32 array and offsets. ``array`` over ``chain`` walks the ints in C: 2.3x a
    generator expression into ``np.fromiter`` (5M ids: 0.09 s against 0.21 s), which was a tenth of prepare's
    CPU time on the `tokenizers` fallback."""
    lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = itertools.chain.from_iterable(batch)
    if _UINT32_ARRAY:
        ids = np.frombuffer(array.array("I", flat), dtype=np.uint32)
    else:  # a platform whose C unsigned int is not 32 bits
        ids = np.fromiter(flat, dtype=np.uint32, count=int(offsets[-1]))
    return ids, offsets


_UINT32_ARRAY = array.array("I").itemsize == 4


class FunctionEngine(Engine):
    """An engine from a function (the reference engines of tiktoken and of transformers objects)."""

    def __init__(self, name: str, fn: Callable[[list[str]], list[list[int]]], native: bool = False) -> None:
        self.name = name
        self._fn = fn
        self.native = native

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._fn(texts)


class VerifiedEngine(Engine):
    """A candidate engine checked against the reference on the first ``budget`` characters it encodes; at the
    first difference it hands over to the reference for good, logging one line that names the document."""

    def __init__(self, fast: Engine, reference: Engine, label: str, budget: int = VERIFY_CHARS) -> None:
        self.fast, self.reference, self.label, self.budget = fast, reference, label, budget
        self.name = fast.name
        self.native = fast.native and reference.native
        self.failure: str | None = None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.failure is not None:
            return self.reference.encode_batch(texts)
        if self.budget <= 0:
            return self.fast.encode_batch(texts)
        # compare the texts that fit in what is left of the budget (at least one); encode the rest fast
        k, size = 0, 0
        while k < len(texts) and (k == 0 or size + len(texts[k]) <= self.budget):
            size += len(texts[k])
            k += 1
        head = texts[:k]
        got, want = self.fast.encode_batch(head), self.reference.encode_batch(head)
        for text, a, b in zip(head, got, want, strict=True):
            if a != b:
                self.failure = (
                    f"{self.fast.name} gave other ids than {self.reference.name} on a document starting "
                    f"{text[:60]!r}"
                )
                self.name = self.reference.name
                log.warning("tokenizer %s: %s; using %s", self.label, self.failure, self.reference.name)
                return want + self.reference.encode_batch(texts[k:])
        self.budget -= size
        return got + (self.fast.encode_batch(texts[k:]) if k < len(texts) else [])

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.failure is None and self.budget <= 0:
            return self.fast.encode_flat(texts)
        if self.failure is not None:
            return self.reference.encode_flat(texts)
        return flatten(self.encode_batch(texts))


def choose_engine(
    label: str,
    reference: Engine,
    candidates: dict[str, Callable[[], Engine | str]],
    requested: str,
    probes: list[str],
) -> tuple[Engine, str]:
    """The engine to run and a one-line reason. ``candidates`` maps an engine name to a factory that returns the
    engine or the reason it cannot run this tokenizer (in order of preference); ``requested`` is "auto" or a name
    from :data:`ENGINES`: a forced engine skips the identity checks and fails loudly when it cannot load."""
    if requested not in ENGINES:
        raise TokenizerError(f"unknown engine {requested!r}; choose one of {', '.join(ENGINES)}")
    if requested == reference.name:
        return reference, f"{reference.name}: asked for (the tokenizer's own library)"
    if requested != "auto":
        if requested not in candidates:
            available = ", ".join([reference.name, *candidates])
            raise TokenizerError(
                f"engine {requested!r} cannot run tokenizer {label}; engines for it: {available}"
            )
        made = candidates[requested]()
        if isinstance(made, str):
            raise TokenizerError(f"engine {requested!r} cannot run tokenizer {label}: {made}")
        return made, f"{requested}: asked for (ids not checked against {reference.name})"
    reasons = []
    for name, factory in candidates.items():
        made = factory()
        if isinstance(made, str):
            reasons.append(f"{name} {made}")
            continue
        diff = first_difference(made, reference, probes)
        if diff is not None:
            reasons.append(f"{name} {diff}")
            continue
        note = getattr(made, "note", "")
        return (
            VerifiedEngine(made, reference, label),
            f"{name}{f' ({note})' if note else ''}: same ids as {reference.name} on {len(probes)} probe texts; "
            "checked again on the first documents",
        )
    why = "; ".join(reasons) or "no faster engine for this kind of tokenizer"
    if reasons:
        log.warning("tokenizer %s runs on %s (the slow path): %s", label, reference.name, why)
    return reference, f"{reference.name}: {why}"


def first_difference(engine: Engine, reference: Engine, texts: list[str]) -> str | None:
    """None when both engines give the same ids on every text, else a short description of the first text
    that differs."""
    try:
        got = engine.encode_batch(texts)
    except Exception as e:  # an engine error on a probe is a difference, reported, not raised
        return f"failed on the probe texts ({type(e).__name__}: {e})"
    want = reference.encode_batch(texts)
    for text, a, b in zip(texts, got, want, strict=True):
        if a != b:
            return f"gives other ids than {reference.name} on the probe {text[:40]!r}"
    return None
