"""Data recipes: one YAML file describes a whole training mixture, from sources to weighted batches.

A recipe names a tokenizer, a seed and a set of sources; each source has its own files (or Hugging Face dataset),
record format and keys, validation set, subset, dedup and weight::

    tokenizer: tokenizer.json
    seed: 0
    sources:
      web:  {urls: ["data/web/*.jsonl.gz"], weight: 0.7, validation: 0.01, dedup: exact}
      code: {urls: ["data/code/*.parquet"], text_key: content, weight: 0.2, max_documents: 50000, sample: random}
      chat: {urls: ["data/chat/*.jsonl"], format: chat, weight: 0.1, validation_urls: ["data/chat-val.jsonl"]}

:func:`load_recipe` validates all of it before anything runs: an unknown key, a value of the wrong type, a weight
that is not a number are errors naming the key and its line in the YAML; :func:`prepare_recipe` then expands
every source's URLs (a pattern that matches no file is an error too) and loads the tokenizer *before* it creates
the output folder. It builds one cache per source with :func:`tokenmill.prepare.prepare`::

    DIR/recipe.json             the resolved recipe (absolute paths, no credentials) and per-cache build state
    DIR/NAME/                   the source's cache: train split, and validation by fraction or count
    DIR/NAME.validation/        with ``validation_urls``: a cache whose every document is in split "validation"

Up to date, not rebuilt: each cache records a fingerprint of what decides its content (the prepare options, the
tokenizer's fingerprint, the listing of its input files with sizes and modification times or ETags, and for
dedup the key sets of the earlier sources). A rerun skips caches whose fingerprint is unchanged, resumes one whose
build was interrupted, and rebuilds from scratch only the ones whose fingerprint changed.

Reading: :func:`recipe_mixture` opens the train (or validation) split of every source as a
:class:`tokenmill.loader.TokenDataset` and mixes them with the recipe's weights through
:class:`tokenmill.loader.Mixture`; :func:`recipe_report` says what one pass of that mixture means per source.
See docs/recipes.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenmill.cache import store
from tokenmill.config import digest, key_lines, load_yaml
from tokenmill.errors import CacheError, ConfigError, TokenmillError

STATE_FILE = "recipe.json"
STATE_FORMAT = "tokenmill.recipe/1"
VALIDATION_SUFFIX = ".validation"
ALL_DOCUMENTS = 2**62  # a validation count that puts every document of a cache in the validation split
MODES = ("windows", "packed", "padded")
POLICIES = ("repeat", "stop")
SAMPLES = ("first", "random")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

TOP_KEYS = (
    "tokenizer",
    "seed",
    "output",
    "seq_len",
    "mode",
    "policy",
    "workers",
    "trust_remote_code",
    "storage_options",
    "defaults",
    "sources",
)
HF_KEYS = ("name", "config", "split", "revision", "data_files", "streaming")
# options of the recipe itself, per source
RECIPE_KEYS = (
    "urls",
    "hf",
    "weight",
    "validation",
    "validation_urls",
    "max_documents",
    "max_tokens",
    "sample",
    "sample_buffer",
    "dedup",
)
# prepare options passed through unchanged
PREPARE_KEYS = ("input_format", "text_split", "on_error", "row_tokens", "unit_bytes", "storage_options")
# per-source keys that only make sense once per source, never in ``defaults``
SOURCE_ONLY = ("urls", "hf", "validation_urls")
# names a user may reach for, with what they mean in a recipe
RENAMED = {
    "max_total_tokens": "in a recipe the source's token budget is max_tokens",
    "tokenizer": "a recipe has one tokenizer, at the top level",
    "sources": "name the files with urls",
    "seed": "a recipe has one seed, at the top level",
    "output": "a recipe has one output folder, at the top level or --output",
}


def _format_keys() -> tuple[str, ...]:
    """Every record-format option (``max_tokens`` of a document is ``max_document_tokens`` in a recipe)."""
    from tokenmill.formats import FormatConfig

    names = [f.name for f in dataclasses.fields(FormatConfig) if f.name not in ("format", "max_tokens")]
    return (*names, "columns", "max_document_tokens")


# --------------------------------------------------------------------------------------------------- schema
@dataclass
class SourceSpec:
    """One source of a recipe, resolved: absolute local paths, defaults applied, options split by layer."""

    name: str
    weight: float = 1.0
    urls: list[str] = field(default_factory=list)
    hf: dict[str, Any] | None = None
    validation: float | int | None = None
    validation_urls: list[str] = field(default_factory=list)
    max_documents: int | None = None
    max_tokens: int | None = None
    sample: str = "first"
    sample_buffer: int = 4096
    dedup: str | None = None
    # PrepareConfig options (input_format, on_error, storage_options, ...) and record-format options
    prepare: dict[str, Any] = field(default_factory=dict)
    format: dict[str, Any] = field(default_factory=dict)

    @property
    def has_validation(self) -> bool:
        return bool(self.validation_urls) or bool(self.validation)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        options = dict(out["prepare"])
        if options.get("storage_options"):
            options["storage_options"] = sorted(options["storage_options"])  # the keys only, never secrets
        out["prepare"] = options
        return out


@dataclass
class Recipe:
    """A validated recipe. ``path`` is the YAML it came from (for messages); paths inside are absolute."""

    tokenizer: str
    sources: list[SourceSpec]
    seed: int = 0
    output: str | None = None
    seq_len: int | None = None
    mode: str = "windows"
    policy: str = "repeat"
    workers: int | None = None
    trust_remote_code: bool = False
    storage_options: dict[str, str] | None = None  # for the output folder (and, merged, every source)
    path: str | None = None

    def source(self, name: str) -> SourceSpec:
        for spec in self.sources:
            if spec.name == name:
                return spec
        raise ConfigError(f"the recipe has no source {name!r}; it has {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "sources"}
        out["storage_options"] = sorted(self.storage_options) if self.storage_options else None
        out["sources"] = [s.to_json() for s in self.sources]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        """The recipe as :meth:`to_json` wrote it (e.g. in ``DIR/recipe.json``)."""
        data = dict(data)
        data["storage_options"] = None  # values are never stored: the environment supplies credentials
        sources = [SourceSpec(**s) for s in data.pop("sources")]
        for spec in sources:  # storage option values are never stored; the environment supplies credentials
            if isinstance(spec.prepare.get("storage_options"), list):
                spec.prepare.pop("storage_options")
        return cls(sources=sources, **data)


class _Where:
    """Error messages that name the recipe file, the line of a key and its dotted path."""

    def __init__(self, path: str | None, lines: dict[str, int]) -> None:
        self.path = path or "recipe"
        self.lines = lines

    def line(self, key: str) -> int | None:
        parts = key.split(".")
        while parts:  # a key given by a YAML flow mapping may lack its own line: use its parent's
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None

    def __call__(self, key: str, message: str) -> ConfigError:
        line = self.line(key)
        where = f"{self.path}, line {line}" if line is not None else self.path
        return ConfigError(f"{where}, key {key!r}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown(key: str, known: tuple[str, ...] | list[str], where: _Where, dotted: str) -> ConfigError:
    if key in RENAMED:
        return where(dotted, f"unknown option {key!r}: {RENAMED[key]}")
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return where(dotted, f"unknown option {key!r}{hint}; known options: {', '.join(sorted(known))}")


def _resolve_path(value: str, base: str | None) -> str:
    """A local relative path is relative to the recipe's folder; URLs and absolute paths stay as they are."""
    if base is None or "://" in value or os.path.isabs(os.path.expanduser(value)):
        return os.path.expanduser(value) if "://" not in value else value
    if "://" in base:  # a recipe in a bucket: its relative paths are in that bucket
        return store.join(base, value.removeprefix("./"))
    return os.path.normpath(os.path.join(base, value))


def _url_list(value: Any, where: _Where, dotted: str, base: str | None) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise where(dotted, f"must be a URL, a path or pattern, or a non-empty list of them, got {value!r}")
    return [_resolve_path(v, base) for v in value]


def is_recipe(value: Any) -> bool:
    """Whether ``value`` names a recipe (a ``.yaml``/``.yml`` file or a prepared recipe folder), not a cache."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if text.endswith((".yaml", ".yml", STATE_FILE)):
        return True
    return store.is_local(text) and os.path.isfile(os.path.join(store.local_path(text), STATE_FILE))


def recipe_caches(recipe: Recipe, output: str | None = None, split: str = "train") -> list[str]:
    """The caches a mixture of ``split`` reads (train: sources of positive weight), in recipe order."""
    output = _output_of(recipe, output)
    out = []
    for spec in recipe.sources:
        if (split == "train" and spec.weight > 0) or (split == "validation" and spec.has_validation):
            out.append(source_split(recipe, output, spec.name, split)[0])
    return out


def load_recipe(path: str | os.PathLike, storage_options: dict[str, str] | None = None) -> Recipe:
    """Read and validate a recipe YAML, or the recipe recorded in a prepared folder (``DIR`` or its
    ``recipe.json``, local or in a bucket; credentials then come from ``storage_options`` or the environment)."""
    text = os.fspath(path)
    if not text.endswith((".yaml", ".yml")) and (
        text.endswith(STATE_FILE) or os.path.isdir(text) or "://" in text
    ):
        uri = text if text.endswith(STATE_FILE) else store.join(text, STATE_FILE)
        so = store.resolve_storage_options(storage_options, uri)
        if not store.exists(uri, so):
            raise ConfigError(f"{text} is not a prepared recipe folder (no {STATE_FILE})")
        state = store.read_json(uri, so)
        recipe = Recipe.from_json(state["recipe"])
        recipe.storage_options = storage_options
        folder = uri[: -len(STATE_FILE)].rstrip("/")
        recipe.output = recipe.output or (os.path.abspath(folder) if store.is_local(folder) else folder)
        return recipe
    data = load_yaml(text)
    base = text.rsplit("/", 1)[0] if "://" in text else os.path.dirname(os.path.abspath(text))
    return parse_recipe(data, path=text, lines=key_lines(text), base=base)


def parse_recipe(
    data: dict[str, Any],
    *,
    path: str | None = None,
    lines: dict[str, int] | None = None,
    base: str | None = None,
) -> Recipe:
    """Validate a recipe given as data; ``base`` is the folder relative local paths are resolved against."""
    where = _Where(path, lines or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where.path}: a recipe is a mapping with 'tokenizer' and 'sources'")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"{where.path}: option names are strings, got {key!r} (YAML reads an unquoted null, true, yes, "
                "no, on or off as a value: quote it)"
            )
        if key not in TOP_KEYS:
            raise _unknown(str(key), TOP_KEYS, where, str(key))
    if "tokenizer" not in data:
        raise ConfigError(f"{where.path}: no tokenizer: name one (tokenizer.json, HF name or folder, bytes)")
    tokenizer = data["tokenizer"]
    if not isinstance(tokenizer, str) or not tokenizer:
        raise where("tokenizer", f"must be a path or a name, got {tokenizer!r}")
    if base is not None and "://" not in tokenizer:
        beside = _resolve_path(tokenizer, base)  # a file beside the recipe wins over a hub name
        if os.path.exists(beside) if "://" not in beside else store.exists(beside):
            tokenizer = beside
    recipe = Recipe(tokenizer=tokenizer, sources=[], path=path)
    if "seed" in data:
        if not _is_int(data["seed"]):
            raise where("seed", f"must be an integer, got {data['seed']!r}")
        recipe.seed = data["seed"]
    if data.get("output") is not None:
        if not isinstance(data["output"], str) or not data["output"]:
            raise where("output", f"must be a folder path or URL, got {data['output']!r}")
        recipe.output = _resolve_path(data["output"], base)
    for key, allowed in (("mode", MODES), ("policy", POLICIES)):
        if key in data:
            if data[key] not in allowed:
                raise where(key, f"must be one of {', '.join(allowed)}, got {data[key]!r}")
            setattr(recipe, key, data[key])
    for key in ("seq_len", "workers"):
        value = data.get(key)
        if value is not None:
            if not _is_int(value) or value < (1 if key == "seq_len" else 0):
                raise where(key, f"must be an integer >= {1 if key == 'seq_len' else 0}, got {value!r}")
            setattr(recipe, key, value)
    if "trust_remote_code" in data:
        if not isinstance(data["trust_remote_code"], bool):
            raise where("trust_remote_code", f"must be true or false, got {data['trust_remote_code']!r}")
        recipe.trust_remote_code = data["trust_remote_code"]
    top_storage = data.get("storage_options")
    if top_storage is not None and not isinstance(top_storage, dict):
        raise where("storage_options", "must be a mapping of option names to values")
    if top_storage:
        recipe.storage_options = {str(k): str(v) for k, v in top_storage.items()}

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise where("defaults", "must be a mapping of source options applied to every source")
    known = (*RECIPE_KEYS, *PREPARE_KEYS, "format", *_format_keys())
    for key in defaults:
        if key in SOURCE_ONLY:
            raise where(f"defaults.{key}", f"{key!r} names one source's data; set it per source")
        if str(key).replace("-", "_") not in known:
            raise _unknown(str(key), known, where, f"defaults.{key}")

    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise where("sources", "must be a non-empty mapping of source names to their options")
    for name, raw in sources.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise where(
                f"sources.{name}", "a source name is letters, digits, '_' and '-' (it names its cache folder)"
            )
        if raw is None or not isinstance(raw, dict):
            raise where(
                f"sources.{name}", f"must be a mapping of options (urls or hf, weight, ...), got {raw!r}"
            )
        recipe.sources.append(_parse_source(name, raw, defaults, top_storage, where, base, known))
    if not any(s.weight > 0 for s in recipe.sources):
        raise where("sources", "every weight is 0: give at least one source a positive weight")
    return recipe


def _parse_source(
    name: str,
    raw: dict[str, Any],
    defaults: dict[str, Any],
    top_storage: dict[str, Any] | None,
    where: _Where,
    base: str | None,
    known: tuple[str, ...],
) -> SourceSpec:
    origin: dict[str, str] = {}
    merged: dict[str, Any] = {}
    for prefix, options in (("defaults", defaults), (f"sources.{name}", raw)):
        for key, value in options.items():
            norm = str(key).replace("-", "_")
            if norm not in known:
                raise _unknown(str(key), known, where, f"{prefix}.{key}")
            merged[norm] = value
            origin[norm] = f"{prefix}.{key}"
    at = origin.get
    spec = SourceSpec(name=name)
    here = f"sources.{name}"

    if ("urls" in merged) == ("hf" in merged):
        raise where(here, "give the source's data as exactly one of 'urls' (files) or 'hf' (a HF dataset)")
    if "urls" in merged:
        spec.urls = _url_list(merged.pop("urls"), where, at("urls"), base)
    else:
        spec.hf = _parse_hf(merged.pop("hf"), where, at("hf"), base)

    if "weight" in merged:
        weight = merged.pop("weight")
        if not _is_number(weight) or weight != weight or weight < 0 or weight == float("inf"):
            raise where(at("weight"), f"weight must be a number >= 0, got {weight!r}")
        spec.weight = float(weight)
    if "validation" in merged and "validation_urls" in merged:
        raise where(at("validation_urls"), "give either validation (a fraction or count) or validation_urls")
    if "validation" in merged:
        v = merged.pop("validation")
        if v is not None:
            if not _is_number(v) or (isinstance(v, float) and not 0 <= v < 1) or (_is_int(v) and v < 0):
                raise where(at("validation"), f"must be a fraction in [0, 1) or a count >= 0, got {v!r}")
            spec.validation = v
    if "validation_urls" in merged:
        spec.validation_urls = _url_list(merged.pop("validation_urls"), where, at("validation_urls"), base)
    for key in ("max_documents", "max_tokens", "sample_buffer"):
        if key in merged:
            value = merged.pop(key)
            low = 1 if key == "sample_buffer" else 0
            if value is not None and (not _is_int(value) or value < low):
                raise where(at(key), f"must be an integer >= {low}, got {value!r}")
            if value is not None:
                setattr(spec, key, value)
    if "sample" in merged:
        sample = merged.pop("sample")
        if sample not in SAMPLES:
            raise where(at("sample"), f"must be one of {', '.join(SAMPLES)}, got {sample!r}")
        spec.sample = sample
    if "dedup" in merged:
        dedup = merged.pop("dedup")
        if dedup in (None, False, "none"):
            spec.dedup = None
        elif dedup == "exact":
            spec.dedup = "exact"
        else:
            raise where(at("dedup"), f"must be 'exact' or 'none', got {dedup!r}")

    storage = dict(top_storage or {})
    for key in PREPARE_KEYS:
        if key in merged:
            value = merged.pop(key)
            if key == "storage_options":
                if not isinstance(value, dict):
                    raise where(at(key), "must be a mapping of option names to values")
                storage.update(value)
            else:
                spec.prepare[key] = value
    if storage:
        spec.prepare["storage_options"] = {str(k): str(v) for k, v in storage.items()}

    fmt = merged.pop("format", None)
    if isinstance(fmt, dict):
        for key in fmt:
            if key in merged:
                raise where(at("format"), f"{key!r} is given both inside format and beside it")
        spec.format.update(fmt)
    elif isinstance(fmt, str):
        spec.format["format"] = fmt
    elif fmt is not None:
        raise where(at("format"), f"must be a format name or a mapping of format options, got {fmt!r}")
    for key, value in merged.items():
        spec.format["max_tokens" if key == "max_document_tokens" else key] = value
    _check_source(spec, where, here, origin)
    return spec


def _parse_hf(value: Any, where: _Where, dotted: str, base: str | None) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise where(dotted, f"must be a dataset name or a mapping ({', '.join(HF_KEYS)}), got {value!r}")
    for key in value:
        if key not in HF_KEYS:
            raise _unknown(str(key), HF_KEYS, where, f"{dotted}.{key}")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise where(
            f"{dotted}.name", "a Hugging Face source needs a name (hub name, builder, or saved folder)"
        )
    for key in ("config", "split", "revision"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise where(f"{dotted}.{key}", f"must be a string, got {value[key]!r}")
    if "streaming" in value and not isinstance(value["streaming"], bool):
        raise where(f"{dotted}.streaming", f"must be true or false, got {value['streaming']!r}")
    out = dict(value)
    if base is not None and os.path.exists(os.path.join(base, name)):
        out["name"] = _resolve_path(name, base)
    files = out.get("data_files")
    if files is not None:
        if isinstance(files, str):
            out["data_files"] = _resolve_path(files, base)
        elif isinstance(files, list) and all(isinstance(f, str) for f in files):
            out["data_files"] = [_resolve_path(f, base) for f in files]
        elif isinstance(files, dict) and all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(f, str) for f in v))
            for v in files.values()
        ):
            out["data_files"] = {
                k: (_resolve_path(v, base) if isinstance(v, str) else [_resolve_path(f, base) for f in v])
                for k, v in files.items()
            }
        else:
            raise where(
                f"{dotted}.data_files", "must be a path, a list of paths, or a mapping of split to paths"
            )
    out.setdefault("split", "train")
    return out


def _check_source(spec: SourceSpec, where: _Where, here: str, origin: dict[str, str]) -> None:
    """Let the formats and prepare layers validate the options they own, naming the source's key."""
    from tokenmill.formats import FormatConfig

    try:
        FormatConfig.from_dict(spec.format)
    except ConfigError as exc:
        raise where(_origin_of(str(exc), origin, here), str(exc)) from None
    try:
        _prepare_config(spec, tokenizer="bytes", seed=0, output="<check>", workers=0).validate()
    except ConfigError as exc:
        raise where(_origin_of(str(exc), origin, here), str(exc)) from None


def _origin_of(message: str, origin: dict[str, str], default: str) -> str:
    """The dotted key an error message is about (the longest option name it mentions), else the source."""
    names = dict(origin)
    if "max_document_tokens" in names:
        names["max_tokens"] = names["max_document_tokens"]
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return names[name]
    return default


def _prepare_config(spec: SourceSpec, *, tokenizer: str, seed: int, output: str, workers: int | None, **kw):
    """The :class:`PrepareConfig` of a source's main cache."""
    from tokenmill.prepare import PrepareConfig

    options: dict[str, Any] = dict(spec.prepare)
    options.update(
        sources=list(spec.urls),
        hf=dict(spec.hf) if spec.hf is not None else None,
        output=output,
        tokenizer=tokenizer,
        seed=seed,
        workers=workers,
        format=dict(spec.format),
        validation=spec.validation,
        max_documents=spec.max_documents,
        max_total_tokens=spec.max_tokens,
        sample=spec.sample,
        sample_buffer=spec.sample_buffer,
        dedup=spec.dedup,
    )
    options.update(kw)
    return PrepareConfig(**options)


# ------------------------------------------------------------------------------------------------- inputs
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
    where = _Where(recipe.path, key_lines(recipe.path) if recipe.path and os.path.isfile(recipe.path) else {})
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


def _check_urls(spec: SourceSpec, which: str, where: _Where) -> list[list[Any]]:
    """Expand and list one URL option of a source, and check every file's format can be read."""
    from tokenmill.sources import detect_format

    try:
        files = _list_files(getattr(spec, which), spec.prepare.get("storage_options"))
        for url, _, _ in files:
            detect_format(url, spec.prepare.get("input_format"))
    except (TokenmillError, OSError) as exc:
        raise where(f"sources.{spec.name}.{which}", str(exc)) from None
    return files


def _check_hf(spec: dict[str, Any], where: _Where, dotted: str) -> list[list[Any]]:
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


def _check_tokenizer(recipe: Recipe):
    from tokenmill.tokenizer import load_tokenizer

    where = _Where(recipe.path, key_lines(recipe.path) if recipe.path and os.path.isfile(recipe.path) else {})
    try:
        return load_tokenizer(recipe.tokenizer, trust_remote_code=recipe.trust_remote_code)
    except (TokenmillError, OSError, ValueError) as exc:
        raise where("tokenizer", str(exc)) from None


# ------------------------------------------------------------------------------------------------- build
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


def cache_path(output: str, name: str, role: str = "train") -> str:
    """Where a source's cache lives under the recipe's output folder."""
    return store.join(output.rstrip("/"), name + (VALIDATION_SUFFIX if role == "validation" else ""))


def _fingerprint(payload: dict[str, Any]) -> str:
    return digest(payload)


def _read_state(output: str, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    uri = store.join(output, STATE_FILE)
    if not store.exists(uri, storage_options):
        return {"format": STATE_FORMAT, "caches": {}}
    state = store.read_json(uri, storage_options)
    if state.get("format") != STATE_FORMAT:
        raise CacheError(f"{uri} was written by another version of tokenmill ({state.get('format')!r})")
    return state


def _write_state(output: str, state: dict[str, Any], storage_options: dict[str, str] | None = None) -> None:
    store.write_json(store.join(output, STATE_FILE), state, storage_options)


def _complete(cache: str, storage_options: dict[str, Any] | None) -> bool:
    from tokenmill.cache import read_manifest

    try:
        return read_manifest(cache, storage_options).complete
    except CacheError:
        return False


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
    from tokenmill.cache import read_manifest
    from tokenmill.dedup import keys_digest, read_cache_keys
    from tokenmill.prepare import prepare

    started = time.perf_counter()
    output = (output or recipe.output or "").rstrip("/")
    if not output:
        raise ConfigError("no output folder: pass --output DIR or set 'output' in the recipe")
    if store.is_local(output):
        output = os.path.abspath(store.local_path(output))
    workers = workers if workers is not None else recipe.workers
    tokenizer = _check_tokenizer(recipe)
    inputs = check_inputs(recipe)
    out_so = store.resolve_storage_options(recipe.storage_options, output)
    if store.exists(store.join(output, "manifest.json"), out_so):
        raise ConfigError(f"{output} is a token cache, not a recipe folder: choose another --output")

    state = _read_state(output, out_so)
    state["recipe"] = {**recipe.to_json(), "output": output}
    caches: dict[str, Any] = state.setdefault("caches", {})
    results: list[CacheResult] = []
    dedup_before: list[tuple[str, str]] = []  # (name, key digest) of earlier sources with dedup, in order
    for spec in recipe.sources:
        jobs = [("train", inputs[spec.name].files)]
        if spec.validation_urls:
            jobs.append(("validation", inputs[spec.name].validation_files))
        for role, files in jobs:
            target = cache_path(output, spec.name, role)
            key = spec.name + (VALIDATION_SUFFIX if role == "validation" else "")
            if role == "train":
                config = _prepare_config(
                    spec,
                    tokenizer=recipe.tokenizer,
                    seed=recipe.seed,
                    output=target,
                    workers=workers,
                    trust_remote_code=recipe.trust_remote_code,
                    dedup_seen=[cache_path(output, n) for n, _ in dedup_before] if spec.dedup else [],
                )
            else:  # every document of the validation files is in split "validation"; deduped only within
                config = _prepare_config(
                    spec,
                    tokenizer=recipe.tokenizer,
                    seed=recipe.seed,
                    output=target,
                    workers=workers,
                    trust_remote_code=recipe.trust_remote_code,
                    sources=list(spec.validation_urls),
                    hf=None,
                    validation=ALL_DOCUMENTS,
                    max_documents=None,
                    max_total_tokens=None,
                    sample="first",
                )
            fingerprint = _fingerprint(
                {
                    "identity": config.identity(),
                    "tokenizer": tokenizer.fingerprint,
                    "inputs": files,
                    "hf": config.hf,
                    "dedup_seen": dedup_before if (spec.dedup and role == "train") else [],
                }
            )
            so = config.storage_options
            entry = caches.get(key)
            same = entry is not None and entry.get("fingerprint") == fingerprint
            t0 = time.perf_counter()
            if same and entry.get("status") == "done" and _complete(target, so):
                manifest = read_manifest(target, so)
                result = CacheResult(spec.name, target, role, "up to date")
            else:
                existed = store.exists(store.join(target, "manifest.json"), so)
                reason = ""
                if existed:
                    reason = (
                        "interrupted" if same else "inputs or options changed" if entry else "not recorded"
                    )
                config.overwrite = existed and not same
                caches[key] = {"fingerprint": fingerprint, "status": "building", "files": len(files)}
                _write_state(output, state, out_so)
                summary = prepare(config, progress=progress)
                status = "resumed" if existed and same else ("rebuilt" if existed else "built")
                if summary.status == "nothing to do" and same:
                    status = "up to date"
                manifest = read_manifest(target, so)
                result = CacheResult(spec.name, target, role, status, reason=reason)
                caches[key] = {"fingerprint": fingerprint, "status": "done", "files": len(files)}
                if spec.dedup and role == "train":
                    caches[key]["dedup_keys"] = keys_digest(read_cache_keys(target, so))
                _write_state(output, state, out_so)
            result.documents = manifest.documents
            result.tokens = manifest.tokens
            result.trained_tokens = sum(s.trained_tokens for s in manifest.splits.values())
            result.skipped = dict(manifest.skipped)
            result.seconds = round(time.perf_counter() - t0, 3)
            results.append(result)
            if log is not None:
                log(result)
        if spec.dedup:
            dedup_before.append((spec.name, caches[spec.name].get("dedup_keys", "")))
    known = {s.name for s in recipe.sources} | {
        s.name + VALIDATION_SUFFIX for s in recipe.sources if s.validation_urls
    }
    stale = sorted(k for k in caches if k not in known)
    for k in stale:  # caches of sources no longer in the recipe are left in place, out of the mixture
        caches.pop(k)
    _write_state(output, state, out_so)
    return RecipeSummary(output, results, round(time.perf_counter() - started, 3), stale)


# -------------------------------------------------------------------------------------------------- read
def source_split(recipe: Recipe, output: str, name: str, split: str = "train") -> tuple[str, str]:
    """(cache, split) holding a source's ``split``: validation files live in ``NAME.validation``."""
    spec = recipe.source(name)
    if split == "validation" and spec.validation_urls:
        return cache_path(output, name, "validation"), "validation"
    if split not in ("train", "validation"):
        raise ConfigError(f"unknown split {split!r}; a recipe has train and validation")
    return cache_path(output, name), split


def _output_of(recipe: Recipe, output: str | None) -> str:
    out = output or recipe.output
    if not out:
        raise ConfigError("no recipe output folder: pass it (--output DIR) or set 'output' in the recipe")
    return out.rstrip("/")


def recipe_datasets(
    recipe: Recipe,
    output: str | None = None,
    *,
    seq_len: int | None = None,
    mode: str | None = None,
    split: str = "train",
    seed: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One :class:`tokenmill.loader.TokenDataset` per source that has data in ``split`` (name -> dataset)."""
    from tokenmill.loader import TokenDataset

    output = _output_of(recipe, output)
    seq_len = seq_len or recipe.seq_len
    if not seq_len:
        raise ConfigError("no seq_len: pass --seq-len or set 'seq_len' in the recipe")
    storage_options = options.pop("storage_options", None)
    out = {}
    for spec in recipe.sources:
        if split == "validation" and not spec.has_validation:
            continue
        if split == "train" and spec.weight <= 0:
            continue
        cache, cache_split = source_split(recipe, output, spec.name, split)
        so = spec.prepare.get("storage_options") or storage_options or recipe.storage_options
        if not _complete(cache, so):
            raise CacheError(
                f"{cache} is not prepared yet: run `tokenmill prepare --recipe ... --output {output}`"
            )
        try:
            out[spec.name] = TokenDataset(
                cache,
                split=cache_split,
                seq_len=seq_len,
                mode=mode or recipe.mode,  # type: ignore[arg-type]
                seed=recipe.seed if seed is None else seed,
                storage_options=so,
                **options,
            )
        except CacheError:
            if split == "validation":  # a validation split too small for one sample is left out
                continue
            raise
    if not out:
        raise ConfigError(f"no source of the recipe has a {split} split")
    return out


def recipe_mixture(
    recipe: Recipe | str | os.PathLike,
    output: str | None = None,
    seq_len: int | None = None,
    mode: str | None = None,
    split: str = "train",
    seed: int | None = None,
    shuffle: bool = True,
    **options: Any,
):
    """The recipe's sources mixed by their weights: a :class:`tokenmill.loader.Mixture` (batches carry
    ``source``, the index into ``mixture.names``). For ``split="validation"`` every source with validation data
    takes part, weighted the same way (a source of weight 0 counts as much as the smallest positive weight)."""
    from tokenmill.loader import Mixture

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    datasets = recipe_datasets(
        recipe, output, seq_len=seq_len, mode=mode, split=split, seed=seed, shuffle=shuffle, **options
    )
    weights = [recipe.source(n).weight for n in datasets]
    positive = [w for w in weights if w > 0]
    floor = min(positive) if positive else 1.0
    weights = [w if w > 0 else floor for w in weights]
    return Mixture(
        list(zip(datasets.values(), weights)),
        policy=recipe.policy,
        seed=recipe.seed if seed is None else seed,
        shuffle=shuffle,
        names=list(datasets),
    )


def recipe_report(
    recipe: Recipe, output: str | None = None, *, seq_len: int | None = None, mode: str | None = None
) -> dict[str, Any]:
    """Per source: documents, tokens, trained tokens, weight, the effective share of the tokens (and trained
    tokens) the model sees under the weights, and how many epochs of the source one pass of the mixture is."""
    import numpy as np

    from tokenmill.cache import read_manifest
    from tokenmill.sampling.mixture import MixtureSchedule

    output = _output_of(recipe, output)
    seq_len = seq_len or recipe.seq_len or 1024
    mode = mode or recipe.mode
    datasets = recipe_datasets(recipe, output, seq_len=seq_len, mode=mode, split="train")
    rows = []
    for spec in recipe.sources:
        so = spec.prepare.get("storage_options") or recipe.storage_options
        manifest = read_manifest(cache_path(output, spec.name), so)
        train = manifest.splits.get("train")
        row: dict[str, Any] = {
            "name": spec.name,
            "cache": cache_path(output, spec.name),
            "weight": spec.weight,
            "documents": train.documents if train else 0,
            "tokens": train.tokens if train else 0,
            "trained_tokens": train.trained_tokens if train else 0,
            "skipped": dict(manifest.skipped),
            "samples": len(datasets[spec.name]) if spec.name in datasets else 0,
        }
        cache, split = source_split(recipe, output, spec.name, "validation")
        val = read_manifest(cache, so).splits.get(split) if spec.has_validation else None
        row["validation"] = {
            "cache": cache,
            "documents": val.documents if val else 0,
            "tokens": val.tokens if val else 0,
        }
        rows.append(row)
    mixed = [r for r in rows if r["name"] in datasets]
    schedule = MixtureSchedule(
        [r["samples"] for r in mixed], [r["weight"] for r in mixed], policy=recipe.policy
    )
    pass_samples = schedule.epoch_length(0)
    # exact draws of each source in one pass: whole blocks, plus the slots of the last, partial one
    full, rest = divmod(pass_samples, schedule.block_size)
    owner, _ = schedule.block_layout(0, full)
    draws = full * schedule.counts + np.bincount(owner[:rest], minlength=len(mixed))
    tokens_per = [r["tokens"] / max(1, r["samples"]) for r in mixed]
    trained_per = [r["trained_tokens"] / max(1, r["samples"]) for r in mixed]
    seen_tokens = sum(s * t for s, t in zip(schedule.shares, tokens_per))
    seen_trained = sum(s * t for s, t in zip(schedule.shares, trained_per))
    total_tokens = sum(r["tokens"] for r in mixed) or 1
    for r, share, tp, trp, d in zip(mixed, schedule.shares, tokens_per, trained_per, draws.tolist()):
        r["sample_share"] = float(share)
        r["token_share"] = float(share * tp / seen_tokens) if seen_tokens else 0.0
        r["trained_token_share"] = float(share * trp / seen_trained) if seen_trained else 0.0
        r["natural_share"] = r["tokens"] / total_tokens
        r["draws_per_pass"] = int(d)
        r["epochs_per_pass"] = d / r["samples"]
    for r in rows:
        if r["name"] not in datasets:
            r.update(sample_share=0.0, token_share=0.0, trained_token_share=0.0, natural_share=0.0)
            r["epochs_per_pass"] = 0.0
            r["draws_per_pass"] = 0
    return {
        "output": output,
        "recipe": recipe.path,
        "tokenizer": recipe.tokenizer,
        "seq_len": seq_len,
        "mode": mode,
        "policy": recipe.policy,
        "samples_per_pass": int(pass_samples),
        "tokens_per_pass": int(round(pass_samples * sum(s * t for s, t in zip(schedule.shares, tokens_per)))),
        "sources": rows,
    }


def plot_shares(report: dict[str, Any], path: str) -> None:
    """A bar chart per source: its share of the stored tokens, its share of the tokens seen under the weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["sources"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows) + 2), 4))
    natural = [r["natural_share"] for r in rows]
    seen = [r["token_share"] for r in rows]
    ax.bar(x - 0.2, natural, 0.4, label="share of stored tokens", color="#9fb7d0")
    bars = ax.bar(x + 0.2, seen, 0.4, label="share of tokens seen (weights)", color="#3b6ea5")
    for bar, r in zip(bars, rows):
        ax.annotate(
            f"{r['epochs_per_pass']:.2g} ep",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, [r["name"] for r in rows])
    ax.set_ylabel("share (bars: epochs of the source per pass)")
    ax.set_title(f"mixture: {report['samples_per_pass']} samples of {report['seq_len']} per pass")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "CacheResult",
    "Recipe",
    "RecipeSummary",
    "SourceInputs",
    "SourceSpec",
    "cache_path",
    "check_inputs",
    "is_recipe",
    "load_recipe",
    "parse_recipe",
    "plot_shares",
    "prepare_recipe",
    "recipe_caches",
    "recipe_datasets",
    "recipe_mixture",
    "recipe_report",
    "source_split",
]
