"""Plain PyTorch: a tokenmill cache through ``torch.utils.data.DataLoader`` in a hand-written training loop.

    python examples/dataloader.py demo-out/cache --steps 20 --save-state runs/dl-state.json
    python examples/dataloader.py demo-out/cache --steps 20 --state runs/dl-state.json   # continues exactly

``TorchIterableDataset`` yields whole batches (this rank's part of each global batch, as tensors), so the
DataLoader takes ``batch_size=None``; with ``num_workers=k`` worker ``w`` reads global batches ``w, w+k, ...`` and
the DataLoader returns them round-robin: the stream is the one a single process reads. Lance is not fork-safe, so
``make_dataloader`` starts its workers with ``spawn`` (hence the ``__main__`` guard). With ``stateful=True`` it is
torchdata's ``StatefulDataLoader``: ``loader.state_dict()`` holds every worker's position (small JSON), and
``loader.load_state_dict(saved)`` resumes all of them at once (with the same number of workers).

Labels are Hugging Face's (aligned with ``input_ids``, -100 where nothing is trained, never across packed
documents), so the model computes the right loss itself from ``labels=``. To write the loss by hand, take
``tokenmill.labels.next_token_targets(batch)`` as the targets of the logits. The reference trainer
(``tokenmill train``) does all of this plus checkpoints, DDP and metrics; this file shows the bare minimum.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from tokenmill.cache import read_manifest
from tokenmill.loader import TokenDataset
from tokenmill.torch import TorchIterableDataset, make_dataloader


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cache")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--state", help="resume the data from this JSON state")
    parser.add_argument("--save-state", help="write the data position after the last step here")
    args = parser.parse_args()

    saved = json.loads(Path(args.state).read_text()) if args.state else {"step": 0, "loader": None}
    dataset = TorchIterableDataset(  # endless: the loop below decides how many steps it takes
        TokenDataset(args.cache, seq_len=args.seq_len, mode="packed", seed=0),
        global_batch_size=args.batch_size,  # rank and world size come from torch.distributed when it is running
    )
    loader = make_dataloader(dataset, num_workers=args.workers, stateful=True)
    if saved["loader"] is not None:
        loader.load_state_dict(saved["loader"])

    tok = read_manifest(args.cache).tokenizer  # the vocabulary comes from the cache's tokenizer
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok["vocab_size"], n_positions=args.seq_len, n_layer=2, n_head=4, n_embd=128
    )
    config.bos_token_id = config.eos_token_id = tok["eos_id"]
    model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    received = 0
    t0 = time.perf_counter()
    for batch in loader:
        loss = model(
            input_ids=batch["input_ids"].long(),
            position_ids=batch["position_ids"].long(),  # packed: positions restart at every document
            attention_mask=batch["attention_mask"].long(),
            labels=batch["labels"].long(),
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        received += 1
        if received % 5 == 0:
            print(
                f"step {saved['step'] + received}: loss {loss.item():.3f} ({time.perf_counter() - t0:.1f}s)"
            )
        if received == args.steps:
            break  # the loader's state is taken mid-stream: the next run starts with the next batch

    position = {"step": saved["step"] + received, "loader": loader.state_dict()}
    print(f"received {received} batches; the run is at global step {position['step']}")
    if args.save_state:
        Path(args.save_state).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_state).write_text(json.dumps(position, indent=1))
        print(f"data position saved to {args.save_state}; pass it as --state to continue with the next batch")


if __name__ == "__main__":
    main()
