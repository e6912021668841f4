"""The manifest: what a cache holds and how it was made, in one JSON file beside the Lance dataset.

A loader or trainer reads only this file to know the tokenizer, the splits and their sizes; a prepare reads it to
decide whether a run is a resume, a no-op, an append, or a conflicting build that must be refused.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

from tokenmill.cache import store
from tokenmill.errors import CacheError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class SplitStats:
    documents: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    rows: int = 0


@dataclass
class Manifest:
    """Everything a reader needs to trust a cache. ``complete`` is False while a prepare is running or was killed."""

    tokenizer: dict[str, Any]
    config: dict[str, Any]
    dtype: str
    row_tokens: int
    validation: dict[str, Any] = field(default_factory=dict)
    split_threshold: int | None = None
    splits: dict[str, SplitStats] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    lance_version: int | None = None
    format_version: int = FORMAT_VERSION
    tokenmill_version: str = ""
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.splits.values())

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.splits.values())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["documents"] = self.documents
        out["tokens"] = self.tokens
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data.pop("documents", None)
        data.pop("tokens", None)
        version = data.get("format_version", 0)
        if version > FORMAT_VERSION:
            raise CacheError(
                f"cache format version {version} is newer than this tokenmill understands ({FORMAT_VERSION}); "
                "upgrade tokenmill"
            )
        data["splits"] = {k: SplitStats(**v) for k, v in data.get("splits", {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def manifest_uri(cache: str) -> str:
    return store.join(cache, MANIFEST_NAME)


def read_manifest(cache: str, storage_options: dict[str, str] | None = None) -> Manifest:
    uri = manifest_uri(cache)
    if not store.exists(uri, storage_options):
        if store.exists(store.join(cache, "_versions"), storage_options):  # a Lance dataset made elsewhere
            raise CacheError(
                f"{cache} is a Lance dataset, not a tokenmill cache; if it holds token ids (the Lance "
                f"tutorial's layout), take it over with `tokenmill prepare {cache} --tokenizer TOKENIZER "
                "--output CACHE` and use CACHE here (docs/migrate/lance.md)"
            )
        raise CacheError(
            f"{cache} is not a tokenmill cache (no {MANIFEST_NAME}); build one with `tokenmill prepare`"
        )
    return Manifest.from_json(store.read_json(uri, storage_options))


def write_manifest(cache: str, manifest: Manifest, storage_options: dict[str, str] | None = None) -> None:
    from tokenmill import __version__

    manifest.updated = _now()
    manifest.tokenmill_version = __version__
    store.write_json(manifest_uri(cache), manifest.to_json(), storage_options)
