"""One source of a recipe: :class:`SourceSpec`, the keys a source may have, and their validation.

A source's options are split by the layer that owns them: the recipe's own (``urls``/``hf``, ``weight``,
``validation_urls``), :class:`PrepareConfig`'s (validation, budgets, sample, dedup, input options) and
:class:`FormatConfig`'s (the record format). Each owner validates its options with its own rules; this module
maps their errors back to the key the user wrote (``max_tokens`` of a source is prepare's ``max_total_tokens``;
``max_document_tokens`` is the format's ``max_tokens``), at its line in the recipe.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from tokenmill.cache import store
from tokenmill.config import Where, build
from tokenmill.errors import ConfigError

SAMPLES = ("first", "random")
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
# a source's key -> the PrepareConfig field it sets (the rest keep their names)
_TO_PREPARE = {"max_tokens": "max_total_tokens"}


def _format_keys() -> tuple[str, ...]:
    """Every record-format option (``max_tokens`` of a document is ``max_document_tokens`` in a recipe)."""
    from tokenmill.formats import FormatConfig

    names = [f.name for f in dataclasses.fields(FormatConfig) if f.name not in ("format", "max_tokens")]
    return (*names, "columns", "max_document_tokens")


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


def parse_source(
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
