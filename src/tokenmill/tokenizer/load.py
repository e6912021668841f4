"""``load_tokenizer``: any spec users pass (a path, a name, a saved folder) -> a :class:`Tokenizer`."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer.base import META_FILE, Tokenizer, start_in_background
from tokenmill.tokenizer.bytes import ByteTokenizer
from tokenmill.tokenizer.fastokens import FastokensEngine
from tokenmill.tokenizer.hf_config import read_hf_config, token_text
from tokenmill.tokenizer.huggingface import HFTokenizer
from tokenmill.tokenizer.objects import from_object, from_transformers
from tokenmill.tokenizer.tiktoken import load_tiktoken_file, load_tiktoken_name

#: fast engines being built ahead for tokenizer files, by (path, size, mtime): see :func:`preload_file`
_EARLY: dict[tuple[str, int, int], Any] = {}


def preload_file(spec: str) -> None:
    """Start building the fast engine of a local ``tokenizer.json`` (or a folder holding one) on a background
    thread, before the caller imports what else it needs. fastokens builds its tables with the GIL released (1.0
    to 1.3 s for a 100k vocabulary), so they overlap the imports: `tokenmill prepare` calls this first and is
    0.3 s faster with cl100k (docs/benchmarks.md). :func:`load_tokenizer` of the same unchanged file takes the
    engine from here; like every candidate it is compared with the reference on the probe set and the user's
    first documents before it encodes alone. Anything else (a name, a URL, a ``.tiktoken`` file, a saved copy)
    is left alone."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / META_FILE).is_file():
            return
        path = path / "tokenizer.json"
    if path.suffix != ".json" or not path.is_file():
        return
    key = _file_key(path)
    if key not in _EARLY:
        build = lambda: FastokensEngine.from_tokenizer_json(path.read_text(encoding="utf-8"))  # noqa: E731
        # `tokenizers` parses the file on a thread of its own, interleaved with the imports. It holds the GIL
        # while it parses (0.15 s for Mistral v1's 3.4 MB; a spinning Python thread ran at 1/14 of its speed
        # meanwhile), so this only orders it: 7 of 8 pairs faster than after the imports when it was added, no
        # difference over 8 later pairs
        _EARLY[key] = {
            **start_in_background({"fastokens": build}),
            **start_in_background({"tokenizers": lambda: _hf_from_file(path)}),
        }


def _hf_from_file(path: Path) -> Any:
    from tokenizers import Tokenizer as _HFTok

    return _HFTok.from_file(str(path))


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _load_tokenizer_json(
    path: Path, *, config: dict[str, Any] | None = None, name: str | None = None
) -> HFTokenizer:
    early = _EARLY.pop(_file_key(path), None) if _EARLY else None
    try:
        tok = early.pop("tokenizers").result() if early is not None else _hf_from_file(path)
    except Exception as e:
        raise TokenizerError(f"cannot load {path} as a tokenizers tokenizer.json: {e}") from e
    cfg = config if config is not None else read_hf_config(path.parent)
    adds_bos = cfg.get("add_bos_token")
    tokenizer = HFTokenizer(
        tok,
        name=name or (path.parent.name if path.name == "tokenizer.json" else path.stem),
        bos_token=token_text(cfg.get("bos_token")),
        eos_token=token_text(cfg.get("eos_token")),
        pad_token=token_text(cfg.get("pad_token")),
        adds_bos=adds_bos if isinstance(adds_bos, bool) else None,
        chat_template=cfg.get("chat_template") if isinstance(cfg.get("chat_template"), str) else None,
        owned=True,
    )
    if early is not None:
        tokenizer.__dict__["_preloaded"] = early
    return tokenizer


def load_transformers(spec: str, trust_remote_code: bool = False) -> Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise TokenizerError(
            f"tokenizer {spec!r} is not a tokenizer.json, a .tiktoken file, a tiktoken encoding name or 'bytes'; "
            "loading Hugging Face model names needs transformers: pip install 'tokenmill[transformers]'"
        ) from e
    try:
        hf = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise TokenizerError(
            f"cannot load tokenizer {spec!r} with transformers ({type(e).__name__}: {e}). Check the name or path; "
            "without network, a hub name must already be in the Hugging Face cache."
        ) from e
    return from_transformers(hf, name=spec)


def _load_saved(folder: Path) -> Tokenizer:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {folder / META_FILE}: {e}; the tokenizer copy is damaged") from e
    kind = meta.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "tiktoken":
        specials = {str(k): int(v) for k, v in (meta.get("special_tokens") or {}).items()}
        tok = load_tiktoken_file(
            folder / "tokenizer.tiktoken",
            pattern=meta.get("pattern"),
            special_tokens=specials,
            name=meta.get("name"),
        )
        eos = meta.get("eos_token")
        tok.eos_id = specials.get(eos) if eos else None
        return tok
    if kind == "huggingface":
        fast = HFTokenizer.from_saved(folder, meta)
        if fast is not None:
            return fast
        cfg = {
            "bos_token": meta.get("bos_token"),
            "eos_token": meta.get("eos_token"),
            "pad_token": meta.get("pad_token"),
            "add_bos_token": meta.get("adds_bos"),
            "chat_template": meta.get("chat_template"),
        }
        return _load_tokenizer_json(folder / "tokenizer.json", config=cfg, name=meta.get("name"))
    raise TokenizerError(f"{folder / META_FILE}: unknown tokenizer kind {kind!r}")


def load_tokenizer(
    spec: Any,
    *,
    trust_remote_code: bool = False,
    engine: str = "auto",
    proven: bool = False,
) -> Tokenizer:
    """Load a tokenizer from any spec the package docstring lists, or take a tokenizer object users hold.

    ``engine`` is "auto" (the fastest engine that gives the tokenizer's own ids, checked here on the probe set)
    or one name of :data:`tokenmill.tokenizer.engine.ENGINES`, used without the check. ``proven=True`` says that
    another process chose ``engine`` by "auto" for this tokenizer: the probe set is skipped, the first documents
    are still compared with the reference (how prepare's workers load). ``trust_remote_code`` is passed to
    transformers and stays off unless the user asks.
    """
    tok = spec if isinstance(spec, Tokenizer) else _load(spec, trust_remote_code)
    if proven and engine != "auto" and "_engine" not in tok.__dict__:
        tok.__dict__["_chosen"] = engine
        engine = "auto"
    if engine != tok.requested_engine:
        if isinstance(spec, Tokenizer) and "_engine" in tok.__dict__:
            tok = copy.copy(tok)  # the caller's tokenizer keeps its engine
            for key in ("_engine", "_chosen", "engine_reason"):
                tok.__dict__.pop(key, None)
        tok.requested_engine = engine
    if engine != "auto":
        tok.engine  # noqa: B018 - a forced engine that cannot run this tokenizer is refused here, at load
    return tok


def _load(spec: Any, trust_remote_code: bool) -> Tokenizer:
    if not isinstance(spec, (str, os.PathLike)):
        return from_object(spec)
    text = os.fspath(spec)
    if text == "bytes":
        return ByteTokenizer()
    if "://" in text and not text.startswith("hf://"):  # a tokenizer file or folder in a bucket
        from tokenmill.sources.urls import local_copy

        text = local_copy(text)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / META_FILE).is_file():
            return _load_saved(path)
        if (path / "tokenizer.json").is_file():
            return _load_tokenizer_json(path / "tokenizer.json")
        return load_transformers(str(path), trust_remote_code)
    if path.is_file():
        if path.suffix == ".tiktoken":
            return load_tiktoken_file(path)
        if path.suffix == ".json":
            return _load_tokenizer_json(path)
        raise TokenizerError(
            f"{path}: not a tokenizer file (expected tokenizer.json, a .tiktoken file, or a tokenizer folder)"
        )
    if text.endswith((".json", ".tiktoken")) or text.startswith(("/", "./", "../", "~")):
        raise TokenizerError(f"tokenizer file {text!r} does not exist")
    try:
        import tiktoken

        names = set(tiktoken.list_encoding_names())
    except ImportError:
        names = set()
    if text in names:
        return load_tiktoken_name(text)
    return load_transformers(text, trust_remote_code)
