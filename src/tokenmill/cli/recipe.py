"""``tokenmill recipe convert FILE``: a Levanter or RWKV-infctx config's data section written as a native recipe."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="data recipes: convert a Levanter or RWKV-infctx config to a recipe")
    commands = p.add_subparsers(dest="recipe_command", metavar="ACTION")
    c = commands.add_parser(
        "convert",
        help="write the native recipe of a Levanter or RWKV-infctx config file's data section",
        description="Read FILE's data section the way `prepare --config FILE` does, print how each key was "
        "understood, and write the equivalent tokenmill recipe (docs/migrate/).",
    )
    c.add_argument("file", metavar="FILE", help="a Levanter or RWKV-infctx YAML config")
    c.add_argument(
        "--output",
        "-o",
        metavar="RECIPE.yaml",
        help="where to write the recipe (default: FILE's name with .recipe.yaml, beside it; '-' for stdout)",
    )
    c.add_argument(
        "--tokenizer", help="the tokenizer file to write into the recipe instead of the file's own"
    )
    c.set_defaults(run=run_convert)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def default_output(path: str) -> str:
    stem = os.path.splitext(path)[0]
    return f"{stem}.recipe.yaml"


def run_convert(args: argparse.Namespace) -> int:
    from tokenmill.recipe import load_foreign

    conversion = load_foreign(args.file, tokenizer=args.tokenizer)
    out = args.output or default_output(args.file)
    if out == "-":
        sys.stdout.write(conversion.to_yaml(os.path.dirname(os.path.abspath(args.file))))
        return 0
    print("\n".join(conversion.explain()))
    with open(out, "w", encoding="utf-8") as f:
        f.write(conversion.to_yaml(os.path.dirname(os.path.abspath(out))))
    print(f"wrote {out}: tokenmill prepare --recipe {out}")
    return 0
