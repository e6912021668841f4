"""Which BOS/EOS ``ensure_bos_eos`` adds: epochraft's rule, from what the tokenizer adds on its own.

A transformers tokenizer is probed: what ``encode("Hello world!")`` already starts or ends with is not added
again; when BOS and EOS are one token (gpt2, neox) only EOS is added, and nothing if the tokenizer adds it. A
tokenmill tokenizer adds nothing itself, so its convention decides (``tokenmill.pipeline.bos_eos``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.epochraft.errors import EpochraftValueError
from tokenmill.epochraft.stages import is_transformers_tokenizer

#: the probe text epochraft encodes to see what a tokenizer adds
PROBE = "Hello world!"


@dataclasses.dataclass
class TokenizerBehavior:
    """What a transformers tokenizer adds to ``PROBE`` by itself (epochraft's record of it)."""

    bos_token: str | None
    eos_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    bos_eos_equal: bool  # gpt2 and neox use one token for both
    ids_example: list[int]
    bos_token_added: bool
    eos_token_added: bool

    @staticmethod
    def from_tokenizer(tokenizer: Any) -> TokenizerBehavior:
        ids = tokenizer.encode(PROBE)
        if not isinstance(ids, list) or not ids:
            raise EpochraftValueError(
                f"the tokenizer's encode({PROBE!r}) gave {ids!r}, expected a non-empty list"
            )
        if tokenizer(PROBE)["input_ids"] != ids:
            raise EpochraftValueError("the tokenizer gives different ids from encode() and from __call__()")
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        return TokenizerBehavior(
            bos_token=tokenizer.bos_token,
            eos_token=tokenizer.eos_token,
            bos_token_id=bos,
            eos_token_id=eos,
            bos_eos_equal=bos == eos,
            ids_example=ids,
            bos_token_added=ids[0] == bos,
            eos_token_added=ids[-1] == eos,
        )


def boundary_tokens(tokenizer: Any) -> tuple[int | None, int | None]:
    """(BOS, EOS) for ``ensure_bos_eos`` to add after ``tokenize`` with ``tokenizer`` (None: add nothing)."""
    if not is_transformers_tokenizer(tokenizer):
        from tokenmill.pipeline.bos_eos import bos_eos_of
        from tokenmill.pipeline.tokenize import resolve_tokenizer

        return bos_eos_of(resolve_tokenizer(tokenizer))
    b = TokenizerBehavior.from_tokenizer(tokenizer)
    if b.bos_eos_equal:
        return None, (None if b.bos_token_added or b.eos_token_added else b.eos_token_id)
    return (
        b.bos_token_id if not b.bos_token_added and b.bos_token else None,
        b.eos_token_id if not b.eos_token_added and b.eos_token else None,
    )
