"""Helpers of the loader tests: the reference reading of a split, and the labels it implies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenmill.cache import CacheReader
from tokenmill.labels import IGNORE_INDEX


def split_stream(cache: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Reference: the split's tokens and loss mask, concatenated in cache order, and its documents."""
    reader = CacheReader(str(cache))
    index = reader.split_index(split)
    flat, _, mask = reader.take_rows(index.rows)
    flat = flat.astype(np.int64)
    mask = np.ones(flat.size, bool) if mask is None else mask
    starts, ends = index.document_bounds()
    return flat, mask, [flat[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def expected_targets(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Next-token targets of a run of tokens (pre-shifted): the next token where it is trained, else -100; the last
    token of the run has none."""
    targets = np.full(tokens.size, IGNORE_INDEX, dtype=np.int64)
    targets[:-1] = np.where(mask[1:], tokens[1:], IGNORE_INDEX)
    return targets


def expected_labels(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hugging Face labels of a run of tokens (aligned): each token where it is trained, else -100; the first token
    of the run is never a target."""
    labels = np.where(mask, tokens, IGNORE_INDEX).astype(np.int64)
    labels[:1] = IGNORE_INDEX
    return labels
