"""What a recipe is, and its validation: :class:`Recipe` and :class:`SourceSpec`, parsed from YAML data.

Every check names the recipe file, the line and the dotted key (``recipe.yaml, line 13, key
'sources.code.weight'``), through :mod:`tokenmill.config`. Each layer validates the options it owns: the recipe its
own keys (``urls``/``hf``, ``weight``, ``validation_urls``, the top-level options), :class:`PrepareConfig` the
prepare options (validation, budgets, sample, dedup, ...), :class:`FormatConfig` the record-format options; the
recipe only maps their errors back to the key the user wrote (``max_tokens`` of a source is prepare's
``max_total_tokens``; ``max_document_tokens`` is the format's ``max_tokens``).

To add a top-level option, add a field to :class:`Recipe` with its rule (:func:`tokenmill.config.option`);
:data:`TOP_KEYS` follows the fields. ``schedule:`` (the weights over training progress) is checked against the
sources by :func:`tokenmill.sampling.schedule.resolve_points`, its errors placed at the point's line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenmill.cache import store
from tokenmill.config import (
    Config,
    OptionError,
    Where,
    build,
    convert_options,
    key_lines,
    load_yaml,
    option,
)
from tokenmill.errors import ConfigError
from tokenmill.loader.layouts import MODES
from tokenmill.recipe.layout import STATE_FILE
from tokenmill.sampling.mixture import POLICIES

SAMPLES = ("first", "random")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
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
# code in a tokenizer folder runs only when the person running the command asks for it, never a file they were sent
TRUST_FROM_FILE = (
    "trust_remote_code is not taken from a file (it would run code from the tokenizer folder on the word of the "
    "file); pass --trust-remote-code on the command line, or trust_remote_code=True in Python"
)
# a source's key -> the PrepareConfig field it sets (the rest keep their names)
_TO_PREPARE = {"max_tokens": "max_total_tokens"}


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
        return self.separate_validation or bool(self.validation)

    @property
    def separate_validation(self) -> bool:
        """Whether validation comes from inputs of its own (validation_urls, or a HF dataset's own split)."""
        return bool(self.validation_urls) or bool((self.hf or {}).get("validation_split"))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        options = dict(out["prepare"])
        if options.get("storage_options"):
            options["storage_options"] = sorted(options["storage_options"])  # the keys only, never secrets
        out["prepare"] = options
        return out


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a folder path or URL"


@dataclass
class Recipe(Config):
    """A validated recipe. ``path`` is the YAML it came from (for messages); paths inside are absolute."""

    LABEL: ClassVar[str] = "recipe"

    tokenizer: str
    sources: list[SourceSpec]
    seed: int = 0
    output: str | None = option(None, check=_text)
    seq_len: int | None = option(None, minimum=1)
    mode: str = option("windows", choices=MODES)
    policy: str = option("repeat", choices=POLICIES)
    workers: int | None = option(None, minimum=0)
    trust_remote_code: bool = False
    storage_options: dict[str, str] | None = None  # for the output folder (and, merged, every source)
    # the weights over training progress: [{at: STEP, weights: {NAME: W}, segment: linear|constant}, ...]
    schedule: list | None = None
    path: str | None = None

    NOT_KEYS: ClassVar[tuple[str, ...]] = ("sources", "path")  # fields that are not top-level options

    def source(self, name: str) -> SourceSpec:
        for spec in self.sources:
            if spec.name == name:
                return spec
        raise ConfigError(f"the recipe has no source {name!r}; it has {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def trains_on(self, name: str) -> bool:
        """Whether a source is in the train mixture: a positive weight, or with a schedule, a positive weight at
        some point of it (a source of weight 0 throughout is prepared for validation only)."""
        if self.schedule is None:
            return self.source(name).weight > 0
        return any(float(p.get("weights", {}).get(name, 0) or 0) > 0 for p in self.schedule)

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


TOP_KEYS = (
    *(f.name for f in dataclasses.fields(Recipe) if f.name not in Recipe.NOT_KEYS),
    "defaults",
    "sources",
)


# --------------------------------------------------------------------------------------------------- helpers
def _unknown(key: str, known: tuple[str, ...] | list[str], where: Where, dotted: str) -> ConfigError:
    import difflib

    if key in RENAMED:
        return where(dotted, f"unknown option {key!r}: {RENAMED[key]}")
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return where(dotted, f"unknown option {key!r}{hint}; known options: {', '.join(sorted(known))}")


def resolve_path(value: str, base: str | None) -> str:
    """A local relative path is relative to the recipe's folder; URLs and absolute paths stay as they are."""
    if base is None or "://" in value or os.path.isabs(os.path.expanduser(value)):
        return os.path.expanduser(value) if "://" not in value else value
    if "://" in base:  # a recipe in a bucket: its relative paths are in that bucket
        return store.join(base, value.removeprefix("./"))
    return os.path.normpath(os.path.join(base, value))


def _url_list(value: Any, where: Where, dotted: str, base: str | None) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise where(dotted, f"must be a URL, a path or pattern, or a non-empty list of them, got {value!r}")
    return [resolve_path(v, base) for v in value]


def is_recipe(value: Any) -> bool:
    """Whether ``value`` names a recipe (a ``.yaml``/``.yml`` file or a prepared recipe folder), not a cache."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if text.endswith((".yaml", ".yml", STATE_FILE)):
        return True
    return store.is_local(text) and os.path.isfile(os.path.join(store.local_path(text), STATE_FILE))


def load_recipe(path: str | os.PathLike, storage_options: dict[str, str] | None = None) -> Recipe:
    """Read and validate a recipe YAML, or the recipe recorded in a prepared folder (``DIR`` or its
    ``recipe.json``, local or in a bucket; credentials then come from ``storage_options`` or the environment).

    A YAML file with a Levanter or RWKV-infctx ``data:`` section (and no ``sources:``) is read as that tool's
    configuration (:mod:`tokenmill.recipe.foreign`)."""
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
        recipe.trust_remote_code = False  # never from a file: only the command line or a Python argument
        recipe.storage_options = storage_options
        folder = uri[: -len(STATE_FILE)].rstrip("/")
        recipe.output = recipe.output or (os.path.abspath(folder) if store.is_local(folder) else folder)
        return recipe
    data = load_yaml(text)
    if "sources" not in data and isinstance(data.get("data"), dict):
        from tokenmill.recipe.foreign import load_foreign  # a Levanter or RWKV-infctx config file

        return load_foreign(text).recipe
    base = text.rsplit("/", 1)[0] if "://" in text else os.path.dirname(os.path.abspath(text))
    return parse_recipe(data, path=text, lines=key_lines(text), base=base)


# --------------------------------------------------------------------------------------------------- parse
def parse_recipe(
    data: dict[str, Any],
    *,
    path: str | None = None,
    lines: dict[str, int] | None = None,
    base: str | None = None,
) -> Recipe:
    """Validate a recipe given as data; ``base`` is the folder relative local paths are resolved against."""
    where = Where(path or "recipe", lines or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where.label}: a recipe is a mapping with 'tokenizer' and 'sources'")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"{where.label}: option names are strings, got {key!r} (YAML reads an unquoted null, true, yes, "
                "no, on or off as a value: quote it)"
            )
        if key not in TOP_KEYS:
            raise _unknown(str(key), TOP_KEYS, where, str(key))
    if "tokenizer" not in data:
        raise ConfigError(f"{where.label}: no tokenizer: name one (tokenizer.json, HF name or folder, bytes)")
    tokenizer = data["tokenizer"]
    if not isinstance(tokenizer, str) or not tokenizer:
        raise where("tokenizer", f"must be a path or a name, got {tokenizer!r}")
    if base is not None and "://" not in tokenizer:
        beside = resolve_path(tokenizer, base)  # a file beside the recipe wins over a hub name
        if os.path.exists(beside) if "://" not in beside else store.exists(beside):
            tokenizer = beside
    if "trust_remote_code" in data:
        raise where("trust_remote_code", TRUST_FROM_FILE)
    top = {k: v for k, v in data.items() if k not in ("tokenizer", "defaults", "sources")}
    try:
        options = convert_options(Recipe, top)
    except OptionError as exc:
        raise where.locate(exc) from None
    if options.get("output") is not None:
        options["output"] = resolve_path(options["output"], base)
    if options.get("storage_options"):
        options["storage_options"] = {str(k): str(v) for k, v in options["storage_options"].items()}
    else:
        options["storage_options"] = None

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
    specs = []
    for name, raw in sources.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise where(
                f"sources.{name}", "a source name is letters, digits, '_' and '-' (it names its cache folder)"
            )
        if raw is None or not isinstance(raw, dict):
            raise where(
                f"sources.{name}", f"must be a mapping of options (urls or hf, weight, ...), got {raw!r}"
            )
        specs.append(_parse_source(name, raw, defaults, options["storage_options"], where, base, known))
    if options.get("schedule") is not None:
        _check_schedule(options, data, [s.name for s in specs], where)
    elif not any(s.weight > 0 for s in specs):
        raise where("sources", "every weight is 0: give at least one source a positive weight")
    try:
        return Recipe(tokenizer=tokenizer, sources=specs, path=path, **options)
    except OptionError as exc:
        raise where.locate(exc) from None


def _check_schedule(options: dict[str, Any], data: dict[str, Any], names: list[str], where: Where) -> None:
    """A schedule's points name known sources and move forward; with a schedule the weights are its alone."""
    from tokenmill.sampling.schedule import ScheduleError, resolve_points

    for name, raw in data["sources"].items():
        if isinstance(raw, dict) and "weight" in raw:
            raise where(
                f"sources.{name}.weight", "the schedule gives the weights; remove the source's weight"
            )
    if "weight" in (data.get("defaults") or {}):
        raise where("defaults.weight", "the schedule gives the weights; remove the default weight")
    if options.get("policy", "repeat") != "repeat":
        raise where(
            "policy",
            "a schedule mixes over the whole run, every source cycling through its own epochs ('repeat'); "
            "bound the run by steps instead",
        )
    try:  # positions in steps or tokens are placed once the batch size is known; their order is checked now
        resolve_points(options["schedule"], names, global_batch_size=1, seq_len=1)
    except ScheduleError as exc:
        key = "schedule" + ("" if exc.point is None else f".{exc.point}") + (f".{exc.key}" if exc.key else "")
        raise where(key, exc.detail) from None


def _parse_source(
    name: str,
    raw: dict[str, Any],
    defaults: dict[str, Any],
    top_storage: dict[str, Any] | None,
    where: Where,
    base: str | None,
    known: tuple[str, ...],
) -> SourceSpec:
    """One source: the recipe's own keys checked here, the prepare and format options by their owners."""
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
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise where(at("weight"), f"weight must be a number >= 0, got {weight!r}")
        if math.isinf(weight):
            raise where(at("weight"), "weight must be finite")
        spec.weight = float(weight)
    if "validation" in merged and "validation_urls" in merged:
        raise where(at("validation_urls"), "give either validation (a fraction or count) or validation_urls")
    if spec.hf is not None and spec.hf.get("validation_split"):
        for other in ("validation", "validation_urls"):
            if other in merged:
                raise where(
                    at(other),
                    f"give either hf.validation_split (the dataset's own split) or {other}, not both",
                )
    if "validation_urls" in merged:
        spec.validation_urls = _url_list(merged.pop("validation_urls"), where, at("validation_urls"), base)
    if merged.get("dedup") in (False, "none"):
        merged["dedup"] = None

    storage = dict(top_storage or {})
    if "storage_options" in merged:
        value = merged.pop("storage_options")
        if not isinstance(value, dict):
            raise where(at("storage_options"), "must be a mapping of option names to values")
        storage.update(value)
    if storage:
        spec.prepare["storage_options"] = {str(k): str(v) for k, v in storage.items()}
    for key in PREPARE_KEYS:
        if key in merged:
            spec.prepare[key] = merged.pop(key)

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
    own = {k: merged.pop(k) for k in list(merged) if k in RECIPE_KEYS}
    for key, value in merged.items():
        spec.format["max_tokens" if key == "max_document_tokens" else key] = value
    _check_layers(spec, own, where, here, origin)
    return spec


def _check_layers(
    spec: SourceSpec, own: dict[str, Any], where: Where, here: str, origin: dict[str, str]
) -> None:
    """Let the formats and prepare layers validate (and convert) the options they own, naming the source's key;
    the prepare layer's values come back into ``spec``."""
    from tokenmill.formats import FormatConfig

    fmt_origin = {("max_tokens" if k == "max_document_tokens" else k): v for k, v in origin.items()}
    try:
        FormatConfig.parse(spec.format)
    except ConfigError as exc:
        raise _locate(exc, where, fmt_origin, here) from None
    prep_origin = {_TO_PREPARE.get(k, k): v for k, v in origin.items() if k in (*RECIPE_KEYS, *PREPARE_KEYS)}
    try:
        config = prepare_config(
            spec,
            tokenizer="bytes",
            seed=0,
            output="<check>",
            workers=0,
            **{_TO_PREPARE.get(k, k): v for k, v in own.items() if v is not None},
        )
    except ConfigError as exc:
        raise _locate(exc, where, prep_origin, here) from None
    spec.validation = config.validation
    spec.max_documents = config.max_documents
    spec.max_tokens = config.max_total_tokens
    spec.sample = config.sample
    spec.sample_buffer = config.sample_buffer
    spec.dedup = config.dedup


def _locate(exc: ConfigError, where: Where, origin: dict[str, str], default: str) -> ConfigError:
    """An error of a nested layer at the key the user wrote: by the key an :class:`OptionError` carries, else by
    the longest option name its message mentions, else at the source."""
    key = getattr(exc, "key", None)
    if key is not None:
        head = str(key).split(".")[0]
        return where(origin.get(head, default), exc.detail)
    message = str(exc)
    for name in sorted(origin, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return where(origin[name], message)
    return where(default, message)


def _parse_hf(value: Any, where: Where, dotted: str, base: str | None) -> dict[str, Any]:
    from tokenmill.sources.hf import HFSource

    try:
        value = HFSource.from_dict(value, dotted).to_dict()
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        raise where(key, message) from None
    name = value["name"]
    out = dict(value)
    if base is not None and os.path.exists(os.path.join(base, name)):
        out["name"] = resolve_path(name, base)
    files = out.get("data_files")
    if files is not None:
        if isinstance(files, str):
            out["data_files"] = resolve_path(files, base)
        elif isinstance(files, list) and all(isinstance(f, str) for f in files):
            out["data_files"] = [resolve_path(f, base) for f in files]
        elif isinstance(files, dict) and all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(f, str) for f in v))
            for v in files.values()
        ):
            out["data_files"] = {
                k: (resolve_path(v, base) if isinstance(v, str) else [resolve_path(f, base) for f in v])
                for k, v in files.items()
            }
        else:
            raise where(
                f"{dotted}.data_files", "must be a path, a list of paths, or a mapping of split to paths"
            )
    out.setdefault("split", "train")
    return out


def prepare_config(spec: SourceSpec, *, tokenizer: str, seed: int, output: str, workers: int | None, **kw):
    """The :class:`PrepareConfig` of a source's main cache, built and checked by the prepare layer's own rules
    (``kw`` overrides: a validation cache reads other files, takes every document, has no budget)."""
    from tokenmill.prepare import PrepareConfig

    options: dict[str, Any] = dict(spec.prepare)
    options.update(
        sources=list(spec.urls),
        hf={k: v for k, v in spec.hf.items() if k != "validation_split"} if spec.hf is not None else None,
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
    config = build(PrepareConfig, options)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config
