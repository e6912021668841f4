"""The reference trainer: plain PyTorch, one loop, short enough to read in one sitting.

What it shows about the data layer: batches arrive from a background thread (the loop rarely waits), every rank
reads its slice of one global batch, and a checkpoint holds the data position beside the weights, so a resumed
run sees exactly the batches an uninterrupted one would have (on any number of ranks).

The loss of a step is the mean over every trained token of the *global* batch: each micro-batch contributes its
summed token losses divided by the global count of trained tokens (all-reduced before the backward pass). So the
gradient does not depend on how the batch was split into ranks and micro-batches, and a 2-rank run matches a
1-rank run to float tolerance, SFT masks and padding included.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tokenmill.errors import ConfigError, StateError, TokenizerError
from tokenmill.labels import IGNORE_INDEX, next_token_targets
from tokenmill.train import checkpoint as ckpt
from tokenmill.train.config import RESUMABLE_CHANGES, TrainConfig
from tokenmill.train.data import EvalBatches, batch_digest, cache_paths, make_stream, source_names
from tokenmill.train.distributed import (
    World,
    all_gather_cat,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    init_world,
)
from tokenmill.train.metrics import MetricsLogger, truncate_metrics
from tokenmill.train.model import build_model, count_parameters
from tokenmill.train.optim import WarmupDecay, make_optimizer, make_scheduler

TOKENIZER_DIR = "tokenizer"
CONFIG_FILE = "train_config.json"


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    tokens: int
    loss: float | None
    val_loss: float | None = None
    checkpoint: Path | None = None
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ helpers


def tokenizer_meta(config: TrainConfig) -> dict[str, Any]:
    """The cache's tokenizer description; every cache of a mixture must share one tokenizer."""
    from tokenmill.cache import read_manifest

    paths = cache_paths(config)
    if not paths:
        raise ConfigError("no cache to take the tokenizer from: set 'data' (a cache) or pass --data CACHE")
    metas = [read_manifest(p, config.storage_options).tokenizer for p in paths]
    for p, m in zip(paths[1:], metas[1:]):
        if m.get("fingerprint") != metas[0].get("fingerprint"):
            raise TokenizerError(
                f"the caches of the mixture use different tokenizers: {paths[0]} ({metas[0].get('name')}) and "
                f"{p} ({m.get('name')}); prepare them with the same tokenizer"
            )
    return metas[0]


def copy_tokenizer(config: TrainConfig, run_dir: Path) -> None:
    """Keep the cache's tokenizer beside the run, so exporting never needs the cache again."""
    from tokenmill.cache import CacheReader

    dest = run_dir / TOKENIZER_DIR
    if dest.exists():
        return
    tmp = run_dir / f".{TOKENIZER_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    CacheReader(cache_paths(config)[0], config.storage_options).tokenizer.save(tmp)
    os.replace(tmp, dest)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32" or (config.precision == "auto" and device.type != "cuda"):
        return None
    if config.precision == "fp16":
        return torch.float16
    if config.precision == "auto" and not torch.cuda.is_bf16_supported():
        return None
    return torch.bfloat16


def lm_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the trained tokens; ``targets[t]`` is the target of input ``t``
    (:func:`tokenmill.labels.next_token_targets` of the batch: its ``shift_labels``, else its aligned ``labels``
    shifted), so the loader's windows keep the last input's target."""
    logits = logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def trained_tokens(targets: torch.Tensor) -> int:
    return int((targets != IGNORE_INDEX).sum())


def resume_point(resume: str | Path | bool | None, run_dir: Path, announce: bool = True) -> Path | None:
    """The checkpoint to resume from. ``--resume`` (the latest) on a run that was started but stopped before its
    first save starts again from step 0, saying so: a requeued job passes ``--resume`` on every launch, and that
    run has nothing to continue (its metrics are rewound to step 0). A folder that never held a run, or an explicit
    checkpoint path that is missing, is still an error (a typo must not start a new run silently)."""
    latest = resume is True or resume == "latest"
    if latest and (run_dir / CONFIG_FILE).is_file() and ckpt.latest_checkpoint(run_dir) is None:
        if announce:
            print(
                f"--resume: {run_dir} has no complete checkpoint yet (the run stopped before its first save); "
                "starting from step 0",
                file=sys.stderr,
                flush=True,
            )
        return None
    return ckpt.resolve_checkpoint(resume, run_dir)


def check_resume_config(saved: dict[str, Any], config: TrainConfig, world: World, source) -> None:
    """Refuse a resume that would silently train something else than the checkpoint's run."""
    current = config.to_dict()
    changed = sorted(
        k for k in current if k not in RESUMABLE_CHANGES and k in saved and saved[k] != current[k]
    )
    if changed:
        detail = "; ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
        raise StateError(
            f"the checkpoint was trained with other settings ({detail}); resume with the same config or start a "
            "new run folder"
        )


class _Window:
    """What happened since the last metrics record; the loss stays on the device until it is logged."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.steps = 0
        self.time = 0.0
        self.wait = 0.0
        self.tokens = 0
        self.sources: np.ndarray | None = None

    def add(self, loss: torch.Tensor, wait: float, tokens: int) -> None:
        self.loss += loss
        self.steps += 1
        self.wait += wait
        self.tokens += tokens

    def count_sources(self, sources: np.ndarray | None, n: int) -> None:
        """This rank's samples per mixture source (summed over ranks when logged)."""
        if sources is not None and n:
            counts = np.bincount(np.asarray(sources, dtype=np.int64), minlength=n)[:n]
            self.sources = counts if self.sources is None else self.sources + counts


# ------------------------------------------------------------------------------------------------ the run


class Run:
    """One training run: the model, its optimizer and data, and the loop. ``train()`` is the usual entry point."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: str | Path | bool | None = None,
        data: Any = None,
        world: World | None = None,
    ) -> None:
        self.config = config
        self.world = world or init_world(config.device)
        self.run_dir = Path(config.run_dir)
        self.checkpoint = resume_point(resume, self.run_dir, self.world.is_main)
        self.saved = ckpt.read_trainer_state(self.checkpoint) if self.checkpoint else None
        self.micro_batch, self.accum = config.micro_batches(self.world.world_size)
        self.stream = make_stream(
            config, data, self.world.rank, self.world.world_size, pin_memory=self.world.device.type == "cuda"
        )
        if self.saved is not None:
            check_resume_config(self.saved["config"], config, self.world, self.stream)
            if not self.stream.world_size_invariant and self.saved["world_size"] != self.world.world_size:
                raise StateError(
                    f"this data stream is sharded per rank: the checkpoint was written by "
                    f"{self.saved['world_size']} ranks and cannot resume on {self.world.world_size}"
                )
        self.meta = tokenizer_meta(config)
        self.device = self.world.device
        if config.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(config.threads)
        self.dtype = autocast_dtype(config, self.device)
        self._build_model()
        self.step = int(self.saved["step"]) if self.saved else 0
        self.tokens = int(self.saved.get("tokens", 0)) if self.saved else 0
        self.data_state = ckpt.read_data_state(self.checkpoint, self.world.rank) if self.checkpoint else None
        self._seed_rng()
        self.eval_batches = EvalBatches(config, self.world.rank, self.world.world_size)
        self.source_names = source_names(config) if data is None else []
        self.logger: MetricsLogger | None = None
        self.last_save = time.monotonic()
        self.saved_step = self.step

    # -- setup --------------------------------------------------------------------------------------------
    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(
            config.seed
        )  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = build_model(config.model, self.meta, config.seq_len, config.vocab_multiple)
        if self.checkpoint is not None:
            model.load_state_dict(ckpt.load_torch(self.checkpoint / "model.pt"))
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = make_scheduler(self.optimizer, config)
        if self.checkpoint is not None:
            self.optimizer.load_state_dict(ckpt.load_torch(self.checkpoint / "optimizer.pt", self.device))
            self.scheduler.load_state_dict(ckpt.load_torch(self.checkpoint / "scheduler.pt"))
            # a longer or shorter run keeps its place on the curve but decays to the new max_steps
            self.scheduler.lr_lambdas[0] = WarmupDecay(
                config.warmup_steps, config.max_steps, config.min_lr / config.lr, config.schedule
            )
        self.forward_model = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DDP(self.forward_model, device_ids=ids)
        if config.compile:  # after DDP, so its optimizer splits the graph at gradient buckets
            self.forward_model = torch.compile(self.forward_model)

    def _seed_rng(self) -> None:
        if self.checkpoint is not None:
            path = ckpt.rank_file(self.checkpoint, "rng", ".pt", self.world.rank)
            if path.is_file():
                ckpt.set_rng_state(ckpt.load_torch(path))
                return
        import random

        import numpy as np

        seed = self.config.seed + 1 + self.world.rank  # dropout differs between ranks, as it should
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    # -- one step -----------------------------------------------------------------------------------------
    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward_loss_sum(self, model, mb: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in mb.items() if k not in ("labels", "shift_labels")}
        with self._autocast():
            logits = model(**inputs, use_cache=False).logits
        return lm_loss_sum(logits, next_token_targets(mb))

    def train_step(self, fetched) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward/backward over the micro-batches of one global batch, then one optimizer step."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in fetched.batch.items()}
        local = torch.tensor(float(trained_tokens(next_token_targets(fetched.batch))), device=self.device)
        total = all_reduce_sum(self.world, local).clamp_min(1.0)
        scale = (
            self.world.world_size / total
        )  # DDP averages gradients over ranks; undo that, divide by tokens
        loss_sum = torch.zeros((), device=self.device)
        n = batch["input_ids"].size(0)
        for i in range(self.accum):
            mb = {k: v[i * self.micro_batch : (i + 1) * self.micro_batch] for k, v in batch.items()}
            last = i == self.accum - 1 or (i + 1) * self.micro_batch >= n
            sync = (
                contextlib.nullcontext()
                if last or not self.world.distributed
                else self.forward_model.no_sync()
            )
            with sync:
                loss = self._forward_loss_sum(self.forward_model, mb) * scale
                loss.backward()
            loss_sum += loss.detach()
            if last:
                break
        clip = self.config.grad_clip if self.config.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm

    # -- evaluation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Mean token loss and perplexity over the fixed validation batches (None when there are none)."""
        batches = self.eval_batches.batches()
        if not batches:
            return None
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for b in batches:
            b = {k: v.to(self.device) for k, v in b.items()}
            totals[0] += self._forward_loss_sum(self.model, b).double()
            totals[1] += trained_tokens(next_token_targets(b))
        self.model.train()
        all_reduce_sum(self.world, totals)
        loss = float(totals[0] / totals[1].clamp_min(1))
        out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_tokens": int(totals[1])}
        out.update(self._evaluate_sources(batches))
        return out

    @torch.no_grad()
    def _evaluate_sources(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """``val_loss/NAME`` per source of a validation mixture, so the effect of a schedule's phase shows."""
        names, sources = self.eval_batches.names, self.eval_batches.sources
        if not names or len(sources) != len(batches):
            return {}
        self.model.eval()
        totals = torch.zeros(2, len(names), dtype=torch.float64, device=self.device)
        for b, source in zip(batches, sources, strict=True):
            for k in np.unique(source).tolist():
                rows = torch.from_numpy(np.flatnonzero(source == k))
                part = {key: v[rows].to(self.device) for key, v in b.items()}
                totals[0, k] += self._forward_loss_sum(self.model, part).double()
                totals[1, k] += trained_tokens(next_token_targets(part))
        self.model.train()
        all_reduce_sum(self.world, totals)
        return {
            f"val_loss/{name}": float(totals[0, k] / totals[1, k])
            for k, name in enumerate(names)
            if totals[1, k] > 0
        }

    # -- checkpoints --------------------------------------------------------------------------------------
    def save(self, data_state: dict[str, Any] | None) -> Path:
        """Write a checkpoint of the current step (all ranks call this together)."""
        world = self.world
        if world.is_main:
            ckpt.begin(self.run_dir, self.step)
        barrier(world)
        tmp = ckpt.temp_dir(self.run_dir, self.step)
        ckpt.write_torch(tmp / f"rng-rank{world.rank}.pt", ckpt.rng_state())
        if data_state is not None:
            ckpt.write_json(tmp / f"data-rank{world.rank}.json", data_state)
        final = tmp.parent / ckpt.checkpoint_name(self.step)
        if world.is_main:
            ckpt.write_torch(tmp / "model.pt", self.model.state_dict())
            ckpt.write_torch(tmp / "optimizer.pt", self.optimizer.state_dict())
            ckpt.write_torch(tmp / "scheduler.pt", self.scheduler.state_dict())
            self.model.config.to_json_file(str(tmp / "config.json"))
        barrier(world)  # every rank's files are in place before the folder becomes a checkpoint
        if world.is_main:
            ckpt.write_json(
                tmp / ckpt.TRAINER_FILE,
                {
                    "step": self.step,
                    "tokens": self.tokens,
                    "world_size": world.world_size,
                    "config": self.config.to_dict(),
                    "tokenizer": self.meta,
                    "time": time.time(),
                },
            )
            final = ckpt.commit(tmp, self.config.keep_last)
        barrier(world)
        self.last_save = time.monotonic()
        self.saved_step = self.step
        return final

    def _should_save(self, max_steps: int) -> bool:
        c = self.config
        due = bool(c.save_every and self.step % c.save_every == 0)
        if c.save_every_minutes and not due:
            elapsed = (time.monotonic() - self.last_save) / 60 >= c.save_every_minutes
            # ranks must agree: one clock (rank 0's) decides
            flag = torch.tensor([1.0 if elapsed and self.world.is_main else 0.0], device=self.device)
            due = bool(all_reduce_max(self.world, flag).item())
        return due or (self.config.save_final and self.step >= max_steps)

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> TrainResult:
        config, world = self.config, self.world
        max_steps = config.max_steps if max_steps is None else max_steps
        if world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            copy_tokenizer(config, self.run_dir)
            ckpt.write_json(self.run_dir / CONFIG_FILE, config.to_dict())
            truncate_metrics(self.run_dir, self.step)
        barrier(world)
        self.logger = log = MetricsLogger(
            self.run_dir,
            enabled=world.is_main,
            tensorboard=config.tensorboard,
            progress=config.progress,
            total=max_steps,
        )
        log.message(
            f"tokenmill train: {count_parameters(self.model) / 1e6:.2f}M parameters on {self.device} x "
            f"{world.world_size}, global batch {config.global_batch_size} x {config.seq_len} tokens "
            f"({self.accum} micro-batch(es) of {self.micro_batch} per rank), "
            + (f"resuming from {self.checkpoint} at step {self.step}" if self.checkpoint else "from scratch")
        )
        log.start(self.step)
        result = TrainResult(self.run_dir, self.step, self.tokens, None)
        t_start = time.perf_counter()
        if self.step >= max_steps:
            log.message(f"nothing to do: step {self.step} >= max_steps {max_steps}")
            log.close()
            return result
        feed = self.stream.open(self.data_state)
        self.model.train()
        self._window = _Window(self.device)
        try:
            t0 = time.perf_counter()
            pending = self._fetch(feed)
            while pending is not None:
                fetched = pending
                loss_sum, grad_norm = self.train_step(fetched)
                self.step += 1
                # the next batch is taken while the device still works on this step (CUDA runs asynchronously)
                pending = self._fetch(feed) if self.step < max_steps else None
                n_tokens = fetched.batch["input_ids"].numel() * world.world_size
                self.tokens += n_tokens
                self.data_state = fetched.state  # the position after the last batch trained on
                self._window.add(loss_sum, fetched.wait, n_tokens)
                self._window.count_sources(fetched.sources, len(self.source_names))
                if self.step % config.log_every == 0 or self.step == max_steps:
                    self._log_step(result, fetched, grad_norm, t0)
                else:
                    self._window.time += time.perf_counter() - t0
                if config.eval_every and self.step % config.eval_every == 0:
                    self._log_eval(result)
                if self._should_save(max_steps):
                    result.checkpoint = self.save(self.data_state)
                t0 = time.perf_counter()  # evaluation and checkpoint time is not step time
        finally:
            feed.close()
        if config.eval_every and self.step % config.eval_every and self.step > result.step:
            self._log_eval(result)  # the final model is always evaluated when evaluation is on
        result.step, result.tokens = self.step, self.tokens
        result.loss = next((r["loss"] for r in reversed(result.history) if "loss" in r), None)
        result.seconds = time.perf_counter() - t_start
        if config.save_final and self.saved_step != self.step:
            result.checkpoint = self.save(self.data_state)
        if config.export_dir and world.is_main and result.checkpoint is not None:
            from tokenmill.train.export import export_checkpoint

            export_checkpoint(result.checkpoint, config.export_dir)
            log.message(f"exported to {config.export_dir}")
        log.close()
        return result

    def _fetch(self, feed):
        """The next batch, or None (with a message) when the data has ended."""
        try:
            return feed.next()
        except StopIteration:
            self.logger.message(f"the data ended after step {self.step}")
            return None

    def _log_step(self, result: TrainResult, fetched, grad_norm: torch.Tensor, t0: float) -> None:
        """One metrics record: the window's mean loss (one sync with the other ranks), speed and data wait."""
        world, w = self.world, self._window
        loss = all_reduce_sum(world, w.loss.clone()).item() / world.world_size / w.steps
        hashes = all_gather_cat(world, torch.from_numpy(fetched.sample_hashes()).to(self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        w.time += time.perf_counter() - t0
        record = {
            "step": self.step,
            "loss": loss,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "tokens": self.tokens,
            "tokens_per_s": w.tokens / max(w.time, 1e-9),
            "step_time": w.time / w.steps,
            "data_wait": w.wait / w.steps,
            "data_wait_frac": w.wait / max(w.time, 1e-9),
            "batch": batch_digest(hashes.cpu().numpy()),
        }
        if (
            w.sources is not None
        ):  # what the mixture read since the last record (inspect --plot --run draws it)
            counts = all_reduce_sum(world, torch.as_tensor(w.sources, device=self.device))
            record["source_samples"] = dict(zip(self.source_names, counts.cpu().tolist(), strict=True))
        self.logger.log(record)
        result.history.append(record)
        self.logger.progress(
            self.step,
            {
                "loss": f"{loss:.4f}",
                "tok/s": f"{record['tokens_per_s']:.3g}",
                "data": f"{100 * record['data_wait_frac']:.1f}%",
            },
        )
        self._window = _Window(self.device)

    def _log_eval(self, result: TrainResult) -> None:
        metrics = self.evaluate()
        if metrics is None:
            if self.eval_batches.reason and self.logger:
                self.logger.message(f"evaluation skipped: {self.eval_batches.reason}")
            return
        record = {"step": self.step, **metrics}
        result.val_loss = metrics["val_loss"]
        result.history.append(record)
        if self.logger:
            self.logger.log(record)
            per_source = ", ".join(
                f"{k.removeprefix('val_loss/')} {v:.4f}"
                for k, v in metrics.items()
                if k.startswith("val_loss/")
            )
            self.logger.message(
                f"step {self.step}: val_loss {metrics['val_loss']:.4f}"
                + (f" ({per_source})" if per_source else "")
                + f", perplexity {metrics['val_ppl']:.2f}"
            )


def train(
    config: TrainConfig,
    *,
    resume: str | Path | bool | None = None,
    data: Any = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train (or continue training) the model the config describes; see docs/training.md."""
    return Run(config, resume=resume, data=data).run(max_steps)


def evaluate_checkpoint(config: TrainConfig, checkpoint: str | Path | bool = True) -> dict[str, Any]:
    """Validation loss and perplexity of a checkpoint (``True``: the run's latest)."""
    run = Run(config, resume=checkpoint)
    metrics = run.evaluate()
    if metrics is None:
        raise ConfigError(f"cannot evaluate: {run.eval_batches.reason or 'no validation data'}")
    return {"step": run.step, "checkpoint": str(run.checkpoint), **metrics}
