"""Building the model: a Hugging Face folder (continued pretraining, fine-tuning) or a config from scratch.

Nothing is downloaded: a model given by name or folder is loaded with ``local_files_only=True`` and
``trust_remote_code=False``. The cache decides the tokenizer, so the model is checked against it: a from-scratch
model gets the cache's vocabulary (rounded up to ``vocab_multiple`` for fast matmuls) and its special token ids; a
pretrained model must have an embedding at least as large as the cache's vocabulary, and when its folder ships a
tokenizer, that tokenizer must produce the same ids as the cache's (same fingerprint). Training a model on ids from
another tokenizer runs without error and learns nothing useful, so it is refused here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenmill.errors import ConfigError, TokenizerError

# Names of the "context length" field across common config classes; a from-scratch model gets at least seq_len.
_POSITION_FIELDS = ("n_positions", "max_position_embeddings")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def build_model(
    model: str | dict[str, Any], tokenizer_meta: dict[str, Any], seq_len: int, vocab_multiple: int = 64
):
    """An ``AutoModelForCausalLM`` for ``model`` (see module doc), checked against the cache's tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    vocab = int(tokenizer_meta["vocab_size"])
    if isinstance(model, str) or "pretrained" in model:
        spec = dict(model) if isinstance(model, dict) else {"pretrained": model}
        path = str(spec.pop("pretrained"))
        try:
            net = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, trust_remote_code=False, **spec
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"model {path!r} cannot be loaded from a local folder or the local Hugging Face cache "
                f"(nothing is downloaded): {exc}"
            ) from exc
        check_model_vocab(net, tokenizer_meta, path)
        return net
    spec = dict(model)
    model_type = spec.pop("type")
    attn = spec.pop("attn_implementation", None)
    spec.setdefault("vocab_size", _round_up(vocab, vocab_multiple))
    eos = tokenizer_meta.get("eos_id")
    bos = tokenizer_meta.get("bos_id")
    # the tokenizer's ids, never a config class's defaults (GPT-2's 50256 is outside a small vocabulary)
    spec.setdefault("bos_token_id", bos if bos is not None else eos)
    spec.setdefault("eos_token_id", eos)
    spec.setdefault("pad_token_id", tokenizer_meta.get("pad_id"))
    try:
        config = AutoConfig.for_model(model_type, **spec)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model type {model_type!r}: {exc}") from exc
    for name in _POSITION_FIELDS:
        if hasattr(config, name) and getattr(config, name) is not None and name not in spec:
            setattr(config, name, max(int(getattr(config, name)), seq_len))
    kwargs = {"attn_implementation": attn} if attn else {}
    net = AutoModelForCausalLM.from_config(config, **kwargs)
    check_model_vocab(net, tokenizer_meta, f"{model_type} config")
    return net


def check_model_vocab(net, tokenizer_meta: dict[str, Any], what: str) -> None:
    """Refuse a model whose embedding cannot hold every id of the cache, or that ships a different tokenizer."""
    vocab = int(tokenizer_meta["vocab_size"])
    rows = net.get_input_embeddings().num_embeddings
    if rows < vocab:
        raise TokenizerError(
            f"model {what} has {rows} embedding rows but the cache's tokenizer has {vocab} ids; use a model built "
            "for this tokenizer, or resize its embeddings first (model.resize_token_embeddings)"
        )
    folder = getattr(net.config, "_name_or_path", "") or ""
    if folder and os.path.isdir(folder) and _has_tokenizer(Path(folder)):
        from tokenmill.tokenizer import load_tokenizer

        try:
            own = load_tokenizer(folder)
        except Exception:  # a folder whose tokenizer we cannot read: the size check above is all we can do
            return
        theirs = tokenizer_meta.get("fingerprint")
        if theirs and own.fingerprint != theirs:
            raise TokenizerError(
                f"model {what} ships a tokenizer ({own.name}, {own.vocab_size} ids) that differs from the cache's "
                f"tokenizer (fingerprint {theirs[:12]} vs {own.fingerprint[:12]}); prepare the cache with the "
                "model's tokenizer (--tokenizer MODEL_FOLDER)"
            )


def _has_tokenizer(folder: Path) -> bool:
    return any(
        (folder / n).exists() for n in ("tokenizer.json", "tokenizer.model", "tokenmill_tokenizer.json")
    )


def count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())
