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
    subcommand may tune it for itself (:func:`tokenmill.cli._common.import_arrow_without_pandas`)."""
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
