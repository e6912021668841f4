"""The trainer's configuration: one dataclass, loaded from YAML, overridden with ``--set key=value``.

Built on :mod:`tokenmill.config` (types, allowed values and YAML lines come from there).

Every option has a default so a YAML file names only what differs, and unknown keys are errors (a misspelt
``warmup_step`` that is silently ignored costs a run). The whole resolved config is saved in every checkpoint, so a
resumed run can tell when it is being continued with different settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tokenmill.config import Config, OptionError, load_config, merge, option, parse_overrides
from tokenmill.errors import ConfigError
from tokenmill.loader.layouts import MODES
from tokenmill.sampling.mixture import POLICIES

__all__ = ["TrainConfig", "load_train_config", "merge", "parse_overrides"]

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


def _check_data(value: Any) -> str | None:
    if isinstance(value, list):
        for i, part in enumerate(value):
            if not isinstance(part, dict) or "cache" not in part:
                return f"data[{i}] must be a mapping with 'cache' (and 'weight'), got {part!r}"
            unknown = set(part) - {"cache", "weight", "split"}
            if unknown:
                return f"data[{i}]: unknown key(s) {', '.join(sorted(unknown))}; known: cache, weight, split"
    return None


def _check_model(value: Any) -> str | None:
    if isinstance(value, dict) and "type" not in value and "pretrained" not in value:
        return "model as a mapping needs 'type' (gpt2, llama, ...) or 'pretrained' (a model folder)"
    return None


def _check_betas(value: Any) -> str | None:
    if len(value) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in value):
        return f"betas must be two numbers in [0, 1), got {value!r}"
    return None


def _check_device(value: Any) -> str | None:
    if value not in DEVICES and not str(value).startswith("cuda:"):
        return f"device must be one of {', '.join(DEVICES)} or cuda:N, got {value!r}"
    return None


@dataclass
class TrainConfig(Config):
    """Every option of ``tokenmill train`` (the YAML file uses the same names).

    ``data`` is a cache folder or URL, or a mixture: a list of ``{cache: PATH, weight: W}`` (optionally
    ``split``). ``model`` is a Hugging Face model folder or name (loaded with ``local_files_only``, so nothing is
    downloaded), or a mapping with ``type`` (``gpt2``, ``llama``, any ``AutoConfig`` model type) and that config's
    fields for a model trained from scratch; its vocabulary is sized from the cache's tokenizer.
    """

    LABEL: ClassVar[str] = "train config"

    # data
    data: str | list | None = option(None, check=_check_data)
    validation_data: str | None = None
    mode: str = option("windows", choices=MODES)
    seq_len: int = option(256, minimum=1)
    seed: int = 0
    shuffle: bool = True
    mixture_policy: str = option("repeat", choices=POLICIES)
    storage_options: dict | None = None
    # model
    model: str | dict = option(factory=lambda: {"type": "gpt2"}, check=_check_model)
    vocab_multiple: int = option(64, minimum=1)
    # optimisation
    max_steps: int = option(1000, minimum=0)
    global_batch_size: int = option(32, minimum=1)
    micro_batch_size: int | None = option(None, minimum=1)
    lr: float = option(3e-4, minimum=0)
    min_lr: float = option(3e-5, minimum=0)
    warmup_steps: int = option(100, minimum=0)
    schedule: str = option("cosine", choices=SCHEDULES)
    weight_decay: float = 0.1
    betas: list = option(factory=lambda: [0.9, 0.95], check=_check_betas)
    eps: float = 1e-8
    grad_clip: float | None = option(
        1.0, check=lambda v: "grad_clip must be positive, or null to turn clipping off" if v <= 0 else None
    )
    # evaluation
    eval_every: int = option(0, minimum=0)
    eval_batches: int = option(8, minimum=0)
    eval_batch_size: int | None = option(None, minimum=1)
    # checkpoints and export
    save_every: int = option(0, minimum=0)
    save_every_minutes: float = option(0.0, minimum=0)
    keep_last: int = option(3, minimum=1)
    save_final: bool = True
    export_dir: str | None = None
    # logging
    run_dir: str = "runs/run"
    log_every: int = option(10, minimum=1)
    progress: bool | None = None
    tensorboard: bool = True
    # runtime
    device: str = option("auto", check=_check_device)
    precision: str = option("auto", choices=PRECISIONS)
    compile: bool = False
    prefetch: int = option(2, minimum=0)
    threads: int | None = option(None, minimum=1)

    def validate(self) -> None:
        if self.lr <= 0 or self.min_lr > self.lr:
            raise OptionError(
                "min_lr", f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}"
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


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None, **values: Any
) -> TrainConfig:
    """The config of a YAML file, then ``--set`` overrides (merged into the file and the defaults), then keyword
    values (command-line flags) on top."""
    return load_config(TrainConfig, path, overrides, **values)
