"""``PrepareConfig``: every option of ``tokenmill prepare``, its checks, and what decides a cache's content."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tokenmill.cache.layout import DEFAULT_ROW_TOKENS
from tokenmill.config import from_dict
from tokenmill.errors import ConfigError


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
