"""``tokenize`` and ``format``: records -> token ids, a batch of records per tokenizer call.

``tokenize`` encodes one text column with the tokenizer's ``encode_flat`` (one buffer of ids per batch from the
fast engines, no Python int per token), so the pipeline runs at the tokenizer's own batch speed; a background
thread keeps the next batch encoding while the consumer works. ``format`` does the same through the record
formats (text, prompt/completion, columns, chat, tokens) and yields ``input_ids`` plus ``loss_mask``.

Both are anchored stages (:mod:`tokenmill.pipeline.anchored`): the state is the parent's position before the
batch being handed out plus a count, and a resume re-reads at most one batch, re-encoding only the records not
yet handed out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, RecordError
from tokenmill.pipeline.anchored import AnchoredStage, Skipped
from tokenmill.pipeline.base import Node, Stage, StateDict, parent_state

#: records per tokenizer call, and characters per call (long documents make small batches)
BATCH_RECORDS = 64
BATCH_CHARS = 1 << 18


def resolve_tokenizer(tokenizer: Any) -> Any:
    """A tokenmill Tokenizer from one, from anything ``load_tokenizer`` accepts (a path, a name, "bytes"), or
    from a tokenizer object (transformers, `tokenizers`, tiktoken): the same engine choice either way."""
    if tokenizer is None:
        return None
    from tokenmill.tokenizer import load_tokenizer

    if isinstance(tokenizer, bytes):
        tokenizer = tokenizer.decode()
    return load_tokenizer(tokenizer)


def ids_array(ids: Any) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        return ids
    return np.fromiter(ids, dtype=np.int32, count=len(ids))  # faster than np.asarray on a list of ints


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """What a transformers call's keyword arguments ask of ``tokenize``, honoured as transformers does.

    ``add_special_tokens`` adds what the tokenizer's post-processor adds (BOS for Llama, nothing for GPT-2,
    EOS for T5); ``max_length`` (with ``truncation``) cuts the text's ids so that, specials included, at most
    that many remain; ``split_special_tokens=False`` turns special-token text in the data into control tokens.
    """

    add_special_tokens: bool = False
    max_length: int | None = None
    parse_special: bool = False


_REFUSED = {
    "return_tensors": "tokenize yields numpy arrays, which every later stage takes; ask for tensors where "
    "batches are made: batch(n, return_tensors='pt') or .to_torch()",
    "padding": "tokenize never pads; use pad(...) or batch(...) after it",
    "return_attention_mask": "samples carry no attention mask; batch(...) builds one",
    "return_overflowing_tokens": "use chunk(n) or concat_chunk(n) after tokenize",
    "stride": "use chunk(n) or concat_chunk(n) after tokenize",
}


def encode_options(kwargs: Mapping[str, Any] | None, tokenizer: Any) -> EncodeOptions:
    """``tokenizer_kwargs`` of ``Pipeline.tokenize`` -> :class:`EncodeOptions`, or a ConfigError that says what to
    use instead. Without kwargs nothing is added, as tokenmill's convention is (BOS/EOS come from
    ``ensure_bos_eos``)."""
    kwargs = dict(kwargs or {})
    add = kwargs.pop("add_special_tokens", False)
    split = kwargs.pop("split_special_tokens", True)
    truncation = kwargs.pop("truncation", False)
    max_length = kwargs.pop("max_length", None)
    if kwargs.get("return_tensors") in (None, "np"):
        kwargs.pop("return_tensors", None)
    if kwargs.get("padding") in (False, "do_not_pad"):
        kwargs.pop("padding")
    for key in ("return_attention_mask", "return_overflowing_tokens"):
        if kwargs.get(key) is False:
            kwargs.pop(key)
    if kwargs:
        key = sorted(kwargs)[0]
        why = _REFUSED.get(
            key, "tokenize takes add_special_tokens, truncation, max_length, split_special_tokens"
        )
        raise ConfigError(f"tokenizer_kwargs {key}={kwargs[key]!r} is not supported: {why}")
    if truncation in (True, "longest_first", "only_first"):
        if max_length is None:
            max_length = getattr(tokenizer, "model_max_length", None)
            if not isinstance(max_length, int) or max_length > 1 << 40:
                raise ConfigError(
                    "tokenizer_kwargs truncation=True needs max_length (the tokenizer sets none)"
                )
    elif truncation not in (False, None, "do_not_truncate"):
        raise ConfigError(f"tokenizer_kwargs truncation={truncation!r} is not supported: use True or False")
    else:
        max_length = None
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ConfigError(f"tokenizer_kwargs max_length must be a positive integer, got {max_length!r}")
    return EncodeOptions(bool(add), max_length, parse_special=not split)


def encode_records(tok: Any, texts: list[str], options: EncodeOptions) -> list[np.ndarray]:
    """Token ids of each text as int32 arrays: views of one flat buffer where the engine returns one (no Python
    int per token on the fast engines)."""
    if options.parse_special:
        arrays = [ids_array(x) for x in tok.encode_batch(texts, parse_special=True)]
    else:
        flat, offsets = tok.encode_flat(texts)
        flat = flat.view(np.int32) if flat.dtype == np.uint32 else flat.astype(np.int32)
        bounds = offsets.tolist()
        arrays = [flat[bounds[i] : bounds[i + 1]] for i in range(len(texts))]
    if options.add_special_tokens or options.max_length is not None:
        prefix = list(tok.special_prefix) if options.add_special_tokens else []
        suffix = list(tok.special_suffix) if options.add_special_tokens else []
        keep = None if options.max_length is None else max(0, options.max_length - len(prefix) - len(suffix))
        arrays = [
            np.concatenate([np.asarray(prefix, np.int32), a[:keep], np.asarray(suffix, np.int32)])
            for a in arrays
        ]
    return arrays


def _chars(text: Any) -> int:
    return len(text) if isinstance(text, str) else 1


def text_batches_stage(
    parent: Stage, state: StateDict | None, encode: Any, column: str, *, name: str, prefetch: int
) -> AnchoredStage:
    """``encode`` over batches of records, cut at ``BATCH_RECORDS`` records or ``BATCH_CHARS`` characters of
    ``column`` (a bare string item weighs its length; what is not text weighs 1, so that ``encode`` reports it
    clearly), resumed as an anchored stage. The one batching of every stage that tokenizes text (the pipeline's
    ``tokenize`` and ``tokenmill.epochraft``'s)."""
    return AnchoredStage(
        parent,
        state,
        encode,
        name=name,
        batch_items=BATCH_RECORDS,
        batch_weight=BATCH_CHARS,
        weight_fn=lambda r: _chars(r.get(column) if isinstance(r, dict) else r),
        prefetch=prefetch,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizeNode(Node):
    parent: Node
    tok: Any
    target_column: str = "text"
    output_column: str = "input_ids"
    prefetch: int = 2
    options: EncodeOptions = EncodeOptions()
    name = "tokenize"

    def build(self, state: StateDict | None) -> Stage:
        parent = self.parent.build(parent_state(state, self.name))
        column, out_column, tok, options = self.target_column, self.output_column, self.tok, self.options

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
            for r, ids in zip(records, encode_records(tok, texts, options), strict=True):
                sample = dict(r) if isinstance(r, dict) else {column: r}
                sample[out_column] = ids
                out.append(sample)
            return out

        return text_batches_stage(parent, state, encode, column, name=self.name, prefetch=self.prefetch)


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
