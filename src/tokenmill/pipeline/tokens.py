"""Helpers shared by the token stages: which columns hold tokens, and slicing them together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError

MASK = "loss_mask"


def token_columns(sample: dict[str, Any], target_columns: Sequence[str] | None) -> list[str]:
    """``target_columns`` or, by default, ``input_ids`` plus ``loss_mask`` when the sample has one."""
    if target_columns is not None:
        return list(target_columns)
    return ["input_ids", MASK] if MASK in sample else ["input_ids"]


def columns_of(sample: Any, columns: Sequence[str], stage: str) -> dict[str, np.ndarray]:
    if not isinstance(sample, dict):
        raise ConfigError(f"{stage}: items must be dicts with token columns, got {type(sample).__name__}")
    out = {}
    for c in columns:
        if c not in sample:
            if c == MASK and "input_ids" in sample:
                out[c] = np.ones(len(sample["input_ids"]), dtype=bool)
                continue
            raise ConfigError(f"{stage}: item has no column {c!r} (columns: {sorted(sample)})")
        v = sample[c]
        out[c] = v if isinstance(v, np.ndarray) else np.asarray(v)
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise ConfigError(f"{stage}: token columns {list(columns)} have different lengths {sorted(lengths)}")
    return out


def length_of(cols: dict[str, np.ndarray]) -> int:
    return len(next(iter(cols.values()))) if cols else 0
