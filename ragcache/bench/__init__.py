"""Bench: replay workloads through ragcache, naive RAG, full context and no cache; report side by side."""
