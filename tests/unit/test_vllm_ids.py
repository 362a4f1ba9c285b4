"""The pure logic of :class:`ragcache.backends.vllm.ids.PromptIds`: learning, verifying, remembering.

``/tokenize`` is scripted here by a ChatML renderer with a character-level tokenizer
(one id per character, one per special token), as httpx's MockTransport stands in for
a server; the real server's template and tokenizer are tested in
tests/integration/test_vllm_token_ids.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from ragcache.backends.vllm.ids import PromptIds, TemplateRejected
from ragcache.prompt import Message, Prompt, Segment, SegmentKind

SPECIAL = {"<|im_start|>": 1, "<|im_end|>": 2}


def encode(text: str) -> list[int]:
    ids, i = [], 0
    while i < len(text):
        special = next((s for s in SPECIAL if text.startswith(s, i)), None)
        ids.append(SPECIAL[special] if special else 1000 + ord(text[i]))
        i += len(special) if special else 1
    return ids


def chatml(messages: list[dict[str, str]], generation: bool) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation else "")


def folded(messages: list[dict[str, str]], generation: bool) -> str:
    """Gemma-style: the system message goes into the first user turn."""
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    text = "".join(
        f"<|im_start|>{m['role']}\n{system if i == 0 else ''}{m['content']}<|im_end|>\n" for i, m in enumerate(turns)
    )
    return text + ("<|im_start|>assistant\n" if generation else "")


class Server:
    """A scripted /tokenize: renders with ``template``, counts the calls."""

    def __init__(self, template: Any = chatml, refuse: bool = False) -> None:
        self.template, self.refuse, self.calls = template, refuse, 0

    def __call__(self, payload: dict[str, Any]) -> list[int]:
        self.calls += 1
        if self.refuse:
            raise TemplateRejected("HTTP 400: no chat template")
        return encode(self.template(payload["messages"], payload["add_generation_prompt"]))


def prompt(corpus: str = "the corpus", **kw: Any) -> Prompt:
    return Prompt(stable=(Segment(SegmentKind.CORPUS, corpus),), question=kw.pop("question", "Why?"), **kw)


def test_the_ids_are_the_full_rendering_and_the_prefix_is_learned_once() -> None:
    server = Server()
    ids = PromptIds(server)
    history = (Message("user", "first"), Message("assistant", "answer"))
    for p in (prompt(), prompt(question="\n  spaced  "), prompt(context="ctx", history=history)):
        assert ids.prompt_ids(p) == encode(chatml(p.messages(), True))
    learned = server.calls
    ids.prompt_ids(prompt(question="again"))
    assert server.calls == learned + 1  # only the tail: the prefix is not tokenized again


def test_a_template_that_does_not_split_is_remembered_as_chat() -> None:
    server = Server(folded)
    ids = PromptIds(server)
    assert ids.prompt_ids(prompt()) is None
    calls = server.calls
    assert ids.prompt_ids(prompt(question="other")) is None
    assert server.calls == calls  # not learned again
    assert PromptIds(Server(refuse=True)).prompt_ids(prompt()) is None
    assert PromptIds(Server()).prompt_ids(Prompt(stable=(), question="no prefix")) is None


def test_learned_prefixes_are_bounded() -> None:
    ids = PromptIds(Server(), max_prefixes=2)
    for corpus in ("a", "b", "c"):
        ids.prompt_ids(prompt(corpus))
    assert len(ids._prefixes) == 2 and prompt("a").prefix_fingerprint not in ids._prefixes


def local(template: Any = chatml) -> Any:
    """A local renderer of ``template`` (the server's copy, or a differing one); counts its calls."""

    def render(messages: list[dict[str, str]], generation: bool) -> list[int]:
        render.calls += 1  # type: ignore[attr-defined]
        return encode(template(messages, generation))

    render.calls = 0  # type: ignore[attr-defined]
    return render


def test_tails_are_rendered_here_once_the_local_renderer_matches_the_server_on_the_probes() -> None:
    server, render = Server(), local()
    ids = PromptIds(server, local=lambda: render)
    history = (Message("user", "first"), Message("assistant", "  answer\n"))
    first = ids.prompt_ids(prompt(context="ctx", history=history))
    assert first == encode(chatml(prompt(context="ctx", history=history).messages(), True))
    assert ids.local is render
    calls = server.calls
    for question in ("again", "\n  spaced  "):
        assert ids.prompt_ids(prompt(question=question)) == encode(chatml(prompt(question=question).messages(), True))
    assert server.calls == calls  # no /tokenize round trip per request any more
    assert render.calls >= 2


def test_a_local_renderer_that_differs_or_fails_to_load_leaves_tails_to_the_server() -> None:
    def other(messages: list[dict[str, str]], generation: bool) -> str:
        return chatml(messages, generation).replace("assistant\n", "assistant\n\n")  # renders assistant turns apart

    for loader in (lambda: local(other), lambda: None):
        server = Server()
        ids = PromptIds(server, local=loader)
        p = prompt(question="q")
        assert ids.prompt_ids(p) == encode(chatml(p.messages(), True))
        assert ids.local is None
        calls = server.calls
        ids.prompt_ids(prompt(question="next"))
        assert server.calls == calls + 1  # the tail went to /tokenize


def test_the_local_choice_waits_for_a_server_that_answers() -> None:
    """A server down at the first request decides nothing: the next request checks the probes."""
    from ragcache.errors import BackendUnavailableError

    server, render = Server(), local()
    down = [True]

    def tokenize(payload: dict[str, Any]) -> list[int]:
        if down[0]:
            raise BackendUnavailableError("vllm: /tokenize failed (connection refused)")
        return server(payload)

    ids = PromptIds(tokenize, local=lambda: render)
    with pytest.raises(BackendUnavailableError):
        ids.prompt_ids(prompt())
    assert ids.local is None
    down[0] = False
    assert ids.prompt_ids(prompt()) == encode(chatml(prompt().messages(), True))
    assert ids.local is render


def test_a_request_the_local_renderer_fails_on_goes_through_the_server() -> None:
    server, render = Server(), local()

    def fragile(messages: list[dict[str, str]], generation: bool) -> list[int]:
        if "boom" in messages[-1]["content"]:
            raise ValueError("template error")
        return render(messages, generation)

    ids = PromptIds(server, local=lambda: fragile)
    assert ids.prompt_ids(prompt()) is not None and ids.local is fragile
    p = prompt(question="boom?")
    assert ids.prompt_ids(p) == encode(chatml(p.messages(), True))  # rendered by /tokenize instead


def test_the_local_renderer_is_loaded_once_per_process_and_renders_the_chat_template() -> None:
    """A worker serving five corpora from one vLLM loaded the server's tokenizer five times, some of
    them during its first live requests (docs/bench/gpu §5); one load now serves every backend."""
    from ragcache.backends.vllm.ids import local_renderer
    from ragcache.models import ensure_model

    folder = str(ensure_model())  # the local model's folder: a tokenizer and a chat template
    render = local_renderer(folder)
    assert render is not None and local_renderer(folder) is render
    messages = [{"role": "system", "content": ".\n"}, {"role": "user", "content": "Why? <b>é</b>"}]
    ids = render(messages, True)
    assert ids and all(isinstance(i, int) for i in ids) and ids != render(messages, False)
    assert local_renderer(folder + "/missing") is None  # not a tokenizer folder: /tokenize renders instead
