"""The recipe's mixture as a chart: stored token shares beside the shares seen under the weights, or with a
schedule, each source's share over the run: planned, and realised from a run's ``metrics.jsonl``."""

from __future__ import annotations

from typing import Any


def plot_shares(report: dict[str, Any], path: str) -> None:
    """A bar chart per source: its share of the stored tokens, its share of the tokens seen under the weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["sources"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows) + 2), 4))
    natural = [r["natural_share"] for r in rows]
    seen = [r["token_share"] for r in rows]
    ax.bar(x - 0.2, natural, 0.4, label="share of stored tokens", color="#9fb7d0")
    bars = ax.bar(x + 0.2, seen, 0.4, label="share of tokens seen (weights)", color="#3b6ea5")
    for bar, r in zip(bars, rows):
        ax.annotate(
            f"{r['epochs_per_pass']:.2g} ep",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, [r["name"] for r in rows])
    ax.set_ylabel("share (bars: epochs of the source per pass)")
    ax.set_title(f"mixture: {report['samples_per_pass']} samples of {report['seq_len']} per pass")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def realised_shares(run: str, names: list[str]) -> tuple[list[float], list[list[float]]]:
    """(steps, shares per source) from a run's ``metrics.jsonl``: each logged step's ``source_samples`` (the
    samples of each source read since the previous logged step, which the trainer writes for a mixture), placed
    at the middle of the steps they cover."""
    import json
    import os

    steps, shares, previous = [], [], 0.0
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        return steps, shares
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            counts = record.get("source_samples")
            if not isinstance(counts, dict) or not sum(counts.values()):
                continue
            total = sum(counts.values())
            step = float(record["step"])
            steps.append((previous + step) / 2)  # the middle of the steps the counts cover
            shares.append([counts.get(n, 0) / total for n in names])
            previous = step
    return steps, shares


def plot_schedule(report: dict[str, Any], path: str, run: str | None = None) -> None:
    """Each source's share of the samples over the run as the schedule plans it (lines) and, given a training
    run folder, as the run read it (dots, one per logged step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tokenmill.sampling.schedule import schedule_of

    plan = report["schedule"]
    names = plan["names"]
    weights = schedule_of(plan["resolved"])
    per_unit = report["seq_len"] if plan["unit"] == "tokens" else 1 / plan["global_batch_size"]
    last = plan["resolved"][-1]["at"]
    end = max(plan["end"] / per_unit, last * 1.15, 1.0)
    x = np.linspace(0, end, 600)
    shares = weights.shares(x)
    fig, ax = plt.subplots(figsize=(8, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(names):
        ax.plot(x * per_unit, shares[:, k], color=colors[k % len(colors)], label=f"{name} (planned)")
    if run:
        steps, got = realised_shares(run, names)
        if steps:
            got_arr = np.array(got)
            scale = 1.0 if plan["unit"] == "step" else plan["global_batch_size"] * report["seq_len"]
            for k, name in enumerate(names):
                ax.plot(
                    np.array(steps) * scale,
                    got_arr[:, k],
                    "o",
                    ms=3,
                    color=colors[k % len(colors)],
                    alpha=0.6,
                    label=f"{name} (realised)",
                )
    for p in plan["resolved"]:
        ax.axvline(p["at"] * per_unit, color="#bbbbbb", lw=0.8, zorder=0)
    ax.set_xlabel("global step" if plan["unit"] == "step" else "tokens")
    ax.set_ylabel("share of the samples")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        "mixture schedule"
        + (f" (global batch {plan['global_batch_size']})" if plan["unit"] == "step" else "")
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
