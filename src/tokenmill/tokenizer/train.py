"""``train_tokenizer``: a byte-level BPE trained with ``tokenizers`` (the shape every fast engine runs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer.huggingface import HFTokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    min_frequency: int = 2,
    name: str = "trained",
) -> HFTokenizer:
    """Train a byte-level BPE (GPT-2 style, no prefix space) with ``tokenizers``.

    Special tokens take the first ids, in the given order; ``<|endoftext|>`` (when listed) is the EOS. Every
    engine runs this shape.
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
    return HFTokenizer(tok, name=name, eos_token=eos, owned=True)
