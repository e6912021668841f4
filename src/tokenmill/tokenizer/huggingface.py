"""A Hugging Face ``tokenizers`` tokenizer (what a ``tokenizer.json`` holds) behind the interface."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer.base import Tokenizer
from tokenmill.tokenizer.engine import Engine
from tokenmill.tokenizer.fastokens import FastokensEngine
from tokenmill.tokenizer.identity import known_divergence
from tokenmill.tokenizer.tokenizers import TokenizersEngine

_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eos|>")
_BOS_NAMES = ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "<|beginoftext|>", "<|bos|>")


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` tokenizer (what a ``tokenizer.json`` holds).

    `tokenizers` is the reference engine; ``engine="auto"`` runs it on fastokens where fastokens loads it, no
    known regex difference applies and the probe set gives the same ids (:mod:`tokenmill.tokenizer.engine`).
    ``engine`` (the property) says which one runs, ``engine_reason`` why.
    """

    kind = "huggingface"
    _releasable = ("_plain", "_special", "_divergence")

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
        engine: str = "auto",
        owned: bool = False,
    ) -> None:
        from tokenizers import Tokenizer as _HFTok

        self.name = name
        self.chat_template = chat_template
        # Ids must not depend on a truncation or padding setting stored in the file. A caller's object is
        # copied before it is changed; one we loaded ourselves (``owned``) is changed in place, which saves a
        # serialisation and a parse (0.7 s on a 100k vocabulary, measured in docs/benchmarks.md).
        plain = tokenizer if owned else _HFTok.from_str(tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        # The JSON is serialised once: fastokens, the fingerprint and save read it (at 150k tokens each
        # to_str costs 0.2-0.8 s); it is never parsed whole except for the fingerprint.
        self._json_text: str | None = plain.to_str()
        self._json_file: Path | None = None
        plain.encode_special_tokens = True  # special-token text in data is plain text
        self.__dict__["_plain"] = plain
        self._special: Any = None
        vocab = plain.get_vocab(with_added_tokens=True)
        if not vocab:
            raise TokenizerError(f"tokenizer {name!r} has an empty vocabulary")
        self.vocab_size = max(vocab.values()) + 1
        self._added = {t.content: i for i, t in plain.get_added_tokens_decoder().items()}
        self._resolve_specials(bos_token, eos_token, pad_token, adds_bos)
        self.requested_engine = engine

    @classmethod
    def from_saved(cls, folder: Path, meta: dict[str, Any], engine: str = "auto") -> HFTokenizer | None:
        """A tokenizer saved by :meth:`save`, without loading `tokenizers` until something needs it (a prepare
        worker on a proven fast engine never does); None for a copy saved before the meta file held enough."""
        if not all(k in meta for k in ("special_prefix", "added_tokens", "vocab_size")):
            return None
        self = cls.__new__(cls)
        self.name = meta.get("name") or folder.name
        self.chat_template = meta.get("chat_template")
        self._json_text, self._json_file = None, folder / "tokenizer.json"
        self._special = None
        self.vocab_size = int(meta["vocab_size"])
        self._added = {str(k): int(v) for k, v in meta["added_tokens"].items()}
        self.bos_id, self.eos_id, self.pad_id = meta.get("bos_id"), meta.get("eos_id"), meta.get("pad_id")
        self.adds_bos = bool(meta.get("adds_bos"))
        self.special_prefix = tuple(meta["special_prefix"])
        self.special_suffix = tuple(meta.get("special_suffix") or ())
        self.requested_engine = engine
        return self

    @property
    def _json(self) -> str:
        if self._json_text is None:
            assert self._json_file is not None
            try:
                self._json_text = self._json_file.read_text(encoding="utf-8")
            except OSError as e:
                raise TokenizerError(
                    f"cannot read {self._json_file}: {e}; the tokenizer copy is damaged"
                ) from e
        return self._json_text

    @cached_property
    def _plain(self) -> Any:
        from tokenizers import Tokenizer as _HFTok

        try:
            plain = _HFTok.from_str(self._json)
        except Exception as e:
            raise TokenizerError(f"cannot load {self._json_file} as a tokenizer.json: {e}") from e
        plain.encode_special_tokens = True
        return plain

    @cached_property
    def _divergence(self) -> str | None:
        parts = {}
        for key in ("pre_tokenizer", "normalizer"):
            component = getattr(self._plain, key)
            parts[key] = None if component is None else json.loads(component.__getstate__())
        return known_divergence(parts)

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
            self.special_prefix = tuple(prefix)
            self.special_suffix = tuple(with_ids[k + len(plain_ids) :])
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
        if "_plain" in state:
            self._plain.encode_special_tokens = True
        if self.__dict__.get("_special") is not None:
            self._special.encode_special_tokens = False

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` (special-token text encoded as plain text)."""
        return self._plain

    def _reference_name(self) -> str:
        return TokenizersEngine.name

    def _reference_engine(self) -> Engine:
        return TokenizersEngine(self._plain)

    def _engine_builders(self) -> dict[str, Callable[[], Engine | str]]:
        return {"fastokens": lambda: FastokensEngine.from_tokenizer_json(self._json)}

    def _candidate_engines(self, structural_checks: bool = True) -> dict[str, Callable[[], Engine | str]]:
        def fastokens() -> Engine | str:
            if structural_checks and self._divergence is not None:
                return self._divergence
            return self._built("fastokens")

        return {"fastokens": fastokens}

    def _probe_specials(self) -> list[str]:
        return list(self._added)

    def _encode_special(self, texts: list[str]) -> list[list[int]]:
        return TokenizersEngine(self._special_tokenizer()).encode_batch(texts)

    def _special_tokenizer(self) -> Any:
        if self.__dict__.get("_special") is None:
            from tokenizers import Tokenizer as _HFTok

            t = _HFTok.from_str(self._json)
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
        j = json.loads(self._json)
        return {k: j.get(k) for k in ("model", "normalizer", "pre_tokenizer", "added_tokens")}

    def _save_files(self, directory: Path) -> dict[str, Any]:
        (directory / "tokenizer.json").write_text(self._json, encoding="utf-8")
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
        # what from_saved needs to run without `tokenizers` (a prepare worker on a proven fast engine)
        return {
            "special_prefix": list(self.special_prefix),
            "special_suffix": list(self.special_suffix),
            "added_tokens": self._added,
        }
