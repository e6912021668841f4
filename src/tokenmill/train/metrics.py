"""Where a run's numbers go: ``RUN/metrics.jsonl`` (always), TensorBoard (when installed), a progress bar.

``metrics.jsonl`` holds one JSON object per logged step (``step``, ``loss``, ``lr``, ``tokens``, ``tokens_per_s``,
``data_wait``, ...) and one per evaluation (``step``, ``val_loss``, ``val_ppl``). A resumed run first drops the
lines past its checkpoint's step, so the file always describes one continuous run, never two overlapping ones.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
    return out


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Keep only the records up to ``step`` (the checkpoint a run resumes from)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


class MetricsLogger:
    """Writes records on the main rank only; the other ranks get a logger that does nothing."""

    def __init__(
        self, run_dir: str | Path, *, enabled: bool, tensorboard: bool, progress: bool | None, total: int
    ):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._total = total
        self._file = None
        self._tb = None
        self._bar = None
        self._lines = False
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115 - lives with the run
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self._tb = None  # tensorboard is optional
        show = sys.stderr.isatty() if progress is None else progress
        self._lines = progress is None and not show  # a log file gets one line per logged step instead
        if show:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def start(self, step: int) -> None:
        if self._bar is not None:
            self._bar.n = step
            self._bar.refresh()

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)

    def progress(self, step: int, postfix: dict[str, str]) -> None:
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix(postfix, refresh=True)
        elif self._lines:
            total = f"/{self._total}" if self._total else ""
            print(
                f"step {step}{total} " + " ".join(f"{k} {v}" for k, v in postfix.items()),
                file=sys.stderr,
                flush=True,
            )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._file is not None:
            self._file.close()
            self._file = None
