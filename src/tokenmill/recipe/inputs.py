"""What a recipe reads, listed before anything is written: every source's files (with sizes and versions, which
go into each cache's fingerprint), their formats, the Hugging Face datasets' local files, and the tokenizer.
Errors name the recipe key, so a pattern that matches nothing is reported as ``sources.code.urls``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tokenmill.cache import store
from tokenmill.config import Where
from tokenmill.errors import TokenmillError
from tokenmill.recipe.schema import Recipe
from tokenmill.recipe.source import SourceSpec


def _where(recipe: Recipe) -> Where:
    if recipe.path and os.path.isfile(recipe.path):
        return Where.of_file(recipe.path)
    return Where(recipe.path or "recipe")


@dataclass
class SourceInputs:
    """What a source reads, listed up front: ``[url, size, version]`` per file (version: ETag or mtime)."""

    files: list[list[Any]]
    validation_files: list[list[Any]]


def _file_version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is not None:
            return str(value)
    return ""


def _list_files(urls: list[str], storage_options: dict[str, Any] | None) -> list[list[Any]]:
    from tokenmill.sources import expand_urls
    from tokenmill.sources.urls import url_to_fs

    out = []
    options = store.fsspec_options(storage_options, urls[0]) if urls else None
    for url in expand_urls(urls, storage_options=options):
        fs, path = url_to_fs(url, options)
        info = fs.info(path)
        out.append([url, int(info.get("size") or 0), _file_version(info)])
    return out


def _hf_data_files(spec: dict[str, Any]) -> list[str]:
    files = spec.get("data_files")
    if isinstance(files, str):
        return [files]
    if isinstance(files, dict):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
    return list(files or [])


def _local_matches(pattern: str) -> list[str]:
    """Local files a data_files entry names (HF data_files take globs)."""
    import glob

    if any(c in pattern for c in "*?["):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    return [pattern] if os.path.exists(pattern) else []


def _list_hf(spec: dict[str, Any]) -> list[list[Any]]:
    """Local files behind a HF source (a saved folder, local data_files); a hub dataset lists nothing."""
    paths: list[str] = []
    name = spec["name"]
    if os.path.isdir(name):
        for root, _, files in sorted(os.walk(name)):
            paths += [os.path.join(root, f) for f in sorted(files)]
    for f in _hf_data_files(spec):
        if "://" not in f:
            paths += _local_matches(f)
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([p, st.st_size, str(st.st_mtime_ns)])
    return out


def check_inputs(recipe: Recipe) -> dict[str, SourceInputs]:
    """List every source's files now (errors name the recipe key); reading starts only after this passes."""
    where = _where(recipe)
    out: dict[str, SourceInputs] = {}
    for spec in recipe.sources:
        key = f"sources.{spec.name}"
        files = (
            _check_hf(spec.hf, where, f"{key}.hf")
            if spec.hf is not None
            else _check_urls(spec, "urls", where)
        )
        validation = _check_urls(spec, "validation_urls", where) if spec.validation_urls else []
        out[spec.name] = SourceInputs(files, validation)
    return out


def _check_urls(spec: SourceSpec, which: str, where: Where) -> list[list[Any]]:
    """Expand and list one URL option of a source, and check every file's format can be read."""
    from tokenmill.sources import detect_format

    try:
        files = _list_files(getattr(spec, which), spec.prepare.get("storage_options"))
        for url, _, _ in files:
            detect_format(url, spec.prepare.get("input_format"))
    except (TokenmillError, OSError) as exc:
        raise where(f"sources.{spec.name}.{which}", str(exc)) from None
    return files


def _check_hf(spec: dict[str, Any], where: Where, dotted: str) -> list[list[Any]]:
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise where(
            dotted, "reading a Hugging Face dataset needs the `datasets` package: pip install 'tokenmill[hf]'"
        )
    name = spec["name"]
    if name.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(name)):
        raise where(f"{dotted}.name", f"the dataset folder {name} does not exist")
    for f in _hf_data_files(spec):
        if "://" not in f and not _local_matches(f):
            raise where(f"{dotted}.data_files", f"the data file {f} does not exist (or matches no file)")
    return _list_hf(spec)


def check_tokenizer(recipe: Recipe):
    from tokenmill.tokenizer import load_tokenizer

    where = _where(recipe)
    try:
        return load_tokenizer(recipe.tokenizer, trust_remote_code=recipe.trust_remote_code)
    except (TokenmillError, OSError, ValueError) as exc:
        raise where("tokenizer", str(exc)) from None
