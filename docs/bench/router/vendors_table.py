"""The vendor-profile table of docs/bench/router/vendors.md from ``ragcache eval-router --json`` files.

    python docs/bench/router/vendors_table.py docs/bench/router/vendors/sqlite-*.json

One row per file and window: the profile the replay and the router priced with (vendor, model,
TTL, read/write multipliers, storage), then the router against fused top-k at equal cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = (
    "| corpus | profile | TTL | read / write | storage | window | router recall | router cost /1k "
    "| prefixes | top-k =cost recall | top-k =cost tokens | top-k =tokens cost /1k |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def rows(report: dict) -> list[str]:
    """The table rows of one report (cost: USD, or millions of prefilled tokens when self-hosted)."""
    p = report["profile"]
    unit = "Mtok prefill" if p["self_hosted"] else "$"
    name = f"{p['vendor']} `{p['model'] or '(any)'}`"
    out = []
    for w in report["windows"]:
        router, cost, tokens = w["router"], w["topk_equal_cost"], w["topk_equal_tokens"]
        out.append(
            f"| {report['corpus']} ({report['questions']} q) | {name} | {p['ttl']} "
            f"| {p['read_multiplier']:g}x / {p['write_multiplier']:g}x | {p['storage_per_token_hour']:g} "
            f"| {w['window']:,} | {router['recall']:.3f} | {router['usd_per_1k']:.2f} {unit} "
            f"| {router['distinct_prefixes']} | {cost['recall']:.3f} | {cost['prompt_tokens_mean']:,.0f} "
            f"| {tokens['usd_per_1k']:.2f} {unit} |"
        )
    return out


def main(paths: list[str]) -> None:
    print(HEADER)
    for path in paths:
        for row in rows(json.loads(Path(path).read_text(encoding="utf-8"))):
            print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
