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
