"""Configuration as data: the one mechanism every config of tokenmill uses.

A config is a dataclass that inherits :class:`Config`; its fields carry their rules through :func:`option`
(allowed values, a lower bound, a conversion, a custom check). The mechanism then gives, for every config alike:

* ``Cls.from_dict(data, where)``: unknown keys refused with a "did you mean", values converted and type-checked
  from the field's annotation (``3e-4`` that YAML 1.1 reads as a string becomes a float; ``"yes"`` a bool), the
  rules checked, and every error naming the file, the YAML line and the dotted key;
* ``Cls(...)`` checks the same rules, so a config built in Python is as safe as one read from YAML;
* ``load_config(Cls, path, ["a.b=c", ...], **flags)``: a YAML file, then ``--set`` overrides that *merge* into
  the file and the defaults (``--set model.n_layer=1`` changes one field of the default model, it does not
  replace the model), then command-line flags on top.

Errors about one option are :class:`OptionError` (a :class:`ConfigError` that knows its key), so whoever holds
the YAML (a recipe holding a prepare config, say) can point at the right line: see :class:`Where`.

Why a home of our own and not pydantic: the configs must stay plain dataclasses that pickle into worker processes
and ``dataclasses.asdict`` into manifests, and the messages must name YAML lines, which needs the composed node
tree anyway. A misspelt option that is silently ignored costs a training run, so nothing here is lenient about
names; it is lenient only about spellings of the same value.

:func:`digest` is the one fingerprint of JSON-able data (sha256 of sorted-key JSON, first 16 hex digits) that
cache identities, recipe build states and loader states use.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tokenmill.errors import ConfigError, missing_filesystem

__all__ = [
    "Config",
    "OptionError",
    "Where",
    "build",
    "convert_options",
    "defaults",
    "digest",
    "from_dict",
    "key_lines",
    "load_config",
    "load_yaml",
    "merge",
    "option",
    "parse_overrides",
    "read_text",
    "to_dict",
]

_META = "tokenmill"


def digest(data: Any, length: int = 16) -> str:
    """sha256 of ``data`` as sorted-key JSON (anything not JSON-able by ``str``), the first ``length`` hex digits.

    Sixteen digits (64 bits) tell apart any number of configurations a user will ever build, and stay readable in
    a manifest or a log line.
    """
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# ------------------------------------------------------------------------------------------------ YAML files
def read_text(path: str | Path) -> str:
    """A small text file, local or at a URL (``s3://``, ``gs://``, ``az://``, ... through fsspec).

    Recipes and configs kept in a bucket beside the data are read as they are; a missing filesystem package is
    one line naming the extra to install.
    """
    text = os.fspath(path)
    if "://" not in text or text.startswith("file://"):
        with open(text.removeprefix("file://"), encoding="utf-8") as f:
            return f.read()
    import fsspec

    try:
        with fsspec.open(text, "rt", encoding="utf-8") as f:
            return f.read()
    except ImportError as exc:
        raise missing_filesystem(text, exc) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file and line."""
    try:
        data = yaml.safe_load(read_text(path))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a folder; a config is a YAML file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of option names to values")
    return data


def key_lines(path: str | Path) -> dict[str, int]:
    """Line numbers of the keys of a YAML file by dotted path (``sources.web.weight``), for error messages.

    List items are numbered: ``data.configs.0.id``.
    """
    try:
        node = yaml.compose(read_text(path))
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines[f"{prefix}{i}"] = v.start_mark.line + 1
                walk(v, f"{prefix}{i}.")

    walk(node, "")
    return lines


class Where:
    """Where a config came from, for messages: ``FILE, line N, key 'a.b': what is wrong``.

    ``label`` names the file (or ``"train config"`` when there is none), ``lines`` maps dotted keys to YAML
    lines (:func:`key_lines`), ``prefix`` is the dotted path of the section this config sits in (a recipe's
    ``sources.web.``), so a nested config reports keys as the user wrote them.
    """

    def __init__(
        self, label: str | None = None, lines: dict[str, int] | None = None, prefix: str = ""
    ) -> None:
        self.label = str(label) if label is not None else "config"
        self.lines = lines or {}
        self.prefix = prefix

    @classmethod
    def of_file(cls, path: str | Path) -> Where:
        return cls(str(path), key_lines(path))

    def child(self, key: str) -> Where:
        """The same file, one section deeper."""
        return Where(self.label, self.lines, f"{self.prefix}{key}.")

    def line(self, key: str) -> int | None:
        """The line of a dotted key; a key written inside a YAML flow mapping borrows its parent's line."""
        parts = key.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None

    def error(self, key: str | None, message: str) -> ConfigError:
        """A :class:`ConfigError` naming this file, the key's line, and the key's full dotted path."""
        if key is None:
            dotted = self.prefix.rstrip(".")
            if not dotted:
                return ConfigError(f"{self.label}: {message}")
        else:
            dotted = self.prefix + key
        line = self.line(dotted)
        where = f"{self.label}, line {line}" if line is not None else self.label
        return ConfigError(f"{where}, key {dotted!r}: {message}")

    __call__ = error

    def locate(self, exc: ConfigError, keys: Mapping[str, str] | None = None) -> ConfigError:
        """``exc`` raised by a nested config, now naming this file and line; ``keys`` renames a field to the key
        the user wrote (a recipe's ``max_document_tokens`` is the format's ``max_tokens``)."""
        if isinstance(exc, OptionError):
            key = exc.key
            if keys and key is not None and key.split(".")[0] in keys:
                head, _, rest = key.partition(".")
                key = keys[head] + ("." + rest if rest else "")
            return self.error(key, exc.detail)
        return self.error(None, str(exc))


class OptionError(ConfigError):
    """A :class:`ConfigError` about one option; ``key`` is its dotted name (relative to the config), ``detail``
    the message without a location, so the holder of the YAML can add file and line (:meth:`Where.locate`)."""

    def __init__(self, key: str | None, detail: str, label: str | None = None) -> None:
        self.key = key
        self.detail = detail
        where = label or "config"
        super().__init__(f"{where}, key {key!r}: {detail}" if key is not None else f"{where}: {detail}")


# ------------------------------------------------------------------------------------------- declaring fields
@dataclasses.dataclass(frozen=True)
class Rule:
    """What an option allows beyond its type. ``coerce`` runs before the type check (``"a, b"`` -> a tuple);
    ``check`` returns an error message or None."""

    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    below: float | None = None
    coerce: Callable[[Any], Any] | None = None
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


def option(
    default: Any = MISSING,
    *,
    factory: Callable[[], Any] | Any = MISSING,
    choices: typing.Iterable[Any] | None = None,
    minimum: float | None = None,
    below: float | None = None,
    coerce: Callable[[Any], Any] | None = None,
    check: Callable[[Any], str | None] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with rules: ``choices`` (allowed values), ``minimum`` (numbers >= it), ``below``
    (numbers < it), ``coerce`` (turn another spelling into the value), ``check`` (returns a message or None).
    ``None`` always passes the rules (whether None is allowed is the annotation's business)."""
    rule = Rule(tuple(choices) if choices is not None else None, minimum, below, coerce, check, doc)
    meta = {_META: rule}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _rule(f: dataclasses.Field) -> Rule:
    return f.metadata.get(_META) or Rule()


def _names(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_names(a) for a in typing.get_args(tp)))
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin in (list, tuple) or tp in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _convert(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (exact matches first, so an int stays an int under ``float | int``)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        for arg in args:  # exact first: 500 under ``float | int`` is a count, not 500.0
            try:
                return _convert_exact(value, arg)
            except _Mismatch:
                pass
        for arg in args:
            try:
                return _convert(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_convert(v, item) for v in value)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        return [_convert(v, args[0]) for v in value] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        args = typing.get_args(tp)
        if not args:
            return dict(value)
        return {_convert(k, args[0]): _convert(v, args[1]) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Mismatch


def _convert_exact(value: Any, tp: Any) -> Any:
    """``value`` unchanged when it already is a ``tp`` (bools are not ints here)."""
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if isinstance(origin, type) and isinstance(value, origin):
        if isinstance(value, bool) and origin is not bool:
            raise _Mismatch
        if origin in (list, tuple, dict):
            return _convert(value, tp)
        return value
    raise _Mismatch


def check_option(f: dataclasses.Field, value: Any) -> None:
    """Raise :class:`OptionError` when ``value`` breaks field ``f``'s rules."""
    rule = _rule(f)
    if value is None:
        return
    if rule.choices is not None and value not in rule.choices:
        shown = ", ".join(str(c) for c in rule.choices if c is not None)
        raise OptionError(f.name, f"{f.name} must be one of {shown}, got {value!r}")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and isinstance(value, float) and math.isnan(value):
        raise OptionError(f.name, f"{f.name} must be a number, got nan")
    if rule.minimum is not None and numeric and value < rule.minimum:
        raise OptionError(f.name, f"{f.name} must be >= {rule.minimum:g}, got {value!r}")
    if rule.below is not None and numeric and value >= rule.below:
        raise OptionError(f.name, f"{f.name} must be < {rule.below:g}, got {value!r}")
    if rule.check is not None:
        message = rule.check(value)
        if message:
            raise OptionError(f.name, message)


def check_options(obj: Any) -> None:
    """Check every field of a config dataclass instance against its rules."""
    for f in dataclasses.fields(obj):
        check_option(f, getattr(obj, f.name))


def _unknown(key: str, known: typing.Iterable[str], renamed: Mapping[str, str] | None) -> OptionError:
    known = sorted(known)
    if renamed and key in renamed:
        return OptionError(key, f"unknown option {key!r}: {renamed[key]}")
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return OptionError(key, f"unknown option {key!r}{hint}; known options: {', '.join(known)}")


def convert_options(
    cls: type, data: Mapping[str, Any], *, renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``cls`` that ``data`` gives: names checked (``-`` read as ``_``), each value
    converted to its field's type and checked against its rules. Raises :class:`OptionError`."""
    if not isinstance(data, Mapping):
        raise OptionError(None, f"expected a mapping of option names to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise OptionError(
                None,
                f"option names are strings, got {key!r} (YAML reads an unquoted null, true, yes, no, on or off "
                "as a value: quote it)",
            )
        name = key.replace("-", "_")
        if name not in fields:
            raise _unknown(key, fields, renamed)
        f = fields[name]
        rule = _rule(f)
        if rule.coerce is not None and value is not None:
            try:
                value = rule.coerce(value)
            except OptionError as exc:
                raise OptionError(key if exc.key in (None, name) else exc.key, exc.detail) from None
            except (ConfigError, TypeError, ValueError) as exc:
                raise OptionError(key, str(exc)) from None
        try:
            value = _convert(value, hints[name])
        except _Mismatch:
            raise OptionError(key, f"{name} must be {_names(hints[name])}, got {value!r}") from None
        check_option(f, value)
        out[name] = value
    return out


def build(cls: type, data: Mapping[str, Any], *, renamed: Mapping[str, str] | None = None) -> Any:
    """Build config dataclass ``cls`` from a mapping, raising :class:`OptionError` (key, no location): for a
    config that sits inside another file (a recipe's source holds prepare options), whose holder locates it."""
    return cls(**convert_options(cls, data, renamed=renamed))


def from_dict(
    cls: type,
    data: Mapping[str, Any],
    where: Where | str | None = None,
    *,
    renamed: Mapping[str, str] | None = None,
) -> Any:
    """Build config dataclass ``cls`` from a mapping; every error names ``where`` (file, line, key)."""
    if not isinstance(where, Where):
        where = Where(where)
    try:
        return build(cls, data, renamed=renamed)
    except OptionError as exc:
        raise where.locate(exc) from None


def defaults(cls: type) -> dict[str, Any]:
    """Every option of ``cls`` with its default (for ``--print-config`` and for merging ``--set``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            out[f.name] = copy.deepcopy(f.default)
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def to_dict(obj: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Plain data (tuples as lists), ready for JSON or YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(obj).items() if k not in exclude}


class Config:
    """Base of the config dataclasses: rules checked at construction, ``from_dict``, ``to_dict``.

    A subclass is a ``@dataclass`` whose fields use :func:`option`; cross-field checks go in ``validate`` and
    raise :class:`OptionError` naming the key. A subclass's own ``__post_init__`` calls ``super().__post_init__()``
    after normalising its fields.
    """

    LABEL: ClassVar[str] = "config"
    RENAMED: ClassVar[dict[str, str]] = {}  # names users reach for, with what to write instead

    def __post_init__(self) -> None:
        check_options(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks (``min_tokens <= max_tokens``); raise :class:`OptionError`."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: Where | str | None = None) -> Any:
        return from_dict(cls, data if data is not None else {}, where or cls.LABEL, renamed=cls.RENAMED)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# ------------------------------------------------------------------------------------- command-line overrides
def parse_overrides(items: typing.Iterable[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "model.n_layer=4"]`` -> a nested mapping; values are parsed as YAML (numbers, lists, null)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = [p.strip() for p in key.strip().split(".") if p.strip()]
        if not parts:
            raise ConfigError(f"--set has an empty key in {item!r}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is given both as a value and as a mapping")
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``: a mapping merges key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{path}{key}.")
        elif (
            isinstance(value, dict) and key in out and out[key] is not None and not isinstance(out[key], dict)
        ):
            raise ConfigError(f"--set {path}{key}.*: {path}{key} is {out[key]!r}, not a mapping")
        else:
            out[key] = value
    return out


def load_config(
    cls: type,
    path: str | Path | None = None,
    overrides: typing.Iterable[str] | Mapping[str, Any] | None = None,
    **values: Any,
) -> Any:
    """``cls`` from a YAML file, then ``--set`` overrides, then keyword values (flags; None = not given).

    An override merges into what the file gives and, for a section the file does not name, into the default:
    ``--set model.n_layer=1`` keeps the default model type and changes one field.
    """
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    if overrides:
        sets = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
        start = defaults(cls)
        base = dict(data)
        for key, value in sets.items():
            if isinstance(value, dict) and key not in base and isinstance(start.get(key), dict):
                base[key] = start[key]
        data = merge(base, sets)
    data.update({k: v for k, v in values.items() if v is not None})
    where = Where.of_file(path) if path is not None else Where(getattr(cls, "LABEL", "config"))
    return cls.from_dict(data, where) if hasattr(cls, "from_dict") else from_dict(cls, data, where)
