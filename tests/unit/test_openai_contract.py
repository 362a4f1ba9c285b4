"""Contract tests for the OpenAI API (a hosted API that cannot run here).

The real ``openai`` SDK sends its real HTTP requests into an httpx
MockTransport: these tests pin the request bodies ragcache sends
(prompt_cache_key from the prefix fingerprint, bucketing of a hot prefix,
retention, explicit breakpoints, stream_options) and parse response bodies
shaped as OpenAI documents them. The same backend runs against a real
OpenAI-compatible server in tests/integration/test_vllm_backends.py.
"""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from ragcache.backends.base import GenerationOptions
from ragcache.backends.openai.backend import OpenAIBackend
from ragcache.backends.openai.wire import CacheKeyer, usage_from_responses
from ragcache.backends.retry import RetryPolicy
from ragcache.config import BackendConfig, CacheConfig
from ragcache.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    RateLimitError,
    UnsupportedError,
)
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

STABLE = (
    Segment(SegmentKind.INSTRUCTIONS, "Answer from the documents.\n", "instructions"),
    Segment(SegmentKind.CORPUS, "SQLite is serverless.\n", "full"),
)
PROMPT = Prompt(stable=STABLE, question="Is SQLite a server?")
KEY = f"ragcache-{PROMPT.prefix_fingerprint[:32]}"


def chat_completion(**usage: object) -> dict:
    """A Chat Completions response as documented (prompt_tokens includes cached_tokens)."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5-mini-2025-08-07",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "No."}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
            **usage,
        },
    }


class Recorder:
    def __init__(self, *responses: httpx2.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]

    def body(self, i: int = -1) -> dict:
        return json.loads(self.requests[i].content)


def make(recorder: Recorder, model: str = "gpt-5-mini", **options: object) -> OpenAIBackend:
    client = openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(recorder)),
        max_retries=0,
    )
    backend = OpenAIBackend(BackendConfig(kind="openai", model=model, options=options), CacheConfig(), client=client)
    backend.policy = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)
    return backend


MESSAGES = [
    {"role": "system", "content": "Answer from the documents.\n\nSQLite is serverless.\n"},
    {"role": "user", "content": "Is SQLite a server?"},
]


def test_reasoning_model_body_is_pinned_without_sampling_fields() -> None:
    """gpt-5*/o* reject temperature/top_p other than defaults and take max_completion_tokens."""
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    make(recorder).generate(PROMPT, GenerationOptions(max_tokens=64, temperature=0.0, top_p=1.0))
    assert recorder.requests[0].url.path == "/v1/chat/completions"
    assert recorder.body() == {
        "model": "gpt-5-mini",
        "messages": MESSAGES,
        "max_completion_tokens": 64,
        "prompt_cache_key": KEY,
    }
    assert recorder.requests[0].headers["X-Session-ID"] == KEY  # the affinity key, for a router in front


def test_non_reasoning_model_body_is_pinned_with_sampling_fields() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    make(recorder, model="gpt-4o-mini").generate(PROMPT, GenerationOptions(max_tokens=64, temperature=0.2))
    assert recorder.body() == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 1.0,
        "prompt_cache_key": KEY,
    }


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o3-mini", True),
        ("o4-mini", True),
        ("o1", True),
        ("gpt-5.6", True),
        ("gpt-6", True),
        ("gpt-5-chat-latest", False),
    ],
)
def test_the_dated_capability_table_decides_and_an_option_overrides(model: str, reasoning: bool) -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    make(recorder, model=model).generate(PROMPT, GenerationOptions())
    assert ("temperature" in recorder.body()) is not reasoning
    make(recorder, model=model, reasoning=not reasoning).generate(PROMPT, GenerationOptions())
    assert ("temperature" in recorder.body()) is reasoning


def test_affinity_key_goes_in_the_configured_headers_and_user() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, affinity_header="X-Prefix", session_header="x-user-id", affinity_user=True)
    backend.generate(PROMPT, GenerationOptions())
    headers = recorder.requests[0].headers
    assert headers["X-Prefix"] == headers["x-user-id"] == recorder.body()["user"] == KEY
    assert "X-Session-ID" not in headers


def test_usage_is_parsed_from_prompt_tokens_details() -> None:
    generation = make(Recorder(httpx2.Response(200, json=chat_completion()))).generate(PROMPT, GenerationOptions())
    assert generation.text == "No."
    usage = generation.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (2006, 1920, 300)
    assert usage.raw["prompt_tokens_details"]["cached_tokens"] == 1920


def test_retention_is_sent_to_models_before_gpt_5_5_and_planned() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, prompt_cache_retention="24h")
    backend.generate(PROMPT, GenerationOptions())
    assert recorder.body()["prompt_cache_retention"] == "24h" and "prompt_cache_options" not in recorder.body()
    assert backend.capabilities.ttl_s == backend.profile.ttl_s == 86_400.0
    assert make(recorder).capabilities.ttl_s == 300.0  # in_memory: "5 to 10 minutes", the lower bound


def test_gpt_5_5_body_is_exactly_as_documented_and_plans_24_hours() -> None:
    """gpt-5.5 accepts only 24h retention (the field is deprecated: nothing is sent) and is a reasoning model."""
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, model="gpt-5.5")
    backend.generate(PROMPT, GenerationOptions(max_tokens=64, temperature=0.3))
    assert recorder.body() == {
        "model": "gpt-5.5",
        "messages": MESSAGES,
        "max_completion_tokens": 64,
        "prompt_cache_key": KEY,
    }
    assert (backend.capabilities.ttl_s, backend.profile.ttl) == (86_400.0, "24h")
    with pytest.raises(ConfigError, match=r"prompt_cache_retention: gpt-5.5 accepts only 24h"):
        make(recorder, model="gpt-5.5", prompt_cache_retention="in_memory")
    with pytest.raises(ConfigError, match=r"explicit_breakpoints: prompt_cache_options is supported for gpt-5.6"):
        make(recorder, model="gpt-5.5", explicit_breakpoints=True)


@pytest.mark.parametrize("model", ["gpt-6", "gpt-6.1-mini", "gpt-5.6-terra"])
def test_gpt_6_chat_body_is_exactly_as_documented(model: str) -> None:
    """No temperature/top_p/max_tokens; prompt_cache_options with explicit breakpoints on the system parts."""
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, model=model, explicit_breakpoints=True, prompt_cache_ttl="30m")
    backend.generate(PROMPT, GenerationOptions(max_tokens=64, temperature=0.7, top_p=0.9))
    parts = [
        {"type": "text", "text": "Answer from the documents.\n\n", "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "text", "text": "SQLite is serverless.\n", "prompt_cache_breakpoint": {"mode": "explicit"}},
    ]
    assert recorder.body() == {
        "model": model,
        "messages": [{"role": "system", "content": parts}, MESSAGES[1]],
        "max_completion_tokens": 64,
        "prompt_cache_key": KEY,
        "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    }
    assert "".join(p["text"] for p in parts) == PROMPT.system_text  # byte-identical to the plain rendering
    assert (backend.capabilities.ttl_s, backend.profile.write_multiplier) == (1800.0, 1.25)
    with pytest.raises(ConfigError, match=r"prompt_cache_ttl: Chat Completions takes only 30m"):
        make(recorder, model=model, prompt_cache_ttl="12h")


def test_gpt_5_6_on_responses_sends_breakpoints_a_12h_ttl_and_prewarms() -> None:
    recorder = Recorder(httpx2.Response(200, json=responses_response()))
    backend = make(recorder, model="gpt-5.6-terra", api="responses", explicit_breakpoints=True, prompt_cache_ttl="12h")
    backend.generate(PROMPT, GenerationOptions(max_tokens=32))
    body = recorder.body()
    system = body["input"][0]
    assert [p["type"] for p in system["content"]] == ["input_text", "input_text"]
    assert all(p["prompt_cache_breakpoint"] == {"mode": "explicit"} for p in system["content"])
    assert body["prompt_cache_options"] == {"mode": "explicit", "ttl": "12h"}
    assert "temperature" not in body and "prompt_cache_retention" not in body
    assert (backend.profile.ttl, backend.profile.write_multiplier, backend.capabilities.ttl_s) == ("12h", 2.5, 43_200.0)
    backend.warm(PROMPT)
    assert recorder.body()["prompt_cache_options"] == {"mode": "explicit", "ttl": "12h", "prewarm": True}


def test_cache_ttl_sets_the_lifetime_the_model_takes() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    client = make(recorder).provider.client()
    for model, ttl, field, value in [
        ("gpt-4o", "24h", "prompt_cache_retention", "24h"),
        ("gpt-6", "30m", "prompt_cache_options", {"ttl": "30m"}),
    ]:
        backend = OpenAIBackend(BackendConfig(kind="openai", model=model), CacheConfig(ttl=ttl), client=client)
        backend.generate(PROMPT, GenerationOptions())
        assert recorder.body()[field] == value and backend.profile.ttl == ttl
    with pytest.raises(ConfigError, match=r"cache.ttl '1h': gpt-4o takes prompt_cache_retention in_memory or 24h"):
        OpenAIBackend(BackendConfig(kind="openai", model="gpt-4o"), CacheConfig(ttl="1h"), client=client)


def test_retention_models_refuse_prompt_cache_options() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    with pytest.raises(ConfigError, match=r"prompt_cache_ttl: prompt_cache_options is supported for gpt-5.6"):
        make(recorder, model="gpt-4o", prompt_cache_ttl="30m")


def test_a_hot_prefix_is_split_into_session_buckets_under_the_per_key_rate() -> None:
    now = [0.0]
    keyer = CacheKeyer(limit_per_min=15, max_buckets=16, clock=lambda: now[0])
    quiet = {keyer.key("f" * 64, f"s{i}") for i in range(10)}
    assert quiet == {"ragcache-" + "f" * 32}  # 10/min: one key
    keys = []
    for i in range(50):  # 60 requests within the minute: ceil(60/15) = 4 buckets
        now[0] = i
        keys.append(keyer.key("f" * 64, f"session-{i % 7}"))
    assert keyer.buckets("f" * 64) == 4
    tail = keys[-20:]
    assert 1 < len(set(tail)) <= 4
    assert all(k.startswith("ragcache-" + "f" * 32 + "-") for k in tail)
    assert keyer.key("f" * 64, "session-3") == keyer.key("f" * 64, "session-3")  # a session keeps its bucket
    now[0] = 1000.0  # traffic gone: back to one key
    assert keyer.key("f" * 64, "session-3") == "ragcache-" + "f" * 32


def test_the_session_id_or_first_turn_picks_the_bucket() -> None:
    recorder = Recorder(httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, key_rate_limit_per_min=1, max_key_buckets=2)
    history = (Message("user", "first question"), Message("assistant", "a"))
    for _ in range(3):
        backend.generate(Prompt(stable=STABLE, question="later", history=history), GenerationOptions())
    backend.generate(PROMPT, GenerationOptions(session_id="user-42"))
    keys = [recorder.body(i)["prompt_cache_key"] for i in range(4)]
    assert keys[1] == keys[2]  # same conversation, same bucket
    assert all(k.startswith(KEY) for k in keys)


def responses_response(status: str = "completed", incomplete: str | None = None) -> dict:
    """A Responses API response object as documented."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-5-mini",
        "status": status,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "No.", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 2006,
            "input_tokens_details": {"cached_tokens": 1920},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 2009,
        },
    }


def test_responses_api_body_and_usage() -> None:
    response = responses_response()
    recorder = Recorder(httpx2.Response(200, json=response))
    generation = make(recorder, api="responses").generate(PROMPT, GenerationOptions(max_tokens=32))
    assert recorder.requests[0].url.path == "/v1/responses"
    assert recorder.body() == {
        "model": "gpt-5-mini",
        "input": PROMPT.messages(),
        "max_output_tokens": 32,
        "store": False,
        "prompt_cache_key": KEY,
    }
    assert generation.text == "No."
    assert generation.usage.cached_tokens == 1920 and generation.usage.input_tokens == 2006
    assert usage_from_responses(response["usage"]).output_tokens == 3
    assert generation.finish_reason == "stop"


def test_responses_warm_up_respects_the_minimum_output_tokens() -> None:
    recorder = Recorder(httpx2.Response(200, json=responses_response("incomplete", "max_output_tokens")))
    make(recorder, api="responses").warm(PROMPT)
    assert recorder.body()["max_output_tokens"] == 16  # the API rejects fewer; chat would send 1


def sse_events(*events: dict) -> httpx2.Response:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx2.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    ("status", "incomplete", "finish"),
    [
        ("completed", None, "stop"),
        ("incomplete", "max_output_tokens", "length"),
        ("incomplete", "content_filter", "content_filter"),
    ],
)
def test_responses_api_streams_deltas_and_maps_finish_reasons(status: str, incomplete: str | None, finish: str) -> None:
    final = responses_response(status, incomplete)
    created = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "logprobs": [], "sequence_number": 2}
    recorder = Recorder(
        sse_events(
            {"type": "response.created", "response": created, "sequence_number": 1},
            {"type": "response.output_text.delta", "delta": "N", **delta},
            {"type": "response.output_text.delta", "delta": "o.", **delta, "sequence_number": 3},
            {"type": f"response.{status}", "response": final, "sequence_number": 4},
        )
    )
    items = list(make(recorder, api="responses").stream(PROMPT, GenerationOptions()))
    assert items[:-1] == ["N", "o."]  # real deltas, not one answer at the end
    assert items[-1].text == "No." and items[-1].usage.cached_tokens == 1920
    assert items[-1].finish_reason == finish
    assert recorder.body()["stream"] is True


def test_streaming_asks_for_usage_and_reports_it() -> None:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5-mini", "choices": []}
        if choices:
            body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        if usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    usage = chat_completion()["usage"]
    stream = chunk({"role": "assistant", "content": "N"}) + chunk({"content": "o."}, "stop")
    stream += chunk({}, usage=usage, choices=False) + "data: [DONE]\n\n"
    recorder = Recorder(httpx2.Response(200, content=stream.encode(), headers={"content-type": "text/event-stream"}))
    items = list(make(recorder).stream(PROMPT, GenerationOptions()))
    assert items[:-1] == ["N", "o."]
    assert items[-1].text == "No." and items[-1].usage.cached_tokens == 1920
    assert recorder.body()["stream_options"] == {"include_usage": True}


def error(status: int, code: str, message: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"message": message, "type": code, "code": code, "param": None}})


@pytest.mark.parametrize(
    ("response", "expected", "requests"),
    [
        (error(401, "invalid_api_key", "Incorrect API key provided"), AuthenticationError, 1),
        (error(429, "rate_limit_exceeded", "Rate limit reached for requests"), RateLimitError, 3),
        (error(429, "insufficient_quota", "You exceeded your current quota"), RateLimitError, 1),
        (
            error(400, "context_length_exceeded", "This model's maximum context length is 128000 tokens."),
            ContextLengthError,
            1,
        ),
    ],
)
def test_errors_are_typed_and_only_transient_ones_retried(
    response: httpx2.Response, expected: type, requests: int
) -> None:
    recorder = Recorder(response)
    with pytest.raises(expected) as info:
        make(recorder).generate(PROMPT, GenerationOptions(max_tokens=512))
    assert len(recorder.requests) == requests
    if expected is AuthenticationError:
        assert "OPENAI_API_KEY" in str(info.value)


def test_a_rate_limit_then_success_is_retried_transparently() -> None:
    recorder = Recorder(error(429, "rate_limit_exceeded", "slow down"), httpx2.Response(200, json=chat_completion()))
    assert make(recorder).generate(PROMPT, GenerationOptions()).text == "No."
    assert len(recorder.requests) == 2


def test_a_server_error_on_a_long_generation_is_not_retried_unless_the_user_says_so() -> None:
    recorder = Recorder(error(500, "server_error", "boom"), httpx2.Response(200, json=chat_completion()))
    with pytest.raises(Exception, match="server error 500"):
        make(recorder).generate(PROMPT, GenerationOptions(max_tokens=512))
    assert len(recorder.requests) == 1
    recorder = Recorder(error(500, "server_error", "boom"), httpx2.Response(200, json=chat_completion()))
    backend = make(recorder, retry_unsafe=True)
    backend.policy = RetryPolicy(max_retries=2, base_delay_s=0.001, retry_unsafe=True)
    assert backend.generate(PROMPT, GenerationOptions(max_tokens=512)).text == "No."


def test_missing_key_and_cache_salt_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="set the OPENAI_API_KEY environment variable"):
        OpenAIBackend(BackendConfig(kind="openai"), CacheConfig()).generate(PROMPT, GenerationOptions())
    with pytest.raises(UnsupportedError, match="cache_salt is a vLLM extension"):
        make(Recorder(httpx2.Response(200, json=chat_completion()))).generate(PROMPT, GenerationOptions(cache_salt="t"))


def test_a_failed_responses_stream_is_a_typed_error_not_an_answer() -> None:
    final = {**responses_response("failed"), "error": {"code": "server_error", "message": "boom"}}
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "logprobs": [], "sequence_number": 1}
    recorder = Recorder(
        sse_events(
            {"type": "response.output_text.delta", "delta": "N", **delta},
            {"type": "response.failed", "response": final, "sequence_number": 2},
        )
    )
    items = make(recorder, api="responses").stream(PROMPT, GenerationOptions())
    assert next(items) == "N"
    with pytest.raises(BackendUnavailableError, match="the response failed"):
        next(items)
    assert len(recorder.requests) == 1  # text had flowed: never re-sent
