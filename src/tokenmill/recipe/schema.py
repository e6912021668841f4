"""What a recipe is, and its validation: :class:`Recipe`, parsed from YAML data (a source: :mod:`.source`).

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
import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from tokenmill.cache import store
from tokenmill.config import (
    Config,
    OptionError,
    Where,
    convert_options,
    option,
)
from tokenmill.errors import ConfigError
from tokenmill.loader.layouts import MODES
from tokenmill.recipe.layout import STATE_FILE
from tokenmill.recipe.source import (
    PREPARE_KEYS,
    RECIPE_KEYS,
    SOURCE_ONLY,
    SourceSpec,
    _format_keys,
    _unknown,
    parse_source,
    resolve_path,
)
from tokenmill.sampling.mixture import POLICIES

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# code in a tokenizer folder runs only when the person running the command asks for it, never a file they were sent
TRUST_FROM_FILE = (
    "trust_remote_code is not taken from a file (it would run code from the tokenizer folder on the word of the "
    "file); pass --trust-remote-code on the command line, or trust_remote_code=True in Python"
)


# --------------------------------------------------------------------------------------------------- schema
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
def is_recipe(value: Any) -> bool:
    """Whether ``value`` names a recipe (a ``.yaml``/``.yml`` file or a prepared recipe folder), not a cache."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if text.endswith((".yaml", ".yml", STATE_FILE)):
        return True
    return store.is_local(text) and os.path.isfile(os.path.join(store.local_path(text), STATE_FILE))


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
        specs.append(parse_source(name, raw, defaults, options["storage_options"], where, base, known))
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
