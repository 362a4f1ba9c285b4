"""Markdown tables from ``ragcache eval-chat --json`` files: one table per corpus, and the check.

    python docs/bench/chat/table.py docs/bench/chat/sqlite.json docs/bench/chat/hotpotqa-*.json

The check is issue 21's: ragcache's per-turn recall ≥ both baselines at equal cost, per window.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {
    "ragcache": "ragcache",
    "ragcache_question_only": "ragcache, question-only query (ablation)",
    "topk_in_system": "top-k in system, =cost",
    "topk_after_history": "top-k after history, =cost",
}


def rows(report: dict) -> list[str]:
    out = [
        "| window | strategy | recall | recall by turn 1..N | any gold | cached share | prompt tokens | $/1k turns "
        "| compactions | k (tokens/turn) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["windows"]:
        for key, label in LABELS.items():
            f = row[key]
            k = (
                f"{f['budget_tokens']:,}" + ("" if f["cost_matched"] else " (costs more)")
                if "budget_tokens" in f
                else ""
            )
            moves = f", {f['moves']} moves" if "moves" in f else ""
            by_turn = " / ".join(f"{r:.2f}" for r in f["recall_by_turn"] if r is not None)
            out.append(
                f"| {row['window']:,} | {label} | {f['recall']:.3f} | {by_turn} | {f['hit_rate']:.3f} "
                f"| {f['cached_share']:.2f} | {f['prompt_tokens_mean']:,.0f} | {f['usd_per_1k_turns']:.2f} "
                f"| {f['compactions']}{moves} | {k} |"
            )
    return out


def check(report: dict) -> list[str]:
    out = []
    for row in report["windows"]:
        ours = row["ragcache"]["recall"]
        gaps = {k: round(ours - row[k]["recall"], 4) for k in ("topk_in_system", "topk_after_history")}
        verdict = "pass" if min(gaps.values()) >= 0 else "MISS"
        out.append(f"- {row['window']:,}: {verdict} (ragcache − in system {gaps['topk_in_system']:+.3f}, "
                   f"− after history {gaps['topk_after_history']:+.3f})")  # fmt: skip
    return out


def main(paths: list[str]) -> None:
    for path in paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        sets = ", ".join(
            f"{report['sets'][k]['conversations']} {k} ({report['sets'][k]['turns']} turns)"
            for k in ("topical", "shuffled")
        )
        print(f"### {report['corpus']} ({report['corpus_tokens']:,} tokens; {sets})\n")
        print("\n".join(rows(report)))
        print("\nCheck (per-turn recall ≥ both baselines at equal cost):\n")
        print("\n".join(check(report)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
