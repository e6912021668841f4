"""``pad``: pad every item's token columns to ``chunk_length`` (one document per sample, SFT style).

``input_ids`` is padded with the pad id (the tokenizer's, else its EOS, else 0), ``loss_mask`` with False (so
padding gets label -100 in ``batch``), and ``attention_mask`` marks the real tokens. Items longer than
``chunk_length`` are an error unless ``truncate=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError
from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict
from tokenmill.pipeline.tokens import MASK


def default_pad_id(tokenizer: Any) -> int:
    for attr in ("pad_id", "eos_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


@dataclasses.dataclass(frozen=True, eq=False)
class PadNode(Node):
    parent: Node
    chunk_length: int
    pad_values: Mapping[str, Any]
    truncate: bool = False
    attention_mask: bool = True
    name = "pad"
    stateless = True

    def describe(self) -> str:
        return f"pad({self.chunk_length})"

    def build(self, state: StateDict | None) -> Stage:
        return PadStage(self, self.parent.build(state))


class PadStage(ParentStage):
    def __init__(self, node: PadNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node

    def next(self) -> Any:
        sample = dict(next(self.parent))
        length = self.node.chunk_length
        ids = np.asarray(sample["input_ids"])
        n = len(ids)
        if n > length:
            if not self.node.truncate:
                raise ConfigError(
                    f"pad: an item has {n} tokens, more than chunk_length={length}; use truncate=True, or "
                    "chunk() first"
                )
            n = length
        if MASK not in sample and MASK not in self.node.pad_values:
            sample[MASK] = np.ones(len(ids), dtype=bool)
        values = dict(self.node.pad_values)
        values.setdefault(MASK, False)
        for column, value in values.items():
            if column not in sample:
                raise ConfigError(f"pad: item has no column {column!r} (columns: {sorted(sample)})")
            arr = np.asarray(sample[column])[:n]
            out = np.full(length, value, dtype=arr.dtype)
            out[:n] = arr
            sample[column] = out
        if self.node.attention_mask:
            att = np.zeros(length, dtype=np.int64)
            att[:n] = 1
            sample["attention_mask"] = att
        return sample
