"""The ``tokenmill`` command line: each subcommand is a module with ``add_parser(subparsers)`` and ``run(args)``.

The CLI only parses, calls one API function and prints; every behaviour lives in the library so scripts get it too.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import os
import sys
import threading
from typing import NoReturn

from tokenmill import __version__
from tokenmill.errors import TokenmillError

SUBCOMMANDS = ["prepare", "inspect", "tokenizer", "batches", "train", "plot", "recipe", "verify"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenmill",
        description="Raw text to training-ready token batches: prepare a Lance token cache, load it, train on it.",
    )
    parser.add_argument("--version", action="version", version=f"tokenmill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"tokenmill.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tokenmill.cli.{name}":
                continue  # a subcommand whose module is not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command; ``own_process``: this process is the command's alone (:func:`run_and_exit`), so a
    subcommand may tune it for itself (:func:`import_arrow_without_pandas`)."""
    # The collector runs every 10,000 allocations instead of 700 while a command runs: loading lance, pyarrow
    # and a tokenizer.json otherwise sets off three full collections of a heap with no garbage in it. Measured
    # on `prepare` with Mistral v1: 0.25 -> 0.14 s of collection, most of it on the main thread before the
    # first unit starts. (Restored after, for a caller that runs main() in its own process.)
    thresholds = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    try:
        return _main(argv, own_process)
    finally:
        gc.set_threshold(*thresholds)


def _main(argv: list[str] | None, own_process: bool) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = own_process
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except TokenmillError as exc:
        print(f"tokenmill {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tokenmill batches ... | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"tokenmill {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


class _RefusePandas:
    """A meta path finder that refuses ``import pandas`` while it is installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not imported by this tokenmill command")


def import_arrow_without_pandas() -> None:
    """Import pyarrow's dataset module (lance loads it) without importing pandas, in a command's own process.

    pyarrow's dataset module makes a scalar as it loads, and making one asks whether pandas is installed by
    importing it: 0.3 s of imports and 30-40 MB that `tokenmill prepare` never uses. Over 8 interleaved pairs of
    `prepare` with Mistral v1 (100 MB of JSONL.gz, 2 cores), medians: 4.38 -> 4.03 s, 7.06 -> 6.65 CPU-s, 10k
    fewer page faults (docs/benchmarks.md). pyarrow keeps the refusal for the life of the process: its C++
    converter never looks for pandas again, so ``pd.NA`` or ``pd.NaT`` would no longer be recognised in a
    conversion to Arrow. Hence only a command's own process (:func:`run_and_exit`) does this, and only where the
    command converts nothing from pandas: ``prepare`` without a Hugging Face dataset (which `datasets` reads
    through pandas) and without a Ray driver; ``inspect`` and ``verify`` of a cache; ``batches`` of caches (not of
    a recipe). 3 interleaved pairs on the benchmark's cache: ``inspect`` 0.74-0.84 -> 0.35-0.42 s, ``verify``
    0.69-0.82 -> 0.41-0.54 s, ``batches`` 0.60-0.73 -> 0.28-0.52 s. Nothing is done once pandas or pyarrow's
    dataset module is loaded."""
    if "pandas" in sys.modules or "pyarrow._dataset" in sys.modules:
        return
    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        import pyarrow.dataset  # noqa: F401
    finally:
        sys.meta_path.remove(refuse)


def run_and_exit(argv: list[str] | None = None) -> NoReturn:
    """The ``tokenmill`` command (the console script and ``python -m tokenmill.cli``): :func:`main`, then an exit
    that skips the interpreter's teardown once the command is done.

    Tearing down a process that has loaded lance, pyarrow and a tokenizer (module dictionaries, a last collection,
    the Rust objects' destructors: fastokens' word caches among them) took 0.2 s of the 4.5-5 s of `tokenmill
    prepare` with Mistral v1 (measured from the summary's first byte to the process's end: 0.19-0.29 s, 0.04-0.06 s
    with this exit). What exit still owes is done first, as the interpreter does it: threads are joined (executors
    included), ``atexit`` handlers run (Ray's shutdown, logging), the standard streams are flushed. Every file a
    command writes is closed before it returns, and a cache is committed before its summary is printed: ending
    here is no different for the data from the process's end. An error or a ``SystemExit`` (``--help``, a bad
    option) takes the ordinary way out."""
    code = main(argv, own_process=True)
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython: the ordinary exit
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, a stream already closed: nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    run_and_exit()
