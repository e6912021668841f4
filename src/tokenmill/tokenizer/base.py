"""The one interface every tokenizer engine implements, and the fingerprint that identifies a tokenizer."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import itertools
import json
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from tokenmill.errors import TokenizerError

if TYPE_CHECKING:
    from tokenmill.tokenizer.engine import Engine

META_FILE = "tokenmill_tokenizer.json"
_META_VERSION = 1


def scrub_surrogates(text: str) -> str:
    """Replace lone surrogates (possible in JSON-decoded text) by U+FFFD, as tiktoken does, so engines agree."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a while: parsing a 100k-vocabulary tokenizer.json makes hundreds of
    thousands of objects without a cycle among them, and the collections they trigger take a third of the time
    of the fingerprint (1.1 -> 0.7 s for cl100k, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sha256_json(obj: Any) -> str:
    """sha256 of ``obj`` as the standard library writes it: sorted keys, no spaces, no ASCII escapes. Fingerprints
    (and so every cache's identity) are defined by it, so the bytes may never change.

    orjson writes the same bytes where the data is only dicts with str keys, lists, str, 64-bit ints, bools and
    None (checked, in a fifth of the time the standard library takes to write; a property test compares both):
    0.13 -> 0.04 s for Mistral v1's tokenizer.json, 0.37 -> 0.09 s for DeepSeek's, on the main thread while
    `tokenmill prepare` starts. Floats are left to the standard library: orjson writes 1e-05 as 0.00001. (orjson
    does not read these files faster than the standard library: 0.06 against 0.04 s for Mistral v1's.)"""
    if _orjson_exact(obj):
        # an int past 64 bits or a lone surrogate makes orjson raise: then the standard library writes it
        with contextlib.suppress(TypeError):
            return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


_ORJSON_EXACT = frozenset({str, int, bool, type(None)})


def _orjson_exact(obj: Any) -> bool:
    """Whether ``obj`` holds only what orjson and the standard library write alike (see :func:`sha256_json`).
    Types are collected a container at a time (``set(map(type, ...))`` runs in C), and lists of lists are
    flattened a level at a time, so 150k merges cost one pass, not 150k calls."""
    stack: list[Any] = [[obj]]
    while stack:
        items = stack.pop()
        types = set(map(type, items))
        if types <= _ORJSON_EXACT:
            continue
        if not types <= _ORJSON_EXACT | {list, dict}:
            return False  # a float, a tuple, a subclass, anything else: the standard library writes it
        lists = [x for x in items if type(x) is list]
        dicts = [x for x in items if type(x) is dict]
        if lists:
            stack.append(list(itertools.chain.from_iterable(lists)))
        for d in dicts:
            if not set(map(type, d)) <= {str}:
                return False
            stack.append(list(d.values()))
    return True


def start_in_background(builders: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each builder started on one background thread, in order: name -> future."""
    import concurrent.futures as cf

    pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenmill-engine")
    futures = {name: pool.submit(build) for name, build in builders.items()}
    pool.shutdown(wait=False)
    return futures


class Tokenizer(ABC):
    """What the rest of tokenmill needs from a tokenizer, whatever library runs it.

    ``vocab_size`` is the largest id + 1 (added and special tokens included), so it bounds every id the
    tokenizer can emit and decides the cache's integer width. ``adds_bos`` is the tokenizer's own convention
    (whether its post-processor starts a sequence with BOS); formats follow it by default.
    """

    kind: str = ""
    name: str = ""
    vocab_size: int = 0
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    adds_bos: bool = False
    chat_template: str | None = None

    #: the engine asked for ("auto": the fastest one proven to give the reference ids; see tokenizer.engine)
    requested_engine: str = "auto"
    #: special ids a transformers call with ``add_special_tokens=True`` puts before / after the text
    special_prefix: tuple[int, ...] = ()
    special_suffix: tuple[int, ...] = ()

    @abstractmethod
    def _reference_engine(self) -> Engine:
        """The tokenizer's own library, whose ids define the tokenizer."""

    def _reference_name(self) -> str:
        """The name of :meth:`_reference_engine` (without building it: a worker on a proven engine never does)."""
        return self.kind

    def _candidate_engines(self, structural_checks: bool = True) -> dict[str, Callable[[], Engine | str]]:
        """Faster engines worth trying, in order of preference (each a factory: the engine or why not);
        ``structural_checks=False`` for an engine already proven (no reference library is loaded)."""
        return {}

    def _engine_builders(self) -> dict[str, Callable[[], Engine | str]]:
        """How to build each faster engine, without any check (the candidates' factories check first, then
        call :meth:`_built`); what :meth:`preload_engines` runs ahead on a thread."""
        return {}

    def _built(self, name: str) -> Engine | str:
        """The engine ``name`` (or why not): the one a preload started, else built now."""
        future = self.__dict__.get("_preloaded", {}).pop(name, None)
        return future.result() if future is not None else self._engine_builders()[name]()

    def _probe_specials(self) -> list[str]:
        """Special and added token texts the probe set should contain (and look-alikes of them)."""
        return []

    def _engine_state(self) -> Engine:
        engine = self.__dict__.get("_engine")
        if engine is None:
            engine = self._choose_engine()
            self.__dict__["_engine"] = engine
        return engine

    def _choose_engine(self) -> Engine:
        from tokenmill.tokenizer.engine import choose_engine
        from tokenmill.tokenizer.identity import probe_texts

        chosen = self.__dict__.get("_chosen")  # proven in the process that pickled us or started this one
        if chosen is not None and chosen == self._reference_name():
            return self._reference_engine()
        proven = self._candidate_engines(structural_checks=False)
        if chosen is not None and chosen in proven:
            made = proven[chosen]()
            if not isinstance(made, str):
                return made
        reference = self._reference_engine()
        engine, reason = choose_engine(
            self.name,
            reference,
            self._candidate_engines(),
            self.requested_engine,
            probe_texts(self._probe_specials()),
        )
        self.__dict__["engine_reason"] = reason
        self.__dict__["_chosen"] = engine.name
        return engine

    def preload_engines(self) -> None:
        """Start building the faster engines on a background thread, so that what the caller does meanwhile
        overlaps it; the engine choice (:attr:`engine`) then takes them from there. fastokens builds its tables
        with the GIL released, about 1.1 s for a 100k vocabulary: prepare's coordinator calls this right after
        loading the tokenizer and fingerprints it, plans and opens the cache in that time."""
        if "_engine" in self.__dict__ or "_preloaded" in self.__dict__:
            return
        wanted = {
            name: build
            for name, build in self._engine_builders().items()
            if self.requested_engine in ("auto", name)
        }
        if wanted:
            self.__dict__["_preloaded"] = start_in_background(wanted)

    @property
    def engine(self) -> str:
        """The library that actually encodes: ``fastokens``, ``tiktoken``, ``tokenizers`` or ``bytes`` (the
        reference's name again after a fast engine failed the check on the first documents)."""
        return self._engine_state().name

    @property
    def engine_reason(self) -> str:
        """One line: why this engine (what was checked, or why the faster ones were not used)."""
        self._engine_state()
        return self.__dict__.get("engine_reason", f"{self.engine}: chosen in the parent process")

    def check_documents(self, texts: Sequence[str]) -> None:
        """Compare the chosen engine with the reference on these documents now (prepare's coordinator passes
        the user's first documents, so that its workers can run the engine without the reference)."""
        from tokenmill.tokenizer.engine import VerifiedEngine

        engine = self._engine_state()
        if isinstance(engine, VerifiedEngine) and texts:
            engine.encode_batch(list(texts))

    def release_engines(self) -> None:
        """Drop the engines and the objects of the tokenizer's own library (rebuilt when needed again): a
        process that chose the engine for its workers and encodes no more gives their memory back (for a
        100k vocabulary about 270 MB: `tokenizers`' objects and fastokens' tables)."""
        self.__dict__.pop("_engine", None)
        self._release(self._releasable)

    def keep_chosen_engine(self) -> None:
        """Run the chosen engine alone from now on: once it gave the reference ids on the probe set and on the
        first documents (:meth:`check_documents`), the reference library's objects are dropped, as in a
        worker that runs a proven engine (for a 100k vocabulary `tokenizers` holds about 190 MB). Nothing is
        dropped when the engine is the reference itself or fell back to it."""
        from tokenmill.tokenizer.engine import VerifiedEngine

        engine = self._engine_state()
        if not isinstance(engine, VerifiedEngine) or engine.failure is not None:
            return
        self.__dict__["_engine"] = engine.fast
        held = [engine]  # its reference engine holds the library's objects too: freed with them
        del engine
        self._release(self._releasable, background=True, held=held)

    def _release(self, keys: Sequence[str], background: bool = False, held: list[Any] | None = None) -> None:
        """Drop ``keys`` (and what ``held`` holds) now; free it all now or, with ``background``, on a thread:
        freeing `tokenizers`' objects of Mistral v1 took 0.06 s that prepare's units no longer wait for."""
        dropped = [self.__dict__.pop(key, None) for key in keys]
        if held:
            dropped += held
            held.clear()

        def free() -> None:
            dropped.clear()
            gc.collect()
            if sys.platform.startswith("linux"):
                try:
                    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed native memory back to the system
                except OSError:
                    pass

        if background:
            threading.Thread(target=free, name="tokenmill-release", daemon=True).start()
        else:
            free()

    @property
    def engine_is_native(self) -> bool:
        """Whether the chosen engine encodes with the GIL released (threads of one process then encode in
        parallel; see :attr:`tokenmill.tokenizer.engine.Engine.native`)."""
        return self._engine_state().native

    #: cached attributes that :meth:`release_engines` may drop (each rebuilt on demand)
    _releasable: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        # engines hold native objects that do not pickle; the choice travels and the engine is rebuilt
        state = dict(self.__dict__)
        state.pop("_engine", None)
        state.pop("_preloaded", None)
        return state

    def encode_batch(self, texts: Sequence[str], *, parse_special: bool = False) -> list[list[int]]:
        """Encode many texts at once, adding no special tokens.

        With ``parse_special=False`` (the default) the text of a special token is plain text; with ``True`` it
        becomes the control token (for text rendered by a chat template, never for raw data; this path runs on
        the reference engine).
        """
        texts = texts if isinstance(texts, list) else list(texts)
        if parse_special:
            return self._encode_special(texts)
        return self._engine_state().encode_batch(texts)

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``encode_batch`` as one uint32 array of all ids plus ``len(texts) + 1`` int64 offsets: the hot-path
        form, which engines that can fill without a Python int per token."""
        return self._engine_state().encode_flat(texts if isinstance(texts, list) else list(texts))

    def _encode_special(self, texts: list[str]) -> list[list[int]]:
        raise TokenizerError(f"tokenizer {self.name!r} has no special tokens to parse")

    def encode(self, text: str, *, parse_special: bool = False) -> list[int]:
        return self.encode_batch([text], parse_special=parse_special)[0]

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """The id of a token given by its text form (special tokens included), or None."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str | None: ...

    @abstractmethod
    def _fingerprint_payload(self) -> Any:
        """JSON-able data that determines every id this tokenizer produces (not its file paths)."""

    @abstractmethod
    def _save_files(self, directory: Path) -> dict[str, Any]:
        """Write the tokenizer's own files; returns extra entries for the meta file."""

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of what decides the ids: vocabulary, merges, normalizer, pre-tokenizer, special tokens, and
        the BOS/EOS/PAD ids and BOS convention (all the post-processor decides for us). The same tokenizer loaded
        from different paths gives the same value; the decoder and stored truncation/padding do not count."""
        with gc_paused():
            return sha256_json(
                {
                    "kind": self.kind,
                    "tokenizer": self._fingerprint_payload(),
                    "bos_id": self.bos_id,
                    "eos_id": self.eos_id,
                    "pad_id": self.pad_id,
                    "adds_bos": self.adds_bos,
                }
            )

    @property
    def bos_token(self) -> str | None:
        return None if self.bos_id is None else self.id_to_token(self.bos_id)

    @property
    def eos_token(self) -> str | None:
        return None if self.eos_id is None else self.id_to_token(self.eos_id)

    @property
    def pad_token(self) -> str | None:
        return None if self.pad_id is None else self.id_to_token(self.pad_id)

    def to_json_meta(self) -> dict[str, Any]:
        """A small JSON-able description for cache manifests and summaries."""
        return {
            "kind": self.kind,
            "name": self.name,
            "engine": self.engine,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "adds_bos": self.adds_bos,
            "fingerprint": self.fingerprint,
            "chat_template_sha256": (
                None
                if self.chat_template is None
                else hashlib.sha256(self.chat_template.encode()).hexdigest()
            ),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer to ``directory`` so that ``load_tokenizer(directory)`` restores it exactly."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": _META_VERSION,
            **self.to_json_meta(),
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "chat_template": self.chat_template,
            **self._save_files(out),
        }
        tmp = out / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out / META_FILE)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, engine={self.engine!r}, vocab_size={self.vocab_size}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, adds_bos={self.adds_bos})"
        )
