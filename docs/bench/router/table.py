"""The README table from ``ragcache eval-router --json`` files, with issue 11's checks per row.

    python docs/bench/router/table.py docs/bench/router/{sqlite,hotpotqa-16,hotpotqa-32}.json ...

Checks (a failed one is printed as **MISS**): router recall ≥ top-k at equal cost;
at windows ≥ 128k, budget used ≥ 0.8 when the corpus does not fit the corpus budget
and the whole corpus sent (one prefix) when it does; at ≥ 32k, router recall within
0.05 of top-k at equal tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = (
    "| corpus | window | router recall | router tokens | budget used | prefixes | router $/1k "
    "| top-k =tokens recall | top-k =tokens $/1k | top-k =cost recall | top-k =cost tokens | checks |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def checks(report: dict, row: dict) -> list[str]:
    """The issue's must-show checks for one window, as short labels (MISS: … when failed)."""
    router, cost, tokens = row["router"], row["topk_equal_cost"], row["topk_equal_tokens"]
    out = ["≥cost" if router["recall"] >= cost["recall"] else "MISS: < top-k at equal cost"]
    fits = report["corpus_tokens"] <= row["corpus_budget"]
    if row["window"] >= 131072:
        if fits:
            whole = router["distinct_prefixes"] == 1 and router["prompt_tokens_mean"] >= report["corpus_tokens"]
            out.append("whole corpus" if whole else "MISS: fits but not stuffed")
        else:
            out.append("fill ≥0.8" if router["budget_used_share"] >= 0.8 else "MISS: fill < 0.8")
    if row["window"] >= 32768:
        close = router["recall"] >= tokens["recall"] - 0.05
        out.append("≈tokens" if close else "MISS: > 0.05 below top-k at equal tokens")
    return out


def rows(path: Path) -> list[str]:
    report = json.loads(path.read_text(encoding="utf-8"))
    name = f"{report['corpus']} ({report['questions']} q, {round(report['corpus_tokens'] / 1000)}k tokens)"
    lines = []
    several_rates = len(report.get("rates_per_min", [])) > 1  # eval-router --rates: one row per rate and window
    for row in report["windows"]:
        r, t, c = row["router"], row["topk_equal_tokens"], row["topk_equal_cost"]
        cells = [
            f"{name}, {row['rate_per_min']:g}/min" if several_rates else name,
            f"{row['window']:,}",
            f"{r['recall']:.3f}",
            f"{round(r['prompt_tokens_mean']):,}",
            f"{r['budget_used_share']:.2f}",
            str(r["distinct_prefixes"]),
            f"{r['usd_per_1k']:.2f}",
            f"{t['recall']:.3f}",
            f"{t['usd_per_1k']:.2f}",
            f"{c['recall']:.3f}",
            f"{round(c['prompt_tokens_mean']):,}",
            ", ".join(f"**{x}**" if x.startswith("MISS") else x for x in checks(report, row)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(paths: list[str]) -> None:
    print(HEADER)
    for path in paths:
        print("\n".join(rows(Path(path))))


if __name__ == "__main__":
    main(sys.argv[1:])
