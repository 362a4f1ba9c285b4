"""The shipped Prometheus rules and Grafana dashboard: they fire on a broken cache,
stay quiet on a steady one (promtool, Prometheus' own tool, on recorded series),
and only name metrics the server really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from ragcache.server.metrics import ServerMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "configs" / "monitoring" / "alerts.yml"
DASHBOARD = ROOT / "configs" / "monitoring" / "grafana-dashboard.json"
RULE_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"
_METRIC = re.compile(r"\bragcache_[a-z_]+\b")


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `bash scripts/setup.sh --test` installs Debian's prometheus package"
    return found


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    check = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def _exposed_metric_names() -> set[str]:
    text = ServerMetrics().exposition()[0].decode()
    # A counter's TYPE line names it with its ``_total`` suffix; compare base names, as _referenced does.
    return {re.sub(r"_total$", "", line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE ")}


def _referenced(exprs: list[str]) -> set[str]:
    names = set()
    for expr in exprs:
        for name in _METRIC.findall(expr):
            names.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    return names


def test_rules_and_dashboard_only_use_exposed_metrics() -> None:
    exposed = _exposed_metric_names()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule_exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    panel_exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    referenced = _referenced(rule_exprs + panel_exprs) - {r.split(":")[0] for r in recorded}
    missing = sorted(referenced - exposed)
    assert not missing, f"rules/dashboard use metrics the server does not expose: {missing}"
    assert {"ragcache_warm_prefix_misses", "ragcache_queue_depth", "ragcache_cached_tokens"} <= referenced
