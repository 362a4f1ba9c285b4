"""The prompt as token ids, rendered with the server's own chat template and tokenizer.

A cached 32k-token request through ``/v1/chat/completions`` spends ~105 ms on
vLLM's API server rendering the chat template and tokenizing the 31k-token
system message, every time (docs/bench/gpu/README.md §1); the engine's own part
is ~65 ms. The stable prefix never changes, so its token ids are learned once
per prefix and the request goes to ``/v1/completions`` as token ids.

Per prefix (keyed by its fingerprint), through vLLM's ``/tokenize``:

- ``prefix`` = the rendering of the system message alone (no generation prompt),
  the very ids the chat endpoint computes for the stable prefix;
- the *tail* of a request = the rendering of ``[small system message, *volatile
  messages]`` (generation prompt added) minus the ids of the small system turn:
  the server renders the per-request part — context, history, question — with
  the real template, on a few hundred tokens instead of 31k;
- the decomposition is VERIFIED once per prefix with two sentinel questions:
  ``prefix + tail(sentinel)`` must equal the server's rendering of the whole chat.
  A template that folds the system message into the first user turn (Mistral,
  Gemma), rejects a system-only conversation or merges tokens across the turn
  boundary fails the check: that prefix goes as chat messages, logged once.

The prefix ids are then identical for every request of that prefix and to what
the chat endpoint computes, so both paths hit the same KV blocks.

The tail is rendered *here* instead when the server's own tokenizer and chat template
load on this machine (its ``/v1/models`` ``root``, local files only) and render a set of
probe conversations — system, context, user and assistant turns, odd whitespace — to
exactly the ids the server's ``/tokenize`` gives: then a request costs no round trip
to a server that is busy generating (docs/bench/gpu/README.md §5). Any difference, or
a tokenizer that does not load, keeps the round trip; the check runs once per backend.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import httpx

from ragcache.errors import BackendError, BackendUnavailableError
from ragcache.prompt import Prompt

__all__ = ["PROBES", "SENTINELS", "SMALL_SYSTEM", "PromptIds", "Renderer", "TemplateRejected", "local_renderer",
           "tokenize_at"]  # fmt: skip

log = logging.getLogger(__name__)

SENTINELS = ("Which pages say so?", "\n  42 (sentinel) ")  # a word start, and leading/trailing whitespace
SMALL_SYSTEM = ".\n"  # stands in for the stable system message when the tail is rendered

Messages = list[dict[str, str]]
Renderer = Callable[[Messages, bool], list[int]]  # (messages, add_generation_prompt) -> ids
_UNKNOWN = object()
# What a local tail renderer must render exactly as the server does before it is used: each
# shape a tail takes (a question; context, history with an assistant turn; odd whitespace).
PROBES: tuple[tuple[Messages, bool], ...] = (
    ([{"role": "system", "content": SMALL_SYSTEM}], False),
    *(([{"role": "system", "content": SMALL_SYSTEM}, {"role": "user", "content": s}], True) for s in SENTINELS),
    ([{"role": "system", "content": SMALL_SYSTEM}, {"role": "system", "content": "Session: Ada, 13:05\n"},
      {"role": "user", "content": "Why? <b>é</b>"}, {"role": "assistant", "content": "  Because.\n\n"},
      {"role": "user", "content": "\tAnd then?  "}], True),
)  # fmt: skip


class TemplateRejected(BackendError):
    """``/tokenize`` refused the messages (4xx): the template cannot render this shape."""


class PromptIds:
    """Token ids of prompts: the stable prefix's learned once, the tail rendered per request.

    ``tokenize(payload)`` posts to the server's ``/tokenize`` and returns its ids; it
    raises :class:`TemplateRejected` on a 4xx and ``BackendUnavailableError`` when the
    server cannot be reached (then nothing is remembered: the next request tries again).
    """

    def __init__(
        self,
        tokenize: Callable[[dict[str, Any]], list[int]],
        max_prefixes: int = 64,
        local: Callable[[], Renderer | None] | None = None,
    ) -> None:
        """``local`` loads a renderer of this machine's copy of the server's tokenizer and template
        (None: it does not load); it is used for tails once it renders :data:`PROBES` as the server."""
        self._tokenize = tokenize
        self.max_prefixes = max_prefixes
        self._load_local = local
        self.local: Renderer | None = None  # the verified local tail renderer, once chosen
        self._local_checked = local is None
        self._local_lock = threading.Lock()  # not self._lock: learning a prefix renders tails under it
        self._prefixes: OrderedDict[str, tuple[int, ...] | None] = OrderedDict()  # None: does not decompose
        self._small: tuple[int, ...] | None = None
        self._lock = threading.Lock()
        self._logged: set[str] = set()

    def prompt_ids(self, prompt: Prompt) -> list[int] | None:
        """The prompt's ids exactly as the chat endpoint would compute them, or None: send it as chat."""
        if not prompt.stable:
            return None  # no stable prefix: nothing to reuse
        prefix = self.prefix_ids(prompt)
        if prefix is None:
            return None
        tail = self.tail_ids(prompt.messages()[1:])
        if tail is None:
            self._log_once("tail", "a request's messages do not render after the system turn: sent as chat")
            return None
        return [*prefix, *tail]

    def prefix_ids(self, prompt: Prompt) -> tuple[int, ...] | None:
        """The stable prefix's ids (learned and verified on first use), or None if it does not decompose."""
        key = prompt.prefix_fingerprint
        known = self._prefixes.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        with self._lock:  # one learner per backend: learning is rare and costs one long /tokenize
            if key not in self._prefixes:
                self._remember(key, self._learn(prompt))
            return self._prefixes[key]

    def tail_ids(self, volatile: Messages) -> tuple[int, ...] | None:
        """The ids of the messages after the system turn, generation prompt included."""
        small = self._small_ids()
        if small is None:
            return None
        messages = [_system(SMALL_SYSTEM), *volatile]
        ids = self._render_here(messages) if self._choose_local() else None
        try:
            ids = ids if ids is not None else self._render(messages, generation=True)
        except TemplateRejected:
            return None
        return tuple(ids[len(small) :]) if tuple(ids[: len(small)]) == small else None

    def _render_here(self, messages: Messages) -> list[int] | None:
        """The local rendering, or None where it fails on these messages (then /tokenize renders them)."""
        assert self.local is not None
        try:
            return list(self.local(messages, True))
        except Exception as exc:  # the server's rendering is the reference: never fail a request here
            self._log_once("render", f"the local tokenizer failed on a request ({type(exc).__name__}): /tokenize")
            return None

    def _choose_local(self) -> bool:
        """Whether tails are rendered here: decided once, on first use (one /tokenize per probe)."""
        if not self._local_checked:
            with self._local_lock:
                if not self._local_checked:
                    self.local = self._verified_local()
                    self._local_checked = True
        return self.local is not None

    def _verified_local(self) -> Renderer | None:
        """The local renderer if it renders every probe as the server; the server answers first (one
        that cannot be reached raises, and the choice is made again on the next request)."""
        try:
            expected = [self._render(messages, generation=generation) for messages, generation in PROBES]
        except TemplateRejected:
            return None
        render = self._load_local() if self._load_local is not None else None
        if render is None:
            return None
        try:
            for (messages, generation), ids in zip(PROBES, expected, strict=True):
                if list(render(messages, generation)) != ids:
                    log.warning("vllm prompt_format token_ids: the local tokenizer renders %r unlike the "
                                "server: tails go through /tokenize", messages[-1]["content"])  # fmt: skip
                    return None
        except Exception as exc:  # a local template that fails to render: the server's is the reference
            log.warning("vllm prompt_format token_ids: the local tokenizer failed (%s): tails go through /tokenize",
                        exc)  # fmt: skip
            return None
        log.info("vllm prompt_format token_ids: tails are rendered here (the server's tokenizer and template)")
        return render

    def _small_ids(self) -> tuple[int, ...] | None:
        if self._small is None:
            try:
                self._small = tuple(self._render([_system(SMALL_SYSTEM)], generation=False))
            except TemplateRejected:
                return None  # not remembered: the prefix learner logs why
        return self._small

    def _learn(self, prompt: Prompt) -> tuple[int, ...] | None:
        system = prompt.prefix_messages()
        try:
            prefix = tuple(self._render(system, generation=False))
            for sentinel in SENTINELS:
                user = [{"role": "user", "content": sentinel}]
                tail = self.tail_ids(user)
                if tail is None or (*prefix, *tail) != tuple(self._render([*system, *user], generation=True)):
                    return self._rejected(prompt, f"the rendering does not split after the system turn ({sentinel!r})")
        except TemplateRejected as exc:
            return self._rejected(prompt, f"/tokenize refused it ({exc})")
        return prefix

    def _render(self, messages: Messages, *, generation: bool) -> list[int]:
        return self._tokenize({"messages": messages, "add_generation_prompt": generation})

    def _remember(self, key: str, ids: tuple[int, ...] | None) -> None:
        self._prefixes[key] = ids
        while len(self._prefixes) > self.max_prefixes:
            self._prefixes.popitem(last=False)

    def _rejected(self, prompt: Prompt, why: str) -> None:
        self._log_once(prompt.prefix_fingerprint, f"prefix {prompt.prefix_fingerprint[:12]}: {why}; sent as chat")
        return None

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("vllm prompt_format token_ids: %s", message)


def tokenize_at(http: httpx.Client, urls: list[str], payload: dict[str, Any]) -> list[int]:
    """POST ``payload`` to ``<url>/tokenize`` of the first of ``urls`` that answers: its ids.
    A 4xx is :class:`TemplateRejected`; no answer from any is ``BackendUnavailableError``."""
    error = BackendUnavailableError("vllm: no endpoint to send /tokenize to")
    for url in urls:
        try:
            response = http.post(f"{url}/tokenize", json=payload)
        except httpx.HTTPError as exc:
            error = BackendUnavailableError(f"vllm at {url}: /tokenize failed ({exc})")
            continue
        if 400 <= response.status_code < 500:
            answer = f"HTTP {response.status_code}: {response.text[:200]}"
            raise TemplateRejected(f"vllm at {url}: /tokenize answered {answer}")
        if response.status_code != 200:
            error = BackendUnavailableError(f"vllm at {url}: /tokenize answered HTTP {response.status_code}")
            continue
        return list(response.json()["tokens"])
    raise error


@lru_cache(maxsize=8)
def local_renderer(source: str) -> Renderer | None:
    """The tokenizer and chat template at ``source`` (a folder or a model id already in the local
    Hugging Face cache; never downloaded) as a renderer, or None when they do not load here.
    Loaded once per process: a worker serving several corpora from one server shares it."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # not installed, not on this machine, no template: use /tokenize
        log.info("vllm prompt_format token_ids: no local tokenizer at %r (%s)", source, type(exc).__name__)
        return None
    lock = threading.Lock()  # a fast tokenizer is not safe to share between threads

    def render(messages: Messages, generation: bool) -> list[int]:
        with lock:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=True,
                                                return_dict=False)  # fmt: skip
        return [int(i) for i in ids]

    return render


def _system(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}
