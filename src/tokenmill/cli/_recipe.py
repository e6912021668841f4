"""``--recipe`` (and ``--config`` with a Levanter or RWKV-infctx file) for ``prepare``, ``inspect`` and ``batches``:
parse, call :mod:`tokenmill.recipe`, print."""

from __future__ import annotations

import argparse
import os
import sys

from tokenmill.cli._common import human, print_json
from tokenmill.errors import ConfigError

# prepare flags that belong in the recipe, not on the command line beside --recipe
_RECIPE_OWNS = (
    "sources",
    "config",
    "tokenizer",
    "input_format",
    "text_key",
    "text_split",
    "format",
    "min_tokens",
    "max_tokens",
    "truncate",
    "max_documents",
    "max_total_tokens",
    "validation",
    "seed",
    "on_error",
    "hf_dataset",
    "append",
    "overwrite",
    "print_config",
)


def is_foreign_config(args: argparse.Namespace) -> bool:
    """Whether ``--config`` names a Levanter or RWKV-infctx config file (a data section), not tokenmill's own."""
    if not getattr(args, "config", None):
        return False  # without importing the recipe package (lance, pyarrow: 0.5 s before prepare's preload)
    from tokenmill.recipe import is_foreign

    return is_foreign(args.config)


def recipe_of(args: argparse.Namespace, *, build: bool = False, data_on_stdout: bool = False):
    """The recipe ``--recipe`` or ``--config`` names; a foreign config prints how each key was understood (on
    stderr when stdout carries JSON or data), and before a build its tokenizer must be available offline."""
    from tokenmill.recipe import load_foreign, load_recipe
    from tokenmill.recipe.foreign import check_tokenizer_offline

    if getattr(args, "recipe", None):
        if getattr(args, "config", None):
            raise ConfigError("give either --recipe or --config, not both")
        return load_recipe(args.recipe)
    if not is_foreign_config(args):
        raise ConfigError(
            f"{args.config}: not a Levanter or RWKV-infctx config (no data: section); a tokenmill recipe goes "
            "with --recipe"
        )
    conversion = load_foreign(args.config, tokenizer=getattr(args, "tokenizer", None) if build else None)
    out = sys.stderr if getattr(args, "json", False) or data_on_stdout else sys.stdout
    print("\n".join(conversion.explain()), file=out, flush=True)
    if build:
        check_tokenizer_offline(conversion)
    return conversion.recipe


def run_prepare(args: argparse.Namespace) -> int:
    from tokenmill.recipe import prepare_recipe

    foreign = not args.recipe
    owned = [n for n in _RECIPE_OWNS if not (foreign and n in ("config", "tokenizer", "print_config"))]
    given = [name for name in owned if getattr(args, name, None) not in (None, [], False)]
    if given:
        flags = ", ".join("SOURCE" if n == "sources" else "--" + n.replace("_", "-") for n in given)
        beside = "--recipe" if args.recipe else "a Levanter or RWKV-infctx --config"
        raise ConfigError(f"{flags}: set these per source in the recipe, not beside {beside}")
    if foreign and args.print_config:  # the native recipe this file stands for (`tokenmill recipe convert`)
        from tokenmill.recipe import load_foreign

        conversion = load_foreign(args.config, tokenizer=args.tokenizer, output=args.output)
        sys.stdout.write(conversion.to_yaml(os.path.dirname(os.path.abspath(args.config))))
        return 0
    recipe = recipe_of(args, build=True)

    def log(result) -> None:
        if args.json:
            return
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(result.skipped.items()))
        print(
            f"  {result.source + ('.validation' if result.role == 'validation' else ''):<20} {result.status:<11}"
            f" {result.documents:>9} documents {result.tokens:>12} tokens ({human(result.tokens)})"
            f"{'  skipped ' + skipped if skipped else ''}{'  [' + result.reason + ']' if result.reason else ''}",
            flush=True,
        )

    recipe.trust_remote_code = bool(getattr(args, "trust_remote_code", False))  # the command line's word only
    summary = prepare_recipe(recipe, args.output, workers=args.workers, progress=args.progress, log=log)
    if args.json:
        print_json(summary.to_json())
        return 0
    built = sum(c.status != "up to date" for c in summary.caches)
    print(
        f"{summary.output}: {len(summary.caches)} caches, {built} built or resumed"
        + ("" if built else "; nothing to do")
        + f" ({summary.seconds:.1f} s)"
    )
    if summary.stale:
        print(f"  not in the recipe any more (left in place, not mixed): {', '.join(summary.stale)}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from tokenmill.recipe import plot_schedule, plot_shares, recipe_report

    recipe = recipe_of(args)
    report = recipe_report(
        recipe,
        args.output or args.cache,
        seq_len=args.seq_len,
        mode=args.mode,
        global_batch_size=getattr(args, "global_batch_size", None),
        steps=getattr(args, "steps", None),
    )
    if args.plot:
        if "schedule" in report:
            plot_schedule(report, args.plot, run=getattr(args, "run_dir", None))
        else:
            plot_shares(report, args.plot)
    if args.json:
        print_json(report)
        return 0
    print(
        f"recipe     {report['recipe'] or args.recipe or args.config}  ->  {report['output']}\n"
        f"mixture    {report['mode']}, seq_len {report['seq_len']}, policy {report['policy']}: "
        + ("the planned run is " if "schedule" in report else "one pass is ")
        + f"{report['samples_per_pass']} samples, {human(report['tokens_per_pass'])} tokens"
    )
    print(
        f"  {'source':<12} {'weight':>7} {'documents':>10} {'tokens':>10} {'trained':>10} "
        f"{'stored':>7} {'seen':>7} {'trained':>8} {'epochs/pass':>11}  validation"
    )
    for r in report["sources"]:
        val = r["validation"]
        print(
            f"  {r['name']:<12} {'sched' if r['weight'] is None else format(r['weight'], '.3g'):>7} {r['documents']:>10} {human(r['tokens']):>10} "
            f"{human(r['trained_tokens']):>10} {r['natural_share']:>7.1%} {r['token_share']:>7.1%} "
            f"{r['trained_token_share']:>8.1%} {r['epochs_per_pass']:>11.3g}  "
            f"{val['documents']} docs, {human(val['tokens'])} tokens"
        )
    print("  stored: share of the stored tokens; seen: share of the tokens the model sees under the weights")
    if "schedule" in report:
        print_schedule(report["schedule"])
    if args.plot:
        print(f"chart      {args.plot}")
    return 0


def print_schedule(plan: dict) -> None:
    """Per schedule segment: each source's share at its ends, samples, tokens, epochs in it and so far."""
    unit = "steps" if plan["unit"] == "step" else "tokens"
    batch = f", global batch {plan['global_batch_size']}" if plan["unit"] == "step" else ""
    print(f"schedule   by {unit}{batch}: {len(plan['segments'])} segment(s) to {human(plan['end'])} {unit}")
    print(
        f"  {unit:<17} {'shape':<8} {'source':<12} {'share':>13} {'samples':>10} {'tokens':>9} "
        f"{'epochs':>7} {'so far':>7}"
    )
    for seg in plan["segments"]:
        span = f"{human(seg['from'])}-{human(seg['to'])}"
        for i, r in enumerate(seg["sources"]):
            share = f"{r['share_start']:.2f}" + (
                f"->{r['share_end']:.2f}" if abs(r["share_end"] - r["share_start"]) > 5e-3 else ""
            )
            print(
                f"  {span if i == 0 else '':<17} {seg['segment'] if i == 0 else '':<8} {r['name']:<12} "
                f"{share:>13} {round(r['samples']):>10} {human(r['tokens']):>9} {r['epochs']:>7.3g} "
                f"{r['epochs_so_far']:>7.3g}"
            )
    if not plan["segments"]:
        print("  (one point: constant weights; pass --steps N to see what a run of N steps reads)")
