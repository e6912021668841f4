"""Loader states on disk (JSON, written atomically) and the refusal that lists what differs from the dataset."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tokenmill.errors import StateError

STATE_FORMAT = "tokenmill.loader/1"


def describe_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per field that differs between a saved fingerprint and the current one (nested keys dotted)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(describe_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return out


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a loader state as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: cannot read a loader state: {exc}") from exc
