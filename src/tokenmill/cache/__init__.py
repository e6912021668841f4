"""The Lance token cache: layout, manifest, resumable writer and random-access reader."""

from tokenmill.cache.layout import (
    DEFAULT_ROW_TOKENS,
    cache_schema,
    documents_to_batch,
    split_hash,
    token_dtype,
)
from tokenmill.cache.manifest import Manifest, SplitStats, read_manifest, write_manifest
from tokenmill.cache.reader import SPLITS, CacheReader, SplitIndex
from tokenmill.cache.writer import CacheCommitter, LedgerState, write_fragments

__all__ = [
    "DEFAULT_ROW_TOKENS",
    "SPLITS",
    "CacheCommitter",
    "CacheReader",
    "LedgerState",
    "Manifest",
    "SplitIndex",
    "SplitStats",
    "cache_schema",
    "documents_to_batch",
    "read_manifest",
    "split_hash",
    "token_dtype",
    "write_fragments",
    "write_manifest",
]
