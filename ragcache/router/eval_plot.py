"""The eval-router plot: evidence recall against $ per 1,000 questions, router beside top-k.

matplotlib (Agg, no display) is imported here only, when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], curve: list[tuple[float, float]], path: str | Path) -> Path:
    """Write a PNG: top-k's recall/cost curve, its equal-cost points, and the router at each window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    if curve:
        xs, ys = zip(*sorted(curve), strict=True)
        ax.plot(xs, ys, "-", color="tab:gray", lw=1.2, label="fused top-k (budget sweep)")
    for key, style, label in (
        ("topk_equal_cost", dict(marker="s", color="tab:orange"), "top-k at the router's cost"),
        ("router", dict(marker="o", color="tab:blue"), "router"),
    ):
        points = [(w[key]["usd_per_1k"], w[key]["recall"], w["window"]) for w in report["windows"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], ls="none", ms=7, label=label, **style)
        if key == "router":
            labels: dict[tuple[float, float], list[str]] = {}
            for x, y, window in points:  # windows with the same figures share one label
                labels.setdefault((x, y), []).append(short_window(window))
            for (x, y), names in labels.items():
                ax.annotate("/".join(names), (x, y), textcoords="offset points", xytext=(5, -11), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"$ per 1,000 questions ({report['vendor_model']}, prompt cache replayed)")
    ax.set_ylabel("recall (share of gold documents in the prompt)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['corpus']}: {report['questions']} questions", fontsize=10)
    return save_figure(fig, ax, path, legend_size=8)


def save_figure(fig: Any, ax: Any, path: str | Path, *, legend_size: int, columns: int = 1) -> Path:
    """Grid, legend, layout, write the PNG, free the figure (every evaluation plot ends the same way)."""
    import matplotlib.pyplot as plt

    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=legend_size, ncol=columns)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def short_window(window: int) -> str:
    """``8192`` → ``8k``, ``200000`` → ``200k``."""
    return f"{window // 1024}k" if window % 1024 == 0 else f"{window // 1000}k"
