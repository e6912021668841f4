"""How much of a training step goes to the data layer, for a GPT-2-small-shaped model (124M parameters).

Two figures per step, both against the step time of the reference trainer (``tokenmill train``) on the same
device:

  data layer, inline   what one global batch costs the loader if the loop read it itself: the shuffled
                       ``BatchIterator`` over the cache, int64 conversion, tensors (median over ``--data-batches``)
  data wait            what the trainer actually waits per step with its background prefetch
                       (``tokenmill.torch.PrefetchIterator``): the time ``next()`` blocks, measured by the
                       trainer itself and logged as ``data_wait`` in ``metrics.jsonl``

The model is GPT-2 small: 12 layers, 12 heads, 768 wide, 1024 positions, its vocabulary padded to 50304 as in
nanoGPT (the cache's ids are a subset), 124M parameters. On a GPU the step runs under bf16 autocast. The step
figures are medians over the steps after the first (which also compiles kernels and opens the data).

    .venv/bin/python benchmarks/bench_data_overhead.py --cache demo-out/cache --device cpu --batch-size 2 --steps 4
    python benchmarks/bench_data_overhead.py --cache CACHE --device cuda --batch-size 16 --steps 30 [--compile]

Without ``--cache`` it builds one from the Python standard library (examples/make_corpus.py, a 32k BPE) under
``--out``. The goal on a GPU is a data wait under 1% of the step.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GPT2_SMALL = {
    "type": "gpt2",
    "n_layer": 12,
    "n_head": 12,
    "n_embd": 768,
    "n_positions": 1024,
    "vocab_size": 50304,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {torch.get_num_threads()} threads"
    except OSError:
        pass
    return platform.machine()


def build_cache(out: Path) -> Path:
    py = sys.executable
    corpus, tok, cache = out / "corpus", out / "tok32k" / "tokenizer.json", out / "cache"
    if not corpus.exists():
        subprocess.run([py, str(ROOT / "examples/make_corpus.py"), str(corpus), "--shards", "4"], check=True)
    if not tok.exists():
        subprocess.run(
            [py, "-m", "tokenmill.cli", "tokenizer", "train", f"{corpus}/*.jsonl", "--vocab-size", "32000",
             "--output", str(tok)],
            check=True,
        )  # fmt: skip
    subprocess.run(
        [py, "-m", "tokenmill.cli", "prepare", f"{corpus}/*.jsonl", "--tokenizer", str(tok), "--output", str(cache),
         "--validation", "0.01", "--no-progress"],
        check=True,
    )  # fmt: skip
    return cache


def data_layer_seconds(cache: str, seq_len: int, batch: int, mode: str, n: int) -> tuple[float, float]:
    """(median seconds per global batch read inline, seconds to open the dataset)."""
    from tokenmill.loader import BatchIterator, TokenDataset
    from tokenmill.train.data import _tensors, model_columns

    t0 = time.perf_counter()
    it = BatchIterator(TokenDataset(cache, seq_len=seq_len, mode=mode, seed=0), batch, rank=0, world_size=1)
    opened = time.perf_counter() - t0
    times = []
    for _ in range(n):
        t = time.perf_counter()
        tensors = _tensors(model_columns(next(it)))
        times.append(time.perf_counter() - t)
        assert tensors["input_ids"].shape == (batch, seq_len)
    return statistics.median(times), opened


def train_steps(args, run_dir: str) -> tuple[list[dict], int]:
    """The trainer's own per-step records (step time, data wait), and the model's parameter count."""
    from tokenmill.train import Run, TrainConfig
    from tokenmill.train.model import count_parameters

    config = TrainConfig.from_dict(
        {
            "data": args.cache,
            "mode": args.mode,
            "seq_len": args.seq_len,
            "global_batch_size": args.batch_size,
            "micro_batch_size": args.micro_batch_size or args.batch_size,
            "max_steps": args.steps,
            "warmup_steps": 0,
            "lr": 3e-4,
            "min_lr": 3e-4,
            "model": dict(GPT2_SMALL, n_positions=max(1024, args.seq_len)),
            "device": args.device,
            "compile": args.compile,
            "prefetch": 2,
            "log_every": 1,
            "save_every": 0,
            "save_final": False,
            "eval_every": 0,
            "run_dir": run_dir,
            "progress": False,
            "tensorboard": False,
        }
    )
    run = Run(config)
    return [r for r in run.run().history if "loss" in r], count_parameters(run.model)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", help="a prepared cache (default: build the stdlib one under --out)")
    parser.add_argument("--out", default="bench-out/data-overhead")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="global batch (samples of --seq-len tokens)"
    )
    parser.add_argument("--micro-batch-size", type=int, help="forward-pass size (default: the whole batch)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--mode", default="windows", choices=["windows", "packed", "padded"])
    parser.add_argument("--steps", type=int, default=4, help="training steps (the first is excluded)")
    parser.add_argument("--data-batches", type=int, default=50, help="batches timed for the inline figure")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is a warm-up)")
    if args.cache is None:
        args.cache = str(build_cache(Path(args.out)))

    inline, opened = data_layer_seconds(
        args.cache, args.seq_len, args.batch_size, args.mode, args.data_batches
    )
    with tempfile.TemporaryDirectory(prefix="tokenmill-bench-") as run_dir:
        records, parameters = train_steps(args, run_dir)
    steady = records[1:]
    step = statistics.median(r["step_time"] for r in steady)
    wait = statistics.median(r["data_wait"] for r in steady)
    device_name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else cpu_name()
    )
    result = {
        "device": args.device,
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
        "model": "gpt2-small (12x768, vocab 50304)",
        "parameters_m": round(parameters / 1e6, 1),
        "batch": f"{args.batch_size} x {args.seq_len} tokens ({args.mode})",
        "steps_timed": len(steady),
        "step_ms": round(1000 * step, 2),
        "tokens_per_s": round(args.batch_size * args.seq_len / step, 1),
        "data_layer_inline_ms": round(1000 * inline, 3),
        "data_layer_inline_frac": round(inline / step, 6),
        "data_wait_ms": round(1000 * wait, 3),
        "data_wait_frac": round(wait / step, 6),
        "data_wait_max_ms": round(1000 * max(r["data_wait"] for r in steady), 3),
        "dataset_open_s": round(opened, 3),
        "first_step_ms": round(1000 * records[0]["step_time"], 1),
        "losses": [round(r["loss"], 3) for r in records],
    }
    print(json.dumps(result, indent=1))
    print(
        f"\n{result['device_name']} ({args.device}): step {result['step_ms']:.0f} ms; data layer inline "
        f"{result['data_layer_inline_ms']:.3f} ms = {100 * result['data_layer_inline_frac']:.4f}% of a step; "
        f"waited with prefetch {result['data_wait_ms']:.3f} ms = {100 * result['data_wait_frac']:.4f}% of a step"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
