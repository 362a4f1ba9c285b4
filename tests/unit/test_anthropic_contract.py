"""Contract tests for the Anthropic Messages API (a hosted API that cannot run here).

The real ``anthropic`` SDK sends its real HTTP requests into an httpx
MockTransport: these tests pin the exact request bodies ragcache sends
(breakpoint placement, order, TTLs, ≤ 4 breakpoints, none on a too-small
prefix) and parse response bodies shaped as Anthropic documents them. The same
backend runs against a real server in tests/integration/test_vllm_backends.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anthropic
import httpx2
import pytest

from ragcache.backends.anthropic.backend import AnthropicBackend, usage_from_message
from ragcache.backends.base import GenerationOptions
from ragcache.backends.retry import RetryPolicy
from ragcache.cache.pricing import cost_of
from ragcache.config import BackendConfig, CacheConfig
from ragcache.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ContextLengthError,
    RateLimitError,
    UnsupportedError,
)
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

INSTRUCTIONS = "Answer from the documents; cite them."  # ~10 tokens: below every minimum
BIG = "SQLite stores data in a single file. " * 150  # ~1400 estimated tokens


def message_body(text: str = "Hello", **usage: object) -> dict:
    """A Messages API response as documented (usage: cached tokens excluded from input_tokens)."""
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5, **usage},
    }


class Recorder:
    """Answers each request with the next scripted response and keeps the request bodies."""

    def __init__(self, *responses: httpx2.Response | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        nxt = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return nxt(request) if callable(nxt) else nxt

    def body(self, i: int = -1) -> dict:
        return json.loads(self.requests[i].content)


def make(recorder: Recorder, ttl: str = "5m", model: str = "claude-sonnet-4-6", **options: object) -> AnthropicBackend:
    client = anthropic.Anthropic(
        api_key="sk-ant-test", http_client=httpx2.Client(transport=httpx2.MockTransport(recorder)), max_retries=0
    )
    config = BackendConfig(kind="anthropic", model=model, options=options)
    backend = AnthropicBackend(config, CacheConfig(ttl=ttl), client=client)
    backend.policy = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)
    return backend


def stable(n_corpus: int = 1) -> tuple[Segment, ...]:
    corpus = tuple(Segment(SegmentKind.CORPUS, f"[block {i}]\n{BIG}", f"category:c{i}") for i in range(n_corpus))
    return (Segment(SegmentKind.INSTRUCTIONS, INSTRUCTIONS, "instructions"), *corpus)


def breakpoints(body: dict) -> list[tuple[str, str]]:
    """(where, ttl) of every cache_control in request order."""
    out = [("system", b["cache_control"]["ttl"]) for b in body["system"] if "cache_control" in b]
    for m in body["messages"]:
        if isinstance(m["content"], list):
            out += [(m["role"], b["cache_control"]["ttl"]) for b in m["content"] if "cache_control" in b]
    return out


def test_single_question_request_body_is_pinned() -> None:
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    prompt = Prompt(stable=(*stable(1), Segment(SegmentKind.EXAMPLES, "Q: a?\nA: b.", "examples")), question="Why?")
    make(recorder).generate(prompt, GenerationOptions(max_tokens=64))
    assert recorder.requests[0].url.path == "/v1/messages"
    assert recorder.body() == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": INSTRUCTIONS},  # ~10-token prefix: below the minimum, no breakpoint
            {"type": "text", "text": f"[block 0]\n{BIG}", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
            {"type": "text", "text": "Q: a?\nA: b.", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Why?"}]}],
    }


def test_a_claude_5_request_is_built_as_documented_with_its_1m_window_and_1h_writes() -> None:
    """Claude Sonnet 5: non-default temperature/top_p/top_k are a 400, so none is sent; 1M-token window;
    a 1-hour breakpoint writes at 2x input."""
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    backend = make(recorder, ttl="1h", model="claude-sonnet-5")
    prompt = Prompt(stable=stable(1), question="Why?")
    backend.generate(prompt, GenerationOptions(max_tokens=64, temperature=0.7, top_p=0.9, stop=("END",)))
    assert recorder.body() == {
        "model": "claude-sonnet-5",
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": INSTRUCTIONS},
            {"type": "text", "text": f"[block 0]\n{BIG}", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Why?"}]}],
        "stop_sequences": ["END"],
    }
    caps, profile = backend.capabilities, backend.profile
    assert (caps.context_window, caps.ttl_s, caps.min_cacheable_tokens) == (1_000_000, 3600.0, 1024)
    assert (profile.ttl, profile.write_multiplier, profile.read_multiplier, profile.max_lookback_blocks) == (
        "1h",
        2.0,
        0.1,
        20,
    )


def test_multi_turn_session_never_exceeds_four_breakpoints_and_marks_the_latest_turn() -> None:
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    backend = make(recorder)
    history = (Message("user", "first?"), Message("assistant", "one."))
    prompt = Prompt(stable=stable(5), question="second?", context="user: Ada", history=history)
    backend.generate(prompt, GenerationOptions(max_tokens=32))
    body = recorder.body()
    assert len(breakpoints(body)) == 4
    # the 3 latest corpus blocks keep theirs, then the latest turn; instructions (too small) and the
    # two earliest corpus blocks have none
    assert ["cache_control" in b for b in body["system"]] == [False, False, False, True, True, True, False]
    assert body["system"][-1] == {"type": "text", "text": "user: Ada"}  # volatile context: after the breakpoints
    assert body["messages"] == [
        {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "one."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second?", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],
        },
    ]
    reasons = [b.reason for b in backend.last_plan.breakpoints if not b.placed]
    assert "below the model's minimum cacheable 1024" in reasons[0]
    assert reasons[1:] == ["over the limit of 4 breakpoints"] * 2


def test_a_turn_the_next_may_drop_marks_the_end_of_the_history_not_itself() -> None:
    """``Prompt.cache_turn`` false (the planner's first, compacting or moving turns): the turn's own
    text goes as plain input, and the breakpoint after the stable ones sits on the last history
    message, so the cached part of the history is still read."""
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    history = (Message("user", "first?"), Message("assistant", "one."))
    for cache_turn, expected in ((False, "assistant"), (True, "user")):
        prompt = Prompt(stable=stable(1), question="second?", history=history, cache_turn=cache_turn)
        make(recorder).generate(prompt, GenerationOptions(max_tokens=32))
        body = recorder.body()
        assert breakpoints(body) == [("system", "5m"), (expected, "5m")]
        assert body["messages"][0] == {"role": "user", "content": "first?"}
        if not cache_turn:
            assert body["messages"][1]["content"] == [
                {"type": "text", "text": "one.", "cache_control": {"type": "ephemeral", "ttl": "5m"}}
            ]
            assert body["messages"][2]["content"] == [{"type": "text", "text": "second?"}]
    first = Prompt(stable=stable(1), question="first?", cache_turn=False)  # a first turn: the stable ones only
    make(recorder).generate(first, GenerationOptions(max_tokens=32))
    assert breakpoints(recorder.body()) == [("system", "5m")]


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        ("1h", [("system", "1h"), ("system", "1h"), ("user", "5m")]),
        ("5m", [("system", "5m"), ("system", "5m"), ("user", "5m")]),
    ],
)
def test_stable_breakpoints_take_the_configured_ttl_and_the_latest_turn_five_minutes(
    ttl: str, expected: list[tuple[str, str]]
) -> None:
    """The API requires 1h breakpoints before 5m ones: the stable prefix (first) takes the
    configured TTL, the conversation turn (last) always 5m, so a 1h never follows a 5m."""
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    history = (Message("user", "q1"), Message("assistant", "a1"))
    make(recorder, ttl=ttl).generate(Prompt(stable=stable(2), question="q2", history=history), GenerationOptions())
    placed = breakpoints(recorder.body())
    assert placed == expected
    ranks = [{"1h": 0, "5m": 1}[t] for _, t in placed]
    assert ranks == sorted(ranks)


def test_the_ttl_option_overrides_the_cache_setting() -> None:
    config = BackendConfig(kind="anthropic", options={"ttl": "1h"})
    backend = AnthropicBackend(config, CacheConfig(ttl="5m"))
    assert backend.ttl == "1h" and backend.capabilities.ttl_s == 3600.0


def test_a_block_too_small_to_cache_gets_no_breakpoint_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    small = (Segment(SegmentKind.INSTRUCTIONS, INSTRUCTIONS), Segment(SegmentKind.CORPUS, "A tiny corpus."))
    with caplog.at_level(logging.WARNING, logger="ragcache.backends.anthropic"):
        make(recorder).generate(Prompt(stable=small, question="?"), GenerationOptions())
    assert breakpoints(recorder.body()) == []
    assert sum("below the model's minimum cacheable" in r.message for r in caplog.records) == 2


def test_minimum_is_per_model_and_overridable() -> None:
    recorder = Recorder(httpx2.Response(200, json=message_body()))
    backend = make(recorder, min_cacheable_tokens=8)
    backend.generate(Prompt(stable=stable(1), question="?"), GenerationOptions())
    assert len(breakpoints(recorder.body())) == 2  # the 10-token instructions now qualify
    assert backend.capabilities.min_cacheable_tokens == 8


def test_usage_converts_input_tokens_to_include_cache_reads_and_writes() -> None:
    usage = usage_from_message(
        message_body(
            cache_read_input_tokens=1800,
            cache_creation_input_tokens=200,
            cache_creation={"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 150},
        )["usage"]
    )
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.output_tokens) == (
        2012,
        1800,
        200,
        5,
    )
    cost = cost_of(usage, "claude-sonnet-4-5-20250929")
    # 12 fresh × $3 + 1800 read × $0.30 + 50 × $3.75 + 150 × $6 + 5 out × $15, per 1M tokens
    assert cost.usd == pytest.approx((12 * 3 + 1800 * 0.3 + 50 * 3.75 + 150 * 6 + 5 * 15) / 1e6)
    assert cost.uncached_usd == pytest.approx((2012 * 3 + 5 * 15) / 1e6)


def test_generate_parses_a_documented_response() -> None:
    body = message_body("Cached.", cache_read_input_tokens=1408, cache_creation_input_tokens=0)
    recorder = Recorder(httpx2.Response(200, json=body))
    generation = make(recorder).generate(Prompt(stable=stable(1), question="?"), GenerationOptions())
    assert generation.text == "Cached."
    assert generation.usage.cached_tokens == 1408 and generation.usage.input_tokens == 1420
    assert generation.model == "claude-sonnet-4-5-20250929"


def test_warm_pre_warms_with_max_tokens_zero_and_falls_back_to_one() -> None:
    recorder = Recorder(httpx2.Response(200, json=message_body("", cache_creation_input_tokens=1400)))
    make(recorder).warm(Prompt(stable=stable(1), question="ignored"))
    assert recorder.body()["max_tokens"] == 0
    refusing = Recorder(
        httpx2.Response(
            400,
            json={"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: must be ≥ 1"}},
        ),
        httpx2.Response(200, json=message_body()),
    )
    backend = make(refusing)
    backend.warm(Prompt(stable=stable(1), question="ignored"))
    assert [refusing.body(i)["max_tokens"] for i in range(2)] == [0, 1]


def sse(events: list[tuple[str, dict]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def stream_response() -> httpx2.Response:
    """A streamed Messages answer "Hello" with 1408 tokens read from the cache."""
    start = message_body("")
    start["content"] = []
    start["usage"] = {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_read_input_tokens": 1408,
        "cache_creation_input_tokens": 0,
    }
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 2},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return httpx2.Response(200, content=sse(events), headers={"content-type": "text/event-stream"})


def test_streaming_yields_text_then_usage() -> None:
    recorder = Recorder(stream_response())
    items = list(make(recorder).stream(Prompt(stable=stable(1), question="?"), GenerationOptions()))
    assert items[:-1] == ["Hel", "lo"]
    assert items[-1].text == "Hello"
    assert items[-1].usage.cached_tokens == 1408 and items[-1].usage.output_tokens == 2
    assert recorder.body()["stream"] is True


def test_count_tokens_uses_the_api() -> None:
    recorder = Recorder(httpx2.Response(200, json={"input_tokens": 2095}))
    assert make(recorder).count_tokens("some text") == 2095
    assert recorder.requests[0].url.path == "/v1/messages/count_tokens"


def test_exact_prefix_tokens_count_the_warm_request_with_and_without_its_system() -> None:
    counts = (10, 1400, 1500, 12)  # each segment (to place breakpoints), then with and without the system
    recorder = Recorder(*(httpx2.Response(200, json={"input_tokens": n}) for n in counts))
    backend = make(recorder, count_tokens="api", min_cacheable_tokens=8)
    assert backend.capabilities.exact_prefix_tokens
    assert backend.prefix_tokens(Prompt(stable=stable(1), question="not counted")) == 1500 - 12
    with_system, without = recorder.body(-2), recorder.body(-1)
    assert [b["text"] for b in with_system["system"]] == [INSTRUCTIONS, f"[block 0]\n{BIG}"]
    assert "system" not in without and without["messages"] == with_system["messages"]
    assert "not counted" not in json.dumps(with_system)  # the warm-up's one-word turn, not the question
    assert not make(recorder).capabilities.exact_prefix_tokens  # estimate (the default): the warmer estimates


def test_diagnostics_surface_cache_miss_reason() -> None:
    second = message_body()
    second["id"] = "msg_02"
    second["diagnostics"] = {"cache_miss_reason": {"type": "system_changed", "cache_missed_input_tokens": 1400}}
    recorder = Recorder(httpx2.Response(200, json=message_body()), httpx2.Response(200, json=second))
    backend = make(recorder, diagnose=True)
    prompt = Prompt(stable=stable(1), question="?")
    backend.generate(prompt, GenerationOptions())
    generation = backend.generate(prompt, GenerationOptions())
    assert recorder.body(0)["diagnostics"] == {"previous_message_id": None}
    assert recorder.body(1)["diagnostics"] == {"previous_message_id": "msg_01"}
    assert generation.usage.raw["cache_miss_reason"]["type"] == "system_changed"


def error(status: int, kind: str, message: str) -> httpx2.Response:
    return httpx2.Response(status, json={"type": "error", "error": {"type": kind, "message": message}})


@pytest.mark.parametrize(
    ("response", "expected", "requests"),
    [
        (error(401, "authentication_error", "invalid x-api-key"), AuthenticationError, 1),
        (error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"), RateLimitError, 3),
        (
            error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
            ContextLengthError,
            1,
        ),
        (error(529, "overloaded_error", "Overloaded"), BackendUnavailableError, 3),
        (error(500, "api_error", "Internal server error"), BackendUnavailableError, 1),  # may have generated: no retry
    ],
)
def test_errors_are_typed_and_only_safe_ones_retried(response: httpx2.Response, expected: type, requests: int) -> None:
    recorder = Recorder(response)
    with pytest.raises(expected) as info:
        make(recorder).generate(Prompt(stable=stable(1), question="?"), GenerationOptions(max_tokens=512))
    assert len(recorder.requests) == requests
    if expected is AuthenticationError:
        assert "ANTHROPIC_API_KEY" in str(info.value)


def test_a_short_request_is_retried_after_a_server_error_then_succeeds() -> None:
    recorder = Recorder(error(500, "api_error", "boom"), httpx2.Response(200, json=message_body()))
    make(recorder).warm(Prompt(stable=stable(1), question="?"))  # max_tokens 0: cannot double-bill
    assert len(recorder.requests) == 2


def test_missing_key_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    backend = AnthropicBackend(BackendConfig(kind="anthropic"), CacheConfig())
    with pytest.raises(AuthenticationError, match="set the ANTHROPIC_API_KEY environment variable"):
        backend.generate(Prompt(stable=stable(1), question="?"), GenerationOptions())


def test_streaming_retries_an_overloaded_or_rate_limited_open_like_generate() -> None:
    """The REST server always streams: a 529/429 before the first token is retried."""
    recorder = Recorder(
        error(529, "overloaded_error", "Overloaded"), error(429, "rate_limit_error", "slow down"), stream_response()
    )
    items = list(make(recorder).stream(Prompt(stable=stable(1), question="?"), GenerationOptions(max_tokens=512)))
    assert len(recorder.requests) == 3
    assert items[-1].text == "Hello" and items[-1].usage.cached_tokens == 1408


def test_streaming_does_not_retry_a_server_error_on_a_long_generation() -> None:
    recorder = Recorder(error(500, "api_error", "boom"), stream_response())
    with pytest.raises(BackendUnavailableError):
        list(make(recorder).stream(Prompt(stable=stable(1), question="?"), GenerationOptions(max_tokens=512)))
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("method", ["generate", "stream"])
def test_cache_salt_is_rejected_with_a_clear_error(method: str) -> None:
    recorder = Recorder(stream_response())
    backend = make(recorder)
    with pytest.raises(UnsupportedError, match="cache_salt is a vLLM extension"):
        result = getattr(backend, method)(Prompt(stable=stable(1), question="?"), GenerationOptions(cache_salt="t1"))
        list(result)
    assert recorder.requests == []
