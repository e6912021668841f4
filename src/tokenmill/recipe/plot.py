"""The recipe's mixture as a chart: stored token shares beside the shares seen under the weights."""

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
