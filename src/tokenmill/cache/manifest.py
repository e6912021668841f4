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
TOKEN_DTYPES = ("uint8", "uint16", "uint32")
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
    # a random id given at the first build, kept by appends: a rebuilt cache is another cache
    cache_id: str = ""
    # the data fingerprint of every finished version, by version (cache.fingerprint)
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # digests of the files of tokenizer/, by name (cache.fingerprint.file_digest), for `tokenmill verify`
    tokenizer_files: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    tokenmill_version: str = ""
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.splits.values())

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """The data fingerprint of the finished version, None before the first build finished."""
        if self.lance_version is None:
            return None
        return self.fingerprints.get(str(self.lance_version))

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
        if not isinstance(data.get("splits", {}), dict):
            raise ValueError("splits must be an object")
        data["splits"] = {k: SplitStats(**v) for k, v in data.get("splits", {}).items()}
        known = set(cls.__dataclass_fields__)
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        _check_fields(manifest)
        return manifest


def _check_fields(m: Manifest) -> None:
    """Refuse a manifest whose fields cannot be what prepare wrote (an edit, a bad merge): wrong tokens follow."""
    if m.dtype not in TOKEN_DTYPES:
        raise ValueError(f"dtype {m.dtype!r} is not one of {', '.join(TOKEN_DTYPES)}")
    if not isinstance(m.row_tokens, int) or isinstance(m.row_tokens, bool) or m.row_tokens < 1:
        raise ValueError(f"row_tokens {m.row_tokens!r} is not a positive integer")
    if not isinstance(m.complete, bool):
        raise ValueError(f"complete {m.complete!r} is not true or false")
    if m.lance_version is not None and (not isinstance(m.lance_version, int) or m.lance_version < 1):
        raise ValueError(f"lance_version {m.lance_version!r} is not a version number")
    if not isinstance(m.tokenizer, dict) or not isinstance(m.config, dict):
        raise ValueError("tokenizer and config must be objects")
    for name, stats in m.splits.items():
        for key, value in asdict(stats).items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"splits.{name}.{key} {value!r} is not a count")
    threshold = m.split_threshold
    if threshold is not None and (not isinstance(threshold, int) or not 0 <= threshold <= 2**64):
        raise ValueError(f"split_threshold {threshold!r} is not a 64-bit hash threshold")


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
    try:
        data = store.read_json(uri, storage_options)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Manifest.from_json(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise CacheError(
            f"{uri} is damaged ({type(exc).__name__}: {exc}); run `tokenmill verify {cache}`, and rebuild the cache "
            "(prepare with --overwrite) if it cannot be repaired"
        ) from None


def write_manifest(cache: str, manifest: Manifest, storage_options: dict[str, str] | None = None) -> None:
    from tokenmill import __version__

    manifest.updated = _now()
    manifest.tokenmill_version = __version__
    store.write_json(manifest_uri(cache), manifest.to_json(), storage_options)
