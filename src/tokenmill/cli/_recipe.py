"""``--recipe`` for ``tokenmill prepare`` and ``tokenmill inspect``: parse, call :mod:`tokenmill.recipe`, print."""

from __future__ import annotations

import argparse

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


def run_prepare(args: argparse.Namespace) -> int:
    from tokenmill.recipe import load_recipe, prepare_recipe

    given = [name for name in _RECIPE_OWNS if getattr(args, name, None) not in (None, [], False)]
    if given:
        flags = ", ".join("SOURCE" if n == "sources" else "--" + n.replace("_", "-") for n in given)
        raise ConfigError(f"{flags}: set these per source in the recipe, not beside --recipe")
    recipe = load_recipe(args.recipe)

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
    from tokenmill.recipe import load_recipe, plot_shares, recipe_report

    recipe = load_recipe(args.recipe)
    report = recipe_report(recipe, args.output or args.cache, seq_len=args.seq_len, mode=args.mode)
    if args.plot:
        plot_shares(report, args.plot)
    if args.json:
        print_json(report)
        return 0
    print(
        f"recipe     {report['recipe'] or args.recipe}  ->  {report['output']}\n"
        f"mixture    {report['mode']}, seq_len {report['seq_len']}, policy {report['policy']}: one pass is "
        f"{report['samples_per_pass']} samples, {human(report['tokens_per_pass'])} tokens"
    )
    print(
        f"  {'source':<12} {'weight':>7} {'documents':>10} {'tokens':>10} {'trained':>10} "
        f"{'stored':>7} {'seen':>7} {'trained':>8} {'epochs/pass':>11}  validation"
    )
    for r in report["sources"]:
        val = r["validation"]
        print(
            f"  {r['name']:<12} {r['weight']:>7.3g} {r['documents']:>10} {human(r['tokens']):>10} "
            f"{human(r['trained_tokens']):>10} {r['natural_share']:>7.1%} {r['token_share']:>7.1%} "
            f"{r['trained_token_share']:>8.1%} {r['epochs_per_pass']:>11.3g}  "
            f"{val['documents']} docs, {human(val['tokens'])} tokens"
        )
    print("  stored: share of the stored tokens; seen: share of the tokens the model sees under the weights")
    if args.plot:
        print(f"chart      {args.plot}")
    return 0
