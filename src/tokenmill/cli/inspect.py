"""``tokenmill inspect``: what a cache holds, per split, with length percentiles and skip counts."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from tokenmill.cli._common import human, import_arrow_without_pandas, parse_key_values, print_json
from tokenmill.loader.layouts import MODES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show what a token cache holds")
    p.add_argument("cache", nargs="?", help="cache folder or URL")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the document-length histogram")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE")
    p.add_argument(
        "--recipe",
        metavar="RECIPE",
        help="a recipe.yaml (or a prepared recipe folder): per source documents, tokens, share and epochs",
    )
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="a Levanter or RWKV-infctx config file: its data section read as a recipe (docs/migrate/)",
    )
    p.add_argument("--output", help="with --recipe: the folder it was prepared in (default: the recipe's)")
    p.add_argument(
        "--seq-len", type=int, help="with --recipe: sample length (default: the recipe's, or 1024)"
    )
    p.add_argument("--mode", choices=MODES, help="with --recipe: sample mode")
    p.add_argument(
        "--global-batch-size",
        type=int,
        help="with --recipe: samples per global step, to place a schedule's points given in steps",
    )
    p.add_argument(
        "--steps", type=int, help="with --recipe: the run's length in global steps (ends the plan)"
    )
    p.add_argument(
        "--run",
        dest="run_dir",
        metavar="RUN_DIR",
        help="with --recipe --plot: a training run whose metrics.jsonl adds the realised shares",
    )
    p.set_defaults(run=run)


def cache_report(
    cache: str, storage_options: dict[str, str] | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """The inspect report as a dict, and every document length (for plots)."""
    from tokenmill.cache import CacheReader

    reader = CacheReader(cache, storage_options)
    m = reader.manifest
    splits: dict[str, Any] = {}
    all_lengths = []
    for name in ("train", "validation"):
        index = reader.split_index(name)
        starts, ends = index.document_bounds()
        lengths = ends - starts
        all_lengths.append(lengths)
        splits[name] = {
            "documents": int(index.num_documents),
            "tokens": int(index.num_tokens),
            "trained_tokens": int(index.trained.astype(np.int64).sum()),
            "rows": int(index.num_rows),
        }
    lengths = np.concatenate(all_lengths) if all_lengths else np.zeros(0, np.int64)
    percentiles = (
        {f"p{q}": int(np.percentile(lengths, q)) for q in (0, 10, 50, 90, 99, 100)} if len(lengths) else {}
    )
    report = {
        "cache": cache,
        "documents": sum(s["documents"] for s in splits.values()),
        "tokens": sum(s["tokens"] for s in splits.values()),
        "trained_tokens": sum(s["trained_tokens"] for s in splits.values()),
        "splits": splits,
        "tokenizer": m.tokenizer,
        "dtype": m.dtype,
        "row_tokens": m.row_tokens,
        "document_length": {"mean": float(lengths.mean()) if len(lengths) else 0.0, **percentiles},
        "skipped": dict(m.skipped),
        "complete": m.complete,
        "version": reader.version,
        "tokenmill_version": m.tokenmill_version,
        "format_version": m.format_version,
        "created": m.created,
        "updated": m.updated,
    }
    return report, lengths


def plot_lengths(lengths: np.ndarray, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(lengths):
        bins = np.logspace(0, np.log10(max(2, lengths.max())), 60)
        ax.hist(lengths, bins=bins, color="#3b6ea5")
        ax.set_xscale("log")
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("documents")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    if args.recipe or args.config:
        from tokenmill.cli._recipe import run_inspect

        return run_inspect(args)
    if args.cache is None:
        from tokenmill.errors import ConfigError

        raise ConfigError("name a cache to inspect")
    import_arrow_without_pandas(args)  # a cache's report converts nothing from pandas: 0.3 s less
    report, lengths = cache_report(
        args.cache, parse_key_values(args.storage_option, "--storage-option") or None
    )
    if args.plot:
        plot_lengths(lengths, args.plot, f"{args.cache}: {report['documents']} documents")
    if args.json:
        print_json(report)
        return 0
    tok = report["tokenizer"]
    print(
        f"cache      {report['cache']}  (version {report['version']}, {'complete' if report['complete'] else 'INCOMPLETE'})"
    )
    print(
        f"tokenizer  {tok.get('name', '?')}  vocab {tok.get('vocab_size', '?')}  fingerprint {str(tok.get('fingerprint', ''))[:16]}"
    )
    print(
        f"documents  {report['documents']}   tokens {report['tokens']} ({human(report['tokens'])})   trained {report['trained_tokens']}"
    )
    for name, s in report["splits"].items():
        print(
            f"  {name:<10} {s['documents']:>10} documents {s['tokens']:>14} tokens {s['trained_tokens']:>14} trained"
        )
    dl = report["document_length"]
    if len(dl) > 1:
        print(
            "length     "
            + "  ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in dl.items())
        )
    if report["skipped"]:
        print("skipped    " + ", ".join(f"{k}: {v}" for k, v in sorted(report["skipped"].items())))
    print(f"written by tokenmill {report['tokenmill_version']} (cache format {report['format_version']})")
    if args.plot:
        print(f"histogram  {args.plot}")
    return 0
