"""Adapters that let other frameworks drive a :class:`ragcache.RagCache`.

Each lives in its own module and imports its framework there, so importing
``ragcache.integrations`` costs nothing: ``ragcache.integrations.llama_index``
holds the LlamaIndex query engine and retriever.
"""
