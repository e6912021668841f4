"""The records that travel between prepare's coordinator and its workers (local processes or Ray tasks).

Typed dataclasses instead of string-keyed dicts, so a misspelt field fails at once in the process that made it.
A :class:`Unit` is also stored in the ledger's plan as JSON (``to_json``/``from_json`` keep the format of caches
written before these records existed, so they still resume).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Unit:
    """One work unit of the plan: a group of file parts (``kind="files"``), a whole Hugging Face dataset
    (``"hf"``) or a row range of a Lance token dataset taken over as it is (``"lance"``)."""

    kind: str  # "files" | "hf" | "lance"
    bytes: int
    urls: tuple[str, ...]
    files: dict[str, Any] | None = None  # a sources.WorkUnit as JSON, for kind "files"
    hf: dict[str, Any] | None = None  # load_dataset arguments, for kind "hf"
    lance: dict[str, Any] | None = None  # uri, column, layout, version, rows, for kind "lance"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "bytes": self.bytes, "urls": list(self.urls)}
        if self.files is not None:
            out["unit"] = self.files
        if self.hf is not None:
            out["hf"] = self.hf
        if self.lance is not None:
            out["lance"] = self.lance
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unit:
        return cls(
            kind=data["kind"],
            bytes=int(data["bytes"]),
            urls=tuple(data.get("urls") or ()),
            files=data.get("unit"),
            hf=data.get("hf"),
            lance=data.get("lance"),
        )


@dataclass
class Counts:
    """Documents, tokens, records, input bytes and skipped records by reason: of one unit or of a build."""

    documents: int = 0
    tokens: int = 0
    records: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def plus(self, other: Counts) -> Counts:
        skipped = dict(self.skipped)
        for reason, n in other.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        return Counts(
            self.documents + other.documents,
            self.tokens + other.tokens,
            self.records + other.records,
            self.bytes + other.bytes,
            skipped,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Counts:
        data = data or {}
        return cls(
            documents=int(data.get("documents", 0)),
            tokens=int(data.get("tokens", 0)),
            records=int(data.get("records", 0)),
            bytes=int(data.get("bytes", 0)),
            skipped={str(k): int(v) for k, v in (data.get("skipped") or {}).items()},
        )


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process loads once: the tokenizer, the configuration, the cache's token dtype."""

    tokenizer_dir: str
    config: dict[str, Any]  # PrepareConfig as a dict (plain data crosses to Ray nodes of another version)
    dtype: str
    trust_remote_code: bool = False
    tokenizer_threads: int | None = None
    # the engine the coordinator chose; "proven": chosen by "auto" (workers skip the probe set and check only
    # their first documents), else forced by the user
    engine: str = "auto"
    engine_proven: bool = False


@dataclass(frozen=True)
class Task:
    """One unit to process, with the budget left when it is redone at a subset limit or with duplicates."""

    index: int
    unit: Unit
    output: str
    limit_documents: int | None = None
    limit_tokens: int | None = None
    drop_keys: tuple[int, ...] = ()


@dataclass
class UnitResult:
    """What a worker wrote for one unit: uncommitted Lance fragments (as JSON), counts, dedup keys."""

    index: int
    fragments: list[dict[str, Any]]
    counts: Counts
    stopped: bool = False  # a limit of the task ended the unit early
    keys: list[int] = field(default_factory=list)
    row_sums: np.ndarray | None = None  # per-row checksums (cache.fingerprint.row_checksums), in row order


def unit_urls(data: Any) -> Iterator[str]:
    """Every URL named inside a unit's JSON (used for per-source progress)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("url", "path") and isinstance(value, str):
                yield value
            else:
                yield from unit_urls(value)
    elif isinstance(data, list):
        for item in data:
            yield from unit_urls(item)
