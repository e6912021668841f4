"""The worker: one work unit -> records -> token ids -> uncommitted Lance fragments.

Runs in spawned processes or Ray tasks; :func:`process_unit` is the function every executor runs. A worker loads
the tokenizer and formatter once (:func:`init_worker`) and holds at most one batch of documents in memory, so its
memory stays flat whatever the size of the unit. Only the coordinator commits what a worker wrote.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tokenmill.cache import store
from tokenmill.cache.fingerprint import batch_checksums
from tokenmill.cache.layout import cache_schema, documents_to_batch, split_hash
from tokenmill.cache.writer import write_fragments
from tokenmill.dedup import RecordKeys
from tokenmill.errors import RecordError
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.plan import derived_seed
from tokenmill.prepare.records import Counts, Task, Unit, UnitResult, WorkerSetup

# Reasons that come from the user's own length/mask policy: always counted and skipped, never an error.
POLICY_REASONS = frozenset({"too_short", "too_long", "all_masked"})
RECORDS_PER_BATCH = 512
TEXT_BYTES_PER_BATCH = 2 << 20  # bounds the tokenizer's Python lists of ids: memory stays flat
TOKENS_PER_ROW_BATCH = 1 << 19


@dataclass
class _Loaded:
    """What :func:`init_worker` loads once per process."""

    config: PrepareConfig
    formatter: Any  # formats.RecordFormatter
    dtype: np.dtype
    schema: pa.Schema


_WORKER: list[_Loaded] = []  # at most one: the worker process's loaded setup
_INIT_ERROR: list[BaseException] = []  # why init_worker failed: raised by every task instead of a dead pool


def init_worker(setup: WorkerSetup, tokenizer: Any = None) -> _Loaded | None:
    """Load the tokenizer and formatter once per worker process; or, given the coordinator's ``tokenizer``
    (units on threads of its process), return what the units need instead of keeping it in this module.

    In a worker process a failure is kept and raised by :func:`process_unit`, so the coordinator sees the real
    error (a misspelt format option) instead of a pool whose workers died at start ("workers keep dying").
    """
    if tokenizer is not None:
        return _load(setup, tokenizer)
    _INIT_ERROR.clear()
    try:
        _WORKER[:] = [_load(setup, None)]
    except Exception as exc:  # noqa: BLE001 - handed to the coordinator with the first task
        _INIT_ERROR.append(exc)
    return None


def _load(setup: WorkerSetup, tokenizer: Any) -> _Loaded:
    from tokenmill.formats import FormatConfig, RecordFormatter

    if tokenizer is None:
        if setup.tokenizer_threads:
            os.environ["RAYON_NUM_THREADS"] = str(setup.tokenizer_threads)
            os.environ["RAYON_RS_NUM_CPUS"] = str(setup.tokenizer_threads)
            os.environ["FASTOKENS_BPE_THREADS"] = str(setup.tokenizer_threads)
        from tokenmill.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(
            setup.tokenizer_dir,
            trust_remote_code=setup.trust_remote_code,
            engine=setup.engine,
            proven=setup.engine_proven,
        )
    config = PrepareConfig.from_dict(setup.config)
    dtype = np.dtype(setup.dtype)
    return _Loaded(
        config=config,
        formatter=RecordFormatter(FormatConfig.from_dict(config.format_options()), tokenizer),
        dtype=dtype,
        schema=cache_schema(dtype),
    )


def process_unit(task: Task, loaded: _Loaded | None = None) -> UnitResult:
    """Tokenize one work unit and write its rows as uncommitted Lance fragments; returns their metadata.
    ``loaded``: what :func:`init_worker` returned in this process (units on threads), else the worker's own."""
    if loaded is None:
        if _INIT_ERROR:
            raise _INIT_ERROR[0]
        if not _WORKER:
            raise RuntimeError("process_unit ran in a process where init_worker was not called first")
        loaded = _WORKER[0]
    encoder = UnitEncoder(loaded, task)
    batches = _Guarded(encoder.batches())
    try:
        fragments = write_fragments(batches, task.output, loaded.schema, loaded.config.storage_options)
    except Exception:
        if batches.error is not None:  # our own error (a bad record), not Lance's wrapping of it
            raise batches.error from None
        raise
    sums = np.concatenate(encoder.row_sums) if encoder.row_sums else np.zeros(0, dtype=np.uint64)
    return UnitResult(task.index, fragments, encoder.counts, encoder.stopped, encoder.keys, sums)


class _Guarded:
    """Batches handed to Lance, remembering an error raised while making them: Lance reads them in Rust and
    re-raises such an error as an ``OSError`` wrapping its text, which would hide file, line and field."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self.batches = batches
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.batches
        except Exception as exc:
            self.error = exc
            raise


class UnitEncoder:
    """The documents of one unit as Arrow record batches of cache rows, with the unit's counts.

    Steps per chunk of records: drop copies of stored documents (``dedup``), encode, count or raise bad records,
    stop at the task's limits, collect rows until about ``TOKENS_PER_ROW_BATCH`` tokens.
    """

    def __init__(self, loaded: _Loaded, task: Task) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.task = task
        self.counts = Counts()
        self.stopped = False
        self.keys: list[int] = []  # dedup keys of the documents kept, in order
        self.row_sums: list[
            np.ndarray
        ] = []  # per-row checksums of every batch, for `tokenmill verify --deep`
        self._record_keys = RecordKeys(loaded.formatter) if self.config.dedup else None
        self._kept: set[int] = set()
        self._drop = set(task.drop_keys)  # keys the coordinator found in earlier units

    def batches(self) -> Iterator[pa.RecordBatch]:
        rows = _Rows(self.loaded.dtype, self.config.row_tokens, self.config.seed)
        for chunk in _chunks(self._records(), self._chunk_size):
            self.counts.records += len(chunk)
            for ids, mask, key in self._documents(chunk):
                if self._over_limit(len(ids)):
                    self.stopped = True
                    break
                rows.add(ids, mask)
                if key is not None:
                    self._kept.add(key)
                    self.keys.append(key)
                self.counts.documents += 1
                self.counts.tokens += len(ids)
                if rows.tokens >= TOKENS_PER_ROW_BATCH:
                    yield self._checksummed(rows.flush())
            if self.stopped or self._budget_met():  # nothing more is read once the budget is met
                self.stopped = True
                break
        if rows.ids:
            yield self._checksummed(rows.flush())

    def _checksummed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.row_sums.append(batch_checksums(batch))
        return batch

    def _records(self) -> Iterator[Any]:
        on_bad = self._count_bad if self.config.on_error == "skip" else None
        records = unit_records(self.task.unit, self.config, on_bad)
        if self.config.sample == "random":
            seed = derived_seed(self.config.seed, self.task.unit.to_json())
            records = buffer_shuffled(records, self.config.sample_buffer, seed)
        return records

    def _count_bad(self, err: RecordError) -> None:
        self.counts.skip(err.reason)

    def _fresh(self, chunk: list[Any]) -> tuple[list[Any], list[int | None]]:
        """The records of ``chunk`` that are no copy of a stored document, and their dedup keys."""
        if self._record_keys is None:
            return chunk, [None] * len(chunk)
        keys = [self._record_keys(r.record) for r in chunk]
        fresh = [i for i, k in enumerate(keys) if k is None or (k not in self._kept and k not in self._drop)]
        self.counts.skip("duplicate", len(chunk) - len(fresh))
        return [chunk[i] for i in fresh], [keys[i] for i in fresh]

    def _documents(self, chunk: list[Any]) -> Iterator[tuple[np.ndarray, np.ndarray | None, int | None]]:
        """The encoded documents of a chunk; bad records are counted (skip, policy) or raised with their line."""
        chunk, keys = self._fresh(chunk)
        results = self.loaded.formatter.encode_records([r.record for r in chunk])
        for rec, key, res in zip(chunk, keys, results):
            if key is not None and key in self._kept:  # a copy within the same chunk
                self.counts.skip("duplicate")
                continue
            if isinstance(res, RecordError):
                if res.reason in POLICY_REASONS or self.config.on_error == "skip":
                    self.counts.skip(res.reason)
                    continue
                raise RecordError(
                    res.detail,
                    path=rec.path,
                    line=_line_of(rec, self.config),
                    row=rec.row,
                    field=res.field,
                    reason=res.reason,
                )
            yield np.asarray(res.ids), res.mask, key

    def _budget_met(self) -> bool:
        task = self.task
        docs_met = task.limit_documents is not None and self.counts.documents >= task.limit_documents
        return docs_met or (task.limit_tokens is not None and self.counts.tokens >= task.limit_tokens)

    def _chunk_size(self) -> int:
        """Records to read for the next chunk: no more than the budget can still take, so that a source is not
        read (nor a bad record met) past the point where the budget is met. The token budget is turned into
        records by the mean document length so far (one record to start with)."""
        task, size = self.task, RECORDS_PER_BATCH
        if task.limit_documents is not None:
            size = min(size, task.limit_documents - self.counts.documents)
        if task.limit_tokens is not None:
            docs = self.counts.documents
            mean = self.counts.tokens / docs if docs else float("inf")
            size = min(size, int((task.limit_tokens - self.counts.tokens) / mean) + 1)
        return max(1, size)

    def _over_limit(self, num_tokens: int) -> bool:
        task = self.task
        if task.limit_documents is not None and self.counts.documents >= task.limit_documents:
            return True
        return task.limit_tokens is not None and self.counts.tokens + num_tokens > task.limit_tokens


class _Rows:
    """Documents collected for the next Arrow batch of cache rows."""

    def __init__(self, dtype: np.dtype, row_tokens: int, seed: int) -> None:
        self.dtype, self.row_tokens, self.seed = dtype, row_tokens, seed
        self.ids: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        self.hashes: list[int] = []
        self.tokens = 0

    def add(self, ids: np.ndarray, mask: np.ndarray | None) -> None:
        self.ids.append(ids)
        self.masks.append(mask)
        self.hashes.append(split_hash(ids, self.seed))
        self.tokens += len(ids)

    def flush(self) -> pa.RecordBatch:
        batch = documents_to_batch(self.ids, self.masks, self.hashes, self.dtype, self.row_tokens)
        self.ids, self.masks, self.hashes, self.tokens = [], [], [], 0
        return batch


def unit_records(
    unit: Unit, config: PrepareConfig, on_bad: Callable[[RecordError], None] | None
) -> Iterator[Any]:
    """The source records of one unit (``on_bad``: called for a bad record instead of raising)."""
    if unit.kind == "hf":
        from tokenmill.sources.hf import HFSource

        yield from HFSource.from_dict(unit.hf).read()
        return
    if unit.kind == "lance":
        from tokenmill.sources.lance_tokens import read_token_rows

        spec = unit.lance or {}
        yield from read_token_rows(
            spec["uri"],
            column=spec["column"],
            layout=spec["layout"],
            version=spec["version"],
            rows=tuple(spec["rows"]),
            piece_tokens=config.row_tokens,
            storage_options=config.storage_options,
        )
        return
    from tokenmill.sources import WorkUnit

    work = WorkUnit.from_json(unit.files or {})
    # sources go through fsspec, the cache through Lance: one set of user options, translated for fsspec
    source_options = store.fsspec_options(config.storage_options, (unit.urls or ("",))[0])
    kwargs: dict[str, Any] = {"text_split": config.text_split, "storage_options": source_options}
    if on_bad is not None:
        kwargs["on_error"] = on_bad
    yield from work.iter_records(**kwargs)


def buffer_shuffled(records: Iterator[Any], size: int, seed: int) -> Iterator[Any]:
    """Records in a seeded random order through a buffer of ``size``: each new record takes the place of a
    random buffered one, which is emitted; the rest come out shuffled at the end. A unit that fits in the buffer
    comes out uniformly shuffled; a longer one moves each record by about ``size`` places."""
    rng = np.random.default_rng(seed)
    buf: list[Any] = []
    slots = np.zeros(0, dtype=np.int64)
    for rec in records:
        if len(buf) < size:
            buf.append(rec)
            continue
        if len(slots) == 0:
            slots = rng.integers(size, size=1024)
        i, slots = int(slots[0]), slots[1:]
        yield buf[i]
        buf[i] = rec
    for i in rng.permutation(len(buf)).tolist():
        yield buf[i]


def _line_of(rec: Any, config: PrepareConfig) -> int | None:
    """The record's line number; inside a byte range it is counted now, on the error path only."""
    if rec.line is not None or rec.row is not None:
        return rec.line
    inner = rec.position.get("position", rec.position)
    offset = inner.get("offset") if isinstance(inner, dict) else None
    if offset is None:
        return None
    from tokenmill.sources.lines import LineCounter

    options = store.fsspec_options(config.storage_options, rec.path)
    return LineCounter(rec.path, options).line_at(offset) - 1


def _chunks(
    records: Iterator[Any], size: Callable[[], int] = lambda: RECORDS_PER_BATCH
) -> Iterator[list[Any]]:
    """Records in batches of at most ``size()`` records (asked before each batch) or about
    ``TEXT_BYTES_PER_BATCH`` of text."""
    chunk: list[Any] = []
    nbytes, limit = 0, size()
    for rec in records:
        chunk.append(rec)
        nbytes += _approx_size(rec.record)
        if len(chunk) >= limit or nbytes >= TEXT_BYTES_PER_BATCH:
            yield chunk
            chunk, nbytes = [], 0
            limit = size()
    if chunk:
        yield chunk


def _approx_size(record: Any) -> int:
    if isinstance(record, dict):
        return sum(len(v) if isinstance(v, (str, bytes, list)) else 8 for v in record.values())
    return 64
