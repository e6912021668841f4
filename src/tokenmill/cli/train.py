"""``tokenmill train``: train a causal LM on a cache (or continue, evaluate or export a run's checkpoint).

Run it under ``torchrun --nproc_per_node N -m tokenmill.train ...`` for data parallel training; every rank reads
its slice of each global batch.
"""

from __future__ import annotations

import argparse
import os
import sys

from tokenmill.cli._common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a causal LM on a cache (resume, evaluate, export)",
        description="Train a transformers causal LM on a tokenmill cache; see docs/training.md.",
    )
    add_arguments(p)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TRAIN.yaml", help="the run's YAML config (examples/tiny.yaml)")
    p.add_argument(
        "--data",
        metavar="CACHE",
        help="the cache, recipe, or Levanter / RWKV-infctx config file to train on (overrides 'data' in the config)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option (repeatable); dotted keys reach into the model: --set model.n_layer=4",
    )
    p.add_argument(
        "--run-dir", metavar="DIR", help="where checkpoints and metrics.jsonl go (overrides run_dir)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="stop after step N; the learning-rate schedule still spans the config's max_steps, so stopping "
        "and resuming gives the run an uninterrupted one would",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="PATH",
        help="continue from the run's latest checkpoint, or from PATH (a checkpoint or run folder)",
    )
    p.add_argument(
        "--evaluate", action="store_true", help="only evaluate the checkpoint (--resume PATH or the latest)"
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="only export the checkpoint (--resume PATH or the latest) to a Hugging Face folder",
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="show a progress bar"
    )


def run(args: argparse.Namespace) -> int:
    from tokenmill.train import (
        evaluate_checkpoint,
        export_checkpoint,
        load_train_config,
        resolve_checkpoint,
        train,
    )

    if args.config:
        from tokenmill.recipe import is_foreign

        if is_foreign(args.config):
            from tokenmill.errors import ConfigError

            raise ConfigError(
                f"{args.config} is a Levanter or RWKV-infctx config: train on its data section with --data "
                f"{args.config}; the model and optimiser are tokenmill's own (a train config or --set)"
            )
    values = {"data": args.data, "run_dir": args.run_dir, "progress": args.progress}
    config = load_train_config(args.config, args.set, **values)
    main = int(os.environ.get("RANK", "0")) == 0
    if main and isinstance(config.data, str):
        from tokenmill.recipe import is_foreign, load_foreign

        if is_foreign(config.data):  # a Levanter or RWKV-infctx config: say how its data section was read
            print("\n".join(load_foreign(config.data).explain()), file=sys.stderr, flush=True)
    if args.export:
        checkpoint = resolve_checkpoint(args.resume or True, config.run_dir)
        out = export_checkpoint(checkpoint, args.export)
        print_json({"exported": str(out), "checkpoint": str(checkpoint)})
        return 0
    if args.evaluate:
        result = evaluate_checkpoint(config, args.resume or True)
        if main:
            print_json(result)
        return 0
    result = train(config, resume=args.resume, max_steps=args.max_steps)
    if main:
        print_json(
            {
                "run_dir": str(result.run_dir),
                "step": result.step,
                "tokens": result.tokens,
                "loss": result.loss,
                "val_loss": result.val_loss,
                "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                "seconds": round(result.seconds, 2),
            }
        )
    sys.stdout.flush()
    return 0
