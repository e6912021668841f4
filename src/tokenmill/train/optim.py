"""AdamW with the usual decay / no-decay split, and a warmup + decay learning-rate schedule.

The schedule is a small callable object rather than a lambda so that ``LambdaLR.state_dict()`` records its
parameters: a checkpoint then says which schedule it was on, and a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class WarmupDecay:
    """Multiplier of the peak learning rate at ``step``: linear warmup, then cosine / linear decay to ``floor``."""

    warmup_steps: int
    total_steps: int
    floor: float  # min_lr / lr
    kind: str = "cosine"

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant" or self.total_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.floor + (1.0 - self.floor) * shape


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.AdamW:
    """AdamW where matrices decay and biases, norms and embeddings' 1-d tensors do not (nanoGPT's split)."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = {}
    if any(p.is_cuda for p in decay):
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, config) -> torch.optim.lr_scheduler.LambdaLR:
    shape = WarmupDecay(config.warmup_steps, config.max_steps, config.min_lr / config.lr, config.schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
