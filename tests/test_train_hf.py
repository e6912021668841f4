"""The Hugging Face Trainer adapter with a real Trainer and a real tiny model: the data position is saved into the
Trainer's checkpoints and restored on resume_from_checkpoint, so the resumed run trains on exactly the next batches."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from test_train import build_cache

pytest.importorskip("accelerate", reason="the Hugging Face Trainer needs accelerate")

from transformers import AutoModelForCausalLM, GPT2Config, Trainer, TrainingArguments  # noqa: E402

from tokenmill.errors import ConfigError, StateError  # noqa: E402
from tokenmill.loader import TokenDataset  # noqa: E402
from tokenmill.train.hf import DATA_STATE_FILE, HFTrainerData  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path) -> Path:
    return build_cache(tmp_path_factory.mktemp("hf") / "cache", jsonl_shards, tokenizer_path)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordingTrainer(Trainer):
    """A Trainer that notes a hash of every batch it trains on (what the model actually received)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, str]] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        digest = hashlib.sha1(inputs["input_ids"].numpy().tobytes() + inputs["labels"].numpy().tobytes())
        self.seen.append((self.state.global_step, digest.hexdigest()))
        return super().training_step(model, inputs, num_items_in_batch)


def run_trainer(cache: Path, out: Path, mode: str, resume: str | None = None, **arg_overrides):
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=1024,
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=32,
        resid_pdrop=0.0,  # the Trainer re-seeds dropout differently on resume; the data is what is under test
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config)
    data = HFTrainerData(TokenDataset(str(cache), seq_len=32, mode=mode, seed=1))
    values = dict(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        save_steps=3,
        save_total_limit=5,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        ignore_data_skip=True,
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    values.update(arg_overrides)
    trainer = RecordingTrainer(
        model=model,
        args=TrainingArguments(**values),
        train_dataset=data.dataset,
        data_collator=data.collator,
        callbacks=[data.callback],
    )
    trainer.train(resume_from_checkpoint=resume)
    losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    return trainer.seen, losses


@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_resume_from_checkpoint_continues_with_the_next_batches(cache, tmp_path, mode):
    seen, losses = run_trainer(cache, tmp_path / "a", mode)
    assert len(seen) == 12 and len(set(d for _, d in seen)) == 12  # 6 steps x 2 micro-batches, all different
    saved = json.loads((tmp_path / "a" / "checkpoint-3" / DATA_STATE_FILE).read_text())
    assert saved["step"] == 3 and saved["samples_per_step"] == 8 and saved["data"]["samples_consumed"] == 24

    # a second run resumes from checkpoint-3 (checkpoint-6 gone, as after a crash)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoint-6")
    seen_b, losses_b = run_trainer(cache, tmp_path / "b", mode, resume=str(tmp_path / "b" / "checkpoint-3"))
    assert seen_b == seen[6:]
    for step in (4, 5, 6):
        assert losses_b[step] == pytest.approx(losses[step], rel=1e-5)


def test_loss_matches_the_loader_labels(cache, tmp_path):
    """The collator passes the loader's labels and shift_labels on as they are, so the model's loss is the mean
    over the loader's own targets, the last input's included."""
    from tokenmill.loader import BatchIterator

    data = HFTrainerData(TokenDataset(str(cache), seq_len=32, seed=1))
    data.dataset.restart(None, 4)
    samples = [s for _, s in zip(range(4), iter(data.dataset))]
    batch = data.collator(samples)
    direct = next(BatchIterator(TokenDataset(str(cache), seq_len=32, seed=1), 4, rank=0, world_size=1))
    assert torch.equal(batch["labels"], torch.from_numpy(direct["labels"].astype("int64")))
    assert torch.equal(batch["shift_labels"], torch.from_numpy(direct["shift_labels"].astype("int64")))
    assert torch.equal(batch["labels"][:, 1:], batch["shift_labels"][:, :-1])
    model = AutoModelForCausalLM.from_config(
        GPT2Config(vocab_size=1024, n_layer=1, n_head=2, n_embd=16)
    ).eval()
    with torch.no_grad():
        out = model(**batch)
        want = torch.nn.functional.cross_entropy(
            out.logits.reshape(-1, 1024), batch["shift_labels"].reshape(-1)
        )
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_resume_refuses_replay_and_missing_state(cache, tmp_path):
    run_trainer(cache, tmp_path / "a", "windows", max_steps=3)
    with pytest.raises(ConfigError, match="ignore_data_skip=True"):
        run_trainer(
            cache,
            tmp_path / "a",
            "windows",
            resume=str(tmp_path / "a" / "checkpoint-3"),
            ignore_data_skip=False,
        )
    (tmp_path / "a" / "checkpoint-3" / DATA_STATE_FILE).unlink()
    with pytest.raises(StateError, match="does not exist"):
        run_trainer(cache, tmp_path / "a", "windows", resume=str(tmp_path / "a" / "checkpoint-3"))


def test_the_dataset_position_of_a_pipeline_source(cache):
    """A pipeline of samples goes through the same code path: the state after k chunks resumes at sample 4k."""
    from tokenmill.pipeline import Pipeline
    from tokenmill.train.hf import TokenmillTrainerDataset

    pipe = Pipeline.from_cache(str(cache)).concat_chunk(32)
    full = [s["input_ids"].tolist() for s in TokenmillTrainerDataset(pipe, chunk=4)]
    data = TokenmillTrainerDataset(pipe, chunk=4)
    data.restart(None)
    head = [s["input_ids"].tolist() for _, s in zip(range(12), data)]
    assert head == full[:12]
    state = data.state_at(8)
    data.restart(state)
    assert [s["input_ids"].tolist() for s in data] == full[8:]
