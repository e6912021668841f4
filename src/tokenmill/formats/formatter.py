"""The record formatter: records -> :class:`Encoded` (ids and loss mask), the same in ``prepare`` and the pipeline.

Each format lays a record out as parts (:mod:`tokenmill.formats.layout`); the formatter tokenizes the parts of a
whole batch of records in one call per kind of text, assembles ids and masks, adds BOS/EOS (never doubled, as
epochraft's ``ensure_bos_eos``: by default BOS only when the tokenizer's convention adds one, EOS whenever the
tokenizer has one; BOS takes the train flag of the first token, EOS that of the last, so a trained completion
teaches the model to stop) and applies ``max_tokens`` / ``truncate`` / ``min_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, RecordError
from tokenmill.formats.chat import ChatRenderer
from tokenmill.formats.columns import layout_columns
from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import PLAIN, SPECIAL, Encoded, Layout, ensure_bos_eos, record_error
from tokenmill.formats.prompt_completion import layout_prompt_completion
from tokenmill.formats.text import layout_text
from tokenmill.formats.tokens import layout_tokens
from tokenmill.tokenizer import Tokenizer


class RecordFormatter:
    """Turns records into :class:`Encoded` (or a :class:`RecordError` per bad record) for one tokenizer.

    ``encode_records`` tokenizes all parts of all records in one ``encode_batch`` call (plus one for chat
    template text), because per-record calls would pay the engine's fixed cost per record.
    """

    def __init__(self, config: FormatConfig | Mapping[str, Any] | None, tokenizer: Tokenizer) -> None:
        if config is None or isinstance(config, Mapping):
            config = FormatConfig.from_dict(config or {})
        self.config = config
        self.tokenizer = tokenizer
        add_bos = tokenizer.adds_bos if config.add_bos is None else config.add_bos
        add_eos = tokenizer.eos_id is not None if config.add_eos is None else config.add_eos
        if add_bos and tokenizer.bos_id is None:
            raise ConfigError(f"add_bos is set but tokenizer {tokenizer.name!r} has no BOS token")
        if add_eos and tokenizer.eos_id is None:
            raise ConfigError(f"add_eos is set but tokenizer {tokenizer.name!r} has no EOS token")
        self.bos_id = tokenizer.bos_id if add_bos else None
        self.eos_id = tokenizer.eos_id if add_eos else None
        self.chat = ChatRenderer(config, tokenizer)

    # ------------------------------------------------------------------ public

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> list[Encoded | RecordError]:
        layouts: list[Layout | RecordError] = []
        for rec in records:
            try:
                layouts.append(self._layout(rec))
            except RecordError as e:
                layouts.append(e)
        tokens = self._tokenize(layouts)
        return [lay if isinstance(lay, RecordError) else self._assemble(lay, tokens) for lay in layouts]

    def encode_record(self, record: Mapping[str, Any]) -> Encoded | RecordError:
        return self.encode_records([record])[0]

    def format_of(self, record: Mapping[str, Any]) -> str:
        """The format ``auto`` picks for this record: chat, columns, prompt-completion, then text."""
        cfg = self.config
        if cfg.format != "auto":
            return cfg.format
        if not isinstance(record, Mapping):
            return "text"
        if cfg.messages_key in record:
            return "chat"
        if any(k in record for k in cfg.column_keys):
            return "columns"
        if cfg.prompt_key in record and cfg.completion_key in record:
            return "prompt-completion"
        return "text"

    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
        """The conversation as the template renders it (what the docs show as "rendered text")."""
        return self.chat.render(
            self.chat.messages({self.config.messages_key: list(messages)}), add_generation_prompt
        )

    def _layout(self, rec: Mapping[str, Any]) -> Layout:
        if not isinstance(rec, Mapping):
            raise record_error(f"record must be an object, got {type(rec).__name__}", None, "not_object")
        fmt = self.format_of(rec)
        if fmt == "text":
            return layout_text(self.config, rec)
        if fmt == "prompt-completion":
            return layout_prompt_completion(self.config, rec)
        if fmt == "columns":
            return layout_columns(self.config, rec)
        if fmt == "chat":
            return self.chat.layout(rec)
        return layout_tokens(self.config, rec, self.tokenizer.vocab_size)

    def _tokenize(self, layouts: list[Layout | RecordError]) -> dict[tuple[int, str], Any]:
        wanted: dict[int, dict[str, None]] = {PLAIN: {}, SPECIAL: {}}
        for lay in layouts:
            if isinstance(lay, Layout):
                for text, kind, _ in lay.parts:
                    if kind is not None:
                        wanted[kind][text] = None
        out: dict[tuple[int, str], Any] = {}
        for kind, texts in wanted.items():
            if not texts:
                continue
            keys = list(texts)
            if kind == SPECIAL:
                ids = self.tokenizer.encode_batch(keys, parse_special=True)
            else:  # one uint32 buffer from the engine, sliced: no Python int per token (prepare's hot path)
                flat, offsets = self.tokenizer.encode_flat(keys)
                bounds = offsets.tolist()
                ids = [flat[bounds[i] : bounds[i + 1]] for i in range(len(keys))]
            out.update(zip(((kind, k) for k in keys), ids, strict=True))
        return out

    def _assemble(self, lay: Layout, tokens: dict[tuple[int, str], Any]) -> Encoded | RecordError:
        cfg = self.config
        pieces: list[np.ndarray] = []
        flags: list[bool | np.ndarray] = []
        lengths: list[int] = []
        for payload, kind, trained in lay.parts:
            ids = payload if kind is None else np.asarray(tokens[(kind, payload)], dtype=np.uint32)
            pieces.append(ids)
            flags.append(trained)
            lengths.append(len(ids))
        ids = pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces else np.zeros(0, np.uint32)
        all_trained = all(f is True for f in flags)
        mask = None
        if not all_trained:
            mask = np.concatenate(
                [
                    np.full(n, f, dtype=bool) if isinstance(f, bool) else f
                    for f, n in zip(flags, lengths, strict=True)
                ]
            )
        add_bos, add_eos = ensure_bos_eos(ids, self.bos_id, self.eos_id)
        if add_bos or add_eos:
            head = [self.bos_id] if add_bos else []
            tail = [self.eos_id] if add_eos else []
            ids = np.concatenate([np.asarray(head, np.uint32), ids, np.asarray(tail, np.uint32)])
            if mask is not None:
                first = bool(mask[0]) if len(mask) else True
                last = bool(mask[-1]) if len(mask) else True
                mask = np.concatenate([np.full(len(head), first), mask, np.full(len(tail), last)])
        field = cfg.tokens_key if cfg.format == "tokens" else None
        if cfg.max_tokens is not None and len(ids) > cfg.max_tokens:
            if cfg.truncate == "drop":
                return record_error(
                    f"record has {len(ids)} tokens, more than max_tokens={cfg.max_tokens}", field, "too_long"
                )
            n = cfg.max_tokens
            if cfg.truncate == "right":
                keep = np.arange(n)
            elif self.bos_id is not None and int(ids[0]) == self.bos_id and n > 1:
                keep = np.r_[0, len(ids) - n + 1 : len(ids)]  # left: BOS stays first
            else:
                keep = np.arange(len(ids) - n, len(ids))
            ids = ids[keep]
            mask = None if mask is None else mask[keep]
        if cfg.min_tokens is not None and len(ids) < cfg.min_tokens:
            return record_error(
                f"record has {len(ids)} tokens, fewer than min_tokens={cfg.min_tokens}", field, "too_short"
            )
        if mask is not None:
            if not mask.any():
                return record_error(
                    "no token of this record is trained (every token is masked)", field, "all_masked"
                )
            if mask.all():
                mask = None
        return Encoded(ids=ids, mask=mask)
