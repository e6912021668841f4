"""Exact deduplication by a hash of the normalized content of a record.

A document is a duplicate when an earlier *stored* document had the same normalized content: the same text after
Unicode NFC, every run of whitespace collapsed to one space, and leading/trailing whitespace stripped. "Earlier"
is the cache's commit order (work units in plan order, records in file order), never the order in which workers
happen to finish, so the kept copy is the same on every run and with any number of workers.

The key is a 64-bit BLAKE2b of the canonical JSON of the fields the record format reads (the text field for
``text``, prompt and completion, the columns, the messages, the token ids), so metadata such as an ``id`` or a
``url`` never makes two copies look different. At 64 bits, two different documents of a billion-document corpus
share a key with a probability of about 3%: at worst one document is wrongly dropped.

Where the keys live: a prepare writes the keys of the documents each commit stored to
``CACHE/ledger/dedup/units-FIRST-THROUGH.npz`` *before* the commit (so a killed run resumes with the set it had),
and at the end all the cache's keys, sorted, to ``CACHE/ledger/dedup/keys.npz``, which a later source of a recipe
loads to drop what an earlier source already holds.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np

from tokenmill.cache import store

DEDUP_MODES = ("exact",)
DEDUP_DIR = ("ledger", "dedup")
KEYS_FILE = "keys.npz"

_WHITESPACE = re.compile(r"\s+")

_WHITESPACE = re.compile(r"\s+")

# the record fields each format reads, with the defaults of the formats layer
_DEFAULT_KEYS = {
    "text_key": "text",
    "prompt_key": "prompt",
    "completion_key": "completion",
    "messages_key": "messages",
    "tokens_key": "tokens",
}
_DEFAULT_COLUMNS = ("instruction", "input", "output")


def normalize_text(text: str) -> str:
    """NFC, whitespace runs -> one space, stripped: copies that differ only in spacing or composition match."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def _normalized(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, dict):
        return {str(k): _normalized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def content_fields(config: Any, fmt: str) -> tuple[str, ...]:
    """The record fields a format reads (``config`` is a :class:`tokenmill.formats.FormatConfig`)."""
    if fmt == "text":
        return (config.text_key,)
    if fmt == "prompt-completion":
        return (config.prompt_key, config.completion_key)
    if fmt == "columns":
        return tuple(config.column_keys)
    if fmt == "chat":
        return (config.messages_key,)
    if fmt == "tokens":
        return (config.tokens_key,) + ((config.tokens_mask_key,) if config.tokens_mask_key else ())
    raise ValueError(f"unknown record format {fmt!r}")


class RecordKeys:
    """The dedup key of each record under a formatter's options (``auto`` resolved per record, as it encodes)."""

    def __init__(self, formatter: Any) -> None:
        self.formatter = formatter
        self._fields: dict[str, tuple[str, ...]] = {}

    def __call__(self, record: Any) -> int | None:
        if not isinstance(record, dict):
            return None
        fmt = self.formatter.format_of(record)
        fields = self._fields.get(fmt)
        if fields is None:
            fields = self._fields[fmt] = content_fields(self.formatter.config, fmt)
        return record_key(record, fields)


def record_key(record: dict[str, Any], keys: Iterable[str]) -> int | None:
    """The 64-bit dedup key of a record: its normalized content fields, in order, whatever their names (so a
    document stored under ``text`` in one source matches the same document under ``body`` in another).
    None when the record has none of the fields (it is never dropped)."""
    content = [_normalized(record.get(k)) for k in keys]
    if all(v is None for v in content):
        return None
    blob = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(blob.encode("utf-8"), digest_size=8).digest(), "little")


class SeenKeys:
    """A growing set of 64-bit keys at about 8 bytes per key: a sorted array plus a small set of recent adds."""

    MERGE_AT = 1 << 16

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._sorted = np.unique(np.asarray(keys if keys is not None else [], dtype=np.uint64))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def _in_sorted(self, keys: np.ndarray) -> np.ndarray:
        if len(self._sorted) == 0:
            return np.zeros(len(keys), dtype=bool)
        pos = np.searchsorted(self._sorted, keys)
        pos[pos == len(self._sorted)] = 0
        return self._sorted[pos] == keys

    def intersect(self, keys: Iterable[int]) -> list[int]:
        """The keys (in their given order, once each) that are already in the set."""
        arr = np.asarray(list(keys), dtype=np.uint64)
        if len(arr) == 0:
            return []
        hit = self._in_sorted(arr)
        if self._recent:
            hit |= np.fromiter((int(k) in self._recent for k in arr.tolist()), dtype=bool, count=len(arr))
        return list(dict.fromkeys(int(k) for k in arr[hit].tolist()))

    def add(self, keys: Iterable[int]) -> None:
        self._recent.update(int(k) for k in keys)
        if len(self._recent) >= max(self.MERGE_AT, len(self._sorted) // 4):
            self._merge()

    def _merge(self) -> None:
        if self._recent:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent.clear()

    def to_array(self) -> np.ndarray:
        self._merge()
        return self._sorted


def _dedup_uri(cache: str, *names: str) -> str:
    return store.join(cache, *DEDUP_DIR, *names)


def save_commit_keys(cache: str, first: int, through: int, keys: Iterable[int], storage_options=None) -> None:
    """The keys stored by units ``[first, through)``, written before the commit that makes them visible."""
    arr = np.asarray(list(keys), dtype=np.uint64)
    store.write_npz(_dedup_uri(cache, f"units-{first:07d}-{through:07d}.npz"), storage_options, keys=arr)


def load_committed_keys(cache: str, through: int, storage_options=None) -> np.ndarray:
    """Every key stored by the committed units ``[0, through)`` (files of uncommitted work are ignored)."""
    parts = []
    for name in store.list_names(_dedup_uri(cache), storage_options) if through > 0 else []:
        m = re.fullmatch(r"units-(\d+)-(\d+)\.npz", name)
        if m and int(m.group(2)) <= through:
            parts.append(store.read_npz(_dedup_uri(cache, name), storage_options)["keys"])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def write_cache_keys(cache: str, keys: np.ndarray, storage_options=None) -> None:
    store.write_npz(_dedup_uri(cache, KEYS_FILE), storage_options, keys=np.asarray(keys, dtype=np.uint64))


def read_cache_keys(cache: str, storage_options=None) -> np.ndarray:
    """All the keys a finished cache holds (empty when it was built without dedup)."""
    uri = _dedup_uri(cache, KEYS_FILE)
    if not store.exists(uri, storage_options):
        return np.zeros(0, dtype=np.uint64)
    return store.read_npz(uri, storage_options)["keys"]


def keys_digest(keys: np.ndarray) -> str:
    """A short content hash of a key set (a recipe rebuilds a later source when an earlier one's set changes)."""
    arr = np.ascontiguousarray(np.unique(np.asarray(keys, dtype=np.uint64)))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


__all__ = [
    "DEDUP_MODES",
    "SeenKeys",
    "RecordKeys",
    "content_fields",
    "keys_digest",
    "load_committed_keys",
    "normalize_text",
    "read_cache_keys",
    "record_key",
    "save_commit_keys",
    "write_cache_keys",
]
