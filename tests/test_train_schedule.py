"""The trainer on a scheduled recipe: it reads what the schedule says (logged per source), resumes onto the same
batches, and reports the validation loss of each source."""

from __future__ import annotations

import pytest
import torch

from conftest import make_documents, write_jsonl
from tokenmill.recipe import load_recipe, prepare_recipe
from tokenmill.train import TrainConfig, read_metrics, train

RECIPE = """\
tokenizer: {tokenizer}
seq_len: 32
sources:
  web: {{urls: web.jsonl, validation: 0.2}}
  code: {{urls: code.jsonl, validation: 0.2}}
schedule:
  - {{at: 0, weights: {{web: 1.0}}, segment: constant}}
  - {{at: 4, weights: {{code: 1.0}}}}
"""


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tokenizer_path):
    root = tmp_path_factory.mktemp("train-schedule")
    for i, name in enumerate(("web", "code")):
        write_jsonl(
            root / f"{name}.jsonl", [{"text": t} for t in make_documents(60, seed=70 + i, max_words=90)]
        )
    path = root / "recipe.yaml"
    path.write_text(RECIPE.format(tokenizer=tokenizer_path))
    prepare_recipe(load_recipe(path), str(root / "out"), workers=0, progress=False)
    return root / "out"


def config(data, run_dir, **overrides) -> TrainConfig:
    values = {
        "data": str(data),
        "seq_len": 32,
        "global_batch_size": 4,
        "max_steps": 8,
        "model": {"type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32},
        "warmup_steps": 1,
        "log_every": 1,
        "save_every": 3,
        "eval_every": 8,
        "eval_batches": 2,
        "run_dir": str(run_dir),
        "progress": False,
        "tensorboard": False,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_training_follows_the_schedule_resumes_and_evaluates_per_source(recipe, tmp_path):
    whole = train(config(recipe, tmp_path / "whole"))
    logged = [r for r in read_metrics(tmp_path / "whole") if "loss" in r]
    assert [r["source_samples"] for r in logged[:4]] == [{"web": 4, "code": 0}] * 4
    assert [r["source_samples"] for r in logged[4:]] == [{"web": 0, "code": 4}] * 4
    evaluated = [r for r in whole.history if "val_loss" in r][-1]
    assert {"val_loss/web", "val_loss/code"} <= set(evaluated)
    low, high = sorted([evaluated["val_loss/web"], evaluated["val_loss/code"]])
    assert low <= evaluated["val_loss"] <= high
    # stop at step 3 and resume: the same batches
    train(config(recipe, tmp_path / "run"), max_steps=3)
    resumed = train(config(recipe, tmp_path / "run"), resume=True)
    want = {r["step"]: r["batch"] for r in whole.history if "batch" in r}
    got = {r["step"]: r["batch"] for r in resumed.history if "batch" in r}
    assert got == {s: want[s] for s in range(4, 9)}
