"""The pipeline stages epochraft has and the pipeline does not, each following the pipeline's node contract.

- :class:`PackChunkNode`: epochraft's greedy ``pack_chunk`` (the pipeline's ``pack`` is best-fit over a buffer);
- :class:`OrderedInterleaveNode`: epochraft's fixed, stratified interleave order (the pipeline's draws at random);
- :class:`MemoryCacheNode`: epochraft's ``cache()``, items kept in memory (the pipeline's writes a token cache);
- :class:`CallTokenizerNode`: ``tokenizer(text, **tokenizer_kwargs)`` as transformers returns it, a batch of
  records per call, resumed like the pipeline's ``tokenize``;
- :class:`DatasetNode`: a user's own ``CheckpointableDataset`` subclass (its ``iter``) as a pipeline source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.epochraft.errors import EpochraftValueError
from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, parent_state, require
from tokenmill.pipeline.tokenize import text_batches_stage


# --- pack_chunk ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class PackChunkNode(Node):
    """Whole items appended in order until the next one would overflow ``chunk_length``; an item longer than
    ``chunk_length`` goes out alone, cut to ``chunk_length`` (or is dropped with ``discard_long_samples``).

    State: after a chunk is handed out, the only item held back is the one that did not fit, so the state is the
    parent's state before that item and whether one is held; a resume reads that one item again.
    """

    parent: Node
    chunk_length: int
    target_columns: tuple[str, ...]
    discard_long_samples: bool = False
    name = "pack_chunk"

    def __post_init__(self) -> None:
        if self.chunk_length < 1:
            raise EpochraftValueError(f"pack_chunk: chunk_length must be >= 1, got {self.chunk_length}")
        if not self.target_columns:
            raise EpochraftValueError("pack_chunk: target_columns must name at least one column")

    def describe(self) -> str:
        return f"pack_chunk({self.chunk_length}, discard_long_samples={self.discard_long_samples})"

    def build(self, state: StateDict | None) -> Stage:
        stage = PackChunkStage(self, self.parent.build(parent_state(state, self.name)))
        if state is not None and require(state, "held", self.name):
            stage.hold_next()
        return stage


class PackChunkStage(ParentStage):
    def __init__(self, node: PackChunkNode, parent: Stage) -> None:
        super().__init__(parent)
        self.node = node
        self.held: dict[str, np.ndarray] | None = None
        self.anchor: StateDict | None = None  # parent state before the held item

    def _read(self) -> tuple[StateDict, dict[str, np.ndarray], int] | None:
        anchor = self.parent.state_dict()
        try:
            sample = next(self.parent)
        except StopIteration:
            return None
        cols = {c: sample[c] for c in self.node.target_columns}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise EpochraftValueError(
                f"pack_chunk: columns {list(cols)} have different lengths {sorted(lengths)} in one item"
            )
        return anchor, cols, lengths.pop()

    def hold_next(self) -> None:
        read = self._read()
        if read is not None:
            self.anchor, self.held, _ = read

    def next(self) -> Any:
        length = self.node.chunk_length
        parts = [] if self.held is None else [self.held]
        n = 0 if self.held is None else len(next(iter(self.held.values())))
        self.held = self.anchor = None
        while True:
            read = self._read()
            if read is None:
                break
            anchor, cols, size = read
            if self.node.discard_long_samples and size > length:
                continue
            if parts and n + size > length:
                self.anchor, self.held = anchor, cols
                break
            parts.append(cols)
            n += size
        if not parts:
            raise StopIteration
        return {c: np.concatenate([p[c] for p in parts])[:length] for c in self.node.target_columns}

    def get_state(self) -> StateDict:
        if self.held is None:
            return {"parent": self.parent.state_dict(), "held": False}
        return {"parent": self.anchor, "held": True}


# --- interleave_datasets --------------------------------------------------------------------------------------
def stratified_order(weights: Sequence[float], length: int) -> list[int]:
    """Which source each of ``length`` steps takes: every step adds each source's share to its score and takes
    the source with the highest score (the first on a tie), which then pays 1. Over any prefix the counts stay
    within one of ``share * steps``: weights [1, 2] give 3 and 6 of 9."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    score = np.zeros(len(w))
    order = []
    for _ in range(length):
        score += w
        i = int(np.argmax(score))
        score[i] -= 1.0
        order.append(i)
    return order


@dataclasses.dataclass(frozen=True, eq=False)
class OrderedInterleaveNode(Node):
    """Sources taken in a fixed order that repeats every ``chunk_size`` steps; ends when the source due is out.

    State: the step count and each source's state.
    """

    parents: tuple[Node, ...]
    weights: tuple[float, ...]
    chunk_size: int = 1024
    name = "interleave_datasets"

    def __post_init__(self) -> None:
        if not self.parents:
            raise EpochraftValueError("interleave_datasets needs at least one dataset")
        if len(self.weights) != len(self.parents):
            raise EpochraftValueError(
                f"Number of weights ({len(self.weights)}) must match number of sources ({len(self.parents)})"
            )
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise EpochraftValueError(
                f"weights must be >= 0 with a sum greater than 0, got {list(self.weights)}"
            )
        if self.chunk_size < 1:
            raise EpochraftValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    def describe(self) -> str:
        return f"interleave_datasets({list(self.weights)}, chunk_size={self.chunk_size})"

    def build(self, state: StateDict | None) -> Stage:
        if state is None:
            return OrderedInterleaveStage(self, 0, [None] * len(self.parents))
        return OrderedInterleaveStage(
            self, int(require(state, "index", self.name)), list(require(state, "sources", self.name))
        )


class OrderedInterleaveStage(Stage):
    def __init__(self, node: OrderedInterleaveNode, index: int, states: list[StateDict | None]) -> None:
        self.node = node
        self.index = index
        self.order = stratified_order(node.weights, node.chunk_size)
        self.sources = [p.build(s) for p, s in zip(node.parents, states, strict=True)]

    def next(self) -> Any:
        source = self.sources[self.order[self.index % self.node.chunk_size]]
        item = next(source)
        self.index += 1
        return item

    def get_state(self) -> StateDict:
        return {"index": self.index, "sources": [s.state_dict() for s in self.sources]}

    def release(self) -> None:
        for s in self.sources:
            s.close()


# --- cache() --------------------------------------------------------------------------------------------------
class MemoryStore:
    """Items by position, shared by every iterator of one ``cache()`` dataset; ``end`` is the length once known."""

    def __init__(self) -> None:
        self.items: dict[int, Any] = {}
        self.end: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class MemoryCacheNode(Node):
    """The parent's items kept in memory as they are first read; later passes read them from memory.

    State: the position and, once past what memory holds, the parent's state. A fresh process has an empty
    store: it reads the parent from its start up to the position (O(position), as in epochraft).
    """

    parent: Node
    store: MemoryStore = dataclasses.field(default_factory=MemoryStore)
    name = "cache"

    def describe(self) -> str:
        return "cache(memory)"

    def build(self, state: StateDict | None) -> Stage:
        if state is None:
            return MemoryCacheStage(self, 0, None)
        index = int(require(state, "index", self.name))
        parent = require(state, "parent", self.name)
        return MemoryCacheStage(self, index, None if parent is None else self.parent.build(parent))


class MemoryCacheStage(Stage):
    def __init__(self, node: MemoryCacheNode, index: int, source: Stage | None) -> None:
        self.node = node
        self.index = index
        self.source = source

    def next(self) -> Any:
        store = self.node.store
        if self.source is None:
            if store.end is not None and self.index >= store.end:
                raise StopIteration
            if self.index in store.items:
                self.index += 1
                return store.items[self.index - 1]
            self.source = self.node.parent.build(None)
            for _ in range(self.index):  # memory does not reach this far: read up to here again
                next(self.source)
        try:
            item = next(self.source)
        except StopIteration:
            store.end = self.index
            raise
        store.items[self.index] = item
        self.index += 1
        return item

    def get_state(self) -> StateDict:
        return {"index": self.index, "parent": None if self.source is None else self.source.state_dict()}

    def release(self) -> None:
        if self.source is not None:
            self.source.close()


# --- tokenize with tokenizer(text, **kwargs) ------------------------------------------------------------------
def is_transformers_tokenizer(tokenizer: Any) -> bool:
    """A transformers tokenizer object (v4 or v5): callable on text, with ``encode`` and ``eos_token_id``."""
    return callable(tokenizer) and hasattr(tokenizer, "encode") and hasattr(tokenizer, "eos_token_id")


class CallTokenizer:
    """``tokenizer(text, **kwargs)`` for a list of texts, as one call where the result splits per text."""

    def __init__(self, tokenizer: Any, kwargs: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.kwargs = dict(kwargs)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        tok, kwargs = self.tokenizer, self.kwargs
        if is_transformers_tokenizer(tok):
            if "return_tensors" in kwargs:  # tensors of one batch would need padding: one call per text
                return [dict(tok(t, **kwargs)) for t in texts]
            enc = tok(texts, **kwargs)
            return [{k: v[i] for k, v in enc.items()} for i in range(len(texts))]
        if kwargs.keys() - {"return_tensors"}:
            raise EpochraftValueError(
                f"tokenizer_kwargs {sorted(kwargs.keys() - {'return_tensors'})} need a transformers tokenizer; "
                "a tokenmill tokenizer adds no special tokens (use ensure_bos_eos) and does not truncate "
                "(use chunk, concat_chunk or pack_chunk)"
            )
        out = []
        for ids in tok.encode_batch(texts):
            ids = [int(i) for i in ids]
            out.append(_as_returned(ids, kwargs.get("return_tensors")))
        return out


def _as_returned(ids: list[int], return_tensors: str | None) -> dict[str, Any]:
    mask = [1] * len(ids)
    if return_tensors is None:
        return {"input_ids": ids, "attention_mask": mask}
    if return_tensors == "np":
        return {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.asarray([mask], dtype=np.int64),
        }
    if return_tensors == "pt":
        import torch

        return {"input_ids": torch.tensor([ids], dtype=torch.long), "attention_mask": torch.tensor([mask])}
    raise EpochraftValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class CallTokenizerNode(Node):
    """``target_column`` -> the tokenizer's outputs (``input_ids``, ``attention_mask``, ...) merged into the item.

    Resumed as the pipeline's ``tokenize``: the parent's state before the batch being handed out plus a count.
    """

    parent: Node
    encoder: CallTokenizer
    target_column: str = "text"
    prefetch: int = 2
    name = "tokenize"

    def build(self, state: StateDict | None) -> Stage:
        parent = self.parent.build(parent_state(state, self.name))
        column, encoder = self.target_column, self.encoder

        def encode(records: list[Any]) -> list[Any]:
            texts = []
            for r in records:
                text = r.get(column) if isinstance(r, dict) else None
                if not isinstance(text, str):
                    keys = sorted(r) if isinstance(r, dict) else type(r).__name__
                    raise EpochraftValueError(
                        f"tokenize: the item's {column!r} is {type(text).__name__}, not text (item: {keys}); "
                        "set target_column="
                    )
                texts.append(text)
            out = []
            for r, enc in zip(records, encoder(texts), strict=True):
                sample = dict(r)
                sample.update(enc)
                out.append(sample)
            return out

        return text_batches_stage(parent, state, encode, column, name=self.name, prefetch=self.prefetch)


# --- a user's own dataset --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class DatasetNode(Node):
    """A ``CheckpointableDataset`` subclass that implements ``iter`` itself: its iterator's state passes through."""

    dataset: Any
    name = "dataset"

    def describe(self) -> str:
        return f"dataset({type(self.dataset).__name__})"

    def build(self, state: StateDict | None) -> Stage:
        return _IteratorStage(self.dataset.iter(state_dict=state))


class _IteratorStage(Stage):
    def __init__(self, it: Any) -> None:
        self.it = it

    def next(self) -> Any:
        return next(self.it)

    def get_state(self) -> StateDict:
        return self.it.state_dict()

    def release(self) -> None:
        self.it.close()
