"""``tokenmill batches``: the training batches a cache gives, decoded, digested, or timed.

``--batch-size`` is the *global* batch: with ``--world-size W`` this process prints rank ``R``'s ``B/W`` samples of
every step, so the ranks' ``--digest`` lines for a step, put together in rank order, are the single-process lines
for that step. Steps are numbered globally (a run resumed with ``--resume`` goes on counting), so digests of a
resumed run can be compared line by line with an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Any

import numpy as np

from tokenmill.cli._common import import_arrow_without_pandas, parse_key_values, print_json
from tokenmill.errors import ConfigError
from tokenmill.labels import IGNORE_INDEX, next_token_targets
from tokenmill.loader.layouts import LONG_DOCUMENTS, MODES
from tokenmill.loader.streams import READS
from tokenmill.sampling.mixture import POLICIES

MASK_OPEN, MASK_CLOSE = "\u00ab", "\u00bb"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batches",
        help="print the training batches of a cache (decoded, as digests, or timed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("caches", nargs="*", metavar="CACHE", help="cache folder or URL; several make a mixture")
    p.add_argument(
        "--recipe",
        metavar="RECIPE",
        help="read a data recipe's sources mixed by its weights (a recipe.yaml or a prepared recipe folder; "
        "a CACHE argument then names the folder it was prepared in)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="a Levanter or RWKV-infctx config file: its data section read as a recipe (docs/migrate/)",
    )
    p.add_argument("--seq-len", type=int, help="tokens per sample (required unless a recipe gives seq_len)")
    p.add_argument("--batch-size", type=int, required=True, help="global batch size (all ranks together)")
    p.add_argument("--mode", choices=MODES, help="sample layout (default: the recipe's, else windows)")
    p.add_argument("--split", default="train", help="train or validation (default: train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shuffle", action="store_true", help="cache order instead of the seeded shuffle")
    p.add_argument("--weights", help="mixture weights, one per CACHE, e.g. 0.7,0.3")
    p.add_argument("--policy", choices=POLICIES, default="repeat", help="when a mixed dataset runs out")
    p.add_argument(
        "--rank", type=int, help="this process's rank (default: torch.distributed / $RANK, else 0)"
    )
    p.add_argument("--world-size", type=int, help="number of ranks (default: $WORLD_SIZE, else 1)")
    run_length = p.add_mutually_exclusive_group()
    run_length.add_argument(
        "--steps", type=int, help="global steps to run from the start or --resume (default 1)"
    )
    run_length.add_argument("--epochs", type=int, help="run to the end of this many epochs instead")
    p.add_argument("--resume", metavar="STATE.json", help="start where a saved loader state left off")
    p.add_argument("--save-state", metavar="STATE.json", help="write the loader state after the last step")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--decode", action="store_true", help="print each sample as text (the default)")
    out.add_argument(
        "--digest",
        action="store_true",
        help="print 'STEP HASH' per sample (hash of inputs and next-token targets)",
    )
    out.add_argument("--json", action="store_true", help="print only a JSON summary with throughput")
    p.add_argument("--read", choices=READS, default="auto", help="how tokens are read")
    p.add_argument("--long-documents", choices=LONG_DOCUMENTS, default="split", help="padded mode")
    p.add_argument(
        "--group-by-length", type=int, metavar="M", help="padded mode: length-grouped mega-batches"
    )
    p.add_argument("--follow", action="store_true", help="pick up new cache commits at epoch boundaries")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE")
    p.set_defaults(run=run)


def build_source(args: argparse.Namespace):
    """The dataset or mixture the arguments describe."""
    from tokenmill.loader import Mixture, TokenDataset

    if args.recipe or args.config:
        return _recipe_source(args)
    if not args.caches:
        raise ConfigError("name a CACHE to read (or --recipe RECIPE)")
    if args.seq_len is None:
        raise ConfigError("--seq-len is required when reading caches (a recipe may give seq_len instead)")
    options = dict(
        split=args.split,
        seq_len=args.seq_len,
        mode=args.mode or "windows",
        shuffle=not args.no_shuffle,
        seed=args.seed,
        read=args.read,
        storage_options=parse_key_values(args.storage_option, "--storage-option") or None,
        long_documents=args.long_documents,
        group_by_length=args.group_by_length,
        follow=args.follow,
    )
    datasets = [TokenDataset(cache, **options) for cache in args.caches]
    if len(datasets) == 1 and not args.weights:
        return datasets[0]
    weights = _weights(args.weights, len(datasets))
    return Mixture(
        list(zip(datasets, weights, strict=True)),
        policy=args.policy,
        seed=options["seed"],
        shuffle=not args.no_shuffle,
        names=args.caches,
    )


def _recipe_source(args: argparse.Namespace):
    """The mixture of a data recipe (its weights and policy; mode, seq_len, seed and split from the flags)."""
    from tokenmill.cli._recipe import recipe_of
    from tokenmill.recipe import recipe_mixture

    if len(args.caches) > 1 or args.weights:
        raise ConfigError("with --recipe, name at most one CACHE (the recipe's folder) and no --weights")
    return recipe_mixture(
        recipe_of(args, data_on_stdout=True),
        args.caches[0] if args.caches else None,
        seq_len=args.seq_len,
        mode=args.mode,
        split=args.split,
        seed=args.seed,
        shuffle=not args.no_shuffle,
        global_batch_size=args.batch_size,  # places a schedule's points given in steps
        read=args.read,
        long_documents=args.long_documents,
        group_by_length=args.group_by_length,
        follow=args.follow,
    )


def _weights(text: str | None, n: int) -> list[float]:
    if text is None:
        return [1.0] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights takes numbers separated by commas, got {text!r}") from None
    if len(weights) != n:
        raise ConfigError(f"--weights has {len(weights)} values for {n} caches")
    return weights


def sample_digest(input_ids: np.ndarray, targets: np.ndarray) -> str:
    """The hash printed by ``--digest``: 16 hex digits of blake2b over the int64 inputs, then the next-token
    targets (:func:`tokenmill.labels.next_token_targets`, which include the windows mode's extra target)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(input_ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(targets, dtype=np.int64).tobytes())
    return h.hexdigest()


def decode_sample(tokenizer: Any, batch: dict[str, np.ndarray], row: int) -> str:
    """What the model sees: each document (segment) on its own, tokens that are not trained (their label is -100)
    in guillemets, padding left out."""
    ids = batch["input_ids"][row]
    labels = batch["labels"][row]
    real = int(batch["attention_mask"][row].sum()) if "attention_mask" in batch else ids.size
    if "position_ids" in batch:
        starts = np.flatnonzero(batch["position_ids"][row][:real] == 0).tolist() or [0]
    else:
        starts = [0]
    pieces = []
    for lo, hi in zip(starts, starts[1:] + [real], strict=True):
        # labels are aligned: a token is trained when its own label is set; the first token of a document is
        # never a target (nothing before it in the sample), so it is shown plain
        trained = labels[lo:hi] != IGNORE_INDEX
        trained[:1] = True
        text = []
        for run_lo, run_hi, flag in _runs(trained):
            part = tokenizer.decode(ids[lo + run_lo : lo + run_hi].tolist())
            text.append(part if flag else f"{MASK_OPEN}{part}{MASK_CLOSE}")
        pieces.append("".join(text))
    return "\n\u2500\u2500\u2500\u2500 next document \u2500\u2500\u2500\u2500\n".join(pieces)


def _runs(flags: np.ndarray) -> list[tuple[int, int, bool]]:
    if flags.size == 0:
        return []
    edges = np.flatnonzero(flags[1:] != flags[:-1]) + 1
    bounds = [0, *edges.tolist(), flags.size]
    return [(a, b, bool(flags[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _tokenizer_for(source: Any, k: int) -> Any:
    datasets = getattr(source, "datasets", None)
    return (datasets[k] if datasets is not None else source).reader.tokenizer


def run(args: argparse.Namespace) -> int:
    # caches alone convert nothing from pandas (a recipe may read a dataset)
    if not args.recipe and not args.config:
        import_arrow_without_pandas(args)
    from tokenmill.loader import Batches, load_state, save_state

    if (args.seq_len is not None and args.seq_len < 1) or args.batch_size < 1:
        raise ConfigError("--seq-len and --batch-size must be positive")
    opened = time.perf_counter()
    source = build_source(args)
    if args.epochs is not None and getattr(source, "scheduled", False):
        raise ConfigError(
            "a scheduled mixture is one endless stream (each source cycles on its own): use --steps"
        )
    batches = Batches(source, args.batch_size, rank=args.rank, world_size=args.world_size)
    state = load_state(args.resume) if args.resume else None
    start = batches.iter(state)  # where this run starts; --steps and --epochs count from there
    if args.epochs is not None:
        batches = batches.replace(epochs=start.epoch + args.epochs if args.resume else args.epochs)
    else:
        batches = batches.replace(steps=start.step + (args.steps if args.steps is not None else 1))
    it = batches.iter(state)
    open_seconds = time.perf_counter() - opened

    out = sys.stdout
    steps = samples = tokens = 0
    started = time.perf_counter()
    while True:
        step = it.step
        plan = it.next_plan()
        if plan is None:
            break
        batch = it.fetch(plan)
        n = batch["input_ids"].shape[0]
        steps += 1
        samples += n
        tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].size
        if args.digest:
            targets = next_token_targets(batch)
            out.write(
                "".join(f"{step} {sample_digest(batch['input_ids'][i], targets[i])}\n" for i in range(n))
            )
        elif not args.json:
            for i in range(n):
                k = int(batch["source_index"][i]) if "source_index" in batch else 0
                names = getattr(source, "names", args.caches)
                where = f" \u00b7 {names[k]}" if "source_index" in batch else ""
                out.write(
                    f"=== step {step} \u00b7 rank {it.rank}/{it.world_size} \u00b7 sample {i}{where} ===\n"
                )
                out.write(decode_sample(_tokenizer_for(source, k), batch, i) + "\n")
    seconds = time.perf_counter() - started
    if args.save_state:
        save_state(it.state_dict(), args.save_state)
    if args.json:
        print_json(
            {
                "steps": steps,
                "samples": samples,
                "tokens": tokens,
                "seconds": round(seconds, 6),
                "samples_per_s": round(samples / seconds, 1) if seconds > 0 else None,
                "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
                "open_seconds": round(open_seconds, 6),
                "rank": it.rank,
                "world_size": it.world_size,
                "dataset": source.describe(),
                "state": it.state_dict(),
            }
        )
    return 0
