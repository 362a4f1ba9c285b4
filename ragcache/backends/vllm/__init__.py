"""vLLM: the backend (``backend``), its wire format and its dated table of cache economics (``table``)."""
