"""prepare: sources -> records -> token ids + loss masks -> a versioned, resumable Lance token cache.

The coordinator (this process) plans work units, hands them to an executor (spawned local processes by default,
Ray tasks on a cluster), and commits the fragments each unit wrote *in plan order*, so the cache is the same
whatever the number of workers and a killed build resumes from the last committed unit (see
:mod:`tokenmill.cache.writer` for the ledger). Workers never hold more than one batch of documents in memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenmill.cache import store
from tokenmill.cache.layout import (
    DEFAULT_ROW_TOKENS,
    TOKENS_DATASET,
    cache_schema,
    documents_to_batch,
    split_hash,
    token_dtype,
)
from tokenmill.cache.manifest import Manifest, read_manifest, write_manifest
from tokenmill.cache.reader import CacheReader
from tokenmill.cache.writer import CacheCommitter, LedgerState, write_fragments
from tokenmill.config import from_dict
from tokenmill.dedup import (
    RecordKeys,
    SeenKeys,
    load_committed_keys,
    read_cache_keys,
    save_commit_keys,
    write_cache_keys,
)
from tokenmill.errors import CacheError, ConfigError, RecordError, SourceError, TokenmillError

# Reasons that come from the user's own length/mask policy: always counted and skipped, never an error.
POLICY_REASONS = frozenset({"too_short", "too_long", "all_masked"})
RECORDS_PER_BATCH = 512
TEXT_BYTES_PER_BATCH = 2 << 20  # bounds the tokenizer's Python lists of ids: memory stays flat
TOKENS_PER_ROW_BATCH = 1 << 19


@dataclass
class PrepareConfig:
    """Every option of ``tokenmill prepare`` (the YAML config mirrors these names)."""

    sources: list[str] = field(default_factory=list)
    output: str = ""
    tokenizer: str = ""
    input_format: str | None = None
    text_split: str = "document"
    format: dict[str, Any] = field(default_factory=dict)
    text_key: str | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    truncate: str | None = None
    max_documents: int | None = None
    max_total_tokens: int | None = None
    validation: float | int | None = None
    seed: int = 0
    workers: int | None = None
    on_error: str = "raise"
    row_tokens: int = DEFAULT_ROW_TOKENS
    unit_bytes: int = 8 << 20
    add_bos: bool | None = None
    add_eos: bool | None = None
    append: bool = False
    overwrite: bool = False
    executor: str = "local"
    ray_address: str | None = None
    hf: dict[str, Any] | None = None
    trust_remote_code: bool = False
    storage_options: dict[str, str] | None = None
    # a seeded random subset ("random": units in a shuffled order, records through a shuffle buffer per unit)
    sample: str = "first"
    sample_buffer: int = 4096
    # exact dedup by normalized content ("exact"), also against the finished caches named in dedup_seen
    dedup: str | None = None
    dedup_seen: list[str] = field(default_factory=list)

    # options that change how a build runs, not what it builds
    RUN_OPTIONS = (
        "sources",
        "output",
        "workers",
        "on_error",
        "append",
        "overwrite",
        "executor",
        "ray_address",
        "storage_options",
        "unit_bytes",
        "tokenizer",
        "hf",
        "dedup_seen",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prepare config") -> PrepareConfig:
        config = from_dict(cls, data, where)
        config.validate()
        return config

    def validate(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.text_split not in ("document", "lines"):
            raise ConfigError(f"text_split must be 'document' or 'lines', got {self.text_split!r}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be 'local' or 'ray', got {self.executor!r}")
        if self.row_tokens < 16:
            raise ConfigError("row_tokens must be at least 16")
        if self.validation is not None:
            v = self.validation
            if isinstance(v, float) and not 0 <= v < 1:
                raise ConfigError(f"validation as a fraction must be in [0, 1), got {v}")
            if isinstance(v, int) and v < 0:
                raise ConfigError(f"validation as a count must be >= 0, got {v}")
        for name in ("min_tokens", "max_tokens", "max_documents", "max_total_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.sample not in ("first", "random"):
            raise ConfigError(f"sample must be 'first' or 'random', got {self.sample!r}")
        if self.sample_buffer < 1:
            raise ConfigError(f"sample_buffer must be at least 1, got {self.sample_buffer}")
        if self.dedup not in (None, "exact"):
            raise ConfigError(f"dedup must be 'exact' (or left out), got {self.dedup!r}")

    def format_options(self) -> dict[str, Any]:
        """The record-format options, with the top-level shortcuts folded in."""
        options = dict(self.format)
        for name in ("text_key", "min_tokens", "max_tokens", "truncate", "add_bos", "add_eos"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options

    def identity(self) -> dict[str, Any]:
        """The options that decide the content of a cache: two builds with equal identities agree."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUN_OPTIONS}
        out["format"] = self.format_options()
        if self.sample == "first":  # options at their defaults stay out, so older caches still match
            del out["sample"], out["sample_buffer"]
        if self.dedup is None:
            del out["dedup"]
        return out

    def public_dict(self) -> dict[str, Any]:
        """The configuration as saved in the manifest: credentials are never written."""
        out = dataclasses.asdict(self)
        out["storage_options"] = sorted(self.storage_options or {})  # the keys only
        return out


@dataclass
class PrepareSummary:
    output: str
    status: str
    documents: int
    tokens: int
    trained_tokens: int
    splits: dict[str, dict[str, int]]
    skipped: dict[str, int]
    seconds: float
    tokens_this_run: int = 0
    bytes_this_run: int = 0
    # what prepare assumed about the input and the user should know (e.g. document boundaries it could not see)
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_this_run / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tokens_per_s"] = round(self.tokens_per_s, 1)
        out["mb_per_s"] = round(self.bytes_this_run / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0
        return out


# --------------------------------------------------------------------------------------------------------
# Work units
# --------------------------------------------------------------------------------------------------------


def _plan(config: PrepareConfig) -> list[dict[str, Any]]:
    """The work units of a build as JSON-able dicts (stored in the ledger so a resume splits the same way)."""
    if config.hf is not None:
        return [{"kind": "hf", "hf": config.hf, "bytes": 0, "urls": [f"hf:{config.hf.get('name', '')}"]}]
    if _token_datasets(config):
        return _plan_token_datasets(config)
    from tokenmill.sources import expand_urls, plan_units

    if not config.sources:
        raise ConfigError("no sources given: name files, URLs, brace patterns or globs to prepare")
    source_options = store.fsspec_options(config.storage_options, config.sources[0])
    urls = expand_urls(config.sources, storage_options=source_options)
    units = plan_units(
        urls,
        config.input_format,
        target_bytes=config.unit_bytes,
        text_split=config.text_split,
        storage_options=source_options,
    )
    out = []
    for unit in units:
        data = unit.to_json()
        out.append(
            {
                "kind": "files",
                "unit": data,
                "bytes": int(unit.nbytes),
                "urls": sorted(set(_unit_urls(data))),
            }
        )
    if config.sample == "random":  # a random subset takes whole units in a seeded random order
        order = np.random.default_rng(_derived_seed(config.seed, "units")).permutation(len(out))
        out = [out[i] for i in order]
    return out


def _token_datasets(config: PrepareConfig) -> list[str]:
    """The sources that are Lance datasets (token datasets to take over); mixing them with files is refused."""
    from tokenmill.sources.lance_tokens import looks_like_lance

    found = [s for s in config.sources if looks_like_lance(s)]
    if found and len(found) != len(config.sources):
        others = [s for s in config.sources if s not in found]
        raise ConfigError(
            f"a Lance token dataset ({', '.join(found)}) is taken over on its own; prepare the other sources "
            f"({', '.join(others)}) into another cache and mix the two in a recipe"
        )
    return found


def adopt_token_datasets(config: PrepareConfig) -> list[str]:
    """Set the record format for Lance token datasets among the sources; returns what was assumed, to print.

    Their ids are stored as they are: format ``tokens`` on the dataset's column, no BOS/EOS added.
    """
    uris = _token_datasets(config)
    if not uris:
        return []
    from tokenmill.sources.lance_tokens import open_token_dataset

    fmt = config.format_options()
    if fmt.get("format") not in (None, "auto", "tokens"):
        raise ConfigError(
            f"{uris[0]} is a Lance token dataset: its token ids are taken as they are, so the record format "
            f"{fmt['format']!r} does not apply (leave --format out)"
        )
    found = [open_token_dataset(u, config.storage_options, fmt.get("tokens_key")) for u in uris]
    if len({(d.column, d.layout) for d in found}) > 1:
        raise ConfigError("these Lance token datasets differ in column or layout; take each over on its own")
    for key, value in (("add_bos", False), ("add_eos", False)):
        if fmt.get(key):
            raise ConfigError(
                f"{uris[0]}: {key} would change the dataset's tokens; a taken-over dataset keeps them as they are"
            )
        config.format[key] = value
    config.format["format"] = "tokens"
    config.format["tokens_key"] = found[0].column
    return [d.assumption(config.row_tokens) for d in found]


def _plan_token_datasets(config: PrepareConfig) -> list[dict[str, Any]]:
    from tokenmill.sources.lance_tokens import open_token_dataset, plan_row_ranges

    out = []
    for uri in _token_datasets(config):
        found = open_token_dataset(uri, config.storage_options, config.format.get("tokens_key"))
        for a, b, nbytes in plan_row_ranges(
            found, config.unit_bytes, config.row_tokens, config.storage_options
        ):
            spec = {"uri": uri, "column": found.column, "layout": found.layout, "version": found.version}
            out.append({"kind": "lance", "lance": {**spec, "rows": [a, b]}, "bytes": nbytes, "urls": [uri]})
    return out


def _derived_seed(seed: int, *parts: Any) -> int:
    blob = json.dumps([seed, *parts], sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")


def _buffer_shuffled(records: Iterator[Any], size: int, seed: int) -> Iterator[Any]:
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


def _unit_urls(data: Any) -> Iterator[str]:
    """Every URL named inside a unit's JSON (used for per-source progress)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("url", "path") and isinstance(value, str):
                yield value
            else:
                yield from _unit_urls(value)
    elif isinstance(data, list):
        for item in data:
            yield from _unit_urls(item)


# --------------------------------------------------------------------------------------------------------
# Worker side (runs in spawned processes or Ray tasks)
# --------------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def init_worker(payload: dict[str, Any]) -> None:
    """Load the tokenizer and formatter once per worker process."""
    threads = payload.get("tokenizer_threads")
    if threads:
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        os.environ["RAYON_RS_NUM_CPUS"] = str(threads)
    from tokenmill.formats import FormatConfig, RecordFormatter
    from tokenmill.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(
        payload["tokenizer_dir"], trust_remote_code=payload.get("trust_remote_code", False)
    )
    config = PrepareConfig.from_dict(payload["config"])
    _WORKER.clear()
    _WORKER.update(
        config=config,
        tokenizer=tokenizer,
        formatter=RecordFormatter(FormatConfig.from_dict(config.format_options()), tokenizer),
        dtype=np.dtype(payload["dtype"]),
        schema=cache_schema(np.dtype(payload["dtype"])),
    )


def _iter_unit_records(
    unit: dict[str, Any], config: PrepareConfig, on_bad: Callable[[RecordError], None] | None
):
    if unit["kind"] == "hf":
        from tokenmill.sources import read_hf

        spec = dict(unit["hf"])
        name = spec.pop("name", None) or spec.pop("path", None)
        yield from read_hf(name, **spec)
        return
    if unit["kind"] == "lance":
        from tokenmill.sources.lance_tokens import read_token_rows

        spec = unit["lance"]
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

    work = WorkUnit.from_json(unit["unit"])
    # sources go through fsspec, the cache through Lance: one set of user options, translated for fsspec
    source_options = store.fsspec_options(config.storage_options, (unit.get("urls") or [""])[0])
    kwargs: dict[str, Any] = {"text_split": config.text_split, "storage_options": source_options}
    if on_bad is not None:
        kwargs["on_error"] = on_bad
    yield from work.iter_records(**kwargs)


def process_unit(task: dict[str, Any]) -> dict[str, Any]:
    """Tokenize one work unit and write its rows as uncommitted Lance fragments; returns metadata and counts."""
    if not _WORKER:
        init_worker(task["payload"])
    config: PrepareConfig = _WORKER["config"]
    formatter = _WORKER["formatter"]
    skip = config.on_error == "skip"
    stats: dict[str, Any] = {"documents": 0, "tokens": 0, "records": 0, "skipped": {}}
    limit_docs = task.get("limit_documents")
    limit_tokens = task.get("limit_tokens")
    stop = False
    record_keys = RecordKeys(formatter) if config.dedup else None
    drop = set(task.get("drop_keys") or ())  # keys the coordinator found in earlier units
    kept: set[int] = set()
    unit_keys: list[int] = []

    def count_skip(reason: str) -> None:
        stats["skipped"][reason] = stats["skipped"].get(reason, 0) + 1

    def on_bad(err: RecordError) -> None:
        count_skip(err.reason)

    def batches() -> Iterator[Any]:
        nonlocal stop
        ids: list[np.ndarray] = []
        masks: list[np.ndarray | None] = []
        hashes: list[int] = []
        pending_tokens = 0
        records = _iter_unit_records(task["unit"], config, on_bad if skip else None)
        if config.sample == "random":
            records = _buffer_shuffled(
                records, config.sample_buffer, _derived_seed(config.seed, task["unit"])
            )
        for chunk in _chunks(records):
            stats["records"] += len(chunk)
            keys: list[int | None] = [None] * len(chunk)
            if record_keys is not None:  # copies of stored documents are dropped before tokenizing
                keys = [record_keys(r.record) for r in chunk]
                fresh = [i for i, k in enumerate(keys) if k is None or (k not in kept and k not in drop)]
                for _ in range(len(chunk) - len(fresh)):
                    count_skip("duplicate")
                chunk, keys = [chunk[i] for i in fresh], [keys[i] for i in fresh]
            results = formatter.encode_records([r.record for r in chunk])
            for rec, key, res in zip(chunk, keys, results):
                if key is not None and key in kept:  # a copy within the same chunk
                    count_skip("duplicate")
                    continue
                if isinstance(res, RecordError):
                    if res.reason in POLICY_REASONS or skip:
                        count_skip(res.reason)
                        continue
                    raise RecordError(
                        res.detail,
                        path=rec.path,
                        line=_line_of(rec, config),
                        row=rec.row,
                        field=res.field,
                        reason=res.reason,
                    )
                doc = np.asarray(res.ids)
                if limit_docs is not None and stats["documents"] >= limit_docs:
                    stop = True
                    break
                if limit_tokens is not None and stats["tokens"] + len(doc) > limit_tokens:
                    stop = True
                    break
                ids.append(doc)
                masks.append(res.mask)
                hashes.append(split_hash(doc, config.seed))
                if key is not None:
                    kept.add(key)
                    unit_keys.append(key)
                stats["documents"] += 1
                stats["tokens"] += len(doc)
                pending_tokens += len(doc)
                if pending_tokens >= TOKENS_PER_ROW_BATCH:
                    yield documents_to_batch(ids, masks, hashes, _WORKER["dtype"], config.row_tokens)
                    ids, masks, hashes, pending_tokens = [], [], [], 0
            if stop:
                break
        if ids:
            yield documents_to_batch(ids, masks, hashes, _WORKER["dtype"], config.row_tokens)

    fragments = write_fragments(batches(), task["output"], _WORKER["schema"], config.storage_options)
    return {
        "index": task["index"],
        "fragments": fragments,
        "stats": stats,
        "stopped": stop,
        "keys": unit_keys,
    }


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


def _chunks(records: Iterator[Any], size: int = RECORDS_PER_BATCH) -> Iterator[list[Any]]:
    """Records in batches of at most ``size`` records or about ``TEXT_BYTES_PER_BATCH`` of text."""
    chunk: list[Any] = []
    nbytes = 0
    for rec in records:
        chunk.append(rec)
        nbytes += _approx_size(rec.record)
        if len(chunk) >= size or nbytes >= TEXT_BYTES_PER_BATCH:
            yield chunk
            chunk, nbytes = [], 0
    if chunk:
        yield chunk


def _approx_size(record: Any) -> int:
    if isinstance(record, dict):
        return sum(len(v) if isinstance(v, (str, bytes, list)) else 8 for v in record.values())
    return 64


# --------------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------------


class LocalExecutor:
    """Spawned worker processes (Lance is not fork-safe). ``workers=0`` runs units in this process."""

    def __init__(self, workers: int, payload: dict[str, Any]) -> None:
        self.workers = workers
        self.payload = payload
        self.pool: cf.Executor | None = None
        self.max_in_flight = max(1, workers) + 1

    def _pool(self) -> cf.Executor:
        if self.pool is None:
            if self.workers == 0:
                init_worker(self.payload)
                self.pool = cf.ThreadPoolExecutor(max_workers=1)
            else:
                self.pool = cf.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=init_worker,
                    initargs=(self.payload,),
                )
        return self.pool

    def submit(self, task: dict[str, Any]) -> cf.Future:
        return self._pool().submit(process_unit, task)

    def restart(self) -> None:
        """Replace a pool that lost a worker (killed, out of memory): its unfinished units are resubmitted."""
        self.shutdown()

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def make_executor(config: PrepareConfig, payload: dict[str, Any]):
    workers = config.workers if config.workers is not None else (os.cpu_count() or 1)
    if config.executor == "ray":
        from tokenmill.ray_executor import RayExecutor

        return RayExecutor(config.workers, payload, address=config.ray_address)  # None: the cluster's CPUs
    return LocalExecutor(workers, payload)


# --------------------------------------------------------------------------------------------------------
# Coordinator
# --------------------------------------------------------------------------------------------------------


def _identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "(unknown)"


def _save_tokenizer(tokenizer, cache: str, storage_options) -> None:
    target = store.join(cache, "tokenizer")
    if store.is_local(target):
        tokenizer.save(store.local_path(target))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                store.write_bytes(store.join(target, name), f.read(), storage_options)


def _add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key in ("documents", "tokens", "records", "bytes"):
        out[key] = out.get(key, 0) + part.get(key, 0)
    skipped = dict(out.get("skipped", {}))
    for reason, n in part.get("skipped", {}).items():
        skipped[reason] = skipped.get(reason, 0) + n
    out["skipped"] = skipped
    return out


class _Progress:
    """A progress bar on a terminal (documents, tokens, MB/s, ETA from bytes); silent in pipes and CI."""

    def __init__(self, enabled: bool | None, total_bytes: int, done_bytes: int) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_bytes or None,
                initial=done_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                desc="prepare",
                file=sys.stderr,
            )

    def update(self, nbytes: int, stats: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(docs=stats.get("documents", 0), tokens=stats.get("tokens", 0), refresh=False)
            self.bar.update(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def prepare(config: PrepareConfig, *, progress: bool | None = None) -> PrepareSummary:
    """Build, resume, extend or confirm a token cache as ``config`` describes; see the module docstring."""
    from tokenmill.tokenizer import load_tokenizer

    config.validate()
    started = time.perf_counter()
    notes = adopt_token_datasets(config)
    if not config.output:
        raise ConfigError("no output given: name the cache folder or URL with --output")
    cache = config.output.rstrip("/")
    config.storage_options = store.resolve_storage_options(config.storage_options, cache)
    so = config.storage_options
    if not config.tokenizer:
        existing_tok = store.join(cache, "tokenizer")
        if not store.exists(existing_tok, so):
            raise ConfigError(
                "no tokenizer given: pass --tokenizer (a tokenizer.json, HF name/folder, tiktoken, bytes)"
            )
        config.tokenizer = existing_tok
    tokenizer_local = store.local_copy(config.tokenizer, so)  # e.g. the tokenizer of a cache in a bucket
    tokenizer = load_tokenizer(tokenizer_local, trust_remote_code=config.trust_remote_code)
    dtype = token_dtype(tokenizer.vocab_size)
    schema = cache_schema(dtype)
    committer = CacheCommitter(cache, schema, so)
    identity = config.identity()
    identity["tokenizer_fingerprint"] = tokenizer.fingerprint

    manifest: Manifest | None = None
    if store.exists(store.join(cache, "manifest.json"), so):
        if config.overwrite:
            committer.reset()
        else:
            manifest = read_manifest(cache, so)
            old_identity = dict(manifest.config.get("identity", {}))
            if old_identity != identity:
                raise CacheError(
                    f"{cache} was built with a different tokenizer or configuration "
                    f"({_describe_difference(old_identity, identity)}); pass --overwrite to rebuild it, "
                    "or choose another --output"
                )
    elif config.overwrite:
        committer.reset()

    plan = committer.read_plan() if manifest is not None else None
    status = "complete"
    if plan is None:
        units = _plan(config)
        plan = {"identity": _identity_hash(identity), "sources": list(config.sources), "units": units}
        committer.write_plan(plan)
    elif manifest is not None:
        new_sources = [s for s in config.sources if s not in plan["sources"]]
        if config.append and new_sources:
            extra = _plan(dataclasses.replace(config, sources=new_sources))
            known = {json.dumps(u["unit"], sort_keys=True) for u in plan["units"] if "unit" in u}
            extra = [u for u in extra if json.dumps(u.get("unit"), sort_keys=True) not in known]
            plan["units"].extend(extra)
            plan["sources"].extend(new_sources)
            committer.write_plan(plan)
            status = "appended"
        elif new_sources:
            raise CacheError(
                f"{cache} was built from other sources ({', '.join(plan['sources'])}); pass --append to add "
                f"{', '.join(new_sources)}, or --overwrite to rebuild"
            )
    state = committer.recover()
    units = plan["units"]
    limit_reached = any(left is not None and left <= 0 for left in _remaining(config, state.stats))
    if manifest is not None and manifest.complete and (state.through >= len(units) or limit_reached):
        summary = _summary(cache, manifest, "nothing to do", time.perf_counter() - started, 0, 0)
        summary.notes = notes
        return summary
    if manifest is not None and state.through > 0 and status == "complete":
        status = "resumed"

    _save_tokenizer(tokenizer, cache, so)
    if manifest is None:
        manifest = Manifest(
            tokenizer=tokenizer.to_json_meta(),
            config={"identity": identity, "prepare": config.public_dict()},
            dtype=dtype.name,
            row_tokens=config.row_tokens,
            validation=_validation_spec(config.validation),
        )
    manifest.complete = False
    manifest.config["prepare"] = config.public_dict()
    write_manifest(cache, manifest, so)

    workers = config.workers if config.workers is not None else (os.cpu_count() or 1)
    payload = {
        "tokenizer_dir": store.local_path(store.join(cache, "tokenizer"))
        if store.is_local(cache)
        else tokenizer_local,
        "config": dataclasses.asdict(config),
        "dtype": dtype.name,
        "trust_remote_code": config.trust_remote_code,
        "tokenizer_threads": max(1, (os.cpu_count() or 1) // max(1, workers)),
    }
    before = dict(state.stats)
    executor = make_executor(config, payload)
    bar = _Progress(progress, sum(u["bytes"] for u in units), sum(u["bytes"] for u in units[: state.through]))
    try:
        state = _run_units(config, cache, units, state, executor, committer, payload, bar, manifest)
    finally:
        bar.close()
        executor.shutdown()

    if config.dedup:
        write_cache_keys(cache, load_committed_keys(cache, state.through, so), so)
    manifest = _finalize(cache, manifest, state, units, so)
    elapsed = time.perf_counter() - started
    summary = _summary(
        cache,
        manifest,
        status,
        elapsed,
        state.stats.get("tokens", 0) - before.get("tokens", 0),
        state.stats.get("bytes", 0) - before.get("bytes", 0),
    )
    summary.notes = notes
    return summary


def _validation_spec(validation: float | int | None) -> dict[str, Any]:
    if validation is None or validation == 0:
        return {}
    if isinstance(validation, float):
        return {"fraction": validation}
    return {"count": int(validation)}


def _remaining(config: PrepareConfig, stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """Documents and tokens still allowed by --max-documents / --max-total-tokens (None: no limit)."""
    docs = None if config.max_documents is None else config.max_documents - stats.get("documents", 0)
    toks = None if config.max_total_tokens is None else config.max_total_tokens - stats.get("tokens", 0)
    return docs, toks


def _run_units(
    config: PrepareConfig,
    cache: str,
    units: list[dict[str, Any]],
    state: LedgerState,
    executor,
    committer: CacheCommitter,
    payload: dict[str, Any],
    bar: _Progress,
    manifest: Manifest,
) -> LedgerState:
    """Dispatch units lazily, commit finished ones in plan order, apply the subset limits deterministically."""
    next_unit = state.through
    in_flight: dict[cf.Future, int] = {}
    done: dict[int, dict[str, Any]] = {}
    last_commit = 0.0
    restarts = 0
    finished = False
    so = config.storage_options
    # dedup: the keys stored by the committed prefix and by the caches named in dedup_seen; a unit is checked
    # against them when it is committed, in plan order, so the kept copy never depends on timing
    seen = _seen_keys(config, cache, state.through) if config.dedup else None

    def task(i: int, **limits: Any) -> dict[str, Any]:
        return {"index": i, "unit": units[i], "output": cache, "payload": payload, **limits}

    def commit_prefix(state: LedgerState, redo: bool) -> tuple[LedgerState, bool]:
        """Commit the finished units that follow the committed prefix, in plan order.

        A unit that crosses a subset limit, or holds documents an earlier unit stored, is redone with the exact
        remaining budget and without those documents (``redo``), or left to a rerun (after a failure), so the
        subset and the kept copies are the same on every run. Returns the new state and whether a subset limit
        ended the build.
        """
        fragments: list[dict[str, Any]] = []
        keys: list[int] = []
        stats, through, finished = dict(state.stats), state.through, False
        while through in done:
            result = done[through]
            docs_left, toks_left = _remaining(config, stats)
            over_docs = docs_left is not None and result["stats"]["documents"] > docs_left
            over_toks = toks_left is not None and result["stats"]["tokens"] > toks_left
            dups = seen.intersect(result.get("keys", ())) if seen is not None else []
            if over_docs or over_toks or dups:
                if not redo:
                    break
                committer.discard(result["fragments"])
                limits: dict[str, Any] = {}
                if docs_left is not None:
                    limits["limit_documents"] = docs_left
                if toks_left is not None:
                    limits["limit_tokens"] = toks_left
                if dups:
                    limits["drop_keys"] = dups
                result = executor.submit(task(through, **limits)).result()
                finished = bool(result["stopped"])
            done.pop(through)
            if seen is not None:
                seen.add(result.get("keys", ()))
                keys.extend(result.get("keys", ()))
            fragments.extend(result["fragments"])
            stats = _add_counts(stats, dict(result["stats"], bytes=units[through]["bytes"]))
            bar.update(units[through]["bytes"], stats)
            through += 1
            if finished:
                break
        if through > state.through:
            if seen is not None:
                save_commit_keys(cache, state.through, through, keys, so)
            state = committer.commit(fragments, through, stats)
        return state, finished

    try:
        while not finished:
            docs_left, toks_left = _remaining(config, state.stats)
            if (docs_left is not None and docs_left <= 0) or (toks_left is not None and toks_left <= 0):
                break
            while next_unit < len(units) and len(in_flight) < executor.max_in_flight:
                in_flight[executor.submit(task(next_unit))] = next_unit
                next_unit += 1
            if not in_flight and state.through >= len(units):
                break
            ready, _ = cf.wait(list(in_flight), timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in ready:
                i = in_flight.pop(fut)
                try:
                    done[i] = fut.result()
                except BrokenProcessPool:
                    restarts += 1
                    if restarts > 3:
                        raise TokenmillError(
                            "prepare workers keep dying (out of memory?); see the log above"
                        ) from None
                    for other in in_flight:
                        other.cancel()
                    lost = sorted({i} | set(in_flight.values()))
                    in_flight.clear()
                    executor.restart()
                    for j in lost:
                        if j not in done:
                            in_flight[executor.submit(task(j))] = j
                    break
            # commit the finished prefix (at most every 0.5 s, or when everything is done)
            if state.through not in done:
                continue
            if time.monotonic() - last_commit < 0.5 and in_flight and next_unit < len(units):
                continue
            state, finished = commit_prefix(state, redo=True)
            last_commit = time.monotonic()
            manifest.skipped = dict(state.stats.get("skipped", {}))
    except BaseException:
        for fut in in_flight:
            fut.cancel()
        # commit what finished in order before the failure, so the cache stays valid and a rerun resumes
        state, _ = commit_prefix(state, redo=False)
        for result in done.values():
            committer.discard(result["fragments"])
        manifest.skipped = dict(state.stats.get("skipped", {}))
        write_manifest(cache, manifest, config.storage_options)
        raise
    # units never committed because a subset limit was reached
    for result in done.values():
        committer.discard(result["fragments"])
    for fut in in_flight:
        if fut.cancel():
            continue
        try:
            committer.discard(fut.result()["fragments"])
        except (TokenmillError, OSError, cf.CancelledError):
            pass
    return state


def _seen_keys(config: PrepareConfig, cache: str, through: int) -> SeenKeys:
    """Keys of the documents stored by the committed units of this cache and by the caches in dedup_seen."""
    so = config.storage_options
    parts = [load_committed_keys(cache, through, so)]
    parts += [read_cache_keys(other.rstrip("/"), so) for other in config.dedup_seen]
    return SeenKeys(np.concatenate(parts))


def _finalize(cache: str, manifest: Manifest, state: LedgerState, units, storage_options) -> Manifest:
    """Compute the split threshold and per-split counts from the committed rows, and mark the cache complete."""
    manifest.skipped = dict(state.stats.get("skipped", {}))
    manifest.lance_version = state.version
    done_urls = {u for unit in units[: state.through] for u in unit["urls"]}
    manifest.sources = [
        {"url": u, "status": "done" if u in done_urls else "pending"}
        for u in dict.fromkeys(u for unit in units for u in unit["urls"])
    ]
    manifest.complete = True
    if store.exists(store.join(cache, TOKENS_DATASET), storage_options) and state.version is not None:
        # one scan of the small columns builds the row index (saved for readers) and the counts recorded here
        manifest.split_threshold = None
        reader = CacheReader(cache, storage_options, manifest=manifest)
        manifest.splits = reader.split_stats()
        manifest.split_threshold = reader.split_threshold
    write_manifest(cache, manifest, storage_options)
    return manifest


def _summary(cache, manifest: Manifest, status, seconds, tokens_this_run, bytes_this_run) -> PrepareSummary:
    return PrepareSummary(
        output=cache,
        status=status,
        documents=manifest.documents,
        tokens=manifest.tokens,
        trained_tokens=sum(s.trained_tokens for s in manifest.splits.values()),
        splits={k: dataclasses.asdict(v) for k, v in manifest.splits.items()},
        skipped=dict(manifest.skipped),
        seconds=round(seconds, 3),
        tokens_this_run=tokens_this_run,
        bytes_this_run=bytes_this_run,
    )


__all__ = ["PrepareConfig", "PrepareSummary", "prepare", "process_unit", "init_worker", "SourceError"]
