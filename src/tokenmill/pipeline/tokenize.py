"""``tokenize`` and ``format``: records -> token ids, a batch of records per tokenizer call.

``tokenize`` encodes one text column with the tokenizer's ``encode_batch`` (the engines parallelise a batch in
native threads with the GIL released), so the pipeline runs at the tokenizer's own batch speed; a background
thread keeps the next batch encoding while the consumer works. ``format`` does the same through the record
formats (text, prompt/completion, columns, chat, tokens) and yields ``input_ids`` plus ``loss_mask``.

Both are anchored stages (:mod:`tokenmill.pipeline.anchored`): the state is the parent's position before the
batch being handed out plus a count, and a resume re-reads at most one batch, re-encoding only the records not
yet handed out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, RecordError
from tokenmill.pipeline.anchored import AnchoredStage, Skipped
from tokenmill.pipeline.base import Node, Stage, StateDict, parent_state

#: records per tokenizer call, and characters per call (long documents make small batches)
BATCH_RECORDS = 64
BATCH_CHARS = 1 << 18


def resolve_tokenizer(tokenizer: Any) -> Any:
    """A tokenmill Tokenizer from one, or from anything ``load_tokenizer`` accepts (a path, a name, "bytes")."""
    if tokenizer is None:
        return None
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "eos_id"):
        return tokenizer
    if isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__"):
        from tokenmill.tokenizer import load_tokenizer

        return load_tokenizer(str(tokenizer))
    raise ConfigError(
        f"unsupported tokenizer {type(tokenizer).__name__}: pass a tokenmill Tokenizer (tokenmill.tokenizer."
        "load_tokenizer(...)) or anything load_tokenizer accepts (a tokenizer.json, a Hugging Face name or folder)"
    )


def ids_array(ids: Any) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        return ids
    return np.fromiter(ids, dtype=np.int32, count=len(ids))  # faster than np.asarray on a list of ints


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizeNode(Node):
    parent: Node
    tok: Any
    target_column: str = "text"
    output_column: str = "input_ids"
    prefetch: int = 2
    name = "tokenize"

    def build(self, state: StateDict | None) -> Stage:
        parent = self.parent.build(parent_state(state, self.name))
        column, out_column, tok = self.target_column, self.output_column, self.tok

        def encode(records: list[Any]) -> list[Any]:
            texts = []
            for r in records:
                text = r.get(column) if isinstance(r, dict) else r
                if not isinstance(text, str):
                    raise ConfigError(
                        f"tokenize: column {column!r} is {type(text).__name__}, not text "
                        f"(record keys: {sorted(r) if isinstance(r, dict) else '-'}); set target_column="
                    )
                texts.append(text)
            out = []
            for r, ids in zip(records, tok.encode_batch(texts), strict=True):
                sample = dict(r) if isinstance(r, dict) else {column: r}
                sample[out_column] = ids_array(ids)
                out.append(sample)
            return out

        return AnchoredStage(
            parent,
            state,
            encode,
            name=self.name,
            batch_items=BATCH_RECORDS,
            batch_weight=BATCH_CHARS,
            weight_fn=lambda r: len(r.get(column) or "") if isinstance(r, dict) else len(r),
            prefetch=self.prefetch,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class FormatNode(Node):
    parent: Node
    tok: Any
    config: Any
    on_error: str = "raise"
    prefetch: int = 2
    name = "format"

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def build(self, state: StateDict | None) -> Stage:
        from tokenmill.formats import RecordFormatter

        formatter = RecordFormatter(self.config, self.tok)
        parent = self.parent.build(parent_state(state, self.name))
        on_error = self.on_error

        def encode(records: list[Any]) -> list[Any]:
            out: list[Any] = []
            for enc in formatter.encode_records(list(records)):
                if isinstance(enc, RecordError):
                    if on_error == "raise":
                        raise enc
                    out.append(Skipped(enc.reason))  # counted in the state under its reason
                    continue
                sample = {"input_ids": ids_array(enc.ids)}
                if enc.mask is not None:
                    sample["loss_mask"] = np.asarray(enc.mask, dtype=bool)
                out.append(sample)
            return out

        return AnchoredStage(
            parent, state, encode, name=self.name, batch_items=BATCH_RECORDS, prefetch=self.prefetch
        )
