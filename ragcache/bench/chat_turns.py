"""Multi-turn conversations through every interface, on a real engine: does every turn get answered,
cached, and within the window?

    python -m ragcache.bench.chat_turns --corpus corpora/sqlite [--config configs/default.yaml]
        [--turns 10] [--max-tokens 64] [--interfaces rest,ask,chat,session] [--min-cached 0.85] [--json F]

One conversation per interface, the same questions in each:

- ``rest``: ``ragcache serve`` (started here) and the official ``openai`` SDK sending the whole
  history with every request, as stateless chat front ends do;
- ``ask``: ``/v1/ask`` with a server-side session (``new_session``, then ``session_id``);
- ``chat``: ``ragcache chat`` in a subprocess, the questions on its stdin;
- ``session``: ``RagCache.session()`` in this process.

Per turn it prints prompt and cached tokens, the cached share, the route and any compaction.
Checks (exit 1 when one fails): no errors, and from turn 2 every turn that was not compacted
reads at least ``--min-cached`` of its prompt from the cache. The questions are a built-in
conversation about SQLite's C API (``--questions FILE``: one per line, for other corpora).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ragcache.config import load_config

__all__ = ["QUESTIONS", "TurnRecord", "check", "rest_turns", "session_turns"]

QUESTIONS = (
    "How do I open a database connection in the C API?",
    "And how do I close it again?",
    "What happens to prepared statements that are not finalized when I close it?",
    "How do I compile an SQL statement into a prepared statement?",
    "How do I bind a value to a parameter of that statement?",
    "And how do I step through its result rows?",
    "How do I read a text column from the current row?",
    "What should my code do when a step returns SQLITE_BUSY?",
    "How do I set a busy timeout on the connection?",
    "How do I finalize the statement when I am done with it?",
)
INTERFACES = ("rest", "ask", "chat", "session")
_CACHE_LINE = re.compile(r"cache: (\d+)/(\d+) prompt tokens cached.*?route (\w+)(?: · turn (\d+))?(.*)$")


@dataclass(frozen=True)
class TurnRecord:
    """One answered turn (or its error)."""

    interface: str
    turn: int
    prompt_tokens: int = 0
    cached_tokens: int = 0
    route: str = ""
    compacted: bool = False
    error: str = ""

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _from_info(interface: str, turn: int, usage: dict[str, Any], info: dict[str, Any]) -> TurnRecord:
    conversation = info.get("conversation") or {}
    return TurnRecord(
        interface, turn, int(usage["prompt_tokens"]), int(usage["cached_tokens"]),
        str((info.get("route") or {}).get("mode", "")), bool(conversation.get("compacted")),
    )  # fmt: skip


def rest_turns(base_url: str, api_key: str, model: str, questions: list[str], max_tokens: int) -> Iterator[TurnRecord]:
    """A stateless client: the whole conversation with every request (the official openai SDK)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url + "/v1", api_key=api_key, timeout=900, max_retries=0)
    messages: list[dict[str, str]] = []
    for turn, question in enumerate(questions, start=1):
        messages.append({"role": "user", "content": question})
        try:
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)  # type: ignore[arg-type]
        except Exception as exc:  # the record says what failed; the run goes on
            yield TurnRecord("rest", turn, error=f"{type(exc).__name__}: {exc}")
            return
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        usage = reply.usage
        cached = usage.prompt_tokens_details.cached_tokens if usage and usage.prompt_tokens_details else 0
        counts = {"prompt_tokens": usage.prompt_tokens if usage else 0, "cached_tokens": cached or 0}
        yield _from_info("rest", turn, counts, (reply.model_extra or {}).get("ragcache") or {})


def ask_turns(base_url: str, api_key: str, corpus: str, questions: list[str], max_tokens: int) -> Iterator[TurnRecord]:
    """``/v1/ask`` with a session the server keeps."""
    import httpx

    session: str | None = None
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=900) as client:
        for turn, question in enumerate(questions, start=1):
            body = {"question": question, "corpus": corpus, "max_tokens": max_tokens}
            body.update({"session_id": session} if session else {"new_session": True})
            response = client.post("/v1/ask", json=body)
            if response.status_code != 200:
                yield TurnRecord("ask", turn, error=f"HTTP {response.status_code}: {response.text[:300]}")
                return
            data = response.json()
            session = data["session_id"]
            usage = {"prompt_tokens": data["usage"]["input_tokens"], "cached_tokens": data["usage"]["cached_tokens"]}
            yield _from_info("ask", turn, usage, data)


def chat_turns(config: Path, questions: list[str], max_tokens: int) -> Iterator[TurnRecord]:
    """``ragcache chat``: questions on stdin, one cache line per answer on stderr."""
    command = [sys.executable, "-m", "ragcache.cli", "chat", "--config", str(config), "--max-tokens", str(max_tokens)]
    done = subprocess.run(command, input="\n".join(questions) + "\n", capture_output=True, text=True, timeout=3600)
    lines = [m for m in map(_CACHE_LINE.search, done.stderr.splitlines()) if m]
    for turn, match in enumerate(lines, start=1):
        cached, total, route, _, rest = match.groups()
        yield TurnRecord("chat", turn, int(total), int(cached), route, "compacted" in rest)
    if done.returncode != 0 or len(lines) < len(questions):
        yield TurnRecord("chat", len(lines) + 1, error=f"exit {done.returncode}: {done.stderr[-500:]}")


def session_turns(config: Path, questions: list[str], max_tokens: int) -> Iterator[TurnRecord]:
    """``RagCache.session()`` in this process."""
    from ragcache.app import RagCache
    from ragcache.backends.base import GenerationOptions

    rag = RagCache.from_config(config)
    try:
        session = rag.session()
        options = GenerationOptions(max_tokens=max_tokens, temperature=0.0)
        for turn, question in enumerate(questions, start=1):
            try:
                answer = session.ask(question, options=options)
            except Exception as exc:
                yield TurnRecord("session", turn, error=f"{type(exc).__name__}: {exc}")
                return
            info = {"route": answer.route.to_dict() if answer.route else {}}
            info["conversation"] = answer.turn.to_dict() if answer.turn is not None else {}
            usage = {"prompt_tokens": answer.usage.input_tokens, "cached_tokens": answer.usage.cached_tokens}
            yield _from_info("session", turn, usage, info)
    finally:
        rag.close()


def check(records: list[TurnRecord], min_cached: float) -> list[str]:
    """What failed: errors, and turns after the first that were not compacted yet cached too little."""
    problems = [f"{r.interface} turn {r.turn}: {r.error}" for r in records if r.error]
    for r in records:
        if not r.error and r.turn > 1 and not r.compacted and r.cached_share < min_cached:
            problems.append(f"{r.interface} turn {r.turn}: cached {r.cached_share:.3f} < {min_cached}")
    return problems


def _config_for(args: argparse.Namespace, workdir: Path) -> Path:
    """The config with the corpus, and no warm-up (the first turn is measured cold)."""
    config = load_config(args.config)
    data = yaml.safe_load(yaml.safe_dump(config.model_dump(mode="json", exclude={"source"})))
    data["corpus"] = str(Path(args.corpus).resolve()) if args.corpus else str(config.resolved_corpus())
    data["build_dir"] = None
    data.setdefault("cache", {}).update({"warm_on_start": False, "keep_warm": False})
    path = workdir / "chat-turns.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path


def _run(args: argparse.Namespace, workdir: Path, questions: list[str]) -> list[TurnRecord]:
    from ragcache.bench.loadserver import start_server
    from ragcache.corpus.store import load_corpus

    config = _config_for(args, workdir)
    corpus = load_corpus(load_config(config).resolved_build_dir()).name
    runs: dict[str, Callable[[], Iterator[TurnRecord]]] = {
        "chat": lambda: chat_turns(config, questions, args.max_tokens),
        "session": lambda: session_turns(config, questions, args.max_tokens),
    }
    records: list[TurnRecord] = []
    server = None
    wanted = [name.strip() for name in args.interfaces.split(",") if name.strip()]
    try:
        if {"rest", "ask"} & set(wanted):
            server = start_server(str(config), workdir / "server")
            url, key = server.base_url, server.api_key
            runs["rest"] = lambda: rest_turns(url, key, corpus, questions, args.max_tokens)
            runs["ask"] = lambda: ask_turns(url, key, corpus, questions, args.max_tokens)
        for name in wanted:
            for record in runs[name]():
                records.append(record)
                print(_row(record), flush=True)
    finally:
        if server is not None:
            server.stop()
    return records


def _row(r: TurnRecord) -> str:
    if r.error:
        return f"{r.interface:8} turn {r.turn:2}  ERROR {r.error}"
    mark = "  compacted" if r.compacted else ""
    return (f"{r.interface:8} turn {r.turn:2}  prompt {r.prompt_tokens:6}  cached {r.cached_tokens:6}  "
            f"share {r.cached_share:.3f}  route {r.route}{mark}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="config YAML (default: the built-in defaults)")
    parser.add_argument("--corpus", default=None, help="corpus folder (default: the config's)")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--interfaces", default=",".join(INTERFACES))
    parser.add_argument("--questions", type=Path, default=None, help="a file of questions, one per line")
    parser.add_argument("--min-cached", type=float, default=0.85)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = set(args.interfaces.split(",")) - set(INTERFACES)
    if unknown:
        parser.error(f"unknown interfaces {sorted(unknown)}; valid: {', '.join(INTERFACES)}")
    pool = args.questions.read_text(encoding="utf-8").splitlines() if args.questions else list(QUESTIONS)
    questions = [q for q in pool if q.strip()][: args.turns]
    with tempfile.TemporaryDirectory(prefix="ragcache-chat-") as tmp:
        records = _run(args, Path(tmp), questions)
    problems = check(records, args.min_cached)
    compactions = sum(r.compacted for r in records)
    print(f"{len(records)} turns, {sum(bool(r.error) for r in records)} errors, {compactions} compactions")
    if args.json:
        body = {"turns": [asdict(r) | {"cached_share": round(r.cached_share, 4)} for r in records]}
        args.json.write_text(json.dumps(body | {"problems": problems}, indent=2) + "\n", encoding="utf-8")
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
