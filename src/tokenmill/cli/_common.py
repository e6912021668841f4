"""Small helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tokenmill.errors import ConfigError


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def parse_number(text: str, flag: str) -> int | float:
    """'0.01' is a fraction, '500' a count."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(
                f"{flag} takes a number (a fraction like 0.01 or a count like 500), got {text!r}"
            ) from None


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{unit}" if unit else f"{n:g}"
        n /= 1000
    return f"{n:.3g}P"


def add_engine_argument(p: argparse.ArgumentParser) -> None:
    from tokenmill.tokenizer.engine import ENGINES

    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="the encoding engine: auto (default) picks the fastest one proven to give the tokenizer's own ids",
    )


class _RefusePandas:
    """A meta path finder that refuses ``import pandas`` while it is installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not imported by this tokenmill command")


def import_arrow_without_pandas(args: argparse.Namespace) -> None:
    """Import pyarrow's dataset module (lance loads it) without importing pandas, where ``args`` are those of a
    command in its own process (``args.own_process``, set by :func:`tokenmill.cli.run_and_exit`).

    pyarrow's dataset module makes a scalar as it loads, and making one asks whether pandas is installed by
    importing it: 0.3 s of imports and 30-40 MB that `tokenmill prepare` never uses. Over 8 interleaved pairs of
    `prepare` with Mistral v1 (100 MB of JSONL.gz, 2 cores), medians: 4.38 -> 4.03 s, 7.06 -> 6.65 CPU-s, 10k
    fewer page faults (docs/benchmarks.md). pyarrow keeps the refusal for the life of the process: its C++
    converter never looks for pandas again, so ``pd.NA`` or ``pd.NaT`` would no longer be recognised in a
    conversion to Arrow. Hence only a command's own process does this, and only where the command converts
    nothing from pandas: ``prepare`` without a Hugging Face dataset (which `datasets` reads
    through pandas) and without a Ray driver; ``inspect`` and ``verify`` of a cache; ``batches`` of caches (not of
    a recipe). 3 interleaved pairs on the benchmark's cache: ``inspect`` 0.74-0.84 -> 0.35-0.42 s, ``verify``
    0.69-0.82 -> 0.41-0.54 s, ``batches`` 0.60-0.73 -> 0.28-0.52 s. Nothing is done once pandas or pyarrow's
    dataset module is loaded."""
    if (
        not getattr(args, "own_process", False)
        or "pandas" in sys.modules
        or "pyarrow._dataset" in sys.modules
    ):
        return
    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        import pyarrow.dataset  # noqa: F401
    finally:
        sys.meta_path.remove(refuse)
