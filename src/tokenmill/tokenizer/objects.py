"""Tokenizer objects users already hold -> a :class:`Tokenizer` with the same engine choice as a path.

Accepted: a transformers tokenizer with a `tokenizers` backend (v4 ``PreTrainedTokenizerFast``, v5
``TokenizersBackend`` and the classes built on them), a slow transformers tokenizer that wraps a
``tiktoken.Encoding`` (as Qwen's first models and Kimi's do), a ``tokenizers.Tokenizer`` and a
``tiktoken.Encoding``. The transformers object supplies the BOS/EOS/PAD tokens, the BOS convention and the chat
template, exactly as ``tokenizer_config.json`` does for a folder.
"""

from __future__ import annotations

from typing import Any

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer.base import Tokenizer

#: objects converted lately, by id (a pipeline resolves the same object in ``tokenize`` and ``ensure_bos_eos``;
#: converting a 150k vocabulary costs seconds); each entry holds the object, so its id stays its own
_CONVERTED: dict[int, tuple[Any, Tokenizer]] = {}
_CONVERTED_MAX = 8

ACCEPTED = (
    "a tokenmill Tokenizer, a path or name load_tokenizer accepts, a transformers tokenizer "
    "(PreTrainedTokenizerFast, TokenizersBackend, or a slow one built on tiktoken), a tokenizers.Tokenizer or a "
    "tiktoken.Encoding"
)


def from_object(obj: Any) -> Tokenizer:
    """The tokenmill tokenizer for ``obj`` (see the module docstring), converted once per object."""
    hit = _CONVERTED.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    tok = _convert(obj)
    if len(_CONVERTED) >= _CONVERTED_MAX:
        _CONVERTED.pop(next(iter(_CONVERTED)))
    _CONVERTED[id(obj)] = (obj, tok)
    return tok


def _convert(obj: Any) -> Tokenizer:
    from tokenmill.tokenizer.huggingface import HFTokenizer
    from tokenmill.tokenizer.tiktoken import TiktokenTokenizer

    if _is_instance(obj, "tokenizers", "Tokenizer"):
        return HFTokenizer(obj, name="tokenizers.Tokenizer")
    if _is_instance(obj, "tiktoken", "Encoding"):
        return TiktokenTokenizer(obj)
    if hasattr(obj, "backend_tokenizer") or hasattr(obj, "all_special_tokens"):
        return from_transformers(obj, name=getattr(obj, "name_or_path", None) or type(obj).__name__)
    raise TokenizerError(
        f"unsupported tokenizer {type(obj).__module__}.{type(obj).__name__}: pass {ACCEPTED}"
    )


def _is_instance(obj: Any, module: str, name: str) -> bool:
    try:
        mod = __import__(module)
    except ImportError:
        return False
    return isinstance(obj, getattr(mod, name))


def from_transformers(hf: Any, name: str) -> Tokenizer:
    """A transformers tokenizer object -> the same tokenizer as its folder would load."""
    from tokenmill.tokenizer.huggingface import HFTokenizer

    bos, eos, pad = (_text(getattr(hf, f"{k}_token", None)) for k in ("bos", "eos", "pad"))
    adds_bos = getattr(hf, "add_bos_token", None)
    template = getattr(hf, "chat_template", None)
    template = template if isinstance(template, str) else None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        from tokenizers import Tokenizer as _HFTok

        return HFTokenizer(
            _HFTok.from_str(backend.to_str()),
            name=name,
            bos_token=bos,
            eos_token=eos,
            pad_token=pad,
            # what the backend's post-processor does is what the object does (v5 reports add_bos_token=False
            # for a tokenizer.json whose post-processor adds BOS), so the convention is read from it
            adds_bos=None,
            chat_template=template,
            owned=True,  # the copy made here
        )
    encoding = _find_tiktoken(hf)
    if encoding is None:
        raise TokenizerError(
            f"tokenizer {name!r} ({type(hf).__name__}) has no fast (tokenizers) backend and wraps no tiktoken "
            "Encoding; convert it with transformers (AutoTokenizer.from_pretrained(..., use_fast=True)"
            ".save_pretrained(DIR)) and pass DIR or the fast object"
        )
    return _from_slow_tiktoken(hf, encoding, name, bos, eos, pad, adds_bos, template)


def _from_slow_tiktoken(
    hf: Any,
    encoding: Any,
    name: str,
    bos: str | None,
    eos: str | None,
    pad: str | None,
    adds_bos: Any,
    template: Any,
) -> Tokenizer:
    from tokenmill.tokenizer.identity import probe_texts
    from tokenmill.tokenizer.tiktoken import TiktokenTokenizer

    tok = TiktokenTokenizer(encoding, name=name, eos_token=eos)
    tok.bos_id = tok.token_to_id(bos) if bos else None
    tok.pad_id = tok.token_to_id(pad) if pad else None
    tok.adds_bos = bool(adds_bos) and tok.bos_id is not None
    tok.chat_template = template
    # The class may split or clean text in Python before tiktoken sees it; its own encode is the reference.
    probes = [t for t in probe_texts() if len(t) < 4000][:40]
    own = [list(hf.encode(t, add_special_tokens=False)) for t in probes]
    for text, want, got in zip(probes, own, tok.encode_batch(probes), strict=True):
        if want != got:
            raise TokenizerError(
                f"tokenizer {name!r} ({type(hf).__name__}) encodes {text[:40]!r} otherwise than the tiktoken "
                "Encoding it wraps; save it as a tokenizer.json (transformers' TikTokenConverter) and pass that"
            )
    return tok


def _find_tiktoken(hf: Any) -> Any:
    try:
        import tiktoken
    except ImportError:
        return None
    for value in vars(hf).values():
        if isinstance(value, tiktoken.Encoding):
            return value
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    return content if isinstance(content, str) else None
