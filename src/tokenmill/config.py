"""Configuration as data: dataclass schemas loaded from YAML and overridden from the command line.

Every command's options are one dataclass; a YAML file gives values, flags given on the command line win, and
unknown keys are errors that name the key (and the YAML line where we know it), because a misspelt option that is
silently ignored costs a training run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tokenmill.errors import ConfigError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
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
    """Line numbers of the top-level and nested keys of a YAML file (dotted paths), for error messages."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}

    def walk(n, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    walk(node, "")
    return lines


def _allowed(tp: Any) -> tuple[type, ...]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(tp):
            out += _allowed(arg)
        return out
    if origin is not None:
        return (origin,)
    if tp is typing.Any:
        return (object,)
    if tp is float:
        return (float, int)
    if tp is type(None):
        return (type(None),)
    return (tp,) if isinstance(tp, type) else (object,)


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{where}: unknown option {key!r}; known options: {', '.join(sorted(fields))}")
        allowed = _allowed(hints[name])
        ok = isinstance(value, allowed) and not (
            isinstance(value, bool) and bool not in allowed and object not in allowed
        )
        if not ok:
            names = " or ".join(sorted({a.__name__ for a in allowed}))
            raise ConfigError(f"{where}: option {key!r} must be {names}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in exclude}
