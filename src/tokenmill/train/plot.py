"""Loss curves of one or more runs, from their ``metrics.jsonl``, to a PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from tokenmill.errors import ConfigError
from tokenmill.train.metrics import METRICS_FILE, read_metrics


def plot_runs(run_dirs: list[str | Path], output: str | Path, *, smooth: int = 1) -> Path:
    """Training loss (and validation loss where logged) against step; a second panel shows data wait."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("plotting needs matplotlib: pip install 'tokenmill[plot]'") from exc
    runs = []
    for run in run_dirs:
        records = read_metrics(run)
        if not records:
            raise ConfigError(f"{run} has no {METRICS_FILE} with records; is it a run folder?")
        runs.append((Path(run), records))
    fig, (ax_loss, ax_wait) = plt.subplots(
        2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for run, records in runs:
        train = [r for r in records if r.get("loss") is not None]
        val = [r for r in records if r.get("val_loss") is not None]
        label = run.name or str(run)
        if train:
            steps = [r["step"] for r in train]
            losses = _moving_average([r["loss"] for r in train], smooth)
            (line,) = ax_loss.plot(steps, losses, label=f"{label} train", linewidth=1.2)
            waits = [100 * (r.get("data_wait_frac") or 0.0) for r in train]
            ax_wait.plot(steps, waits, color=line.get_color(), linewidth=1.0)
            color = line.get_color()
        else:
            color = None
        if val:
            ax_loss.plot(
                [r["step"] for r in val],
                [r["val_loss"] for r in val],
                "o--",
                color=color,
                label=f"{label} validation",
                markersize=4,
            )
    ax_loss.set_ylabel("loss (nats per token)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_wait.set_ylabel("data wait (% of step)")
    ax_wait.set_xlabel("step")
    ax_wait.grid(alpha=0.3)
    ax_loss.set_title("tokenmill train: " + ", ".join(r.name for r, _ in runs))
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def _moving_average(values: list[float], k: int) -> list[float]:
    if k <= 1:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out
