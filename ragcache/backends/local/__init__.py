"""The local backend: an in-process transformers engine with ragcache's own prefix KV store.

One concept per module, in pipeline order:

- :mod:`.model`: ``backend.options`` (:class:`LocalOptions`), loading the model
  once per process, the fingerprint that names its weights;
- :mod:`.prompt`: the chat template rendering cut into blocks, and their chain keys;
- :mod:`.kvstore`: the prefix KV store (LRU by bytes, TTL, insert results);
- :mod:`.persist`: stored blocks on disk (safetensors, checksummed, per model);
- :mod:`.request_cache`: a request's KV: stored prefix blocks by reference, its own tokens in buffers;
- :mod:`.decoding`: next-token choice and stop strings;
- :mod:`.batcher`: continuous batching (sequences join and leave the decode batch between steps);
- :mod:`.attention`: shared-prefix (cascade) attention: stored blocks read in place, merged by log-sum-exp;
- :mod:`.engine`: :class:`LocalBackend`, which wires them (prefill, batched decode, warm).

torch and transformers are imported when the backend is created, not here.
"""

from __future__ import annotations

from ragcache.backends.local.engine import LocalBackend, create
from ragcache.backends.local.model import LocalOptions, load_model

__all__ = ["LocalBackend", "LocalOptions", "create", "load_model"]
