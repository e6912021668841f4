"""Building a recipe: one cache per source (and one per source's ``validation_urls``), each brought up to date.

Up to date, not rebuilt: each cache records a fingerprint of what decides its content (the prepare options, the
tokenizer's fingerprint, the listing of its input files with sizes and modification times or ETags, and for
dedup the key sets of the earlier sources). A rerun skips caches whose fingerprint is unchanged, resumes one whose
build was interrupted, and rebuilds from scratch only the ones whose fingerprint changed.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenmill.cache import store
from tokenmill.config import digest
from tokenmill.errors import ConfigError
from tokenmill.recipe.inputs import SourceInputs, check_inputs, check_tokenizer
from tokenmill.recipe.layout import (
    VALIDATION_SUFFIX,
    cache_path,
    is_complete,
    read_state,
    write_state,
)
from tokenmill.recipe.schema import Recipe
from tokenmill.recipe.source import SourceSpec, prepare_config

ALL_DOCUMENTS = 2**62  # a validation count that puts every document of a cache in the validation split


@dataclass
class CacheResult:
    """What happened to one cache of a recipe build."""

    source: str
    cache: str
    role: str  # "train" (the source's cache) or "validation" (from validation_urls)
    status: str  # built, rebuilt, resumed, up to date
    documents: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""


@dataclass
class RecipeSummary:
    output: str
    caches: list[CacheResult]
    seconds: float
    stale: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CacheJob:
    """One cache to bring up to date: which source and role, where, from which files, with which config."""

    spec: SourceSpec
    role: str
    target: str
    key: str  # its entry in recipe.json
    files: list[list[Any]]
    config: Any  # PrepareConfig


def prepare_recipe(
    recipe: Recipe,
    output: str | None = None,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    log: Callable[[CacheResult], None] | None = None,
) -> RecipeSummary:
    """Build, resume or bring up to date one cache per source of ``recipe`` under ``output``.

    Everything that can be checked without reading data is checked before the output folder is created: the
    schema (by :func:`load_recipe`), every URL pattern (expanded and listed), the tokenizer. Sources are built in
    recipe order (a later source's dedup depends on the earlier ones). ``log`` is called after each cache.
    """
    held = recipe.tokenizer
    if isinstance(held, (str, os.PathLike)):
        return _prepare_recipe(recipe, output, workers, progress, log, check_tokenizer(recipe), None)
    # a tokenizer object (Python API): its files are saved once for the caches' prepare runs, which reload it
    # with the same engine choice; a cache's identity holds the tokenizer's fingerprint, never this path
    tokenizer = check_tokenizer(recipe)
    with tempfile.TemporaryDirectory(prefix="tokenmill-tokenizer-") as folder:
        tokenizer.save(folder)
        described = f"{type(held).__name__} object {tokenizer.name!r}"
        saved = dataclasses.replace(recipe, tokenizer=folder)
        return _prepare_recipe(saved, output, workers, progress, log, tokenizer, described)


def _prepare_recipe(
    recipe: Recipe,
    output: str | None,
    workers: int | None,
    progress: bool | None,
    log: Callable[[CacheResult], None] | None,
    tokenizer: Any,
    described: str | None,
) -> RecipeSummary:
    started = time.perf_counter()
    output = _output_folder(recipe, output)
    workers = workers if workers is not None else recipe.workers
    inputs = check_inputs(recipe)
    out_so = store.resolve_storage_options(recipe.storage_options, output)
    if store.exists(store.join(output, "manifest.json"), out_so):
        raise ConfigError(f"{output} is a token cache, not a recipe folder: choose another --output")

    state = read_state(output, out_so)
    state["recipe"] = {**recipe.to_json(), "output": output}
    if described is not None:
        state["recipe"]["tokenizer"] = described
    caches: dict[str, Any] = state.setdefault("caches", {})
    results: list[CacheResult] = []
    dedup_before: list[tuple[str, str]] = []  # (name, key digest) of earlier sources with dedup, in order
    for spec in recipe.sources:
        for job in _jobs(recipe, spec, output, inputs[spec.name], workers, dedup_before):
            fingerprint = _fingerprint(job, tokenizer.fingerprint, dedup_before)
            result = _bring_up_to_date(job, fingerprint, state, output, out_so, progress)
            results.append(result)
            if log is not None:
                log(result)
        if spec.dedup:
            dedup_before.append((spec.name, caches[spec.name].get("dedup_keys", "")))
    stale = _forget_stale(recipe, caches)
    write_state(output, state, out_so)
    return RecipeSummary(output, results, round(time.perf_counter() - started, 3), stale)


def _output_folder(recipe: Recipe, output: str | None) -> str:
    output = (output or recipe.output or "").rstrip("/")
    if not output:
        raise ConfigError("no output folder: pass --output DIR or set 'output' in the recipe")
    return os.path.abspath(store.local_path(output)) if store.is_local(output) else output


def _jobs(
    recipe: Recipe,
    spec: SourceSpec,
    output: str,
    inputs: SourceInputs,
    workers: int | None,
    dedup_before: list[tuple[str, str]],
) -> list[CacheJob]:
    """The source's cache, and its validation cache when it has ``validation_urls``."""
    common = dict(tokenizer=recipe.tokenizer, seed=recipe.seed, workers=workers)
    common["trust_remote_code"] = recipe.trust_remote_code
    target = cache_path(output, spec.name)
    seen = [cache_path(output, n) for n, _ in dedup_before] if spec.dedup else []
    jobs = [
        CacheJob(
            spec,
            "train",
            target,
            spec.name,
            inputs.files,
            prepare_config(spec, output=target, dedup_seen=seen, **common),
        )
    ]
    if spec.separate_validation:
        target = cache_path(output, spec.name, "validation")
        # every document of the validation files is in split "validation"; deduped only within
        config = prepare_config(
            spec,
            output=target,
            sources=list(spec.validation_urls),
            hf=_validation_hf(spec.hf),
            validation=ALL_DOCUMENTS,
            max_documents=None,
            max_total_tokens=None,
            sample="first",
            **common,
        )
        jobs.append(
            CacheJob(
                spec, "validation", target, spec.name + VALIDATION_SUFFIX, inputs.validation_files, config
            )
        )
    return jobs


def _fingerprint(job: CacheJob, tokenizer_fingerprint: str, dedup_before: list[tuple[str, str]]) -> str:
    """What decides a cache's content: options, tokenizer, the files (with versions), earlier dedup keys."""
    return digest(
        {
            "identity": job.config.identity(),
            "tokenizer": tokenizer_fingerprint,
            "inputs": job.files,
            "hf": job.config.hf,
            "dedup_seen": dedup_before if (job.spec.dedup and job.role == "train") else [],
        }
    )


def _bring_up_to_date(
    job: CacheJob,
    fingerprint: str,
    state: dict[str, Any],
    output: str,
    out_so: dict[str, Any] | None,
    progress: bool | None,
) -> CacheResult:
    """Skip, resume, build or rebuild one cache, recording it in ``state`` (written before and after)."""
    from tokenmill.cache import read_manifest
    from tokenmill.dedup import keys_digest, read_cache_keys
    from tokenmill.prepare import prepare

    caches = state["caches"]
    so = job.config.storage_options
    entry = caches.get(job.key)
    same = entry is not None and entry.get("fingerprint") == fingerprint
    t0 = time.perf_counter()
    if same and entry.get("status") == "done" and is_complete(job.target, so):
        result = CacheResult(job.spec.name, job.target, job.role, "up to date")
    else:
        existed = store.exists(store.join(job.target, "manifest.json"), so)
        reason = (
            ("interrupted" if same else "inputs or options changed" if entry else "not recorded")
            if existed
            else ""
        )
        job.config.overwrite = existed and not same
        caches[job.key] = {"fingerprint": fingerprint, "status": "building", "files": len(job.files)}
        write_state(output, state, out_so)
        summary = prepare(job.config, progress=progress)
        status = "resumed" if existed and same else ("rebuilt" if existed else "built")
        if summary.status == "nothing to do" and same:
            status = "up to date"
        result = CacheResult(job.spec.name, job.target, job.role, status, reason=reason)
        caches[job.key] = {"fingerprint": fingerprint, "status": "done", "files": len(job.files)}
        if job.spec.dedup and job.role == "train":
            caches[job.key]["dedup_keys"] = keys_digest(read_cache_keys(job.target, so))
        write_state(output, state, out_so)
    manifest = read_manifest(job.target, so)
    result.documents = manifest.documents
    result.tokens = manifest.tokens
    result.trained_tokens = sum(s.trained_tokens for s in manifest.splits.values())
    result.skipped = dict(manifest.skipped)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _validation_hf(hf: dict[str, Any] | None) -> dict[str, Any] | None:
    """The HF source of a dataset's own validation split (``validation_split: test``), or None."""
    if not hf or not hf.get("validation_split"):
        return None
    from tokenmill.sources.hf import HFSource

    return HFSource.from_dict(hf).for_split(hf["validation_split"]).to_dict()


def _forget_stale(recipe: Recipe, caches: dict[str, Any]) -> list[str]:
    """Caches of sources no longer in the recipe: left in place, out of the mixture, dropped from the state."""
    known = {s.name for s in recipe.sources} | {
        s.name + VALIDATION_SUFFIX for s in recipe.sources if s.separate_validation
    }
    stale = sorted(k for k in caches if k not in known)
    for k in stale:
        caches.pop(k)
    return stale
