"""What the Debian ``*-doc`` check-set scripts share: a documentation package and its FAQ as a corpus and QA set.

Used by ``scripts/make_sqlalchemy_corpus.py`` and ``scripts/make_django_corpus.py``
(docs/bench/router/README.md: check sets, never tuned on). Each script describes
its package in a :class:`DocPackage`; this module

- fetches it (``apt-get download <package>=<version>``, or a given ``.deb``) and
  extracts it with ``dpkg-deb -x`` (or takes a folder it was extracted to);
- reduces every corpus page to its title and main content (the package's content
  element, permalink marks and other chrome removed), keeping the package's paths
  as document ids, so a link ``../orm/session_basics.html`` names
  ``orm/session_basics.html``;
- turns the FAQ (``faq/*.html`` but its index) into QA rows: question = a section
  heading as the maintainers wrote it (``¶`` removed), gold = the corpus pages its
  answer links to (fragments dropped; external links, links to other FAQ pages and
  to pages outside the corpus are dropped); a question with no gold is left out and
  counted;
- writes ``<out>/<name>/`` whole (staged, then moved into place; a folder that is
  not a generated corpus of that name is never touched): ``docs/``, ``corpus.yaml``,
  ``qa.jsonl``, ``README.md``, ``LICENSE``.

Deterministic: pages and questions sorted by path and document order, canonical
JSON, no timestamps.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urljoin

from bs4 import BeautifulSoup, Tag

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ragcache.corpus.html import html_to_text  # noqa: E402
from ragcache.hashing import canonical_json  # noqa: E402

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class DocPackage:
    """One Debian documentation package and how its pages and FAQ become a corpus."""

    name: str  # corpus name: the folder under --out, corpus.yaml's name, the question id prefix
    script: str  # the script that builds it, named in corpus.yaml and README.md
    package: str
    version: str
    license: str
    instructions: str
    title: str  # corpus.yaml's title
    categories: tuple[tuple[str, str, tuple[str, ...]], ...]  # (category id, title, globs)
    folders: tuple[str, ...]  # package folders whose pages (recursively) are corpus pages
    root_pages: tuple[str, ...]  # single pages at the HTML root that are corpus pages
    content: str  # CSS selector of a page's main content element
    chrome: str  # CSS selectors removed from the main content
    readme_title: str
    readme_source: str  # what the package is, for README.md
    question_headings: str  # how README.md names the questions' headings
    leaf_questions: bool = False  # a <h2> that groups <h3> sections: its <h3> headings are the questions
    section_id_prefix: str = ""  # removed from a question section's id to give its anchor
    license_appendix: str = "copyright.html"  # the documentation's own copyright page, when it has one
    left_out: str = ""  # a README.md line on the folders left out, when there is one to say
    faq_folder: str = "faq"

    @property
    def html_in_package(self) -> str:
        return f"usr/share/doc/{self.package}/html"

    @property
    def copyright_in_package(self) -> str:
        return f"usr/share/doc/{self.package}/copyright"


def fetch_package(spec: DocPackage, work: Path, deb: Path | None = None) -> Path:
    """Extract the package (downloading it with apt when no ``.deb`` is given); returns the extraction root."""
    pinned = f"{spec.package}={spec.version}"
    if deb is None:
        try:
            subprocess.run(["apt-get", "download", pinned], cwd=work, check=True, capture_output=True, text=True)
        except FileNotFoundError:
            raise SystemExit(
                "apt-get not found: pass --deb FILE or --source DIR (a Debian machine can fetch it)"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(
                f"apt-get download {pinned} failed: {exc.stderr.strip() or exc}\n"
                "run 'apt-get update' first, or pass --deb FILE / --source DIR"
            ) from None
        debs = sorted(work.glob(f"{spec.package}_*.deb"))
        if not debs:
            raise SystemExit(f"apt-get download {pinned} left no .deb in {work}")
        deb = debs[0]
    target = work / "extracted"
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("dpkg-deb not found: extract the package elsewhere and pass --source DIR") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{deb}: dpkg-deb -x failed: {exc.stderr.strip() or exc}") from None
    return target


def html_root(spec: DocPackage, source: Path) -> Path:
    """The package's HTML folder inside an extraction root (or ``source`` itself when it is that folder)."""
    for candidate in (source / spec.html_in_package, source):
        if (candidate / spec.faq_folder / "index.html").is_file():
            return candidate
    raise SystemExit(
        f"{source}: no {spec.html_in_package}/{spec.faq_folder}/index.html; is it {spec.package} {spec.version}?"
    )


def corpus_pages(spec: DocPackage, html: Path) -> list[str]:
    """Document ids (paths under the HTML folder, POSIX, sorted) of the pages the corpus holds."""
    pages = [p for p in spec.root_pages if (html / p).is_file()]
    for folder in spec.folders:
        pages += [p.relative_to(html).as_posix() for p in (html / folder).rglob("*.html")]
    return sorted(pages)


def main_content(spec: DocPackage, path: Path) -> tuple[str, Tag]:
    """``(title, the main content element)`` of a page, the package's chrome (permalink marks, ...) removed."""
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    body = soup.select_one(spec.content)
    if body is None:
        raise SystemExit(f"{path}: no {spec.content} element; not a page of {spec.package} {spec.version}?")
    for tag in body.select(spec.chrome):
        tag.decompose()
    title = _SPACES.sub(" ", soup.title.get_text(" ", strip=True)) if soup.title else ""
    return title, body


def page_html(spec: DocPackage, path: Path) -> str:
    """The page reduced to its title and main content, as a small HTML document."""
    title, body = main_content(spec, path)
    return f"<!DOCTYPE html>\n<html>\n<head><title>{_escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_targets(section: Tag, page: str, corpus: set[str], dropped: Counter | None = None) -> list[str]:
    """Corpus pages linked from ``section`` of FAQ ``page`` (relative hrefs resolved, fragments dropped).

    ``dropped`` counts the links left out: ``external`` (a scheme, an absolute path, mail),
    ``faq`` (the FAQ's own pages, the same page's anchors included) and ``outside_corpus``."""
    found = set()
    faq_folder = PurePosixPath(page).parent
    for anchor in section.find_all("a", href=True):
        href, _ = urldefrag(urljoin(page, anchor["href"]))
        if "://" in href or href.startswith(("/", "mailto:")):
            if dropped is not None:
                dropped["external"] += 1
            continue
        target = str(PurePosixPath(href))
        if target in corpus:
            found.add(target)
        elif dropped is not None:
            dropped["faq" if PurePosixPath(target).parent == faq_folder else "outside_corpus"] += 1
    return sorted(found)


def question_headings(spec: DocPackage, body: Tag) -> list[Tag]:
    """The FAQ page's question headings in document order: each ``<h2>``, or, with ``leaf_questions``,
    the ``<h3>`` headings of an ``<h2>`` section that groups them (the ``<h2>`` is then a group title)."""
    headings = []
    for heading in body.find_all("h2"):
        nested = heading.parent.find_all("h3") if spec.leaf_questions else []
        headings += nested or [heading]
    return headings


def faq_questions(
    spec: DocPackage, html: Path, corpus: set[str], links: Counter | None = None
) -> tuple[list[dict], list[str]]:
    """QA rows for every FAQ question with gold pages, and the questions left out (no corpus link);
    ``links`` counts the answers' links dropped (see :func:`link_targets`)."""
    rows, dropped = [], []
    for page in sorted(p.relative_to(html).as_posix() for p in (html / spec.faq_folder).glob("*.html")):
        if page.endswith("/index.html"):
            continue
        _, body = main_content(spec, html / page)
        for heading in question_headings(spec, body):
            section = heading.parent
            question = _SPACES.sub(" ", heading.get_text(" ", strip=True)).strip()
            gold = link_targets(section, page, corpus, links)
            if not gold:
                dropped.append(f"{page}: {question}")
                continue
            anchor = section.get("id", "")
            if spec.section_id_prefix and anchor.startswith(spec.section_id_prefix):
                anchor = anchor[len(spec.section_id_prefix) :]
            rows.append({"question": question, "gold_doc_ids": gold, "faq_page": page, "anchor": anchor})
    for number, row in enumerate(rows, start=1):
        row["id"] = f"{spec.name}-faq-{number:03d}"
    return rows, dropped


def corpus_yaml(spec: DocPackage) -> str:
    """The corpus spec: name, license, instructions, one category per package folder."""
    lines = [
        f"# Generated by {spec.script} from Debian's {spec.package}. Do not edit.",
        f"name: {spec.name}",
        f"title: {spec.title}",
        f"license: {json.dumps(spec.license)}",
        f"instructions: {json.dumps(spec.instructions)}",
        "categories:",
    ]
    for category, title, globs in spec.categories:
        lines += [f"  - id: {category}", f"    title: {json.dumps(title)}", f"    globs: {json.dumps(list(globs))}"]
    return "\n".join(lines) + "\n"


def readme(spec: DocPackage, pages: int, questions: int, dropped: int) -> str:
    """The generated folder's README: source, license, what the QA set is and is not."""
    left_out = f"- Left out: {spec.left_out}\n" if spec.left_out else ""
    return (
        f"# {spec.readme_title}\n\n"
        f"Made by `{spec.script}` from Debian's `{spec.package}` {spec.version} "
        f"({spec.readme_source}). License: {spec.license}.\n\n"
        f"- `docs/`: {pages} pages, main content only; document ids are the package's paths.\n"
        f"- `qa.jsonl`: {questions} questions, {spec.question_headings} of the package's FAQ "
        f"(`{spec.faq_folder}/*.html`), gold = the corpus pages each answer links to; {dropped} FAQ questions link "
        f"to no corpus page and are left out.\n"
        f"{left_out}\n"
        "A check set: nothing in ragcache is tuned on it (docs/bench/router/README.md).\n"
    )


def write_corpus(spec: DocPackage, out: Path, html: Path, copyright_text: str) -> dict:
    """``<out>/<name>/``: docs, corpus.yaml, qa.jsonl, README.md, LICENSE (replaced whole, never merged)."""
    folder = out / spec.name
    if folder.exists():
        yaml_file = folder / "corpus.yaml"
        if not yaml_file.is_file() or f"\nname: {spec.name}\n" not in yaml_file.read_text(encoding="utf-8"):
            raise SystemExit(f"{folder}: exists and is not a generated {spec.name} corpus; remove it or pick --out")
    pages = corpus_pages(spec, html)
    links: Counter = Counter()
    rows, dropped = faq_questions(spec, html, set(pages), links)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=out))  # written whole, then moved into place
    try:
        for page in pages:
            target = staging / "docs" / page
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page_html(spec, html / page), encoding="utf-8")
        (staging / "corpus.yaml").write_text(corpus_yaml(spec), encoding="utf-8")
        (staging / "qa.jsonl").write_text("".join(canonical_json(r) + "\n" for r in rows), encoding="utf-8")
        (staging / "README.md").write_text(readme(spec, len(pages), len(rows), len(dropped)), encoding="utf-8")
        (staging / "LICENSE").write_text(copyright_text, encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    gold = [len(r["gold_doc_ids"]) for r in rows]
    return {
        "corpus": spec.name,
        "documents": len(pages),
        "questions": len(rows),
        "questions_without_corpus_links": len(dropped),
        "gold_per_question_mean": round(sum(gold) / len(gold), 2) if gold else 0.0,
        "gold_pages_distinct": len({d for r in rows for d in r["gold_doc_ids"]}),
        "links_dropped": {k: links[k] for k in ("external", "faq", "outside_corpus")},
    }


def license_text(spec: DocPackage, source: Path, html: Path) -> str:
    """The generated LICENSE: the license line, the documentation's own copyright page when it has one,
    then Debian's copyright file."""
    parts = [spec.license]
    appendix = html / spec.license_appendix if spec.license_appendix else None
    if appendix is not None and appendix.is_file():
        parts.append(html_to_text(page_html(spec, appendix))[1].strip())
    debian = source / spec.copyright_in_package
    if debian.is_file():
        parts.append(f"Debian's {spec.copyright_in_package}:\n\n" + debian.read_text(encoding="utf-8").strip())
    return "\n\n".join(parts) + "\n"


def main(spec: DocPackage, description: str, argv: list[str] | None = None) -> int:
    """The scripts' command line: ``[--out corpora] [--deb FILE | --source DIR]``; prints the counts as JSON."""
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deb", type=Path, help=f"a downloaded {spec.package} .deb")
    group.add_argument("--source", type=Path, help="a folder the package was extracted to (or its html/ folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "corpora")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-doc-") as work:
        source = args.source or fetch_package(spec, Path(work), args.deb)
        html = html_root(spec, source)
        print(json.dumps(write_corpus(spec, args.out, html, license_text(spec, source, html)), sort_keys=True))
    return 0
