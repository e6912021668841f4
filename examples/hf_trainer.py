"""Train with the Hugging Face Trainer on a tokenmill cache, with exact, instant data resume.

    python examples/hf_trainer.py demo-out/cache --output runs/hf --max-steps 40
    python examples/hf_trainer.py demo-out/cache --output runs/hf --max-steps 80 --resume

The three pieces come from ``tokenmill.train.HFTrainerData``: an IterableDataset over the loader, a collator that
builds labels the model's loss understands, and a callback that writes the data position into every
``checkpoint-N`` folder and restores it on ``resume_from_checkpoint`` (so the Trainer never replays batches).
Needs ``accelerate`` (the Trainer's own requirement). Nothing is downloaded: the model is built from a config.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, GPT2Config, Trainer, TrainingArguments

import tokenmill.loader as tl
from tokenmill.cache import read_manifest
from tokenmill.train import HFTrainerData


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cache")
    parser.add_argument("--output", default="runs/hf")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--mode", default="packed", choices=["windows", "packed", "padded"])
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint-N in --output"
    )
    args = parser.parse_args()

    tok = read_manifest(args.cache).tokenizer  # the model's vocabulary comes from the cache's tokenizer
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok["vocab_size"],
        n_positions=args.seq_len,
        n_layer=2,
        n_head=4,
        n_embd=128,
        bos_token_id=tok["eos_id"],
        eos_token_id=tok["eos_id"],
    )
    model = AutoModelForCausalLM.from_config(config)

    data = HFTrainerData(tl.TokenDataset(args.cache, seq_len=args.seq_len, mode=args.mode, seed=0))
    training_args = TrainingArguments(
        output_dir=args.output,
        max_steps=args.max_steps,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=3e-3,
        warmup_steps=10,
        save_steps=20,
        save_total_limit=2,
        logging_steps=10,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        ignore_data_skip=True,  # the callback restores the data position; the Trainer must not replay
        dataloader_num_workers=0,  # the dataset's position lives in this process
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data.dataset,
        data_collator=data.collator,
        callbacks=[data.callback],
    )
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    losses = [(h["step"], round(h["loss"], 3)) for h in trainer.state.log_history if "loss" in h]
    print("loss by step:", losses)


if __name__ == "__main__":
    main()
