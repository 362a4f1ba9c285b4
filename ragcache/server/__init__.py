"""The REST endpoint: an OpenAI-compatible FastAPI app, metrics and a dashboard."""

from ragcache.server.app import create_app, serve

__all__ = ["create_app", "serve"]
