"""Data parallel training on CPU: two real torchrun processes with the gloo backend, then the same run resumed on one.

The global batch sequence does not depend on the world size and the loss is normalised over the global batch's
trained tokens, so 2 ranks and 1 rank see the same batches and compute the same losses (to float tolerance), and a
checkpoint written by 2 ranks continues on 1 with exactly the samples that were next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import build_cache
from tokenmill.train import latest_checkpoint, read_metrics, train
from tokenmill.train.config import load_train_config

CONFIG = """\
seq_len: 32
global_batch_size: 8
micro_batch_size: 2
max_steps: 6
warmup_steps: 1
lr: 0.003
log_every: 1
save_every: 3
tensorboard: false
progress: false
model:
  type: gpt2
  n_layer: 2
  n_head: 2
  n_embd: 32
  resid_pdrop: 0.0
  embd_pdrop: 0.0
  attn_pdrop: 0.0
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path) -> Path:
    return build_cache(tmp_path_factory.mktemp("ddp") / "cache", jsonl_shards, tokenizer_path)


def torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "tokenmill.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_two_gloo_ranks_match_one_rank_and_resume_on_one(cache, tmp_path):
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(CONFIG)
    run = tmp_path / "run"
    proc = torchrun(
        2, "--config", str(config_path), "--data", str(cache), "--run-dir", str(run), "--max-steps", "3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x 2, global batch 8" in proc.stderr  # really two ranks
    checkpoint = latest_checkpoint(run)
    assert checkpoint.name == "step-00000003"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"rng-rank0.pt", "rng-rank1.pt", "data-rank0.json", "data-rank1.json"} <= names
    # the loader's position is global: both ranks saved the same state
    assert json.loads((checkpoint / "data-rank0.json").read_text()) == json.loads(
        (checkpoint / "data-rank1.json").read_text()
    )
    assert json.loads((checkpoint / "trainer.json").read_text())["world_size"] == 2

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = load_train_config(config_path, data=str(cache), run_dir=str(run))
        resumed = train(config, resume=True)  # the 2-rank run continues on this one process
        reference = train(load_train_config(config_path, data=str(cache), run_dir=str(tmp_path / "one")))
    finally:
        torch.set_num_threads(before)
    assert resumed.step == 6

    ref = {r["step"]: r for r in reference.history if "loss" in r}
    got = {r["step"]: r for r in read_metrics(run) if "loss" in r}
    assert sorted(got) == list(range(1, 7))
    for step in range(1, 7):
        assert got[step]["batch"] == ref[step]["batch"], f"step {step} read other samples"
        # same gradients up to the order of float sums (2 ranks x 2 micro-batches vs 4 micro-batches)
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], rel=2e-4), step


@pytest.mark.slow
def test_one_rank_checkpoint_continues_on_two_ranks_in_packed_mode(cache, tmp_path):
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(CONFIG + "mode: packed\n")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_train_config(config_path, data=str(cache), run_dir=str(tmp_path / "run")), max_steps=3)
        reference = train(load_train_config(config_path, data=str(cache), run_dir=str(tmp_path / "one")))
    finally:
        torch.set_num_threads(before)
    proc = torchrun(
        2, "--config", str(config_path), "--data", str(cache), "--run-dir", str(tmp_path / "run"), "--resume"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = {r["step"]: r for r in reference.history if "loss" in r}
    got = {r["step"]: r for r in read_metrics(tmp_path / "run") if "loss" in r}
    assert sorted(got) == list(range(1, 7))
    for step in range(1, 7):
        assert got[step]["batch"] == ref[step]["batch"]
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], rel=2e-4)
