"""Loader states on disk (JSON, written atomically) and the refusal that lists what differs from the dataset."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tokenmill.errors import StateError

STATE_FORMAT = "tokenmill.loader/1"

# field -> (types it may have, smallest value for numbers); a state is plain JSON a user can edit or damage
_STATE_FIELDS: dict[str, tuple[tuple[type, ...], int | None]] = {
    "epoch": ((int,), 0),
    "batch_in_epoch": ((int,), 0),
    "samples_in_epoch": ((int,), 0),
    "step": ((int,), 0),
    "samples_consumed": ((int,), 0),
    "global_batch_size": ((int,), 1),
    "drop_last": ((bool,), None),
    "seed": ((int,), None),
    "fingerprint": ((dict,), None),
    "cache_versions": ((list,), None),
    "epoch_samples": ((int,), 0),
}


def check_state_fields(state: dict[str, Any]) -> None:
    """Every field of a saved loader state present, of its type and in range, or a StateError naming it.

    Impossible positions are refused here rather than resumed onto other samples: an epoch or a step beyond the
    samples consumed (each epoch and each step hands out at least one sample), a position past its epoch's end.
    """
    for name, (types, minimum) in _STATE_FIELDS.items():
        if name not in state:
            raise StateError(
                f"the loader state has no {name!r}; it was edited or cut short: resume from another one"
            )
        value = state[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            kind = " or ".join(t.__name__ for t in types)
            raise StateError(f"the loader state's {name!r} must be {kind}, got {value!r}")
        if minimum is not None and value < minimum:
            raise StateError(f"the loader state's {name!r} must be >= {minimum}, got {value!r}")
    for v in state["cache_versions"]:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise StateError(f"the loader state's 'cache_versions' must be version numbers, got {v!r}")
    if state["samples_in_epoch"] > state["epoch_samples"]:
        raise StateError(
            f"the loader state is {state['samples_in_epoch']} samples into an epoch of {state['epoch_samples']}: "
            "a position past the end of its epoch"
        )
    for name in ("epoch", "step"):
        if state[name] > state["samples_consumed"]:
            raise StateError(
                f"the loader state's {name!r} ({state[name]}) exceeds the samples consumed "
                f"({state['samples_consumed']}); every {name} hands out at least one sample"
            )
    data = state.get("data")
    if data is not None and (
        not isinstance(data, list) or not all(d is None or isinstance(d, dict) for d in data)
    ):
        raise StateError(f"the loader state's 'data' must be a list of data fingerprints, got {data!r}")


def check_data_fingerprints(
    saved: list[dict[str, Any] | None] | None, now: list[dict[str, Any] | None]
) -> None:
    """The data a state was saved on must be the data the cache holds at that version (same documents, same
    order), else the state would resume onto other samples."""
    from tokenmill.cache.fingerprint import fingerprint_differences

    if saved is None:
        return  # a state saved before caches carried data fingerprints
    if len(saved) != len(now):
        raise StateError(
            f"the loader state was saved on {len(saved)} cache(s), this dataset reads {len(now)}"
        )
    for i, (a, b) in enumerate(zip(saved, now)):
        if a is None:
            continue
        problems = fingerprint_differences(a, b)
        if problems:
            raise StateError(
                f"cache {i} holds other data than when the loader state was saved ({'; '.join(problems)}): it was "
                "prepared again, in another order or from other files; resume on the cache the state was saved "
                "on, or start a fresh run"
            )


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
