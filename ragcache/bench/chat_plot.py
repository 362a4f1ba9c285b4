"""The eval-chat plot: per-turn recall against $ per 1,000 turns, one marker per strategy, one colour per window.

matplotlib (Agg, no display) is imported here only, when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragcache.router.eval_plot import save_figure, short_window

__all__ = ["plot_chat"]

MARKERS = {
    "ragcache": ("o", "ragcache"),
    "ragcache_question_only": ("x", "ragcache, question-only query"),
    "topk_in_system": ("s", "top-k in system (=cost)"),
    "topk_after_history": ("^", "top-k after history (=cost)"),
}


def plot_chat(report: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG: each strategy's (usd_per_1k_turns, recall) at every window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.get_cmap("tab10")
    for n, row in enumerate(report["windows"]):
        for key, (marker, _) in MARKERS.items():
            f = row[key]
            ax.plot(f["usd_per_1k_turns"], f["recall"], marker=marker, ls="none", ms=7, color=colours(n), alpha=0.85)
        ax.annotate(short_window(row["window"]), (row["ragcache"]["usd_per_1k_turns"], row["ragcache"]["recall"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8, color=colours(n))  # fmt: skip
    for marker, label in MARKERS.values():  # legend: shapes are strategies, colours windows
        ax.plot([], [], marker=marker, ls="none", color="tab:gray", label=label)
    for n, row in enumerate(report["windows"]):
        ax.plot([], [], marker="o", ls="none", color=colours(n), label=f"window {short_window(row['window'])}")
    ax.set_xscale("log")
    ax.set_xlabel(f"$ per 1,000 turns ({report['vendor_model']}, prompt cache replayed)")
    ax.set_ylabel("per-turn recall (new question's gold documents in the prompt)")
    lowest = min(row[key]["recall"] for row in report["windows"] for key in MARKERS)
    ax.set_ylim(max(0.0, lowest - 0.03), 1.005)  # the differences are small: zoom on them
    ax.set_title(
        f"{report['corpus']}: {report['conversations']} conversations of ≤{report['turns']} turns", fontsize=10
    )
    return save_figure(fig, ax, path, legend_size=7, columns=2)
