"""``ensure_bos_eos`` and ``add_bos_eos``: document boundary tokens.

``ensure_bos_eos`` follows the tokenizer's own convention, as epochraft's does: EOS at the end of every document,
BOS at the start where the tokenizer uses one (and only EOS when BOS and EOS are the same token), never doubled
(a document that already starts with BOS or ends with EOS keeps it). ``add_bos_eos`` adds the given ids always.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError
from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict
from tokenmill.pipeline.tokens import MASK


def bos_eos_of(tokenizer: Any) -> tuple[int | None, int | None]:
    """The (BOS, EOS) ids a document should carry under the tokenizer's convention."""
    eos = getattr(tokenizer, "eos_id", None)
    bos = getattr(tokenizer, "bos_id", None) if getattr(tokenizer, "adds_bos", False) else None
    if bos is not None and bos == eos:
        bos = None
    return bos, eos


@dataclasses.dataclass(frozen=True, eq=False)
class BosEosNode(Node):
    parent: Node
    bos_id: int | None
    eos_id: int | None
    ensure: bool = True
    target_column: str = "input_ids"
    stateless = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return "ensure_bos_eos" if self.ensure else "add_bos_eos"

    def build(self, state: StateDict | None) -> Stage:
        return BosEosStage(self, self.parent.build(state))


def make_bos_eos(parent: Node, tokenizer: Any, target_column: str) -> BosEosNode:
    if tokenizer is None:
        raise ConfigError(
            "ensure_bos_eos needs a tokenizer: pass one, or call .tokenize(tokenizer) before it"
        )
    bos, eos = bos_eos_of(tokenizer)
    return BosEosNode(parent, bos, eos, ensure=True, target_column=target_column)


class BosEosStage(ParentStage):
    def __init__(self, node: BosEosNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node

    def next(self) -> Any:
        sample = next(self.parent)
        node = self.node
        ids = sample[node.target_column]
        ids = ids if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=np.int32)
        n = len(ids)
        head = node.bos_id is not None and not (node.ensure and n and ids[0] == node.bos_id)
        tail = node.eos_id is not None and not (node.ensure and n and ids[-1] == node.eos_id)
        if not head and not tail:
            return sample
        parts = []
        if head:
            parts.append(np.asarray([node.bos_id], dtype=ids.dtype))
        parts.append(ids)
        if tail:
            parts.append(np.asarray([node.eos_id], dtype=ids.dtype))
        out = dict(sample)
        out[node.target_column] = np.concatenate(parts)
        if MASK in sample and node.target_column == "input_ids":
            mask = np.asarray(sample[MASK], dtype=bool)
            mask = [np.ones(1, bool)] * head + [mask] + [np.ones(1, bool)] * tail
            out[MASK] = np.concatenate(mask)
        return out
