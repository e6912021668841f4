"""``tokenmill plot``: draw the loss curves of one or more runs to a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw loss curves of training runs to a PNG")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (each with a metrics.jsonl)")
    p.add_argument("--output", "-o", metavar="FILE.png", help="default: RUN/loss.png of the first run")
    p.add_argument("--smooth", type=int, default=1, metavar="K", help="moving average over K logged steps")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tokenmill.train.plot import plot_runs

    output = args.output or str(Path(args.runs[0]) / "loss.png")
    path = plot_runs(args.runs, output, smooth=args.smooth)
    print(path)
    return 0
