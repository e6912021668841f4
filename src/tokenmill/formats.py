"""Record -> (token ids, loss mask), the same way in ``prepare`` and in the streaming pipeline.

Formats: ``text``, ``prompt-completion``, ``columns``, ``chat``, ``tokens`` and ``auto`` (docs/formats.md).

How masks stay exact. A record is first laid out as a list of *parts*, each a piece of text with a train flag
(prompt: masked, completion: trained, ...). Consecutive parts with the same flag are joined, and each resulting
run is tokenized on its own; the ids are the concatenation of the runs. So the boundary between masked and
trained tokens is exactly the boundary between the parts, whatever the tokenizer would have merged across it:
with prompt ``"hel"`` and completion ``"lo world"`` the prompt is ``hel`` (masked) and the completion ``lo``,
`` world`` (trained), never one ``hello`` token half-trained. We chose this over character offsets because
offsets cannot split a token that spans the join, and because tiktoken (our fast engine) gives no offsets.

Chat text produced by a template is tokenized with control tokens recognised (``<|im_start|>`` becomes one
id), while message contents are always plain text, so a user message cannot inject a control token.

BOS/EOS are added here (never doubled, as epochraft's ``ensure_bos_eos``): by default BOS only when the
tokenizer's convention adds one, EOS whenever the tokenizer has one. BOS takes the train flag of the first token,
EOS that of the last (so a trained completion teaches the model to stop).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, RecordError
from tokenmill.tokenizer import Tokenizer

__all__ = [
    "BUILTIN_CHAT_TEMPLATE",
    "FORMATS",
    "Encoded",
    "FormatConfig",
    "RecordFormatter",
    "ensure_bos_eos",
    "unescape",
    "with_location",
]

FORMATS = ("auto", "text", "prompt-completion", "columns", "chat", "tokens")
TRUNCATE = ("drop", "right", "left")
TRAIN_ON = ("assistant", "all")

DEFAULT_COLUMN_KEYS = ("instruction", "input", "output")
DEFAULT_COLUMN_PREFIXES = ("Instruction:\n", "Input:\n", "Output:\n")
DEFAULT_COLUMN_TRAIN = (True, False, True)

# Used when the tokenizer has no chat template. Each message is `<|role|>` and a newline, the content, then a
# newline; an assistant turn ends with the tokenizer's EOS instead (so the model learns to stop), when it has one.
BUILTIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}{{ message['content'] }}"
    "{% if message['role'] == 'assistant' and eos_token %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\([ntr\\])")


def unescape(text: str) -> str:
    r"""Turn the two characters ``\n`` into a newline (also ``\t``, ``\r``; ``\\`` is one backslash).

    A user who writes ``prefix: 'Input:\n'`` in YAML (single quotes keep the backslash) or ``--prefix 'Input:\n'``
    in a shell means a newline; double-quoted YAML has already turned it into one, and then this does nothing.
    """
    if "\\" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(1)], text)


def _as_tuple(value: Any, name: str, item_type: type) -> tuple:
    if isinstance(value, str) and item_type is str:
        value = [v.strip() for v in value.split(",")] if name == "column_keys" else [value]
    if isinstance(value, str) and item_type is bool:
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"format option {name!r} must be a list, got {type(value).__name__}")
    out = []
    for v in value:
        if item_type is bool:
            v = _as_bool(v, name)
        elif not isinstance(v, str):
            raise ConfigError(f"format option {name!r} must hold strings, got {v!r}")
        out.append(v)
    return tuple(out)


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"format option {name!r} must be true or false, got {value!r}")


@dataclass
class FormatConfig:
    """Every option of the record formats (docs/formats.md has one section per format).

    ``column_prefixes`` / ``column_suffixes`` / ``column_train`` default to the issue's instruction-data
    defaults when ``column_keys`` is the default, and otherwise to no prefix, no suffix, and only the last
    column trained. ``add_bos`` / ``add_eos`` None means the tokenizer's convention. ``chat_template`` None uses
    the tokenizer's template (or the built-in one when it has none), ``"builtin"`` forces the built-in one, any
    other string is a Jinja template.
    """

    format: str = "auto"
    text_key: str = "text"
    prompt_key: str = "prompt"
    completion_key: str = "completion"
    prompt_mask: bool = True
    column_keys: tuple[str, ...] = DEFAULT_COLUMN_KEYS
    column_prefixes: tuple[str, ...] | None = None
    column_suffixes: tuple[str, ...] | None = None
    column_separator: str = "\n\n"
    column_train: tuple[bool, ...] | None = None
    messages_key: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    role_aliases: dict[str, str] = field(default_factory=lambda: {"human": "user", "gpt": "assistant"})
    train_on: str = "assistant"
    system_prompt: str | None = None
    chat_template: str | None = None
    tokens_key: str = "input_ids"
    tokens_mask_key: str | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    max_tokens: int | None = None
    truncate: str = "drop"
    min_tokens: int | None = None

    def __post_init__(self) -> None:
        self.format = self.format.replace("_", "-")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.truncate not in TRUNCATE:
            raise ConfigError(f"truncate must be one of {', '.join(TRUNCATE)}, got {self.truncate!r}")
        if self.train_on not in TRAIN_ON:
            raise ConfigError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {self.train_on!r}")
        self.column_keys = tuple(self.column_keys)
        n = len(self.column_keys)
        if n == 0:
            raise ConfigError("column_keys must name at least one column")
        if len(set(self.column_keys)) != n:
            raise ConfigError(f"column_keys has duplicates: {list(self.column_keys)}")
        default = self.column_keys == DEFAULT_COLUMN_KEYS
        if self.column_prefixes is None:
            self.column_prefixes = DEFAULT_COLUMN_PREFIXES if default else ("",) * n
        if self.column_suffixes is None:
            self.column_suffixes = ("",) * n
        if self.column_train is None:
            self.column_train = DEFAULT_COLUMN_TRAIN if default else (False,) * (n - 1) + (True,)
        self.column_prefixes = tuple(self.column_prefixes)
        self.column_suffixes = tuple(self.column_suffixes)
        self.column_train = tuple(bool(t) for t in self.column_train)
        for name in ("column_prefixes", "column_suffixes", "column_train"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"{name} has {len(getattr(self, name))} entries but column_keys has {n} ({list(self.column_keys)})"
                )
        for name in ("max_tokens", "min_tokens"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.max_tokens is not None and self.min_tokens is not None and self.min_tokens > self.max_tokens:
            raise ConfigError(f"min_tokens ({self.min_tokens}) is larger than max_tokens ({self.max_tokens})")
        if not isinstance(self.role_aliases, Mapping):
            raise ConfigError("role_aliases must be a mapping of role names")
        self.role_aliases = dict(self.role_aliases)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FormatConfig:
        """Build from YAML / command-line data: validates names and types, and unescapes ``\\n`` in strings.

        Also accepts ``columns`` as a list of ``{key, prefix, suffix, train}`` mappings (or of key names).
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"format configuration must be a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = str(raw_key).replace("-", "_")
            if key == "columns":
                kwargs.update(_columns_from_list(value))
                continue
            if key not in fields:
                close = difflib.get_close_matches(key, [*fields, "columns"], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown format option {raw_key!r}{hint}")
            kwargs[key] = value
        for key, value in list(kwargs.items()):
            kwargs[key] = _coerce(key, value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for the cache manifest and ``--print-config``); from_dict() reads it back."""
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out


_STR_OPTIONS = {
    "format",
    "text_key",
    "prompt_key",
    "completion_key",
    "messages_key",
    "role_key",
    "content_key",
}
_STR_OPTIONS |= {"train_on", "tokens_key", "truncate", "column_separator"}
_UNESCAPED = {"column_separator", "system_prompt"}


def _coerce(key: str, value: Any) -> Any:
    if key in ("column_keys", "column_prefixes", "column_suffixes"):
        if value is None:
            return None
        items = _as_tuple(value, key, str)
        return tuple(unescape(v) for v in items) if key != "column_keys" else items
    if key == "column_train":
        return None if value is None else _as_tuple(value, key, bool)
    if key in ("prompt_mask",):
        return _as_bool(value, key)
    if key in ("add_bos", "add_eos"):
        return None if value is None or value == "auto" else _as_bool(value, key)
    if key in ("max_tokens", "min_tokens"):
        if value is None:
            return None
        try:
            return int(value) if not isinstance(value, bool) else value
        except (TypeError, ValueError):
            raise ConfigError(f"format option {key!r} must be an integer, got {value!r}") from None
    if key in ("system_prompt", "chat_template", "tokens_mask_key"):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"format option {key!r} must be a string, got {value!r}")
        return unescape(value) if key in _UNESCAPED and value is not None else value
    if key == "role_aliases":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError("format option 'role_aliases' must map role names to role names")
        return dict(value)
    if key in _STR_OPTIONS:
        if not isinstance(value, str):
            raise ConfigError(f"format option {key!r} must be a string, got {value!r}")
        return unescape(value) if key in _UNESCAPED else value
    return value


def _columns_from_list(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError("format option 'columns' must be a non-empty list of column names or mappings")
    keys, prefixes, suffixes, train = [], [], [], []
    for i, col in enumerate(value):
        if isinstance(col, str):
            col = {"key": col}
        if not isinstance(col, Mapping) or "key" not in col:
            raise ConfigError(f"columns[{i}] must be a column name or a mapping with a 'key'")
        unknown = set(col) - {"key", "prefix", "suffix", "train"}
        if unknown:
            raise ConfigError(
                f"columns[{i}]: unknown option {sorted(unknown)[0]!r} (use key, prefix, suffix, train)"
            )
        keys.append(col["key"])
        prefixes.append(col.get("prefix", ""))
        suffixes.append(col.get("suffix", ""))
        train.append(col.get("train", i == len(value) - 1))
    return {
        "column_keys": keys,
        "column_prefixes": prefixes,
        "column_suffixes": suffixes,
        "column_train": train,
    }


# --------------------------------------------------------------------------------------------------- results


@dataclass
class Encoded:
    """One formatted record: ``ids`` (uint32) and ``mask`` (bool, True = trained), or ``mask=None`` when every
    token is trained (the cache then stores no mask for it)."""

    ids: np.ndarray
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_trained(self) -> int:
        return len(self.ids) if self.mask is None else int(self.mask.sum())


def with_location(
    error: RecordError, *, path: str | None = None, line: int | None = None, row: int | None = None
) -> RecordError:
    """The same record error, now saying where the record came from (formatters do not know)."""
    return RecordError(error.detail, path=path, line=line, row=row, field=error.field, reason=error.reason)


def ensure_bos_eos(
    ids: Sequence[int] | np.ndarray, bos_id: int | None, eos_id: int | None
) -> tuple[bool, bool]:
    """Whether BOS / EOS must be added to ``ids`` (None = do not add), never doubling one already there."""
    n = len(ids)
    add_bos = bos_id is not None and (n == 0 or int(ids[0]) != bos_id)
    add_eos = eos_id is not None and (n == 0 or int(ids[-1]) != eos_id)
    return add_bos, add_eos


# --------------------------------------------------------------------------------------------------- layout

_PLAIN, _SPECIAL = 0, 1
_SENTINEL_OPEN, _SENTINEL_CLOSE = "\U000f0000", "\U000f0001"
_SENTINEL_RE = re.compile(f"{_SENTINEL_OPEN}(\\d+){_SENTINEL_CLOSE}")


class _Layout:
    """A record laid out as parts: (text, kind, trained) or literal ids (ids, None, trained)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[Any, int | None, bool]] = []

    def add(self, text: str, trained: bool, kind: int = _PLAIN) -> None:
        if not text:
            return
        if self.parts:
            prev_text, prev_kind, prev_trained = self.parts[-1]
            if prev_kind == kind and prev_trained == trained and kind is not None:
                self.parts[-1] = (prev_text + text, kind, trained)
                return
        self.parts.append((text, kind, trained))

    def add_ids(self, ids: np.ndarray, trained: bool | np.ndarray) -> None:
        self.parts.append((ids, None, trained))


def _err(message: str, field: str | None, reason: str) -> RecordError:
    return RecordError(message, field=field, reason=reason)


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
        self._template: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_template"] = None  # compiled Jinja objects do not pickle; recompiled on first use
        return state

    # ------------------------------------------------------------------ public

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> list[Encoded | RecordError]:
        layouts: list[_Layout | RecordError] = []
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
        return self._render(
            self._chat_messages({self.config.messages_key: list(messages)}), add_generation_prompt
        )

    # ------------------------------------------------------------------ layout per format

    def _layout(self, rec: Mapping[str, Any]) -> _Layout:
        if not isinstance(rec, Mapping):
            raise _err(f"record must be an object, got {type(rec).__name__}", None, "not_object")
        fmt = self.format_of(rec)
        if fmt == "text":
            lay = _Layout()
            lay.add(self._string(rec, self.config.text_key, allow_empty=False), True)
            return lay
        if fmt == "prompt-completion":
            return self._layout_prompt_completion(rec)
        if fmt == "columns":
            return self._layout_columns(rec)
        if fmt == "chat":
            return self._layout_chat(rec)
        return self._layout_tokens(rec)

    @staticmethod
    def _string(rec: Mapping[str, Any], key: str, *, allow_empty: bool) -> str:
        if key not in rec:
            raise _err(f"field {key!r} is missing", key, "missing_field")
        value = rec[key]
        if not isinstance(value, str):
            raise _err(f"field {key!r} must be a string, got {type(value).__name__}", key, "not_string")
        if not value and not allow_empty:
            raise _err(f"field {key!r} is empty", key, "empty")
        return value

    def _layout_prompt_completion(self, rec: Mapping[str, Any]) -> _Layout:
        cfg = self.config
        prompt = self._string(rec, cfg.prompt_key, allow_empty=True)
        completion = self._string(rec, cfg.completion_key, allow_empty=False)
        lay = _Layout()
        lay.add(prompt, not cfg.prompt_mask)
        lay.add(completion, True)
        return lay

    def _layout_columns(self, rec: Mapping[str, Any]) -> _Layout:
        cfg = self.config
        lay = _Layout()
        first = True
        assert (
            cfg.column_prefixes is not None
            and cfg.column_suffixes is not None
            and cfg.column_train is not None
        )
        for key, prefix, suffix, train in zip(
            cfg.column_keys, cfg.column_prefixes, cfg.column_suffixes, cfg.column_train, strict=True
        ):
            value = rec.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise _err(f"column {key!r} must be a string, got {type(value).__name__}", key, "not_string")
            if not first:
                lay.add(cfg.column_separator, False)
            first = False
            lay.add(prefix, False)
            lay.add(value, train)
            lay.add(suffix, train)
        if first:
            keys = ", ".join(repr(k) for k in cfg.column_keys)
            raise _err(f"every column ({keys}) is missing or empty", cfg.column_keys[0], "empty")
        return lay

    def _layout_tokens(self, rec: Mapping[str, Any]) -> _Layout:
        cfg = self.config
        key = cfg.tokens_key
        if key not in rec:
            raise _err(f"field {key!r} is missing", key, "missing_field")
        value = rec[key]
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise _err(f"field {key!r} must be a list of token ids", key, "bad_tokens")
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise _err(f"field {key!r} must be a flat list of token ids", key, "bad_tokens") from None
        if arr.size == 0:
            raise _err(f"field {key!r} is empty", key, "empty")
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise _err(f"field {key!r} must be a flat list of integer token ids", key, "bad_tokens")
        vocab = self.tokenizer.vocab_size
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            raise _err(
                f"field {key!r} holds token id {bad}, outside the tokenizer's vocabulary (0..{vocab - 1})",
                key,
                "bad_tokens",
            )
        trained: bool | np.ndarray = True
        if cfg.tokens_mask_key is not None:
            mkey = cfg.tokens_mask_key
            if mkey not in rec:
                raise _err(f"field {mkey!r} is missing", mkey, "missing_field")
            try:
                m = np.asarray(rec[mkey])
            except (ValueError, TypeError):
                m = np.asarray([None])
            if (
                m.shape != arr.shape
                or m.dtype.kind not in "biu"
                or (m.dtype.kind != "b" and ((m < 0) | (m > 1)).any())
            ):
                raise _err(f"field {mkey!r} must be a list of booleans as long as {key!r}", mkey, "bad_mask")
            trained = m.astype(bool)
        lay = _Layout()
        lay.add_ids(arr.astype(np.uint32), trained)
        return lay

    # ------------------------------------------------------------------ chat

    def _chat_messages(self, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        cfg = self.config
        key = cfg.messages_key
        if key not in rec:
            raise _err(f"field {key!r} is missing", key, "missing_field")
        raw = rec[key]
        if not isinstance(raw, (list, tuple)):
            raise _err(f"field {key!r} must be a list of messages, got {type(raw).__name__}", key, "not_list")
        if not raw:
            raise _err(f"field {key!r} has no messages", key, "empty")
        messages = []
        for i, m in enumerate(raw):
            where = f"{key}[{i}]"
            if not isinstance(m, Mapping):
                raise _err(
                    f"{where} must be an object with {cfg.role_key!r} and {cfg.content_key!r}",
                    where,
                    "bad_message",
                )
            role, content = m.get(cfg.role_key), m.get(cfg.content_key)
            if role is None:
                raise _err(f"{where} has no {cfg.role_key!r}", f"{where}.{cfg.role_key}", "missing_field")
            if content is None and cfg.content_key not in m:
                raise _err(
                    f"{where} has no {cfg.content_key!r}", f"{where}.{cfg.content_key}", "missing_field"
                )
            if not isinstance(role, str):
                raise _err(
                    f"{where}.{cfg.role_key} must be a string", f"{where}.{cfg.role_key}", "not_string"
                )
            if not isinstance(content, str):
                raise _err(
                    f"{where}.{cfg.content_key} must be a string", f"{where}.{cfg.content_key}", "not_string"
                )
            msg = {k: v for k, v in m.items() if k not in (cfg.role_key, cfg.content_key)}
            msg["role"] = cfg.role_aliases.get(role, role)
            msg["content"] = content
            messages.append(msg)
        if cfg.system_prompt is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": cfg.system_prompt})
        return messages

    def _compiled_template(self) -> Any:
        if self._template is None:
            source = self.config.chat_template
            if source is None:
                source = self.tokenizer.chat_template or BUILTIN_CHAT_TEMPLATE
            elif source == "builtin":
                source = BUILTIN_CHAT_TEMPLATE
            self._template = _compile_template(source)
        return self._template

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        tok = self.tokenizer
        try:
            return self._compiled_template().render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=tok.bos_token or "",
                eos_token=tok.eos_token or "",
                pad_token=tok.pad_token or "",
                tools=None,
                documents=None,
            )
        except ConfigError:
            raise
        except Exception as e:  # a template's raise_exception(), or a template bug this record triggers
            raise _err(
                f"the chat template failed on this conversation: {e}",
                self.config.messages_key,
                "chat_template",
            ) from None

    def _layout_chat(self, rec: Mapping[str, Any]) -> _Layout:
        """Render with each content replaced by a sentinel, so we know where contents are (plain text) and where
        each turn starts and ends (prefix renderings); the assistant's trained span runs from the end of the
        generation prompt to the end of its turn: its content plus the template's end-of-turn markers."""
        cfg = self.config
        messages = self._chat_messages(rec)
        contents = [m["content"] for m in messages]
        if any(_SENTINEL_OPEN in c or _SENTINEL_CLOSE in c for c in contents):
            raise _err(
                "a message contains a reserved private-use character", cfg.messages_key, "chat_template"
            )
        masked = [dict(m, content=f"{_SENTINEL_OPEN}{i}{_SENTINEL_CLOSE}") for i, m in enumerate(messages)]
        full = self._render(masked, False)
        actual = self._render(messages, False)
        chunks = _SENTINEL_RE.split(full)  # text, index, text, index, ..., text
        substitute = None
        for variant in (contents, [c.strip() for c in contents]):
            if "".join(t if j % 2 == 0 else variant[int(t)] for j, t in enumerate(chunks)) == actual:
                substitute = variant
                break
        if substitute is None:
            raise _err(
                "the chat template changes message contents (beyond trimming whitespace), so exact masks are "
                "impossible; use chat_template: builtin or a template that inserts contents verbatim",
                cfg.messages_key,
                "chat_template",
            )
        trained_spans: list[tuple[int, int]] = []
        if cfg.train_on == "assistant":
            prev = ""
            for i, m in enumerate(masked):
                cur = self._render(masked[: i + 1], False)
                if not cur.startswith(prev) or not full.startswith(cur):
                    raise _err(
                        "the chat template renders a conversation prefix differently from the whole conversation; "
                        "exact per-turn masks need a prefix-stable template",
                        cfg.messages_key,
                        "chat_template",
                    )
                if m["role"] == "assistant":
                    start = self._assistant_start(masked[:i], prev, cur, i)
                    trained_spans.append((start, len(cur)))
                prev = cur
        lay = _Layout()
        pos = 0
        for j, t in enumerate(chunks):
            if j % 2 == 1:
                width = len(_SENTINEL_OPEN) + len(t) + len(_SENTINEL_CLOSE)
                trained = cfg.train_on == "all" or _inside(pos, trained_spans)
                lay.add(substitute[int(t)], trained, _PLAIN)
                pos += width
                continue
            # template text, cut at the edges of trained spans
            end = pos + len(t)
            cuts = sorted({pos, end, *(e for s in trained_spans for e in s if pos < e < end)})
            for a, b in zip(cuts, cuts[1:], strict=False):
                lay.add(full[a:b], cfg.train_on == "all" or _inside(a, trained_spans), _SPECIAL)
            pos = end
        return lay

    def _assistant_start(self, before: list[dict[str, Any]], prev: str, cur: str, index: int) -> int:
        """Where assistant turn ``index`` starts being trained: after the generation prompt when the template
        has one that the turn's rendering extends, else at its content."""
        if before:
            gen = self._render(before, True)
            if gen.startswith(prev) and cur.startswith(gen) and len(gen) > len(prev):
                return len(gen)
        marker = f"{_SENTINEL_OPEN}{index}{_SENTINEL_CLOSE}"
        at = cur.find(marker, len(prev))
        return at if at >= 0 else len(prev)

    # ------------------------------------------------------------------ tokenize + assemble

    def _tokenize(self, layouts: list[_Layout | RecordError]) -> dict[tuple[int, str], list[int]]:
        wanted: dict[int, dict[str, None]] = {_PLAIN: {}, _SPECIAL: {}}
        for lay in layouts:
            if isinstance(lay, _Layout):
                for text, kind, _ in lay.parts:
                    if kind is not None:
                        wanted[kind][text] = None
        out: dict[tuple[int, str], list[int]] = {}
        for kind, texts in wanted.items():
            if texts:
                keys = list(texts)
                ids = self.tokenizer.encode_batch(keys, parse_special=kind == _SPECIAL)
                out.update(zip(((kind, k) for k in keys), ids, strict=True))
        return out

    def _assemble(self, lay: _Layout, tokens: dict[tuple[int, str], list[int]]) -> Encoded | RecordError:
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
                return _err(
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
            return _err(
                f"record has {len(ids)} tokens, fewer than min_tokens={cfg.min_tokens}", field, "too_short"
            )
        if mask is not None:
            if not mask.any():
                return _err("no token of this record is trained (every token is masked)", field, "all_masked")
            if mask.all():
                mask = None
        return Encoded(ids=ids, mask=mask)


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


# --------------------------------------------------------------------------------------------------- jinja


def _compile_template(source: str) -> Any:
    """Compile a chat template the way transformers does (sandboxed, trim_blocks, lstrip_blocks, loopcontrols,
    ``raise_exception``, ``tojson``, ``{% generation %}`` blocks), without needing transformers."""
    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ConfigError("chat formats need jinja2: pip install jinja2") from e

    class _Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers' assistant marker): rendered as its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        @staticmethod
        def _body(caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: Any = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        # a fixed date keeps prepared data reproducible (a live clock would change tokens between runs)
        import datetime

        return datetime.datetime(2025, 1, 1).strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateError as e:
        raise ConfigError(f"the chat template does not compile: {e}") from e
