"""``prepare()``: build, resume, extend or confirm a token cache; the coordinator's steps in order.

The coordinator (this process) checks the cache against the configuration, fixes the plan of work units in the
ledger, runs the units on an executor (spawned local processes by default, Ray tasks on a cluster) and commits
what each unit wrote in plan order (:mod:`tokenmill.prepare.dispatch`), then derives the split counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import uuid
from typing import Any

from tokenmill.cache import store
from tokenmill.cache.fingerprint import content_digest, data_fingerprint, file_digest
from tokenmill.cache.layout import TOKENS_DATASET, cache_schema, token_dtype
from tokenmill.cache.lock import CacheLock
from tokenmill.cache.manifest import Manifest, read_manifest, write_manifest
from tokenmill.cache.reader import CacheReader, lance_reads
from tokenmill.cache.writer import CacheCommitter, LedgerState
from tokenmill.dedup import load_committed_keys, write_cache_keys
from tokenmill.errors import CacheError, ConfigError, TokenmillError
from tokenmill.prepare.changes import changed_sources, new_urls, record_identities
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.dispatch import Dispatch, Progress, limit_reached
from tokenmill.prepare.executors import Executor, LocalExecutor, ThreadExecutor, WorkerFunctions
from tokenmill.prepare.plan import adopt_token_datasets, identity_hash, plan_units
from tokenmill.prepare.records import Counts, Unit, WorkerSetup
from tokenmill.prepare.summary import PrepareSummary, summarize
from tokenmill.prepare.worker import init_worker, process_unit, unit_records
from tokenmill.sources.identity import describe_changes


def prepare(config: PrepareConfig, *, progress: bool | None = None) -> PrepareSummary:
    """Build, resume, extend or confirm a token cache as ``config`` describes; see the module docstring."""
    started = time.perf_counter()
    config.check()
    notes = adopt_token_datasets(config) + _budget_notes(config)
    cache = _resolve_output(config)
    with CacheLock(cache, config.storage_options) as lock:
        return _prepare_locked(config, cache, lock, notes, started, progress)


def _budget_notes(config: PrepareConfig) -> list[str]:
    """A budget over a Hugging Face split that ``datasets`` will convert whole first: say how to avoid it."""
    if config.hf is None or (config.max_documents is None and config.max_total_tokens is None):
        return []
    from tokenmill.sources.hf import HFSource

    if not HFSource.from_dict(config.hf).reads_whole_split:
        return []
    return [
        f"{config.hf['name']}: not streamed, so `datasets` downloads and converts the whole split before the "
        "budget applies; pass --hf-streaming (streaming: true) to read only what the budget takes"
    ]


def _prepare_locked(
    config: PrepareConfig,
    cache: str,
    lock: CacheLock,
    notes: list[str],
    started: float,
    progress: bool | None,
) -> PrepareSummary:
    """The steps of a build, run while this process holds the cache's writer lock."""
    tokenizer, tokenizer_local = _load_tokenizer(config, cache)
    tokenizer.preload_engines()  # fastokens' tables build while the cache is checked and planned
    _check_format(config, tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    committer = CacheCommitter(cache, cache_schema(dtype), config.storage_options)
    identity = dict(config.identity(), tokenizer_fingerprint=tokenizer.fingerprint)

    manifest = _open_existing(config, cache, committer, identity)
    units, status, manifest = _fix_plan(config, cache, committer, manifest, identity, notes)
    state = committer.recover()
    done = state.through >= len(units) or limit_reached(config, Counts.from_json(state.stats))
    if manifest is not None and manifest.complete and done:
        return summarize(cache, manifest, "nothing to do", time.perf_counter() - started, 0, 0, notes)
    if manifest is not None and state.through > 0 and status == "complete":
        status = "resumed"

    manifest = _start_manifest(config, cache, tokenizer, dtype.name, identity, manifest)
    if config.engine == "auto" and state.through < len(units):
        tokenizer.check_documents(_first_texts(config, units[state.through]))
    engine = tokenizer.engine
    kind = executor_kind(config, tokenizer)
    if kind == "thread":
        tokenizer.keep_chosen_engine()  # the threads share it; the reference library's ~190 MB go
    else:
        tokenizer.release_engines()  # the workers encode; on a 100k vocabulary this gives back ~270 MB
    setup = WorkerSetup(
        tokenizer_dir=store.local_path(store.join(cache, "tokenizer"))
        if store.is_local(cache)
        else tokenizer_local,
        config=dataclasses.asdict(config),
        dtype=dtype.name,
        trust_remote_code=config.trust_remote_code,
        tokenizer_threads=max(1, (os.cpu_count() or 1) // max(1, _workers(config))),
        engine=engine,
        engine_proven=config.engine == "auto",
    )
    before = Counts.from_json(state.stats)
    functions = WorkerFunctions(init=init_worker, run=process_unit)
    executor = make_executor(config, setup, functions, tokenizer, kind=kind)
    state = _run(config, cache, units, state, executor, setup.engine, committer, manifest, progress, lock)
    _refuse_empty(config, cache, Counts.from_json(state.stats))
    if config.dedup:
        write_cache_keys(
            cache, load_committed_keys(cache, state.through, config.storage_options), config.storage_options
        )
    manifest = _finalize(cache, manifest, state, units, config.storage_options)
    after = Counts.from_json(state.stats)
    elapsed = time.perf_counter() - started
    return summarize(
        cache, manifest, status, elapsed, after.tokens - before.tokens, after.bytes - before.bytes, notes
    )


def _first_texts(config: PrepareConfig, unit: Unit) -> list[str]:
    """The text of the first documents of ``unit`` (about ``VERIFY_CHARS``), on which the engine chosen for the
    tokenizer is compared with the tokenizer's own library before the workers run it alone."""
    from tokenmill.tokenizer.engine import VERIFY_CHARS

    texts: list[str] = []
    size = 0
    try:
        for rec in unit_records(unit, config, on_bad=lambda err: None):
            values = rec.record.values() if isinstance(rec.record, dict) else [rec.record]
            texts += [v for v in values if isinstance(v, str)]
            size = sum(map(len, texts))
            if size >= VERIFY_CHARS:
                break
    except TokenmillError:  # a source the workers will report properly
        pass
    return texts


def _resolve_output(config: PrepareConfig) -> str:
    if not config.output:
        raise ConfigError("no output given: name the cache folder or URL with --output")
    cache = config.output.rstrip("/")
    local = store.local_path(cache)
    if store.is_local(cache) and os.path.exists(local) and not os.path.isdir(local):
        raise ConfigError(f"--output {cache} is a file; a cache is a folder: choose another --output")
    config.storage_options = store.resolve_storage_options(config.storage_options, cache)
    return cache


def _workers(config: PrepareConfig) -> int:
    return config.workers if config.workers is not None else (os.cpu_count() or 1)


def _load_tokenizer(config: PrepareConfig, cache: str) -> tuple[Any, str]:
    """The tokenizer (the cache's own when none is given) and a local path of its files."""
    from tokenmill.tokenizer import load_tokenizer

    so = config.storage_options
    if not config.tokenizer:
        existing = store.join(cache, "tokenizer")
        if not store.exists(existing, so):
            raise ConfigError(
                "no tokenizer given: pass --tokenizer (a tokenizer.json, HF name/folder, tiktoken, bytes)"
            )
        config.tokenizer = existing
    if not isinstance(config.tokenizer, (str, os.PathLike)):  # a tokenizer object (Python API)
        tokenizer = load_tokenizer(config.tokenizer, engine=config.engine)
        config.tokenizer = f"{type(config.tokenizer).__name__} object {tokenizer.name!r}"
        local = tokenizer.save(tempfile.mkdtemp(prefix="tokenmill-tokenizer-"))
        return tokenizer, str(local)
    local = store.local_copy(os.fspath(config.tokenizer), so)  # e.g. the tokenizer of a cache in a bucket
    return load_tokenizer(local, trust_remote_code=config.trust_remote_code, engine=config.engine), local


def _check_format(config: PrepareConfig, tokenizer: Any) -> None:
    """The record-format options, checked here before any worker starts or anything is written."""
    from tokenmill.formats import FormatConfig, RecordFormatter

    RecordFormatter(FormatConfig.from_dict(config.format_options()), tokenizer)


def _refuse_empty(config: PrepareConfig, cache: str, counts: Counts) -> None:
    """A build that found no document is an error (unless ``allow_empty``, or a limit of 0 asked for none)."""
    if counts.documents or config.allow_empty or 0 in (config.max_documents, config.max_total_tokens):
        return
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.skipped.items()))
    raise CacheError(
        f"{cache}: the sources gave no documents ({counts.records} records read"
        f"{'; skipped ' + skipped if skipped else ''}); check the sources and the format options (--text-key, "
        "--format), or pass --allow-empty to accept an empty cache"
    )


def _refuse_foreign(cache: str, committer: CacheCommitter, storage_options) -> None:
    """A folder holding a Lance dataset that no tokenmill prepare committed (no manifest, no ledger) is refused."""
    if not store.exists(store.join(cache, TOKENS_DATASET), storage_options):
        return
    if committer.read_plan() is not None or committer.has_commits():
        return  # ours: a build killed before it wrote the manifest
    if committer.committed_version() is not None:
        raise CacheError(
            f"{cache} holds a Lance dataset ({TOKENS_DATASET}) that tokenmill did not write (no manifest.json): "
            "choose another --output, or pass --overwrite to replace it"
        )


def _open_existing(
    config: PrepareConfig, cache: str, committer: CacheCommitter, identity: dict[str, Any]
) -> Manifest | None:
    """The manifest of the cache being resumed or extended; None for a new build (``--overwrite`` clears)."""
    so = config.storage_options
    if not store.exists(store.join(cache, "manifest.json"), so):
        if config.overwrite:
            committer.reset()
        else:
            _refuse_foreign(cache, committer, so)
        return None
    if config.overwrite:
        committer.reset()
        return None
    manifest = read_manifest(cache, so)
    old_identity = dict(manifest.config.get("identity", {}))
    if old_identity != identity:
        raise CacheError(
            f"{cache} was built with a different tokenizer or configuration "
            f"({_describe_difference(old_identity, identity)}); pass --overwrite to rebuild it, "
            "or choose another --output"
        )
    return manifest


def _fix_plan(
    config: PrepareConfig,
    cache: str,
    committer: CacheCommitter,
    manifest: Manifest | None,
    identity: dict[str, Any],
    notes: list[str],
) -> tuple[list[Unit], str, Manifest | None]:
    """The units of the build (planned now, or read from the ledger and extended by ``--append``), a status, and
    the manifest (None again when ``--rebuild-changed`` clears a cache whose sources changed)."""
    plan = committer.read_plan() if manifest is not None else None
    if plan is not None and committer.recover().through == 0:
        plan = None  # nothing committed yet (a run failed early): the corrected command is planned afresh
    if plan is not None:
        units = [Unit.from_json(u) for u in plan["units"]]
        recorded = json.dumps(plan.get("identities"), sort_keys=True)
        changed = changed_sources(plan, units, committer.recover().through, config)
        if changed and not config.rebuild_changed:
            raise CacheError(
                f"{cache} was built from sources that have changed since:\n{describe_changes(changed)}\n"
                "pass --rebuild-changed to rebuild the cache from the sources as they are now, or restore them"
            )
        if changed:
            notes.append(f"rebuilt: {len(changed)} source(s) changed since the cache was built")
            committer.reset()
            plan, manifest = None, None
        elif json.dumps(plan.get("identities"), sort_keys=True) != recorded:
            committer.write_plan(plan)  # identities of whole files re-read as they are now
    if plan is None:
        units = plan_units(config)
        committer.write_plan(
            {
                "identity": identity_hash(identity),
                "sources": list(config.sources),
                "units": [u.to_json() for u in units],
                "identities": record_identities(units, config),
            }
        )
        return units, "complete", manifest
    new, held = new_urls(units, config)
    if config.append and held:
        notes.append(f"{len(held)} file(s) already in the cache were skipped: {', '.join(held[:3])}")
    if not new:
        return units, "complete", manifest
    if not config.append:
        raise CacheError(
            f"{cache} does not hold {len(new)} of the sources given ({', '.join(new[:5])}"
            f"{', ...' if len(new) > 5 else ''}); pass --append to add them (files already in the cache are "
            "skipped), or --overwrite to rebuild"
        )
    extra = plan_units(dataclasses.replace(config, sources=new))
    units += extra
    plan["units"] = [u.to_json() for u in units]
    plan["sources"].extend(s for s in config.sources if s not in plan["sources"])
    plan.setdefault("identities", {}).update(record_identities(extra, config))
    committer.write_plan(plan)
    return units, "appended", manifest


def _start_manifest(
    config: PrepareConfig,
    cache: str,
    tokenizer: Any,
    dtype: str,
    identity: dict[str, Any],
    manifest: Manifest | None,
) -> Manifest:
    """Save the tokenizer and mark the cache incomplete (a new manifest for a new build)."""
    so = config.storage_options
    tokenizer_files = _save_tokenizer(tokenizer, cache, so)
    if manifest is None:
        manifest = Manifest(
            tokenizer=tokenizer.to_json_meta(),
            config={"identity": identity, "prepare": config.public_dict()},
            dtype=dtype,
            row_tokens=config.row_tokens,
            validation=_validation_spec(config.validation),
            cache_id=uuid.uuid4().hex[:16],
        )
    manifest.complete = False
    manifest.tokenizer_files = tokenizer_files
    manifest.config["prepare"] = config.public_dict()
    write_manifest(cache, manifest, so)
    return manifest


def _run(
    config: PrepareConfig,
    cache: str,
    units: list[Unit],
    state: LedgerState,
    executor: Executor,
    engine: str,
    committer: CacheCommitter,
    manifest: Manifest,
    progress: bool | None,
    lock: CacheLock,
) -> LedgerState:
    """Run the uncommitted units on ``executor``; returns the final ledger state."""
    bar = Progress(
        progress,
        sum(u.bytes for u in units),
        sum(u.bytes for u in units[: state.through]),
        label=f"prepare [{engine}]",
    )
    try:
        return Dispatch(config, cache, units, state, executor, committer, bar, manifest, lock).run()
    finally:
        bar.close()
        executor.shutdown()


def _finalize(
    cache: str, manifest: Manifest, state: LedgerState, units: list[Unit], storage_options
) -> Manifest:
    """Compute the split threshold and per-split counts from the committed rows, and mark the cache complete."""
    manifest.skipped = dict(state.stats.get("skipped", {}))
    manifest.lance_version = state.version
    done_urls = {u for unit in units[: state.through] for u in unit.urls}
    manifest.sources = [
        {"url": u, "status": "done" if u in done_urls else "pending"}
        for u in dict.fromkeys(u for unit in units for u in unit.urls)
    ]
    manifest.complete = True
    if store.exists(store.join(cache, TOKENS_DATASET), storage_options) and state.version is not None:
        # one scan of the small columns builds the row index (saved for readers) and the counts recorded here.
        # A count-based split keeps the threshold of the first finished build, so an append never moves a
        # validation document to train: new documents below it join validation (docs/prepare.md).
        if "count" not in manifest.validation:
            manifest.split_threshold = None
        reader = CacheReader(cache, storage_options, manifest=manifest)
        manifest.splits = reader.split_stats()
        manifest.split_threshold = reader.split_threshold
        manifest.cache_id = manifest.cache_id or uuid.uuid4().hex[:16]
        with lance_reads(cache):
            table = reader.dataset.to_table(columns=["piece", "split_hash"])
        firsts = table.column("split_hash").to_numpy()[table.column("piece").to_numpy() == 0]
        manifest.fingerprints[str(state.version)] = data_fingerprint(
            manifest.cache_id, state.version, manifest.documents, manifest.tokens, content_digest(firsts)
        )
    write_manifest(cache, manifest, storage_options)
    return manifest


def _validation_spec(validation: float | int | None) -> dict[str, Any]:
    if validation is None or validation == 0:
        return {}
    if isinstance(validation, float):
        return {"fraction": validation}
    return {"count": int(validation)}


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "(unknown)"


def _save_tokenizer(tokenizer: Any, cache: str, storage_options) -> dict[str, str]:
    """Save the tokenizer's files into the cache; returns their digests (the manifest keeps them for verify)."""
    target = store.join(cache, "tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        digests = {}
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                data = f.read()
            digests[name] = file_digest(data)
            store.write_bytes(store.join(target, name), data, storage_options)
    return digests


def executor_kind(config: PrepareConfig, tokenizer: Any = None) -> str:
    """``thread``, ``process`` or ``ray``: what ``config.executor`` comes to for this tokenizer.

    ``local`` runs threads when the chosen engine encodes with the GIL released (fastokens, tiktoken,
    `tokenizers`), so the units share the engine the coordinator already loaded and checked; a Python
    tokenizer or the byte tokenizer would hold the GIL, so those get processes (as does ``local`` without a
    tokenizer to judge). ``workers=0`` is one unit at a time on a thread of this process, whatever the engine."""
    if config.executor == "ray":
        return "ray"
    if config.workers == 0 or config.executor == "thread":
        return "thread"
    if config.executor == "process" or tokenizer is None:
        return "process"
    return "thread" if tokenizer.engine_is_native else "process"


def make_executor(
    config: PrepareConfig,
    setup: WorkerSetup,
    functions: WorkerFunctions,
    tokenizer: Any = None,
    *,
    kind: str | None = None,
) -> Executor:
    """The executor of ``kind`` (by default what :func:`executor_kind` names), running ``functions`` with
    ``setup``; threads share ``tokenizer`` (without one, they load it from ``setup`` as a worker process does).
    The coordinator passes the kind it decided before giving back the tokenizer's engines.

    Here, not in :mod:`~tokenmill.prepare.executors`: ``ray_executor`` imports the executors' protocol, so the
    module that picks one of them must sit above both."""
    kind = kind or executor_kind(config, tokenizer)
    if kind == "ray":
        from tokenmill.prepare.ray_executor import RayExecutor

        # workers None: every CPU of the cluster
        return RayExecutor(config.workers, setup, functions, address=config.ray_address)
    workers = config.workers if config.workers is not None else (os.cpu_count() or 1)
    if kind == "thread":
        return ThreadExecutor(max(1, workers), setup, functions, tokenizer)
    return LocalExecutor(workers, setup, functions)
