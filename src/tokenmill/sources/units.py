"""Work units: the input cut into deterministic pieces of about ``target_bytes`` for parallel prepare.

A unit is a list of file parts: whole small files grouped together, one byte range of a large uncompressed
line-oriented file, or a row-group range of a large Parquet file. Compressed, CSV, CBOR and whole-document text
files cannot be entered in the middle cheaply, so they stay whole. The plan depends only on the URLs, their sizes
(and Parquet metadata) and the options, so re-planning after a crash gives the same units, which is what lets a
ledger of finished units make prepare resumable.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RecordError, SourceError, StateError
from .detect import detect_format, infer_compression
from .reader import read_records
from .records import SourceRecord
from .urls import url_to_fs

DEFAULT_TARGET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FilePart:
    """One file, or one piece of it. ``nbytes`` is the part's (estimated) share of the stored bytes."""

    url: str
    fmt: str
    nbytes: int
    text_split: str | None = None
    byte_range: tuple[int, int] | None = None
    row_groups: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "fmt": self.fmt, "nbytes": self.nbytes}
        if self.text_split is not None:
            out["text_split"] = self.text_split
        if self.byte_range is not None:
            out["byte_range"] = list(self.byte_range)
        if self.row_groups is not None:
            out["row_groups"] = list(self.row_groups)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilePart:
        br, rg = data.get("byte_range"), data.get("row_groups")
        return cls(
            url=data["url"],
            fmt=data["fmt"],
            nbytes=int(data["nbytes"]),
            text_split=data.get("text_split"),
            byte_range=(int(br[0]), int(br[1])) if br is not None else None,
            row_groups=(int(rg[0]), int(rg[1])) if rg is not None else None,
        )

    def iter_records(self, **options: Any) -> Iterator[SourceRecord]:
        if self.text_split is not None:
            options["text_split"] = self.text_split
        return read_records(
            self.url, self.fmt, byte_range=self.byte_range, row_groups=self.row_groups, **options
        )


@dataclass(frozen=True)
class WorkUnit:
    """An ordered list of file parts read one after another; JSON round-trips exactly (it goes into a ledger)."""

    index: int
    parts: tuple[FilePart, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    @property
    def key(self) -> str:
        """A short content hash: the same unit in a re-planned run has the same key."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "parts": [p.to_json() for p in self.parts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkUnit:
        return cls(index=int(data["index"]), parts=tuple(FilePart.from_json(p) for p in data["parts"]))

    def iter_records(
        self,
        *,
        start: dict[str, Any] | None = None,
        on_error: Callable[[RecordError], None] | None = None,
        **options: Any,
    ) -> Iterator[SourceRecord]:
        """The unit's records in order, with positions ``{"part": i, "position": <file position>}``.

        ``options`` are :func:`read_records` keywords (``storage_options``, ``text_key``, ``retries``, ...).
        ``start`` resumes right after a position of this unit (a record's or a RecordError's).
        """
        first, inner = 0, None
        if start is not None:
            if not isinstance(start, dict) or "part" not in start or "position" not in start:
                raise StateError(f"unit {self.index}: {start!r} is not a work-unit position")
            first, inner = int(start["part"]), start["position"]
            if not 0 <= first <= len(self.parts):  # len: after a whole-file error in the last part
                raise StateError(
                    f"unit {self.index}: part {first} out of range (the unit has {len(self.parts)})"
                )
        for i in range(first, len(self.parts)):
            yield from self._part_records(i, inner if i == first else None, on_error, options)

    def _part_records(self, i: int, start, on_error, options) -> Iterator[SourceRecord]:
        def lift(err: RecordError) -> RecordError:
            pos = getattr(err, "position", None)
            if isinstance(pos, dict) and "part" not in pos:
                err.position = {"part": i, "position": pos}  # type: ignore[attr-defined]
            return err

        report = None if on_error is None else (lambda err: on_error(lift(err)))
        try:
            for rec in self.parts[i].iter_records(start=start, on_error=report, **options):
                yield rec._replace(position={"part": i, "position": rec.position})
        except RecordError as err:
            raise lift(err) from None
        except SourceError as err:
            if on_error is None:
                raise
            # a whole-file error (unreadable, corrupt compression) under --on-error skip: the file's records
            # read so far stay, the rest of it is counted as one skip of its reason, and the unit goes on
            whole = RecordError(
                err.detail, path=err.path or self.parts[i].url, reason=err.reason or "unreadable"
            )
            whole.position = {"part": i + 1, "position": None}  # type: ignore[attr-defined]
            on_error(whole)


def _parquet_group_bytes(url: str, storage_options: dict[str, Any] | None) -> list[int]:
    import pyarrow.parquet as pq

    from .urls import open_raw

    with open_raw(url, storage_options) as f:
        md = pq.ParquetFile(f).metadata
        return [
            sum(md.row_group(g).column(c).total_compressed_size for c in range(md.num_columns))
            for g in range(md.num_row_groups)
        ]


def _split_parquet(url: str, size: int, target: int, storage_options) -> list[FilePart]:
    group_bytes = _parquet_group_bytes(url, storage_options)
    total = sum(group_bytes) or 1
    parts, begin, acc = [], 0, 0
    for g, nb in enumerate(group_bytes):
        if acc and acc + nb > target:
            parts.append((begin, g, acc))
            begin, acc = g, 0
        acc += nb
    parts.append((begin, len(group_bytes), acc))
    if len(parts) == 1:
        return [FilePart(url, "parquet", size)]
    return [FilePart(url, "parquet", round(size * nb / total), row_groups=(a, b)) for a, b, nb in parts]


def plan_units(
    urls: Sequence[str],
    fmt: str | None = None,
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    text_split: str = "document",
    storage_options: dict[str, Any] | None = None,
) -> list[WorkUnit]:
    """Cut ``urls`` (in order) into units of about ``target_bytes`` stored bytes each. Deterministic.

    Files that stay whole are grouped in order, into runs of equal size rather than greedily: a run of ``T``
    bytes makes ``ceil(T / target_bytes)`` units, rounded up to a multiple of 4 past 2 (so 2 and 4 workers get
    equal shares), each as close to ``T / n`` bytes as whole files allow. Measured on the benchmark's 8 shards
    of 2.6 MB with 2 workers: 3 greedy units of 3, 3 and 2 shards left one core idle for about a second while
    the last unit ran alone; 4 units of 2 shards were faster in 12 of 13 interleaved pairs, by 5-7%
    (docs/benchmarks.md)."""
    if target_bytes <= 0:
        raise ValueError("target_bytes must be positive")
    pieces: list[list[FilePart]] = []  # each entry: one unit's parts
    run: list[FilePart] = []  # whole files waiting to be grouped

    def flush() -> None:
        pieces.extend(_balanced_groups(run, target_bytes))
        run.clear()

    for url in urls:
        f = detect_format(url, fmt)
        split = text_split if f == "text" else None
        fs, path = url_to_fs(url, storage_options)
        size = int(fs.size(path))
        compressed = infer_compression(url) is not None
        by_lines = not compressed and (f == "jsonl" or split == "lines")
        if size > target_bytes and (by_lines or f == "parquet"):
            flush()
            if by_lines:
                n = math.ceil(size / target_bytes)
                bounds = [size * k // n for k in range(n + 1)]
                pieces += [
                    [FilePart(url, f, b - a, split, byte_range=(a, b))] for a, b in zip(bounds, bounds[1:])
                ]
            else:
                pieces += [[p] for p in _split_parquet(url, size, target_bytes, storage_options)]
            continue
        run.append(FilePart(url, f, size, split))
    flush()
    return [WorkUnit(i, tuple(parts)) for i, parts in enumerate(pieces)]


def _balanced_groups(files: list[FilePart], target_bytes: int) -> list[list[FilePart]]:
    """``files`` (in order) in contiguous groups of about equal bytes: see :func:`plan_units`. A file goes to
    the group its middle byte falls in, so each group is within half a file of its share."""
    total = sum(p.nbytes for p in files)
    if not files:
        return []
    n = max(1, math.ceil(total / target_bytes))
    if n > 2:
        n = -(-n // 4) * 4
    n = min(n, len(files))
    groups: list[list[FilePart]] = [[] for _ in range(n)]
    start = 0
    for p in files:
        k = min(n - 1, (2 * start + p.nbytes) * n // (2 * total)) if total else 0
        groups[k].append(p)
        start += p.nbytes
    return [g for g in groups if g]
