"""ragcache: long-context RAG over a stable, cached corpus.

The public API is re-exported here lazily: :class:`RagCache`, :class:`Answer`,
:class:`ChatSession`, :class:`Conversation`, :class:`Message`, :func:`build_corpus`,
:func:`load_corpus`, :func:`load_config`.

Layers, top to bottom. A module imports only from its own layer or a lower one,
never from a layer above it (``tests/unit/test_layering.py`` checks the source)::

    cli                              every typer/rich command; the only user of typer and rich
    server, bench, integrations      the REST endpoint, benchmarks, LlamaIndex adapters
    app, conversation(_store)        the RagCache facade; a conversation's history, route, budget, store
    router, cache                    routing policy and chunk index; warm-up, pricing
    backends, corpus, lint           engines behind one protocol; compiling and storing corpora
    prompt, config, errors, hashing, models    shared types, settings, errors, content hashes

Long library steps (model conversion, reading documents, embedding chunks,
warm-up) report ``progress(stage, done, total)`` through a plain callback; the
CLI decides how to show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "ChatSession",
    "Conversation",
    "Message",
    "RagCache",
    "build_corpus",
    "load_config",
    "load_corpus",
]

if TYPE_CHECKING:
    from ragcache.app import Answer, ChatSession, RagCache
    from ragcache.config import load_config
    from ragcache.conversation import Conversation
    from ragcache.corpus.compile import build_corpus
    from ragcache.corpus.store import load_corpus
    from ragcache.prompt import Message

_LAZY = {
    "Answer": "ragcache.app",
    "ChatSession": "ragcache.app",
    "Conversation": "ragcache.conversation",
    "Message": "ragcache.prompt",
    "RagCache": "ragcache.app",
    "load_config": "ragcache.config",
    "build_corpus": "ragcache.corpus.compile",
    "load_corpus": "ragcache.corpus.store",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so `import ragcache` stays cheap."""
    if name in _LAZY:
        module = __import__(_LAZY[name], fromlist=[name])
        return getattr(module, name)
    raise AttributeError(f"module 'ragcache' has no attribute {name!r}")
