"""A conversation's excerpts are budgeted as they are rendered (ragcache/conversation.py, issue 21).

Each excerpt goes into the prompt with a header line naming its document (``render_snippets``); a
corpus of many short chunks with long document ids fills a turn's tail with many excerpts whose
headers cost as much as their text. Budgeted by the chunks' own tokens, such a turn's prompt came
out larger than the window (a ContextLengthError, or the vendor's 400, on a mid-conversation turn);
budgeted as rendered, every turn fits. Real build of a synthetic corpus (the default local model's
tokenizer, the real all-MiniLM-L6-v2 index, the real HybridRouter); the backend is never called.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcache.app import RagCache
from ragcache.backends.base import Capabilities
from ragcache.config import BackendConfig, Config, RouterConfig
from ragcache.conversation import Conversation, TurnPlan, token_counter
from ragcache.corpus.compile import build_corpus
from ragcache.corpus.manifest import CompiledCorpus
from ragcache.prompt import Snippet, render_snippets
from ragcache.router.index import index_step
from ragcache.router.policy import HybridRouter

OUT = 64
SUBJECTS = {
    "tomatoes": "Sow tomato seeds indoors, half a centimetre deep, and water the seedlings twice a week.",
    "bread": "Knead bread dough for ten minutes until smooth, let it rise, then bake it at 230 degrees.",
    "telescopes": "A reflecting telescope gathers faint starlight from distant galaxies with a curved mirror.",
    "handshake": "TCP opens a connection with a three-way handshake: SYN, SYN-ACK and ACK.",
    "compost": "Compost feeds earthworms and holds moisture in garden soil; turn the heap every month.",
    "dns": "A DNS resolver asks the root servers, then the top-level domain, then the authoritative server.",
}
TURNS = [
    "How deep should tomato seeds be sown?",
    "And how often should I water them?",
    "How long should bread dough be kneaded?",
    "How does a telescope gather faint starlight?",
    "What happens in the TCP three-way handshake?",
    "How does compost help garden soil?",
    "How does a DNS resolver find an address?",
    "And what about the seedlings?",
]
ANSWER = "ok " * 40


def make_corpus(root: Path) -> Path:
    """Many one-paragraph documents (one short chunk each) under long, descriptive paths."""
    lines = ["name: headers", "title: Short chunks, long ids", "categories:", "  - id: notes", "    globs: ['**']"]
    lines += ["build: {tokenizer: smollm2, chunk_tokens: 48, chunk_overlap: 0, min_block_tokens: 0,"]
    lines += ["        max_block_tokens: 512, full_budget_tokens: 0}"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for subject, text in SUBJECTS.items():
        for n in range(12):
            name = f"field-notes-and-reference-material/{subject}-collected-observations/entry-{n:02d}-{subject}.md"
            path = root / "docs" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"Note {n} on {subject}. {text}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CompiledCorpus:
    tmp = tmp_path_factory.mktemp("headers")
    step = index_step(cache=tmp / "index-cache")
    return build_corpus(make_corpus(tmp / "headers"), tmp / "build", steps=(step,), work_dir=tmp / "work").corpus


def make_rag(corpus: CompiledCorpus, window: int, mode: str) -> RagCache:
    routing = RouterConfig(mode=mode, history_allowance=0, snippet_tokens=window // 2)
    config = Config(router=routing, backend=BackendConfig(max_output_tokens=OUT))
    router = HybridRouter(corpus, routing, Capabilities(context_window=window), OUT)
    return RagCache(config, corpus, None, router)  # type: ignore[arg-type]


def prompt_tokens(rag: RagCache, plan: TurnPlan) -> int:
    """The prompt as it is sent, counted by the corpus tokenizer with the planner's per-message allowance."""
    planner = rag.conversations.planner
    return sum(planner.count_tokens(m["content"]) + 8 for m in rag.turn_prompt(plan).messages())


def test_the_corpus_is_many_short_chunks_whose_headers_cost_as_much_as_their_text(corpus: CompiledCorpus) -> None:
    count = token_counter(corpus)
    assert len(corpus.chunks) == 72 and max(c.tokens for c in corpus.chunks) <= 48
    header = count(render_snippets(())) + 1
    for chunk in corpus.chunks[:5]:
        rendered = count(render_snippets((Snippet(chunk.id, chunk.doc_id, chunk.text, 0.0, chunk.tokens),))) - header
        assert rendered >= chunk.tokens + 20  # the header line and separator: 20+ tokens on a ~30-token chunk


@pytest.mark.parametrize(("window", "mode"), [(1024, "topk"), (2048, "topk"), (2048, "auto"), (4096, "auto")])
def test_every_turn_of_a_many_excerpt_conversation_fits_the_window(
    corpus: CompiledCorpus, window: int, mode: str
) -> None:
    """Issue 21: a conversation whose latest question fits is never refused, nor sent larger than the window."""
    rag = make_rag(corpus, window, mode)
    conversation: Conversation | None = None
    sent = []
    for question in TURNS:
        plan = rag.plan_turn(question, conversation=conversation)
        sent.append((plan.turn, len(plan.route.snippets), prompt_tokens(rag, plan)))
        conversation = plan.conversation.answered(ANSWER)
    over = [(turn, excerpts, tokens) for turn, excerpts, tokens in sent if tokens + OUT > window]
    assert not over, f"turns (turn, excerpts, prompt tokens) over the {window}-token window less {OUT} out: {over}"
    assert max(excerpts for _, excerpts, _ in sent) >= 6  # many excerpts per turn: the case the headers matter in
