"""``PrepareConfig``: every option of ``tokenmill prepare``, its checks, and what decides a cache's content."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from tokenmill.cache.layout import DEFAULT_ROW_TOKENS
from tokenmill.config import Config, OptionError, check_options, option
from tokenmill.errors import ConfigError
from tokenmill.tokenizer.engine import ENGINES


def _validation(value: Any) -> str | None:
    if isinstance(value, float) and not 0 <= value < 1:
        return f"validation as a fraction must be in [0, 1), got {value}"
    if isinstance(value, int) and value < 0:
        return f"validation as a count must be >= 0, got {value}"
    return None


@dataclass
class PrepareConfig(Config):
    """Every option of ``tokenmill prepare`` (the YAML config mirrors these names); the rules are checked at
    construction and by :meth:`from_dict`, with the YAML line of a bad key (:mod:`tokenmill.config`)."""

    LABEL: ClassVar[str] = "prepare options"
    # options that change how a build runs, not what it builds
    RUN_OPTIONS: ClassVar[tuple[str, ...]] = (
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
        "engine",
        "hf",
        "dedup_seen",
        "rebuild_changed",
        "allow_empty",
    )

    sources: list[str] = option(factory=list)
    output: str = ""
    # a path or name, or (Python API) a tokenizer object: transformers, tokenizers, tiktoken
    tokenizer: Any = ""
    # the encoding engine: "auto" picks the fastest one proven to give the tokenizer's own ids
    engine: str = option("auto", choices=ENGINES)
    input_format: str | None = None
    text_split: str = option("document", choices=("document", "lines"))
    format: dict[str, Any] = option(factory=dict)
    text_key: str | None = None
    min_tokens: int | None = option(None, minimum=0)
    max_tokens: int | None = option(None, minimum=0)
    truncate: str | None = None
    max_documents: int | None = option(None, minimum=0)
    max_total_tokens: int | None = option(None, minimum=0)
    validation: float | int | None = option(None, check=_validation)
    seed: int = 0
    workers: int | None = option(None, minimum=0)
    on_error: str = option("raise", choices=("raise", "skip"))
    row_tokens: int = option(DEFAULT_ROW_TOKENS, minimum=16)
    unit_bytes: int = option(8 << 20, minimum=1)
    add_bos: bool | None = None
    add_eos: bool | None = None
    append: bool = False
    overwrite: bool = False
    # a source changed since the cache was built: rebuild the cache (without it, the run is refused)
    rebuild_changed: bool = False
    # a build that finds no document at all is an error unless this is set
    allow_empty: bool = False
    # where units run: "local" (this machine: threads sharing the tokenizer when its engine releases the GIL,
    # else spawned processes), "thread", "process" (spawned processes, each loading the tokenizer), "ray"
    executor: str = option("local", choices=("local", "thread", "process", "ray"))
    ray_address: str | None = None
    # a Hugging Face dataset: load_dataset's arguments (or just its name), read by sources.HFSource
    hf: dict[str, Any] | None = option(None, coerce=lambda v: {"name": v} if isinstance(v, str) else v)
    trust_remote_code: bool = False
    storage_options: dict[str, str] | None = None
    # a seeded random subset ("random": units in a shuffled order, records through a shuffle buffer per unit)
    sample: str = option("first", choices=("first", "random"))
    sample_buffer: int = option(4096, minimum=1)
    # exact dedup by normalized content ("exact"), also against the finished caches named in dedup_seen
    dedup: str | None = option(None, choices=(None, "exact"))
    dedup_seen: list[str] = option(factory=list)

    def check(self) -> None:
        """Check every rule again (a config changed after construction, as the Python API allows)."""
        check_options(self)
        self.validate()

    def validate(self) -> None:
        """The ``hf`` mapping read as a :class:`tokenmill.sources.HFSource` (one parser for YAML, flags, recipes)."""
        if self.hf is None:
            return
        from tokenmill.sources.hf import HFSource

        try:
            source = HFSource.from_dict(self.hf, "hf")
        except ConfigError as exc:
            key, _, message = str(exc).partition(": ")
            raise OptionError(key, message, self.LABEL) from None
        if source.validation_split is not None:
            raise OptionError(
                "hf.validation_split",
                "a dataset's own split as validation needs a cache of its own; use a recipe (docs/recipes.md), "
                "or prepare that split into a second cache",
                self.LABEL,
            )
        self.hf = source.to_dict()

    def source_names(self) -> list[str]:
        """How the plan names this build's sources: the patterns given, or the Hugging Face dataset's exact key
        (name, config, split, revision, data files, arguments), so another dataset is another source."""
        if self.hf is None:
            return list(self.sources)
        from tokenmill.sources.hf import HFSource

        return [HFSource.from_dict(self.hf).key()]

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
