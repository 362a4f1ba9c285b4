"""The router v4 table from ``ragcache eval-router --rates … --json`` files: per (rate, window) cell,
router recall against top-k at equal cost, and router $ against top-k at equal tokens.

    python docs/bench/router/v4_table.py docs/bench/router/v4-*.json
    python docs/bench/router/v4_table.py --strict docs/bench/router/check-*.json   # no 0.5% band

``--strict`` lists, instead of the table, every cell where the router costs more per prompt token
than top-k at equal tokens by 0.001% or more (the excess in percent) or has lower recall than top-k
at equal cost; then how many cells were above top-k per token by less than 0.001% and the largest of
those (a route that is top-k itself sends up to a chunk more tokens than top-k at equal tokens behind
the same cached instructions block, so its $ per token differs in the 4th–7th significant digit), and
how many cells it read.

Recall: **beats** / ties / **LOSES** (below top-k at equal cost, rounded to the JSON's 4 places).
$: per prompt token (top-k "at equal tokens" fits whole chunks under the router's mean, so it
sends up to a chunk fewer tokens a question): saves (router cheaper per token than top-k) / ties
(within 0.5%) / **COSTS MORE**.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = (
    "| corpus | vendor model | rate/min | window | prefixes | router recall | top-k =cost recall | recall "
    "| router $/1k | top-k =tokens $/1k | top-k =tokens tokens/router's | $ per token |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def verdicts(row: dict) -> tuple[str, str]:
    router, cost, tokens = row["router"], row["topk_equal_cost"], row["topk_equal_tokens"]
    delta = router["recall"] - cost["recall"]
    recall = "**beats**" if delta > 0 else "ties" if delta == 0 else "**LOSES**"
    per_token = [c["cost"]["usd"] / (c["cost"]["input_tokens"] or 1) for c in (router, tokens)]
    ratio = per_token[0] / per_token[1] if per_token[1] else 1.0
    usd = "ties" if abs(ratio - 1) <= 0.005 else f"saves {1 / ratio:.2f}x" if ratio < 1 else "**COSTS MORE**"
    return recall, usd


def rows(path: Path) -> list[str]:
    report = json.loads(path.read_text(encoding="utf-8"))
    name = f"{report['corpus']} ({report['questions']} q, {report['corpus_tokens'] / 1000:.0f}k tokens)"
    out = []
    for row in report["windows"]:
        recall, usd = verdicts(row)
        router, cost, tokens = row["router"], row["topk_equal_cost"], row["topk_equal_tokens"]
        out.append(
            f"| {name} | {report['vendor_model']} | {row['rate_per_min']:g} | {row['window']:,} "
            f"| {router['distinct_prefixes']} | {router['recall']:.3f} | {cost['recall']:.3f} | {recall} "
            f"| {router['usd_per_1k']:.2f} | {tokens['usd_per_1k']:.2f} "
            f"| {tokens['prompt_tokens_mean'] / router['prompt_tokens_mean']:.3f} | {usd} |"
        )
    return out


NOISE = 1e-5  # 0.001%: below it, an excess per token is listed only as a count (module docstring)


def strict(path: Path) -> tuple[list[str], int, list[float]]:
    """The cells of one report where the router costs more per token or recalls less (module docstring),
    the cell count, and the excesses below ``NOISE``."""
    report = json.loads(path.read_text(encoding="utf-8"))
    out, small = [], []
    for row in report["windows"]:
        router, cost, tokens = row["router"], row["topk_equal_cost"], row["topk_equal_tokens"]
        per_token = [c["cost"]["usd"] / (c["cost"]["input_tokens"] or 1) for c in (router, tokens)]
        excess = per_token[0] / per_token[1] - 1 if per_token[1] else 0.0
        where = f"{report['corpus']} {report['vendor_model']} {row['rate_per_min']:g}/min {row['window']:,}"
        if excess >= NOISE:
            out.append(f"{where}: $ per token +{100 * excess:.3f}% over top-k at equal tokens")
        elif excess > 0:
            small.append(excess)
        if router["recall"] < cost["recall"]:
            out.append(f"{where}: recall {router['recall']:.4f} < top-k at equal cost {cost['recall']:.4f}")
    return out, len(report["windows"]), small


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--strict":
        found, cells, small = [], 0, []
        for arg in args[1:]:
            lines, n, below = strict(Path(arg))
            found, cells, small = found + lines, cells + n, small + below
        print("\n".join(found) or "none")
        largest = f", the largest +{100 * max(small):.1g}%" if small else ""
        print(f"({len(small)} more cells above top-k per token by less than 0.001%{largest}; {cells} cells read)")
    else:
        print(HEADER)
        for arg in args:
            print("\n".join(rows(Path(arg))))
