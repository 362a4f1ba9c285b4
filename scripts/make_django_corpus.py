#!/usr/bin/env python3
"""Build the Django documentation corpus and its FAQ QA set from Debian's python-django-doc package.

A blind check set that no one here wrote (docs/bench/router/README.md: a check
only, never tune on it). Source: the HTML documentation of Django 3.2.25 as
packaged by Debian (``python-django-doc`` 3:3.2.25-0+deb12u7, bookworm-security),
BSD-3-Clause licensed by the Django Software Foundation and individual
contributors (the package's ``copyright`` file, ``Files: *``; the docs' FAQ "How
is Django licensed?"), so derived copies and QA may be redistributed with the
notice. The package is fetched with apt::

    python scripts/make_django_corpus.py [--out corpora] [--deb FILE | --source DIR]

``--deb`` takes a downloaded ``.deb``; ``--source`` a folder it was extracted to
(``dpkg-deb -x``); neither: ``apt-get download python-django-doc=<version>``.

``<out>/django/`` gets:

- ``docs/``: the user documentation, as the docs' front page ("How the
  documentation is organized") names it: the tutorials (``intro/``), topic guides
  (``topics/``), reference guides (``ref/``) and how-to guides (``howto/``), plus
  the glossary; each page reduced to its main content (``#yui-main .yui-g``: no
  header, sidebar, navigation or search box), file names as in the package.
  Left out: the FAQ itself (the questions' own answers); the release notes
  (``releases/``); ``internals/`` (contributing to and releasing Django itself)
  and ``misc/`` (design philosophies, API stability, distributions), which the
  front page files under "The Django open-source project", not the user
  documentation; the generated index, module index, search and table of contents
  (``genindex``, ``py-modindex``, ``search``, ``contents``), the front page and the
  highlighted source listings (``_modules/``).
- ``qa.jsonl``: one row per FAQ question: each ``<h2>`` section of ``faq/*.html``,
  or the ``<h3>`` sections of an ``<h2>`` that only groups them (the
  troubleshooting page's "Problems running django-admin", "Miscellaneous"), its
  heading as the maintainers wrote it (``¶`` removed):
  ``{"id", "question", "gold_doc_ids", "faq_page", "anchor"}``, gold = the corpus
  pages its answer links to (external links, links to FAQ pages and to pages
  outside the corpus are dropped). A question whose answer links to no corpus page
  has no gold and is left out (counted on stdout).
- ``corpus.yaml`` (name, license, package version, folder categories), ``README.md``
  and ``LICENSE`` (Debian's copyright file; the docs have no copyright page).

Deterministic: pages and questions sorted by path and document order, no
timestamps; the folder is replaced whole. Generated, not committed
(``corpora/django/`` is in .gitignore). Shared with the SQLAlchemy check set:
``scripts/debian_doc_corpus.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debian_doc_corpus as shared

PACKAGE = "python-django-doc"
VERSION = "3:3.2.25-0+deb12u7"
SPEC = shared.DocPackage(
    name="django",
    script="scripts/make_django_corpus.py",
    package=PACKAGE,
    version=VERSION,
    license=(
        f"BSD-3-Clause, the Django Software Foundation and individual contributors; Django 3.2.25 documentation "
        f"as packaged by Debian ({PACKAGE} {VERSION}, /usr/share/doc/{PACKAGE}/copyright)"
    ),
    instructions=(
        "You are a precise assistant for Django 3.2. Answer the user's question using only the Django "
        "documentation below. Cite the pages you used by their document id, e.g. [doc: topics/db/queries.html]. "
        "If the documentation below does not answer the question, say so."
    ),
    title="Django 3.2 documentation (tutorials, topic guides, reference, how-to guides, glossary)",
    # (category id, title, globs): the docs' own four kinds, one folder each; the glossary on its own.
    categories=(
        ("intro", "Tutorials (getting started)", ("intro/**",)),
        ("topics", "Topic guides", ("topics/**",)),
        ("ref", "Reference guides", ("ref/**",)),
        ("howto", "How-to guides", ("howto/**",)),
        ("glossary", "Glossary", ("glossary.html",)),
    ),
    folders=("intro", "topics", "ref", "howto"),
    root_pages=("glossary.html",),
    content="#yui-main .yui-g",
    chrome="a.headerlink",
    readme_title="Django documentation and FAQ (generated)",
    readme_source="Django 3.2.25 HTML documentation",
    question_headings="the `<h2>` headings (`<h3>` where an `<h2>` only groups them)",
    leaf_questions=True,
    section_id_prefix="s-",
    license_appendix="",
    left_out=(
        "the FAQ itself, release notes (`releases/`), `internals/` and `misc/` (the front page's "
        '"The Django open-source project"), the generated indexes, search, table of contents, front page and '
        "source listings (`_modules/`)."
    ),
)


def main(argv: list[str] | None = None) -> int:
    return shared.main(SPEC, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
