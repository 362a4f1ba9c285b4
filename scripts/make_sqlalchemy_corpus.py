#!/usr/bin/env python3
"""Build the SQLAlchemy documentation corpus and its FAQ QA set from Debian's python-sqlalchemy-doc package.

A check set that no one here wrote (docs/bench/router/README.md: never tune on it).
Source: the HTML documentation of SQLAlchemy 1.4.46 as packaged by Debian
(``python-sqlalchemy-doc`` 1.4.46+ds1-1, bookworm), MIT ("Expat") licensed by the
SQLAlchemy authors (the package's ``copyright`` file), so derived copies and QA
may be redistributed with the notice. The package is fetched with apt::

    python scripts/make_sqlalchemy_corpus.py [--out corpora] [--deb FILE | --source DIR]

``--deb`` takes a downloaded ``.deb``; ``--source`` a folder it was extracted to
(``dpkg-deb -x``); neither: ``apt-get download python-sqlalchemy-doc=<version>``.

``<out>/sqlalchemy/`` gets:

- ``docs/``: every page of the tutorial, ORM, Core and dialect documentation plus
  the glossary, error reference and introduction, reduced to the page's main
  content (``#docs-body``: no sidebar, navigation or search box), file names as
  in the package, so a link ``../orm/session_basics.html`` names the document
  id ``orm/session_basics.html``. Left out: the FAQ itself (the questions' own
  answers), the changelogs, the generated index, search and table of contents.
- ``qa.jsonl``: one row per FAQ question (each ``<h2>`` section of ``faq/*.html``,
  its heading as the maintainers phrased it from users' questions, ``¶`` removed):
  ``{"id", "question", "gold_doc_ids", "faq_page", "anchor"}``, gold = the corpus
  pages its answer links to (sub-sections included; external links, links to
  other FAQ pages and to pages outside the corpus are dropped). A question whose
  answer links to no corpus page has no gold and is left out (counted on stdout).
- ``corpus.yaml`` (name, license, package version, folder categories), ``README.md``
  and ``LICENSE`` (the documentation's copyright appendix and Debian's copyright file).

Deterministic: pages and questions sorted by path and document order, no
timestamps; the folder is replaced whole. Generated, not committed
(``corpora/sqlalchemy/`` is in .gitignore), like the HotpotQA corpora.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urljoin

from bs4 import BeautifulSoup, Tag

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragcache.corpus.html import html_to_text  # noqa: E402
from ragcache.hashing import canonical_json  # noqa: E402

NAME = "sqlalchemy"
PACKAGE = "python-sqlalchemy-doc"
VERSION = "1.4.46+ds1-1"
HTML_IN_PACKAGE = f"usr/share/doc/{PACKAGE}/html"
COPYRIGHT_IN_PACKAGE = f"usr/share/doc/{PACKAGE}/copyright"
LICENSE = (
    f"MIT (Expat), the SQLAlchemy authors and contributors; SQLAlchemy 1.4.46 documentation as packaged "
    f"by Debian ({PACKAGE} {VERSION}, /usr/share/doc/{PACKAGE}/copyright)"
)
INSTRUCTIONS = (
    "You are a precise assistant for SQLAlchemy 1.4. Answer the user's question using only the SQLAlchemy "
    "documentation below. Cite the pages you used by their document id, e.g. [doc: orm/session_basics.html]. "
    "If the documentation below does not answer the question, say so."
)
# (category id, title, globs): the package's own folders; root pages are the reference category.
CATEGORIES = (
    ("tutorial", "SQLAlchemy 1.4 / 2.0 Tutorial", ("tutorial/**",)),
    ("orm", "ORM", ("orm/**",)),
    ("core", "Core", ("core/**",)),
    ("dialects", "Dialects", ("dialects/**",)),
    ("reference", "Glossary, error messages, introduction", ("glossary.html", "errors.html", "intro.html")),
)
FOLDERS = ("tutorial", "orm", "core", "dialects")
ROOT_PAGES = ("glossary.html", "errors.html", "intro.html")
FAQ_FOLDER = "faq"
_SPACES = re.compile(r"\s+")


def fetch_package(work: Path, deb: Path | None = None) -> Path:
    """Extract the package (downloading it with apt when no ``.deb`` is given); returns the extraction root."""
    if deb is None:
        try:
            subprocess.run(
                ["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=work, check=True, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise SystemExit(
                "apt-get not found: pass --deb FILE or --source DIR (a Debian machine can fetch it)"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(
                f"apt-get download {PACKAGE}={VERSION} failed: {exc.stderr.strip() or exc}\n"
                "run 'apt-get update' first, or pass --deb FILE / --source DIR"
            ) from None
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise SystemExit(f"apt-get download {PACKAGE}={VERSION} left no .deb in {work}")
        deb = debs[0]
    target = work / "extracted"
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("dpkg-deb not found: extract the package elsewhere and pass --source DIR") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{deb}: dpkg-deb -x failed: {exc.stderr.strip() or exc}") from None
    return target


def html_root(source: Path) -> Path:
    """The package's HTML folder inside an extraction root (or ``source`` itself when it is that folder)."""
    for candidate in (source / HTML_IN_PACKAGE, source):
        if (candidate / FAQ_FOLDER / "index.html").is_file():
            return candidate
    raise SystemExit(f"{source}: no {HTML_IN_PACKAGE}/{FAQ_FOLDER}/index.html; is it {PACKAGE} {VERSION}?")


def corpus_pages(html: Path) -> list[str]:
    """Document ids (paths under the HTML folder, POSIX, sorted) of the pages the corpus holds."""
    pages = [p for p in ROOT_PAGES if (html / p).is_file()]
    for folder in FOLDERS:
        pages += [p.relative_to(html).as_posix() for p in (html / folder).rglob("*.html")]
    return sorted(pages)


def main_content(path: Path) -> tuple[str, Tag]:
    """``(title, the #docs-body element)`` of a page, permalink marks and bottom navigation removed."""
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    body = soup.select_one("#docs-body")
    if body is None:
        raise SystemExit(f"{path}: no #docs-body element; not a page of {PACKAGE} {VERSION}?")
    for tag in body.select("a.headerlink, #docs-bottom-navigation"):
        tag.decompose()
    title = _SPACES.sub(" ", soup.title.get_text(" ", strip=True)) if soup.title else ""
    return title, body


def page_html(path: Path) -> str:
    """The page reduced to its title and main content, as a small HTML document."""
    title, body = main_content(path)
    return f"<!DOCTYPE html>\n<html>\n<head><title>{_escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_targets(section: Tag, page: str, corpus: set[str]) -> list[str]:
    """Corpus pages linked from ``section`` of FAQ ``page`` (relative hrefs resolved, fragments dropped)."""
    found = set()
    for anchor in section.find_all("a", href=True):
        href, _ = urldefrag(urljoin(page, anchor["href"]))
        if "://" in href or href.startswith(("/", "mailto:")):
            continue
        target = str(PurePosixPath(href))
        if target in corpus:
            found.add(target)
    return sorted(found)


def faq_questions(html: Path, corpus: set[str]) -> tuple[list[dict], list[str]]:
    """QA rows for every FAQ question with gold pages, and the questions left out (no corpus link)."""
    rows, dropped = [], []
    for page in sorted(p.relative_to(html).as_posix() for p in (html / FAQ_FOLDER).glob("*.html")):
        if page.endswith("/index.html"):
            continue
        _, body = main_content(html / page)
        for heading in body.find_all("h2"):
            section = heading.parent
            question = _SPACES.sub(" ", heading.get_text(" ", strip=True)).strip()
            gold = link_targets(section, page, corpus)
            if not gold:
                dropped.append(f"{page}: {question}")
                continue
            anchor = section.get("id", "")
            rows.append({"question": question, "gold_doc_ids": gold, "faq_page": page, "anchor": anchor})
    for number, row in enumerate(rows, start=1):
        row["id"] = f"sqlalchemy-faq-{number:03d}"
    return rows, dropped


def corpus_yaml() -> str:
    """The corpus spec: name, license, instructions, one category per package folder."""
    lines = [
        "# Generated by scripts/make_sqlalchemy_corpus.py from Debian's python-sqlalchemy-doc. Do not edit.",
        f"name: {NAME}",
        "title: SQLAlchemy 1.4 documentation (tutorial, ORM, Core, dialects, glossary, errors)",
        f"license: {json.dumps(LICENSE)}",
        f"instructions: {json.dumps(INSTRUCTIONS)}",
        "categories:",
    ]
    for category, title, globs in CATEGORIES:
        lines += [f"  - id: {category}", f"    title: {json.dumps(title)}", f"    globs: {json.dumps(list(globs))}"]
    return "\n".join(lines) + "\n"


def readme(pages: int, questions: int, dropped: int) -> str:
    """The generated folder's README: source, license, what the QA set is and is not."""
    return (
        f"# SQLAlchemy documentation and FAQ (generated)\n\n"
        f"Made by `scripts/make_sqlalchemy_corpus.py` from Debian's `{PACKAGE}` {VERSION} "
        f"(SQLAlchemy 1.4.46 HTML documentation). License: {LICENSE}.\n\n"
        f"- `docs/`: {pages} pages, main content only; document ids are the package's paths.\n"
        f"- `qa.jsonl`: {questions} questions, the `<h2>` headings of the package's FAQ (`faq/*.html`), "
        f"gold = the corpus pages each answer links to; {dropped} FAQ questions link to no corpus page and are "
        f"left out.\n\n"
        "A check set: nothing in ragcache is tuned on it (docs/bench/router/README.md).\n"
    )


def write_corpus(out: Path, html: Path, copyright_text: str) -> dict:
    """``<out>/sqlalchemy/``: docs, corpus.yaml, qa.jsonl, README.md, LICENSE (replaced whole, never merged)."""
    folder = out / NAME
    if folder.exists():
        spec = folder / "corpus.yaml"
        if not spec.is_file() or f"\nname: {NAME}\n" not in spec.read_text(encoding="utf-8"):
            raise SystemExit(f"{folder}: exists and is not a generated {NAME} corpus; remove it or pick --out")
    pages = corpus_pages(html)
    rows, dropped = faq_questions(html, set(pages))
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=out))  # written whole, then moved into place
    try:
        for page in pages:
            target = staging / "docs" / page
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page_html(html / page), encoding="utf-8")
        (staging / "corpus.yaml").write_text(corpus_yaml(), encoding="utf-8")
        (staging / "qa.jsonl").write_text("".join(canonical_json(r) + "\n" for r in rows), encoding="utf-8")
        (staging / "README.md").write_text(readme(len(pages), len(rows), len(dropped)), encoding="utf-8")
        (staging / "LICENSE").write_text(copyright_text, encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    gold = [len(r["gold_doc_ids"]) for r in rows]
    return {
        "corpus": NAME,
        "documents": len(pages),
        "questions": len(rows),
        "questions_without_corpus_links": len(dropped),
        "gold_per_question_mean": round(sum(gold) / len(gold), 2) if gold else 0.0,
    }


def license_text(source: Path, html: Path) -> str:
    """The generated LICENSE: the documentation's own copyright appendix, then Debian's copyright file."""
    parts = [LICENSE]
    appendix = html / "copyright.html"
    if appendix.is_file():
        parts.append(html_to_text(page_html(appendix))[1].strip())
    debian = source / COPYRIGHT_IN_PACKAGE
    if debian.is_file():
        parts.append(f"Debian's {COPYRIGHT_IN_PACKAGE}:\n\n" + debian.read_text(encoding="utf-8").strip())
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deb", type=Path, help=f"a downloaded {PACKAGE} .deb")
    group.add_argument("--source", type=Path, help="a folder the package was extracted to (or its html/ folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "corpora")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sqlalchemy-doc-") as work:
        source = args.source or fetch_package(Path(work), args.deb)
        html = html_root(source)
        print(json.dumps(write_corpus(args.out, html, license_text(source, html)), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
