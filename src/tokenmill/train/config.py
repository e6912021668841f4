"""The trainer's configuration: one dataclass, loaded from YAML, overridden with ``--set key=value``.

Every option has a default so a YAML file names only what differs, and unknown keys are errors (a misspelt
``warmup_step`` that is silently ignored costs a run). The whole resolved config is saved in every checkpoint, so a
resumed run can tell when it is being continued with different settings.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokenmill.config import from_dict, key_lines, load_yaml
from tokenmill.errors import ConfigError

MODES = ("windows", "packed", "padded")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Options that may change between a checkpoint and the run that resumes it without changing what is trained.
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "run_dir",
        "log_every",
        "eval_every",
        "eval_batches",
        "save_every",
        "save_every_minutes",
        "keep_last",
        "save_final",
        "progress",
        "tensorboard",
        "device",
        "compile",
        "prefetch",
        "threads",
        "export_dir",
        "storage_options",
        "data",
        "validation_data",
    }
)


@dataclass
class TrainConfig:
    """Every option of ``tokenmill train`` (the YAML file uses the same names).

    ``data`` is a cache folder or URL, or a mixture: a list of ``{cache: PATH, weight: W}`` (optionally
    ``split``). ``model`` is a Hugging Face model folder or name (loaded with ``local_files_only``, so nothing is
    downloaded), or a mapping with ``type`` (``gpt2``, ``llama``, any ``AutoConfig`` model type) and that config's
    fields for a model trained from scratch; its vocabulary is sized from the cache's tokenizer.
    """

    # data
    data: str | list | None = None
    validation_data: str | None = None
    mode: str = "windows"
    seq_len: int = 256
    seed: int = 0
    shuffle: bool = True
    mixture_policy: str = "repeat"
    storage_options: dict | None = None
    # model
    model: str | dict = field(default_factory=lambda: {"type": "gpt2"})
    vocab_multiple: int = 64
    # optimisation
    max_steps: int = 1000
    global_batch_size: int = 32
    micro_batch_size: int | None = None
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    # evaluation
    eval_every: int = 0
    eval_batches: int = 8
    eval_batch_size: int | None = None
    # checkpoints and export
    save_every: int = 0
    save_every_minutes: float = 0.0
    keep_last: int = 3
    save_final: bool = True
    export_dir: str | None = None
    # logging
    run_dir: str = "runs/run"
    log_every: int = 10
    progress: bool | None = None
    tensorboard: bool = True
    # runtime
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    prefetch: int = 2
    threads: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train config") -> TrainConfig:
        config = from_dict(cls, _floats(data), where)
        config.validate(where)
        return config

    def validate(self, where: str = "train config") -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"{where}: {message}")

        if self.mode not in MODES:
            raise bad(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise bad(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise bad(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if self.mixture_policy not in ("repeat", "stop"):
            raise bad(f"mixture_policy must be 'repeat' or 'stop', got {self.mixture_policy!r}")
        for name in ("seq_len", "global_batch_size", "vocab_multiple", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "warmup_steps", "eval_every", "eval_batches", "save_every", "prefetch"):
            if getattr(self, name) < 0:
                raise bad(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("micro_batch_size", "eval_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(f"{name} must be at least 1, got {value}")
        if self.save_every_minutes < 0:
            raise bad("save_every_minutes must be >= 0")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise bad(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise bad(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise bad("grad_clip must be positive, or null to turn clipping off")
        if isinstance(self.model, dict) and "type" not in self.model and "pretrained" not in self.model:
            raise bad("model as a mapping needs 'type' (gpt2, llama, ...) or 'pretrained' (a model folder)")
        if isinstance(self.data, list):
            for i, part in enumerate(self.data):
                if not isinstance(part, dict) or "cache" not in part:
                    raise bad(f"data[{i}] must be a mapping with 'cache' (and 'weight'), got {part!r}")
                unknown = set(part) - {"cache", "weight", "split"}
                if unknown:
                    raise bad(
                        f"data[{i}]: unknown key(s) {', '.join(sorted(unknown))}; known: cache, weight, split"
                    )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["storage_options"] = sorted(self.storage_options or {})  # never write credentials
        return out

    def micro_batches(self, world_size: int) -> tuple[int, int]:
        """(samples per forward pass per rank, forward passes per step) for this world size."""
        if self.global_batch_size % world_size:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not divisible by the world size {world_size}"
            )
        per_rank = self.global_batch_size // world_size
        micro = min(self.micro_batch_size or per_rank, per_rank)
        if per_rank % micro:
            raise ConfigError(
                f"each of the {world_size} rank(s) reads {per_rank} samples per step, which micro_batch_size "
                f"{micro} does not divide; pick a divisor of {per_rank}"
            )
        return micro, per_rank // micro


_FLOAT_FIELDS = ("lr", "min_lr", "weight_decay", "eps", "grad_clip", "save_every_minutes")


def _floats(data: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads ``3e-4`` (no dot) as a string; every config writes learning rates that way."""
    out = dict(data)
    for name in _FLOAT_FIELDS:
        value = out.get(name)
        if isinstance(value, str):
            try:
                out[name] = float(value)
            except ValueError:
                pass  # from_dict reports the wrong type with the option's name
    return out


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "model.n_layer=4"]`` -> a nested mapping; values are parsed as YAML (numbers, lists, null)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = [p.strip() for p in key.strip().split(".") if p.strip()]
        if not parts:
            raise ConfigError(f"--set has an empty key in {item!r}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is given both as a value and as a mapping")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (a mapping replaces keys; anything else replaces whole)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{path}{key}.")
        elif (
            isinstance(value, dict) and key in out and out[key] is not None and not isinstance(out[key], dict)
        ):
            raise ConfigError(f"--set {path}{key}.*: {path}{key} is {out[key]!r}, not a mapping")
        else:
            out[key] = value
    return out


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None, **values: Any
) -> TrainConfig:
    """The config of a YAML file, then ``--set`` overrides, then keyword values (command-line flags) on top."""
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    data = merge(data, overrides or {})
    data.update({k: v for k, v in values.items() if v is not None})
    where = str(path) if path is not None else "train config"
    try:
        return TrainConfig.from_dict(data, where)
    except ConfigError as exc:
        if path is None:
            raise
        lines = key_lines(path)
        for key, line in lines.items():
            if f"'{key}'" in str(exc):
                raise ConfigError(f"{exc} (line {line})") from None
        raise
