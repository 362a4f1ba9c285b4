"""The cache dashboard at ``GET /``: one self-contained HTML page, no network.

The page is rendered from the server's own metrics (the same numbers as
``/metrics``, summed over workers) and refreshes itself from
``/dashboard.json``. Its data ride inline as JSON, so it shows numbers at once
and needs nothing but the server.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from ragcache.server.corpora import corpus_summary
from ragcache.server.metrics import snapshot_dict

if TYPE_CHECKING:
    from ragcache.server.state import ServerState

__all__ = ["dashboard_data", "render_dashboard"]

_PLACEHOLDER = "/*__DASHBOARD_DATA__*/null"


def dashboard_data(state: ServerState) -> dict[str, Any]:
    """Corpora, totals, TTFT distribution and the hit-rate series."""
    snap = state.metrics.sample()
    corpora = []
    for name, rag in state.corpora.items():
        summary = corpus_summary(rag, state.warming.is_ready(name)).model_dump()
        summary["state"] = state.warming.states.get(name, "unknown")
        summary["backend"] = rag.backend.name
        summary["self_hosted"] = rag.backend.profile.self_hosted
        summary["warm"] = state.warming.results.get(name, [])
        corpora.append(summary)
    return {
        "generated_at": round(time.time(), 3),
        "multiprocess": state.metrics.multiprocess,
        "corpora": corpora,
        "totals": snapshot_dict(snap),
        "series": list(state.metrics.history),
    }


@lru_cache(maxsize=1)
def _template() -> str:
    return files("ragcache.server").joinpath("dashboard.html").read_text(encoding="utf-8")


def render_dashboard(data: dict[str, Any]) -> str:
    """The page with ``data`` inlined (escaped so it cannot close the script tag)."""
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return _template().replace(_PLACEHOLDER, payload)
