"""The reference trainer on real caches and real (tiny) transformers models: resume equality in every mode,
atomic checkpoints under kill -9, export and reload, the command line, SFT masks, pipelines and mixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_documents, write_jsonl
from tokenmill.errors import ConfigError, StateError, TokenizerError
from tokenmill.prepare import PrepareConfig, prepare
from tokenmill.train import (
    TrainConfig,
    export_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint_model,
    load_train_config,
    read_metrics,
    train,
)
from tokenmill.train import checkpoint as ckpt
from tokenmill.train.config import parse_overrides
from tokenmill.train.trainer import lm_loss_sum

TINY_GPT2 = {"type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32}


def build_cache(out: Path, shards, tokenizer, **kw) -> Path:
    kw.setdefault("validation", 0.1)
    config = PrepareConfig(
        sources=[str(s) for s in shards], output=str(out), tokenizer=str(tokenizer), workers=0, seed=0, **kw
    )
    prepare(config, progress=False)
    return out


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is 10-50x faster than two fighting for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path) -> Path:
    return build_cache(tmp_path_factory.mktemp("train") / "cache", jsonl_shards, tokenizer_path)


def tiny(cache: Path, run_dir: Path, **overrides) -> TrainConfig:
    values = {
        "data": str(cache),
        "seq_len": 32,
        "global_batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 6,
        "model": dict(TINY_GPT2),
        "lr": 3e-3,
        "warmup_steps": 2,
        "log_every": 1,
        "save_every": 3,
        "run_dir": str(run_dir),
        "progress": False,
        "tensorboard": False,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def steps_of(history, key="loss"):
    return {r["step"]: r for r in history if r.get(key) is not None}


# ------------------------------------------------------------------------------------------------ config


def test_config_from_yaml_with_overrides_and_errors(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            data: some/cache
            seq_len: 64
            model:
              type: llama
              hidden_size: 32
            lr: 0.001
            """
        )
    )
    config = load_train_config(
        path, ["model.hidden_size=64", "lr=2e-3", "betas=[0.9, 0.99]"], run_dir="runs/x"
    )
    assert config.model == {"type": "llama", "hidden_size": 64}
    assert config.lr == 2e-3 and config.betas == [0.9, 0.99] and config.run_dir == "runs/x"
    assert parse_overrides(["a.b.c=null", "d=text"]) == {"a": {"b": {"c": None}}, "d": "text"}

    path.write_text("data: c\nseq_len: 64\nwarmup_step: 10\n")
    with pytest.raises(ConfigError, match=r"line 3, key 'warmup_step': unknown option.*'warmup_steps'"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="mode must be one of"):
        TrainConfig.from_dict({"mode": "sliding"})
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE"):
        load_train_config(None, ["lr"])
    path.write_text("model: folder/of/a/model\n")
    with pytest.raises(ConfigError, match="model is 'folder/of/a/model', not a mapping"):
        load_train_config(path, ["model.n_layer=2"])
    with pytest.raises(ConfigError, match="micro_batch_size 3 does not divide"):
        TrainConfig.from_dict({"global_batch_size": 8, "micro_batch_size": 3}).micro_batches(1)
    with pytest.raises(ConfigError, match="not divisible by the world size 3"):
        TrainConfig.from_dict({"global_batch_size": 8}).micro_batches(3)
    assert TrainConfig.from_dict({"global_batch_size": 8, "micro_batch_size": 2}).micro_batches(2) == (2, 2)


def test_set_merges_into_the_default_model_and_lr_strings_are_numbers(tmp_path):
    """``--set model.n_layer=1`` with no model in the file changes one field of the default model (issue 14)."""
    config = load_train_config(None, ["model.n_layer=1", "lr=3e-4", "min_lr=1e-5"])
    assert config.model == {"type": "gpt2", "n_layer": 1}
    assert config.lr == 3e-4 and isinstance(config.min_lr, float)
    path = tmp_path / "t.yaml"
    path.write_text("lr: 1e-3\nschedule: cosin\n")
    with pytest.raises(ConfigError, match=r"t.yaml, line 2, key 'schedule': schedule must be one of cosine"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="seq_len must be >= 1"):
        TrainConfig(seq_len=0)


# ------------------------------------------------------------------------------------------------ resume


_REFERENCE: dict[str, list] = {}


def reference(cache: Path, tmp_root: Path, mode: str):
    """An uninterrupted 6-step run per mode (computed once and reused by every hypothesis example)."""
    if mode not in _REFERENCE:
        run = tmp_root / f"ref-{mode}"
        _REFERENCE[mode] = train(tiny(cache, run, mode=mode)).history
    return _REFERENCE[mode]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(["windows", "packed", "padded"]), stop=st.integers(1, 5))
def test_resume_equals_uninterrupted_run(cache, tmp_path_factory, mode, stop):
    """Stop after `stop` steps, resume from the checkpoint: same batches, same losses, same final weights."""
    root = tmp_path_factory.mktemp("resume")
    ref = reference(cache, tmp_path_factory.getbasetemp(), mode)
    run = root / "run"
    first = train(tiny(cache, run, mode=mode), max_steps=stop)
    assert first.step == stop and latest_checkpoint(run).name == ckpt.checkpoint_name(stop)
    second = train(tiny(cache, run, mode=mode), resume=True)
    assert second.step == 6
    got = steps_of(first.history + second.history)
    want = steps_of(ref)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    for step in want:
        assert got[step]["batch"] == want[step]["batch"], f"step {step}: another batch after resuming"
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], rel=1e-5, abs=1e-6)
    # and the file a user reads agrees: one continuous run, no step twice
    logged = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert logged == list(range(1, 7))


def test_resume_from_an_older_checkpoint_rewinds_metrics_and_refuses_other_settings(cache, tmp_path):
    run = tmp_path / "run"
    train(tiny(cache, run, save_every=2, keep_last=2, max_steps=6))
    names = [p.name for p in list_checkpoints(run)]
    assert names == [ckpt.checkpoint_name(4), ckpt.checkpoint_name(6)]  # keep_last=2
    again = train(
        tiny(cache, run, save_every=2, keep_last=2, max_steps=6), resume=run / "checkpoints" / names[0]
    )
    assert again.step == 6
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(StateError, match=r"seq_len: 32 -> 64"):
        train(tiny(cache, run, seq_len=64), resume=True)
    with pytest.raises(StateError, match="no complete checkpoint"):
        train(tiny(cache, tmp_path / "empty"), resume=True)


def test_loss_falls_and_metrics_are_logged(cache, tmp_path):
    run = tmp_path / "run"
    result = train(tiny(cache, run, max_steps=30, warmup_steps=3, log_every=5, save_every=0, eval_every=15))
    records = read_metrics(run)
    losses = [r["loss"] for r in records if "loss" in r]
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20, 25, 30]
    assert losses[-1] < losses[0] - 0.5, losses
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [15, 30]
    assert evals[1]["val_loss"] < evals[0]["val_loss"]
    assert evals[1]["val_ppl"] == pytest.approx(np.exp(evals[1]["val_loss"]))
    for r in records:
        if "loss" in r:
            assert (
                r["tokens_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1 and r["tokens"] == r["step"] * 4 * 32
            )
    assert result.checkpoint == latest_checkpoint(run)  # the end of a run is always saved
    assert json.loads((run / "train_config.json").read_text())["seq_len"] == 32


def test_checkpoints_by_time_and_rng_round_trip(cache, tmp_path):
    run = tmp_path / "run"
    train(tiny(cache, run, save_every=0, save_every_minutes=1e-9, keep_last=10, max_steps=3))
    assert [p.name for p in list_checkpoints(run)] == [ckpt.checkpoint_name(s) for s in (1, 2, 3)]
    state = ckpt.load_torch(list_checkpoints(run)[0] / "rng-rank0.pt")
    ckpt.set_rng_state(state)
    a = (torch.rand(3), np.random.rand(3))
    ckpt.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


KILLER = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from tokenmill.train import TrainConfig, train
saves = {"n": 0}
real_save = torch.save
def dying_save(obj, path, *a, **k):
    real_save(obj, path, *a, **k)
    if ".tmp-step-00000004" in str(path) and str(path).endswith("model.pt"):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of writing checkpoint 4
torch.save = dying_save
train(TrainConfig.from_dict(__import__("json").loads(sys.argv[1])))
"""


def test_kill_during_a_save_leaves_the_previous_checkpoint(cache, tmp_path):
    run = tmp_path / "run"
    config = tiny(cache, run, save_every=2, max_steps=6)
    values = {k: v for k, v in config.to_dict().items() if k != "storage_options"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(values)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    root = run / "checkpoints"
    assert (root / ".tmp-step-00000004").is_dir()  # the half-written one is there, and ignored
    assert [p.name for p in list_checkpoints(run)] == [ckpt.checkpoint_name(2)]
    resumed = train(tiny(cache, run, save_every=2, max_steps=6), resume=True)
    assert resumed.step == 6 and not (root / ".tmp-step-00000004").exists()
    ref = steps_of(train(tiny(cache, tmp_path / "ref", save_every=2, max_steps=6)).history)
    got = steps_of(resumed.history)
    for step in (3, 4, 5, 6):
        assert got[step]["batch"] == ref[step]["batch"]
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------------------------ export


def test_export_loads_with_from_pretrained_and_generates(cache, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenmill.tokenizer import load_tokenizer

    run = tmp_path / "run"
    result = train(tiny(cache, run, max_steps=4))
    out = export_checkpoint(result.checkpoint, tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ours = load_tokenizer(str(cache / "tokenizer"))
    text = "the people of the world said: café 🙂"
    assert tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert tok.eos_token_id == ours.eos_id == model.config.eos_token_id
    ids = torch.tensor([ours.encode(text)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, load_checkpoint_model(result.checkpoint)(ids).logits)
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids.shape[1]


def test_pretrained_folder_is_checked_against_the_cache(cache, tmp_path, tokenizer_path):
    from transformers import AutoModelForCausalLM, GPT2Config

    run = tmp_path / "run"
    exported = export_checkpoint(train(tiny(cache, run, max_steps=2)).checkpoint, tmp_path / "hf")
    # continued training from the exported folder works (same tokenizer, loaded locally)
    cont = train(tiny(cache, tmp_path / "cont", model=str(exported), max_steps=2))
    assert cont.step == 2
    small = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=100, n_layer=1, n_head=2, n_embd=16))
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(TokenizerError, match="embedding rows"):
        train(tiny(cache, tmp_path / "r2", model=str(tmp_path / "small")))
    # a folder that ships another tokenizer is refused even though its vocabulary is large enough
    other = tmp_path / "other"
    AutoModelForCausalLM.from_config(
        GPT2Config(vocab_size=4096, n_layer=1, n_head=2, n_embd=16)
    ).save_pretrained(other)
    from tokenizers import Tokenizer, models, pre_tokenizers

    t = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(other / "tokenizer.json"))
    with pytest.raises(TokenizerError, match="differs from the cache's tokenizer"):
        train(tiny(cache, tmp_path / "r3", model=str(other)))
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        train(tiny(cache, tmp_path / "r4", model="no-such-org/no-such-model"))


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_train_resume_evaluate_export_plot(cache, tmp_path, capsys):
    from tokenmill.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "seq_len: 32\nglobal_batch_size: 4\nmax_steps: 6\nwarmup_steps: 1\nlog_every: 1\nsave_every: 2\n"
        "eval_every: 3\ntensorboard: false\nmodel:\n  type: llama\n  hidden_size: 32\n  intermediate_size: 64\n"
        "  num_hidden_layers: 2\n  num_attention_heads: 2\n  num_key_value_heads: 1\n"
    )
    run = tmp_path / "run"
    base = ["train", "--config", str(config), "--data", str(cache), "--run-dir", str(run), "--no-progress"]
    assert main([*base, "--max-steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert main([*base, "--resume"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 6 and out["val_loss"] is not None
    assert main([*base, "--evaluate"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["step"] == 6 and ev["val_loss"] == pytest.approx(out["val_loss"], rel=1e-6)
    assert main([*base, "--export", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (
        tmp_path / "hf" / "tokenizer.json"
    ).is_file()
    assert main(["plot", str(run), "-o", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*base, "--set", "nonsense=1"]) == 1
    assert "unknown option 'nonsense'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ data


def test_sft_masks_are_respected_by_the_loss(tmp_path, tokenizer_path):
    """Prompt tokens are never trained: the trainer's loss equals the model's loss over completions only."""
    from transformers import AutoModelForCausalLM, GPT2Config

    from tokenmill.labels import next_token_targets
    from tokenmill.loader import BatchIterator, TokenDataset

    docs = make_documents(120, seed=3, max_words=60)
    records = [{"prompt": d[: len(d) // 2], "completion": d[len(d) // 2 :]} for d in docs]
    shard = write_jsonl(tmp_path / "sft.jsonl", records)
    sft = build_cache(tmp_path / "sft", [shard], tokenizer_path)
    batch = next(BatchIterator(TokenDataset(str(sft), seq_len=32, mode="padded"), 8, rank=0, world_size=1))
    labels = torch.from_numpy(batch["labels"].astype(np.int64))
    assert 0 < int((labels == -100).sum()) < labels.numel()  # some prompt tokens masked, some trained
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=1024, n_layer=1, n_head=2, n_embd=16, bos_token_id=0, eos_token_id=0)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = torch.from_numpy(batch["input_ids"].astype(np.int64))
    mask = torch.from_numpy(batch["attention_mask"].astype(np.int64))
    targets = next_token_targets({"labels": labels})
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        ours = lm_loss_sum(model(input_ids=ids, attention_mask=mask).logits, targets)
    assert ours.item() / int((targets != -100).sum()) == pytest.approx(out.loss.item(), rel=1e-5)
    result = train(tiny(sft, tmp_path / "run", mode="padded", max_steps=3))
    assert result.step == 3 and np.isfinite(result.loss)


def test_mixture_of_caches_trains_and_resumes(cache, tmp_path):
    data = [{"cache": str(cache), "weight": 3}, {"cache": str(cache), "weight": 1, "split": "validation"}]
    ref = steps_of(train(tiny(cache, tmp_path / "ref", data=data, max_steps=4, save_every=2)).history)
    train(tiny(cache, tmp_path / "run", data=data, max_steps=4, save_every=2), max_steps=2)
    got = steps_of(
        train(tiny(cache, tmp_path / "run", data=data, max_steps=4, save_every=2), resume=True).history
    )
    assert [got[s]["batch"] for s in (3, 4)] == [ref[s]["batch"] for s in (3, 4)]


def test_streaming_pipeline_as_the_data_source(cache, tmp_path):
    from tokenmill.pipeline import Pipeline

    pipe = (
        Pipeline.from_cache(str(cache), repeat=True, shuffle=True, seed=0)
        .concat_chunk(32)
        .batch(4, drop_last=True)
    )
    ref = steps_of(train(tiny(cache, tmp_path / "ref"), data=pipe).history)
    train(tiny(cache, tmp_path / "run"), data=pipe, max_steps=2)
    got = steps_of(train(tiny(cache, tmp_path / "run"), data=pipe, resume=True).history)
    for step in range(3, 7):
        assert got[step]["batch"] == ref[step]["batch"]
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], rel=1e-5, abs=1e-6)
    assert "chain" in json.loads((latest_checkpoint(tmp_path / "run") / "data-rank0.json").read_text())


def test_data_state_in_a_checkpoint_is_plain_json(cache, tmp_path):
    result = train(tiny(cache, tmp_path / "run", max_steps=3))
    files = sorted(p.name for p in result.checkpoint.iterdir())
    assert files == sorted(
        [
            "config.json",
            "data-rank0.json",
            "model.pt",
            "optimizer.pt",
            "rng-rank0.pt",
            "scheduler.pt",
            "trainer.json",
        ]
    )
    state = json.loads((result.checkpoint / "data-rank0.json").read_text())
    assert state["step"] == 3 and state["samples_consumed"] == 12
    trainer = json.loads((result.checkpoint / "trainer.json").read_text())
    assert trainer["step"] == 3 and trainer["world_size"] == 1 and trainer["config"]["seq_len"] == 32


def test_resume_before_the_first_checkpoint_starts_from_step_zero(cache, tmp_path, capsys):
    """A requeued job passes --resume on every launch: a run stopped before its first save starts again from
    step 0 (and says so) instead of failing; its result equals an uninterrupted run."""
    run = tmp_path / "run"
    train(tiny(cache, run, save_every=0), max_steps=2)
    shutil.rmtree(
        run / "checkpoints"
    )  # as if killed before its first save: config and metrics, no checkpoint
    assert latest_checkpoint(run) is None
    again = train(tiny(cache, run, save_every=0), resume=True)
    assert "no complete checkpoint yet" in capsys.readouterr().err
    clean = train(tiny(cache, tmp_path / "clean", save_every=0))
    assert again.step == clean.step == 6
    got, want = steps_of(again.history), steps_of(clean.history)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    for step in want:
        assert got[step]["batch"] == want[step]["batch"]
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], rel=1e-5, abs=1e-6)
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2, 3, 4, 5, 6]
