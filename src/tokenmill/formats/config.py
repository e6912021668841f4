"""The options of the record formats: one :class:`FormatConfig`, built on :mod:`tokenmill.config`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tokenmill.config import Config, OptionError, Where, build, option

FORMATS = ("auto", "text", "prompt-completion", "columns", "chat", "tokens")
TRUNCATE = ("drop", "right", "left")
TRAIN_ON = ("assistant", "all")

DEFAULT_COLUMN_KEYS = ("instruction", "input", "output")
DEFAULT_COLUMN_PREFIXES = ("Instruction:\n", "Input:\n", "Output:\n")
DEFAULT_COLUMN_TRAIN = (True, False, True)

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


# ---------------------------------------------------------------------------- spellings the options accept
def _format_name(value: Any) -> Any:
    return value.replace("_", "-") if isinstance(value, str) else value


def _comma_list(value: Any) -> Any:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _unescaped_items(value: Any) -> Any:
    value = _one_or_many(value)
    return [unescape(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


def _unescaped(value: Any) -> Any:
    return unescape(value) if isinstance(value, str) else value


def _bits(value: Any) -> Any:
    """``"false,true"`` or ``[0, 1]`` as booleans."""
    value = _comma_list(value)
    if isinstance(value, list):
        return [
            bool(v) if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1) else v for v in value
        ]
    return value


def _bit(value: Any) -> Any:
    return (
        bool(value) if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1) else value
    )


def _auto_bit(value: Any) -> Any:
    return None if value == "auto" else _bit(value)


def _known_format(value: Any) -> str | None:
    return None if value in FORMATS else f"unknown format {value!r}; choose one of {', '.join(FORMATS)}"


@dataclass
class FormatConfig(Config):
    """Every option of the record formats (docs/formats.md has one section per format).

    ``column_prefixes`` / ``column_suffixes`` / ``column_train`` default to the issue's instruction-data
    defaults when ``column_keys`` is the default, and otherwise to no prefix, no suffix, and only the last
    column trained. ``add_bos`` / ``add_eos`` None means the tokenizer's convention. ``chat_template`` None uses
    the tokenizer's template (or the built-in one when it has none), ``"builtin"`` forces the built-in one, any
    other string is a Jinja template.
    """

    LABEL: ClassVar[str] = "format options"

    format: str = option("auto", coerce=_format_name, check=_known_format)
    text_key: str = "text"
    prompt_key: str = "prompt"
    completion_key: str = "completion"
    prompt_mask: bool = option(True, coerce=_bit)
    column_keys: tuple[str, ...] = option(DEFAULT_COLUMN_KEYS, coerce=_comma_list)
    column_prefixes: tuple[str, ...] | None = option(None, coerce=_unescaped_items)
    column_suffixes: tuple[str, ...] | None = option(None, coerce=_unescaped_items)
    column_separator: str = option("\n\n", coerce=_unescaped)
    column_train: tuple[bool, ...] | None = option(None, coerce=_bits)
    messages_key: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    role_aliases: dict[str, str] = option(factory=lambda: {"human": "user", "gpt": "assistant"})
    train_on: str = option("assistant", choices=TRAIN_ON)
    system_prompt: str | None = option(None, coerce=_unescaped)
    chat_template: str | None = None
    tokens_key: str = "input_ids"
    tokens_mask_key: str | None = None
    add_bos: bool | None = option(None, coerce=_auto_bit)
    add_eos: bool | None = option(None, coerce=_auto_bit)
    max_tokens: int | None = option(None, minimum=1)
    truncate: str = option("drop", choices=TRUNCATE)
    min_tokens: int | None = option(None, minimum=1)

    def __post_init__(self) -> None:
        self.format = _format_name(self.format)
        self.column_keys = tuple(self.column_keys)
        n = len(self.column_keys)
        default = self.column_keys == DEFAULT_COLUMN_KEYS
        if self.column_prefixes is None:
            self.column_prefixes = DEFAULT_COLUMN_PREFIXES if default else ("",) * n
        if self.column_suffixes is None:
            self.column_suffixes = ("",) * n
        if self.column_train is None:
            self.column_train = DEFAULT_COLUMN_TRAIN if default else (False,) * max(0, n - 1) + (True,)
        self.column_prefixes = tuple(self.column_prefixes)
        self.column_suffixes = tuple(self.column_suffixes)
        self.column_train = tuple(bool(t) for t in self.column_train)
        if isinstance(self.role_aliases, Mapping):
            self.role_aliases = dict(self.role_aliases)
        super().__post_init__()

    def validate(self) -> None:
        n = len(self.column_keys)
        if n == 0:
            raise OptionError("column_keys", "column_keys must name at least one column")
        if len(set(self.column_keys)) != n:
            raise OptionError("column_keys", f"column_keys has duplicates: {list(self.column_keys)}")
        for name in ("column_prefixes", "column_suffixes", "column_train"):
            if len(getattr(self, name)) != n:
                raise OptionError(
                    name,
                    f"{name} has {len(getattr(self, name))} entries but column_keys has {n} "
                    f"({list(self.column_keys)})",
                )
        if self.max_tokens is not None and self.min_tokens is not None and self.min_tokens > self.max_tokens:
            raise OptionError(
                "min_tokens", f"min_tokens ({self.min_tokens}) is larger than max_tokens ({self.max_tokens})"
            )
        if not isinstance(self.role_aliases, dict):
            raise OptionError("role_aliases", "role_aliases must map role names to role names")

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> FormatConfig:
        """Like :meth:`from_dict`, raising :class:`OptionError` (the key, no location) for a holder to locate."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise OptionError(None, f"format configuration must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if "columns" in data:
            data.update(_columns_from_list(data.pop("columns")))
        return build(cls, data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: Where | str | None = None) -> FormatConfig:
        """Build from YAML / command-line data: validates names and types, and unescapes ``\\n`` in strings.

        Also accepts ``columns`` as a list of ``{key, prefix, suffix, train}`` mappings (or of key names).
        """
        try:
            return cls.parse(data)
        except OptionError as exc:
            raise Where(where or cls.LABEL).locate(exc) from None


def _columns_from_list(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise OptionError("columns", "columns must be a non-empty list of column names or mappings")
    keys, prefixes, suffixes, train = [], [], [], []
    for i, col in enumerate(value):
        if isinstance(col, str):
            col = {"key": col}
        if not isinstance(col, Mapping) or "key" not in col:
            raise OptionError(f"columns.{i}", f"columns[{i}] must be a column name or a mapping with a 'key'")
        unknown = set(col) - {"key", "prefix", "suffix", "train"}
        if unknown:
            raise OptionError(
                f"columns.{i}",
                f"columns[{i}]: unknown option {sorted(unknown)[0]!r} (use key, prefix, suffix, train)",
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
