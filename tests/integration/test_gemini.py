"""The gemini backend: the real ``google-genai`` SDK against a local server that
stands in for Google's Gemini API (tests/gemini_server.py; Google cannot be
reached from here). The stand-in implements the documented ``cachedContents``
resource and ``generateContent`` / ``streamGenerateContent`` with
``cachedContent``, and rejects what Google rejects; these tests pin the request
bodies ragcache sends and follow a prefix's explicit cache through its life:
created by the first question, read by the second, found again by another
process, extended by keep-warm while busy, left to lapse when idle, deleted
when a rebuild retires its blocks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ragcache.app import RagCache
from ragcache.backends.base import GenerationOptions
from ragcache.backends.gemini.backend import GeminiBackend
from ragcache.cache.pricing import cost_of
from ragcache.cache.warmer import Warmer, policy_for
from ragcache.config import BackendConfig, CacheConfig, Config
from ragcache.corpus.compile import build_corpus
from ragcache.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    RateLimitError,
)
from ragcache.prompt import Route, assemble_prompt

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gemini-2.5-flash"


def make_rag(build: Path, server: Any, **options: Any) -> RagCache:
    """A RagCache on the gemini backend, its cache registry on the stand-in's clock. The small corpus's
    category blocks are 1-2k tokens, under 2.5 Flash's documented 2048 minimum: the tests lower it."""
    options.setdefault("min_cacheable_tokens", 1024)
    backend = BackendConfig(kind="gemini", model=MODEL, base_url=server.url, max_retries=0, max_output_tokens=16,
                            options=options)  # fmt: skip
    rag = RagCache.from_config(Config(corpus=build, build_dir=build, backend=backend))
    rag.backend.registry.clock = server.state.datetime_now
    return rag


def category_prompt(rag: RagCache, block: str) -> Any:
    return assemble_prompt(rag.stable_segments([block]), "", route=Route("blocks", (block,)))


def ragcache_names(server: Any) -> dict[str, str]:
    """displayName → name of the stand-in's live caches."""
    return {c.display_name: name for name, c in server.state.live().items()}


def test_first_question_creates_one_cache_and_the_second_reads_it(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    first = rag.ask("What are the storage classes?")
    assert len(gemini.state.caches) == 1
    cache = next(iter(gemini.state.caches.values()))
    assert cache.display_name == f"ragcache-{rag.prompt_for('x').prefix_fingerprint}"
    assert first.usage.cache_write_tokens == cache.tokens and first.usage.cached_tokens == 0
    assert first.usage.input_tokens > cache.tokens  # prompt_token_count includes the cached prefix
    assert first.usage.raw["cache_storage_token_hours"] == pytest.approx(cache.tokens * 300 / 3600, rel=1e-3)

    second = rag.ask("Is SQLite a server?")
    assert len(gemini.state.caches) == 1
    assert second.usage.cached_tokens == cache.tokens == second.usage.raw["cached_content_token_count"]
    assert second.usage.input_tokens == second.usage.raw["prompt_token_count"] > cache.tokens
    assert second.usage.cache_write_tokens == 0 and 0 < second.usage.output_tokens <= 16
    assert "Is SQLite a server?" in second.text and "overview/serverless.html" in second.sources
    # cost: the creating answer pays storage for its TTL on top of the tokens
    with_storage = cost_of(first.usage, MODEL).usd
    without = cost_of(type(first.usage)(**first.usage.to_dict()), MODEL).usd
    assert first.cost_usd == pytest.approx(with_storage)
    assert with_storage - without == pytest.approx(cache.tokens * 300 / 3600 * 1.0 / 1e6, rel=1e-3)
    assert second.cost_usd < first.cost_usd
    rag.close()


def test_request_bodies_are_pinned(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    rag.ask("Is SQLite a server?", options=GenerationOptions(max_tokens=8, stop=("\n\n",)))
    prompt = rag.prompt_for("Is SQLite a server?")
    blocks = rag.corpus
    (create,) = gemini.state.bodies("/cachedContents")
    assert create == {
        "model": f"models/{MODEL}",
        "displayName": f"ragcache-{prompt.prefix_fingerprint}",
        "ttl": "300s",
        "systemInstruction": {"parts": [{"text": blocks.block_text("instructions")}], "role": "user"},
        "contents": [{"role": "user", "parts": [{"text": blocks.block_text("full")},
                                                {"text": blocks.block_text("examples")}]}],
    }  # fmt: skip
    (generate,) = gemini.state.bodies(":streamGenerateContent")
    assert generate == {
        "contents": [{"role": "user", "parts": [{"text": "Is SQLite a server?"}]}],
        "cachedContent": next(iter(gemini.state.caches)),
        "generationConfig": {"maxOutputTokens": 8, "temperature": 0.0, "topP": 1.0, "stopSequences": ["\n\n"]},
    }  # no systemInstruction, tools or toolConfig beside cachedContent: Google answers 400
    rag.close()


def test_a_second_backend_finds_the_cache_by_name_and_streams_from_it(small_build: Path, gemini: Any) -> None:
    make_rag(small_build, gemini).ask("Is SQLite a server?")
    other = make_rag(small_build, gemini)  # a fresh registry, as in another process
    items = list(other.stream("What about concurrency?"))
    answer = items[-1]
    assert "".join(i for i in items[:-1] if isinstance(i, str)) == answer.text and len(items) > 2
    assert answer.usage.cached_tokens > 3000 and answer.usage.cache_write_tokens == 0
    assert len(gemini.state.caches) == 1
    assert any(r["method"] == "GET" and r["path"].endswith("/cachedContents") for r in gemini.state.requests)
    other.close()


def test_warm_creates_caches_only_for_the_prefixes_asked(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    asked = category_prompt(rag, "category:overview")
    (result,) = Warmer(rag.backend).warm([asked, asked])
    assert list(ragcache_names(gemini)) == [f"ragcache-{asked.prefix_fingerprint}"]
    assert result.status == "cached" and result.verify_usage.cached_tokens == result.prefix_tokens > 1024
    assert rag.backend.prefix_tokens(asked) == next(iter(gemini.state.caches.values())).tokens
    rag.close()


def test_keep_warm_tick_extends_a_busy_cache_and_lets_an_idle_one_lapse(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    backend = rag.backend
    policy = policy_for(backend, MODEL)
    assert (policy.ttl_s, policy.read_price, policy.write_price) == (
        300.0,
        pytest.approx(1.0 * 300 / 3600),
        pytest.approx(1.0 * 300 / 3600 + 0.30),
    )
    warmer = Warmer(backend, policy, clock=gemini.state.now)
    busy, idle = category_prompt(rag, "category:faq"), category_prompt(rag, "category:overview")
    warmer.warm([busy, idle], verify=False)
    names = ragcache_names(gemini)
    busy_name, idle_name = names[f"ragcache-{busy.prefix_fingerprint}"], names[f"ragcache-{idle.prefix_fingerprint}"]
    start = gemini.state.now()
    for at in (200, 220, 240, 260):  # traffic on the busy prefix only; reads do not extend a Gemini cache
        gemini.advance(start + at - gemini.state.now())
        backend.generate(assemble_prompt(busy.stable, f"question at {at}", route=busy.route), GenerationOptions(4))
        warmer.record(busy)
    assert gemini.expire_in(busy_name) == pytest.approx(40, abs=2)

    gemini.advance(15)  # 275 s after warm-up: both within the 30 s margin before expiry
    decisions = {d.fingerprint: d for d in warmer.tick()}
    assert decisions[busy.prefix_fingerprint].action == "refresh"
    assert decisions[idle.prefix_fingerprint].action == "lapse"
    assert gemini.expire_in(busy_name) == pytest.approx(300, abs=2)  # caches.update(ttl="300s")
    assert gemini.expire_in(idle_name) == pytest.approx(25, abs=2)
    patch = [r for r in gemini.state.requests if r["method"] == "PATCH"]
    assert [r["body"] for r in patch] == [{"ttl": "300s"}] and patch[0]["path"].endswith(busy_name)

    gemini.advance(30)
    assert set(ragcache_names(gemini).values()) == {busy_name}  # the idle cache lapsed
    rag.close()


def copied_small_build(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of corpora/small (so a test may edit it) and its build: (corpus, build)."""
    corpus, build = tmp_path / "small", tmp_path / "build"
    shutil.copytree(ROOT / "corpora" / "small", corpus, ignore=shutil.ignore_patterns(".ragcache"))
    build_corpus(corpus, build)
    return corpus, build


def edit_and_rebuild(corpus: Path, build: Path) -> None:
    """One document edited, the corpus rebuilt in place: its blocks, so its prefix, change."""
    doc = corpus / "docs" / "faq" / "typing.md"
    doc.write_text(doc.read_text(encoding="utf-8") + "\nOne more sentence about typing.\n", encoding="utf-8")
    build_corpus(corpus, build)


def test_a_rebuild_that_changes_a_block_deletes_the_stale_cache(tmp_path: Path, gemini: Any) -> None:
    corpus, build = copied_small_build(tmp_path)
    rag = make_rag(build, gemini)
    rag.ask("Is SQLite a server?")
    (stale,) = gemini.state.caches
    edit_and_rebuild(corpus, build)
    other = make_rag(build, gemini, namespace="other-corpus")  # another deployment on the same key
    other.ask("Is SQLite a server?")
    theirs = {n for n, c in gemini.state.caches.items() if c.display_name.startswith("ragcache-other-corpus:")}
    rebuilt = make_rag(build, gemini)
    live = {p.prefix_fingerprint for p in rebuilt.prefixes()}
    assert rebuilt.backend.retire(live) == [stale]
    assert set(gemini.state.caches) == theirs and len(theirs) == 1  # retire stays inside its namespace
    gemini.state.caches.clear()
    assert gemini.state.caches == {}
    answer = rebuilt.ask("Is SQLite a server?")
    assert answer.usage.cache_write_tokens > 3000 and list(ragcache_names(gemini)) == [f"ragcache-{next(iter(live))}"]
    rag.close()
    other.close()
    rebuilt.close()


def test_the_warm_up_after_a_rebuild_deletes_the_old_builds_caches(tmp_path: Path, gemini: Any) -> None:
    """The server's warm-up (the deployment's one warmer) deletes the caches of prefixes the new build
    no longer emits, before warming its own; another namespace's caches stay."""
    import asyncio

    from ragcache.server.corpora import Corpora
    from ragcache.server.warming import Warming

    corpus, build = copied_small_build(tmp_path)
    old, other = make_rag(build, gemini), make_rag(build, gemini, namespace="other-corpus")
    old.ask("Is SQLite a server?")
    other.ask("Is SQLite a server?")
    (old_live,) = {p.prefix_fingerprint for p in old.prefixes()}
    stale = ragcache_names(gemini)[f"ragcache-{old_live}"]
    edit_and_rebuild(corpus, build)
    rebuilt = make_rag(build, gemini)
    rebuilt.config = rebuilt.config.model_copy(
        update={"cache": CacheConfig(keep_warm=False, traffic_dir=str(tmp_path / "traffic"))}
    )
    warming = Warming(Corpora([rebuilt]))
    asyncio.run(warming.warm_all())
    assert warming.all_ready(), warming.report()
    (live,) = {p.prefix_fingerprint for p in rebuilt.prefixes()}
    assert stale not in gemini.state.caches
    assert set(ragcache_names(gemini)) == {f"ragcache-other-corpus:{old_live}", f"ragcache-{live}"}
    deletes = [r for r in gemini.state.requests if r["method"] == "DELETE"]
    assert [r["path"].rsplit("/", 1)[-1] for r in deletes] == [stale.rsplit("/", 1)[-1]]
    for rag in (old, other, rebuilt):
        rag.close()


def test_one_off_and_small_prefixes_ride_on_implicit_caching(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini, create_after=2)
    first = rag.ask("Is SQLite a server?")  # a one-off so far: no cache object, the whole prompt is sent
    assert gemini.state.caches == {} and first.usage.cache_write_tokens == 0
    (body,) = gemini.state.bodies(":streamGenerateContent")
    assert "cachedContent" not in body
    assert body["systemInstruction"]["parts"][0]["text"] == rag.corpus.block_text("instructions")
    second = rag.ask("Does it need configuration?")  # asked twice: now it earns a cache
    assert len(gemini.state.caches) == 1 and second.usage.cache_write_tokens > 3000
    rag.close()

    small = make_rag(small_build, gemini, min_cacheable_tokens=100_000)
    small.ask("Is SQLite a server?")
    repeat = small.ask("Is SQLite a server, really?")
    assert len(gemini.state.caches) == 1  # nothing new below the minimum
    assert repeat.usage.cached_tokens > 3000  # Google's implicit cache hit, read from usage_metadata
    warm = small.backend.warm(small.prompt_for("x"))
    assert warm.cache_write_tokens == 0 and len(gemini.state.caches) == 1
    small.close()


def test_a_cache_that_vanished_is_created_again(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    rag.ask("Is SQLite a server?")
    gemini.state.caches.clear()  # deleted by another process, or expired meanwhile
    answer = rag.ask("Is SQLite a server?")
    assert answer.usage.cache_write_tokens > 3000 and len(gemini.state.caches) == 1
    rag.close()


@pytest.mark.parametrize(
    ("code", "status", "message", "error"),
    [
        (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", RateLimitError),
        (500, "INTERNAL", "An internal error has occurred.", BackendUnavailableError),
        (503, "UNAVAILABLE", "The model is overloaded.", BackendUnavailableError),
        (403, "PERMISSION_DENIED", "Permission denied on resource project.", AuthenticationError),
        (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", BackendError),
    ],
)
def test_errors_are_typed(small_build: Path, gemini: Any, code: int, status: str, message: str, error: type) -> None:
    rag = make_rag(small_build, gemini, explicit_cache=False)
    gemini.fail_next(code, message, status)
    with pytest.raises(error) as caught:
        rag.ask("Is SQLite a server?")
    assert type(caught.value) is error and message in str(caught.value) and "gemini at http" in str(caught.value)
    rag.close()


def test_wrong_key_too_long_and_unknown_option(small_build: Path, gemini: Any, tmp_path: Path) -> None:
    rag = make_rag(small_build, gemini)
    gemini.state.api_key = "another-key"
    with pytest.raises(AuthenticationError, match="GEMINI_API_KEY"):
        rag.ask("Is SQLite a server?")
    gemini.state.api_key = os.environ["GEMINI_API_KEY"]
    gemini.state.context_window = 1000
    with pytest.raises(ContextLengthError, match="exceeds the maximum number of tokens"):
        make_rag(small_build, gemini, explicit_cache=False).ask("Is SQLite a server?")
    config = tmp_path / "gemini.yaml"
    config.write_text("backend:\n  kind: gemini\n  options:\n    ttl: 300\n")
    from ragcache.config import load_config

    with pytest.raises(ConfigError, match=r"gemini\.yaml: backend\.options\.ttl: unknown key"):
        GeminiBackend(load_config(config).backend, CacheConfig())
    rag.close()


def test_ragcache_ask_cli_against_the_stand_in(small_build: Path, gemini: Any) -> None:
    def ask(question: str) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "ragcache.cli", "ask", "--json", "--backend", "gemini", "--base-url", gemini.url,
               "--model", MODEL, "--corpus", str(small_build), "--max-tokens", "8", question]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first, second = ask("Is SQLite a server?"), ask("What are the storage classes?")
    assert len(gemini.state.caches) == 1
    assert first["usage"]["cache_write_tokens"] > 3000 and first["usage"]["cached_tokens"] == 0
    assert second["usage"]["cached_tokens"] == first["usage"]["cache_write_tokens"]
    assert second["route"]["blocks"] == ["full"] and second["cost_usd"] > 0


def test_a_chat_turn_sends_context_and_history_after_the_cached_prefix(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini)
    chat = rag.session(context="The user is a DBA.")
    chat.ask("Is SQLite a server?")
    second = chat.ask("And its file format?")
    first_turn = chat.history[0].content
    body = gemini.state.bodies(":streamGenerateContent")[-1]
    assert [c["role"] for c in body["contents"]] == ["user", "user", "model", "user"]
    assert [c["parts"][0]["text"] for c in body["contents"]][:2] == ["The user is a DBA.", first_turn]
    assert body["contents"][-1]["parts"] == [{"text": "And its file format?"}]
    assert "systemInstruction" not in body and second.usage.cached_tokens > 3000
    rag.close()


def test_count_tokens_api_and_a_refused_connection(small_build: Path, gemini: Any) -> None:
    rag = make_rag(small_build, gemini, count_tokens="api")
    rag.ask("Is SQLite a server?")
    rag.ask("Does it need configuration?")
    assert len(gemini.state.bodies(":countTokens")) == 1 and len(gemini.state.caches) == 1  # once per prefix
    rag.close()
    closed = BackendConfig(kind="gemini", model=MODEL, base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(BackendUnavailableError, match=r"cannot connect.*check --base-url"):
        GeminiBackend(closed, CacheConfig()).count_tokens("hello")


def test_ragcache_warm_cli_creates_the_warm_set_caches_only(small_build: Path, gemini: Any) -> None:
    cmd = [sys.executable, "-m", "ragcache.cli", "warm", "--json", "--backend", "gemini", "--base-url", gemini.url,
           "--model", MODEL, "--corpus", str(small_build)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert line["status"] == "cached" and line["label"] == "full:full"
    (cache,) = gemini.state.caches.values()  # the router emits one prefix here (the corpus fits whole)
    assert cache.display_name == f"ragcache-{line['fingerprint']}" and line["cached_tokens"] == cache.tokens
