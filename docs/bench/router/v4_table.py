"""The router v4 table from ``ragcache eval-router --rates … --json`` files: per (rate, window) cell,
router recall against top-k at equal cost, and router $ against top-k at equal tokens.

    python docs/bench/router/v4_table.py docs/bench/router/v4-*.json

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


if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        print("\n".join(rows(Path(arg))))
