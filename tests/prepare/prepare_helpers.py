"""Helpers the prepare tests share: a build in this process and the documents of a cache, read back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tokenmill.cache import CacheReader
from tokenmill.prepare import PrepareConfig, PrepareSummary, prepare


def build(sources, out, tokenizer, **kw) -> PrepareSummary:
    """``prepare`` in this process (``workers=0`` unless given) and its summary."""
    kw.setdefault("workers", 0)
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    return prepare(config, progress=False)


def documents_of(cache: Path, split: str | None = None) -> list[np.ndarray]:
    """Every document of the cache (or of one split) as a token array, in cache order."""
    reader = CacheReader(str(cache))
    docs = []
    for name in [split] if split else ["train", "validation"]:
        index = reader.split_index(name)
        if index.num_rows == 0:
            continue
        flat, offsets, _ = reader.take_rows(index.rows)
        starts = offsets[:-1][index.doc_start]
        ends = np.append(starts[1:], offsets[-1])
        docs.extend(flat[s:e].astype(np.int64) for s, e in zip(starts, ends))
    return docs


def doc_hashes(cache: Path, split: str | None = None) -> list[str]:
    """The sorted hashes of the documents of a cache (or one split): equal lists, equal document sets."""
    return sorted(hashlib.sha1(d.astype(np.uint32).tobytes()).hexdigest() for d in documents_of(cache, split))
