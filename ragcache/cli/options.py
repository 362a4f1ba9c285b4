"""Command-line options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["BackendOpt", "BaseUrlOpt", "ConfigOpt", "CorpusOpt", "MaxTokensOpt", "ModelOpt"]

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML (default: built-in defaults).")]
CorpusOpt = Annotated[Path | None, typer.Option("--corpus", help="Corpus or build folder (overrides the config).")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help="Override backend.kind (local, vllm, openai, …).")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="Override backend.base_url (openai: includes /v1; anthropic, vllm: server root)."),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Override backend.model.")]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Output token limit.")]
