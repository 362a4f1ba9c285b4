"""Secrets never leave the process: every log line and error message is scrubbed.

The secrets are the server's API keys and every credential in the environment
(the variable a backend reads its key from, and any variable whose name says
it holds a key, token, secret or password). A vendor SDK may echo the key it
sent in an error (OpenAI's 401 quotes it), and that message reaches logs,
``/readyz`` and error replies; :func:`redact` replaces each secret value with
``***`` there. :func:`install_log_redaction` does it for every log record of
the process (uvicorn's too), once, by wrapping the log-record factory.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "add_secrets", "env_secrets", "install_log_redaction", "redact"]

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") are flags, not credentials
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"(_PATH|_FILE|_DIR|_PARALLELISM)$", re.IGNORECASE)  # HF_TOKEN_PATH, TOKENIZERS_…
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def env_secrets(names: Iterable[str | None] = (), environ: Mapping[str, str] | None = None) -> set[str]:
    """Credential values in the environment: the variables ``names`` and every one named like a secret.

    Comma-separated values (``RAGCACHE_API_KEYS=a,b``) count as one secret each, and whole.
    """
    environ = os.environ if environ is None else environ
    wanted = {name for name in names if name}
    found: set[str] = set()
    for name, value in environ.items():
        if name in wanted or (_SECRET_NAME.search(name) and not _NOT_SECRET.search(name)):
            found.add(value.strip())
            found.update(part.strip() for part in value.split(","))
    return {value for value in found if len(value) >= MIN_SECRET_CHARS}


def add_secrets(values: Iterable[str]) -> None:
    """Scrub ``values`` from every later :func:`redact` (longest first, so a key's prefix cannot leak it)."""
    global _secrets
    with _lock:
        merged = set(_secrets) | {v for v in values if len(v) >= MIN_SECRET_CHARS}
        _secrets = tuple(sorted(merged, key=lambda v: (-len(v), v)))


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_arg(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value  # uvicorn's access log formats its status code with %d
    return redact(value if isinstance(value, str) else str(value))


def install_log_redaction() -> None:
    """Scrub secrets from every log record created from now on, whichever logger and handler."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not _secrets:
            return record
        record.msg = redact(str(record.msg))
        if isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_redact_arg(value) for value in record.args)
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters reuse exc_text when set, so the traceback is scrubbed once here.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
