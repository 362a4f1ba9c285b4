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
(``corpora/sqlalchemy/`` is in .gitignore), like the HotpotQA corpora. Shared with
the Django check set: ``scripts/debian_doc_corpus.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debian_doc_corpus as shared

PACKAGE = "python-sqlalchemy-doc"
VERSION = "1.4.46+ds1-1"
SPEC = shared.DocPackage(
    name="sqlalchemy",
    script="scripts/make_sqlalchemy_corpus.py",
    package=PACKAGE,
    version=VERSION,
    license=(
        f"MIT (Expat), the SQLAlchemy authors and contributors; SQLAlchemy 1.4.46 documentation as packaged "
        f"by Debian ({PACKAGE} {VERSION}, /usr/share/doc/{PACKAGE}/copyright)"
    ),
    instructions=(
        "You are a precise assistant for SQLAlchemy 1.4. Answer the user's question using only the SQLAlchemy "
        "documentation below. Cite the pages you used by their document id, e.g. [doc: orm/session_basics.html]. "
        "If the documentation below does not answer the question, say so."
    ),
    title="SQLAlchemy 1.4 documentation (tutorial, ORM, Core, dialects, glossary, errors)",
    # (category id, title, globs): the package's own folders; root pages are the reference category.
    categories=(
        ("tutorial", "SQLAlchemy 1.4 / 2.0 Tutorial", ("tutorial/**",)),
        ("orm", "ORM", ("orm/**",)),
        ("core", "Core", ("core/**",)),
        ("dialects", "Dialects", ("dialects/**",)),
        ("reference", "Glossary, error messages, introduction", ("glossary.html", "errors.html", "intro.html")),
    ),
    folders=("tutorial", "orm", "core", "dialects"),
    root_pages=("glossary.html", "errors.html", "intro.html"),
    content="#docs-body",
    chrome="a.headerlink, #docs-bottom-navigation",
    readme_title="SQLAlchemy documentation and FAQ (generated)",
    readme_source="SQLAlchemy 1.4.46 HTML documentation",
    question_headings="the `<h2>` headings",
    license_appendix="copyright.html",
)


def main(argv: list[str] | None = None) -> int:
    return shared.main(SPEC, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
