"""The eval-router plot: evidence recall against $ per 1,000 questions, router beside top-k.

matplotlib (Agg, no display) is imported here only, when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], curves: dict[float, list[tuple[float, float]]], path: str | Path) -> Path:
    """Write a PNG: per arrival rate, top-k's recall/cost curve, its equal-cost points, and the router per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    several = len(curves) > 1
    shades = plt.get_cmap("viridis")
    for i, (rate, curve) in enumerate(sorted(curves.items())):
        suffix = f", {rate:g}/min" if several else ""
        color = shades(i / max(len(curves) - 1, 1) * 0.8) if several else "tab:gray"
        if curve:
            xs, ys = zip(*sorted(curve), strict=True)
            ax.plot(xs, ys, "-", color=color, lw=1.2, alpha=0.7, label=f"fused top-k (budget sweep){suffix}")
        rows = [w for w in report["windows"] if w.get("rate_per_min", rate) == rate]
        for key, style, label in (
            ("topk_equal_cost", dict(marker="s", mfc="none"), "top-k at the router's cost"),
            ("router", dict(marker="o"), "router"),
        ):
            points = [(w[key]["usd_per_1k"], w[key]["recall"], w["window"]) for w in rows]
            style = {**style, "color": color if several else ("tab:orange" if key != "router" else "tab:blue")}
            ax.plot([p[0] for p in points], [p[1] for p in points], ls="none", ms=7, label=label + suffix, **style)
            if key == "router":
                _label_windows(ax, points)
    ax.set_xscale("log")
    ax.set_xlabel(f"$ per 1,000 questions ({report['vendor_model']}, prompt cache replayed)")
    ax.set_ylabel("recall (share of gold documents in the prompt)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['corpus']}: {report['questions']} questions", fontsize=10)
    return save_figure(fig, ax, path, legend_size=6 if several else 8)


def _label_windows(ax: Any, points: list[tuple[float, float, int]]) -> None:
    """Name each router point by its window; windows with the same figures share one label."""
    labels: dict[tuple[float, float], list[str]] = {}
    for x, y, window in points:
        labels.setdefault((x, y), []).append(short_window(window))
    for (x, y), names in labels.items():
        ax.annotate("/".join(names), (x, y), textcoords="offset points", xytext=(5, -11), fontsize=8)


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
    """``8192`` → ``8k``, ``200000`` → ``200k``, ``1000000`` → ``1M``."""
    if window >= 1_000_000 and window % 1_000_000 == 0:
        return f"{window // 1_000_000}M"
    return f"{window // 1024}k" if window % 1024 == 0 else f"{window // 1000}k"
