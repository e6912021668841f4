"""``PrepareSummary``: what one ``prepare`` call did, for the command line's text and ``--json`` output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tokenmill.cache.manifest import Manifest


@dataclass
class PrepareSummary:
    """What one ``prepare`` call did; ``tokens_this_run``/``bytes_this_run`` exclude work of earlier runs."""

    output: str
    status: str
    documents: int
    tokens: int
    trained_tokens: int
    splits: dict[str, dict[str, int]]
    skipped: dict[str, int]
    seconds: float
    tokens_this_run: int = 0
    bytes_this_run: int = 0
    # what prepare assumed about the input and the user should know (e.g. document boundaries it could not see)
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_this_run / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tokens_per_s"] = round(self.tokens_per_s, 1)
        out["mb_per_s"] = round(self.bytes_this_run / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0
        return out


def summarize(
    cache: str,
    manifest: Manifest,
    status: str,
    seconds: float,
    tokens_this_run: int,
    bytes_this_run: int,
    notes: list[str],
) -> PrepareSummary:
    """The summary of a cache as its manifest records it, with this run's share of the work."""
    return PrepareSummary(
        output=cache,
        status=status,
        documents=manifest.documents,
        tokens=manifest.tokens,
        trained_tokens=sum(s.trained_tokens for s in manifest.splits.values()),
        splits={k: dataclasses.asdict(v) for k, v in manifest.splits.items()},
        skipped=dict(manifest.skipped),
        seconds=round(seconds, 3),
        tokens_this_run=tokens_this_run,
        bytes_this_run=bytes_this_run,
        notes=notes,
    )
