"""Every vendor table row as a CacheProfile, the README's table row for each, and a vendor added
by one folder, one entry-point line per group and its rows (nothing else touched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragcache.backends.profile import profile_for, vendor_tables

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROWS = [(vendor, name) for vendor, table in vendor_tables().items() for name in (list(table.models) or ["(any)"])]


def readme_row(vendor: str, name: str) -> str:
    p = profile_for(vendor, name)
    writes = ", ".join(f"{t} {m:g}x" for t, m in p.write_multipliers.items())
    return (
        f"| {vendor} | `{name}` | {p.context_window:,} | {p.read_multiplier:g}x | {writes} | "
        f"{', '.join(p.ttl_options)} | {p.min_cacheable_tokens} | {p.storage_per_token_hour:g} | {p.as_of} |"
    )


@pytest.mark.parametrize(("vendor", "name"), ROWS)
def test_each_row_is_a_sane_profile_and_the_readme_shows_it(vendor: str, name: str) -> None:
    p = profile_for(vendor, name)
    assert len(p.as_of) == 10 and p.as_of.startswith("20") and p.source
    if p.self_hosted:
        assert (p.read_multiplier, p.write_multiplier, p.ttl_s, p.input_price) == (0.0, 1.0, None, 0.0)
    else:
        assert 0 < p.read_multiplier < 1 <= min(p.write_multipliers.values()), p
        assert p.input_price is not None and p.priced_model == name
    assert readme_row(vendor, name) in README


def test_the_issue_22_corrections_hold() -> None:
    assert profile_for("anthropic", "claude-sonnet-4-5", "1h").write_multiplier == 2.0
    assert profile_for("anthropic", "claude-sonnet-5").context_window == 1_000_000
    assert profile_for("anthropic", "claude-opus-4-5").max_lookback_blocks == 20
    assert profile_for("openai", "gpt-4o").read_multiplier == 0.5
    assert profile_for("openai", "gpt-4.1").read_multiplier == 0.25
    assert profile_for("openai", "gpt-5").write_multiplier == 1.0  # before GPT-5.6: writes are plain input
    flash = profile_for("gemini", "gemini-2.5-flash")
    assert (flash.min_cacheable_tokens, flash.default_ttl, flash.storage_per_token_hour) == (2048, "1h", 1.0)
    assert profile_for("gemini", "gemini-3-pro-preview").min_cacheable_tokens == 4096


def test_a_vendor_is_one_folder_one_entry_point_line_per_group_and_its_rows(tmp_path: Path) -> None:
    """A package installed beside ragcache (its dist-info on the path) adds a backend and its table."""
    pkg = tmp_path / "acme_vendor"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from ragcache.backends.base import Backend, CacheUsage, Capabilities, Generation
            from ragcache.backends.profile import ModelRow, VendorTable

            TABLE = VendorTable(
                vendor="acme", as_of="2026-12-07", source="https://acme.example/pricing",
                ttls={"10m": 600.0}, default_ttl="10m", window=32_000, min_cacheable=256,
                models={"acme-1": ModelRow(input=1.0, output=4.0, cached_read=0.2, cache_write={"10m": 1.5})},
            )

            class AcmeBackend(Backend):
                name = "acme"

                def __init__(self, config, cache):
                    self.model = config.model

                @property
                def capabilities(self):
                    return Capabilities(context_window=32_000, min_cacheable_tokens=256)

                def generate(self, prompt, options):
                    return Generation(text="ok", usage=CacheUsage())

            def create(config, cache):
                return AcmeBackend(config, cache)
            """
        )
    )
    dist = tmp_path / "acme_vendor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-vendor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ragcache.backends]\nacme = acme_vendor:create\n\n[ragcache.vendors]\nacme = acme_vendor:TABLE\n"
    )
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from ragcache.backends.base import available_backends, create_backend
        from ragcache.cache.pricing import cost_of
        from ragcache.cache.replay import rules_for
        from ragcache.config import BackendConfig, CacheConfig
        from ragcache.backends.base import CacheUsage
        backend = create_backend(BackendConfig(kind="acme", model="acme-1"), CacheConfig())
        p = backend.profile
        assert "acme" in available_backends()
        assert (p.read_multiplier, p.write_multiplier, p.ttl_s, p.min_cacheable_tokens) == (0.2, 1.5, 600.0, 256)
        assert rules_for("acme-1").cache_write == 1.5
        assert round(cost_of(CacheUsage(input_tokens=1_000_000, cached_tokens=1_000_000), "acme-1").usd, 6) == 0.2
        print("acme ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "acme ok" in done.stdout
