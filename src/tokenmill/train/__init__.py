"""Training on tokenmill data: the reference trainer, checkpoints, export, and adapters for other trainers.

Needs the ``train`` extra (torch, transformers). ``docs/training.md`` is the guide.
"""

from tokenmill.train.checkpoint import latest_checkpoint, list_checkpoints, resolve_checkpoint
from tokenmill.train.config import TrainConfig, load_train_config
from tokenmill.train.export import export_checkpoint, hf_tokenizer, load_checkpoint_model
from tokenmill.train.metrics import read_metrics
from tokenmill.train.trainer import Run, TrainResult, evaluate_checkpoint, train

_HF = ("HFTrainerData", "TokenmillCollator", "TokenmillTrainerDataset", "DataStateCallback")


def __getattr__(name: str):
    # the Hugging Face Trainer adapter imports transformers' Trainer stack (and accelerate) only when used
    if name in _HF:
        from tokenmill.train import hf

        return getattr(hf, name)
    if name == "plot_runs":
        from tokenmill.train.plot import plot_runs

        return plot_runs
    raise AttributeError(f"module 'tokenmill.train' has no attribute {name!r}")


__all__ = [
    "DataStateCallback",
    "HFTrainerData",
    "Run",
    "TokenmillCollator",
    "TokenmillTrainerDataset",
    "TrainConfig",
    "TrainResult",
    "evaluate_checkpoint",
    "export_checkpoint",
    "hf_tokenizer",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint_model",
    "load_train_config",
    "plot_runs",
    "read_metrics",
    "resolve_checkpoint",
    "train",
]
