"""scripts/make_django_corpus.py (and scripts/debian_doc_corpus.py) on a tiny synthetic python-django-doc tree.

The tree keeps the package's paths and Django's Sphinx page layout (header, ``#yui-main
.yui-g`` content, sidebar, footer): FAQ questions as ``<h2>`` sections, one ``<h2>``
that only groups ``<h3>`` questions (as ``faq/troubleshooting.html`` does), answers
linking into the docs, outside the corpus (release notes, internals), to other FAQ
pages and to external sites; pages of every folder left out. Gold extraction, the
exclusions, the printed counts and the determinism of the output are checked.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from script_module import load_script

from ragcache.corpus.spec import load_spec
from ragcache.router.evaluate import load_qa

HTML = "usr/share/doc/python-django-doc/html"


make = load_script("make_django_corpus")


def page(path: str, title: str, content: str) -> str:
    """A page in the layout of the package's HTML (Django 3.2 docs theme), ``content`` in its main element."""
    depth = "../" * path.count("/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8" /><title>{title} &#8212; Django 3.2.25 documentation</title></head>
<body><div class="document"><div id="custom-doc" class="yui-t6">
<div id="hd"><h1><a href="{depth}index.html">Django 3.2.25 documentation</a></h1>
<div id="global-nav"><a href="{depth}genindex.html">Index</a> header trimmed</div></div>
<div id="bd"><div id="yui-main"><div class="yui-b"><div class="yui-g" id="{path.replace("/", "-")}">
{content}
</div></div></div>
<div class="yui-b" id="sidebar"><div class="sphinxsidebar">sidebar trimmed
<form class="search" action="{depth}search.html"><input type="text" name="q"/></form></div>
<h3>Last update:</h3><p class="topless">Nov 11, 2026</p></div></div>
<div id="ft"><div class="nav">footer trimmed</div></div></div></div></body></html>
"""


def section(anchor: str, level: int, heading: str, body: str) -> str:
    return (
        f'<div class="section" id="s-{anchor}">\n<span id="{anchor}"></span><h{level}>{heading}'
        f'<a class="headerlink" href="#{anchor}" title="Permalink to this heading">¶</a></h{level}>\n{body}\n</div>'
    )


def doc_page(path: str, title: str) -> str:
    anchor = path.rsplit("/", 1)[-1].removesuffix(".html")
    return page(path, title, section(anchor, 1, title, f"<p>About {title.lower()}.</p>"))


ADMIN = "\n".join(
    [
        section(
            "how-do-i-limit-admin-access",
            2,
            "How do I limit admin access so that objects can only be edited by the users who created them?",
            '<p>See <a class="reference internal" href="../ref/contrib/admin/index.html#django.contrib.admin.'
            'ModelAdmin.has_change_permission"><code>ModelAdmin.has_change_permission()</code></a> and the '
            '<a class="reference internal" href="../topics/cache.html"><span class="doc">cache</span></a>; also '
            '<a class="reference internal" href="../ref/contrib/admin/index.html">the admin</a>, '
            '<a class="reference external" href="https://code.djangoproject.com/">the tracker</a>, '
            '<a class="reference internal" href="../releases/3.2.html">3.2 notes</a>, '
            '<a class="reference internal" href="general.html#why">the general FAQ</a> and '
            '<a class="reference internal" href="#how-do-i-limit-admin-access">this answer</a>.</p>',
        ),
        section(
            "what-browsers-are-supported",
            2,
            "What browsers are supported for using the admin?",
            '<p>See <a class="reference external" href="https://www.mozilla.org/">the browsers</a>.</p>',
        ),
    ]
)
TROUBLESHOOTING = "\n".join(
    [
        section(
            "problems-running-django-admin",
            2,
            "Problems running django-admin",
            "<p>A group of questions.</p>\n"
            + section(
                "command-not-found-django-admin",
                3,
                "command not found: <code>django-admin</code>",
                '<p>Read <a class="reference internal" href="../ref/django-admin.html#usage">django-admin</a> and '
                '<a class="reference internal" href="../intro/tutorial01.html">part 1</a>.</p>',
            )
            + "\n"
            + section(
                "macos-permissions",
                3,
                "macOS permissions",
                '<p>See <a class="reference internal" href="../internals/contributing/index.html">'
                "contributing</a>.</p>",
            ),
        ),
        section(
            "deployment-question",
            2,
            "How do I deploy?",
            '<p>Read <a class="reference internal" href="../howto/deployment/index.html">deploying</a> and the '
            '<a class="reference internal" href="../glossary.html#term-project">glossary</a>.</p>',
        ),
    ]
)
DOCS = {
    "glossary.html": "Glossary",
    "intro/tutorial01.html": "Writing your first Django app, part 1",
    "topics/cache.html": "Django’s cache framework",
    "ref/contrib/admin/index.html": "The Django admin site",
    "ref/django-admin.html": "django-admin and manage.py",
    "howto/deployment/index.html": "How to deploy Django",
}
LEFT_OUT = {
    "index.html": "Django documentation",
    "contents.html": "Django documentation contents",
    "genindex.html": "Index",
    "py-modindex.html": "Python Module Index",
    "search.html": "Search",
    "releases/3.2.html": "Django 3.2 release notes",
    "internals/contributing/index.html": "Contributing to Django",
    "misc/api-stability.html": "API stability",
    "_modules/django/db/models/query.html": "django.db.models.query",
}
COPYRIGHT = "Files: *\nCopyright: Django Software Foundation and individual contributors\nLicense: BSD-3-Clause\n"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("python-django-doc")
    html = root / HTML
    pages = {
        "faq/index.html": page("faq/index.html", "Django FAQ", section("django-faq", 1, "Django FAQ", "<p>FAQ.</p>")),
        "faq/admin.html": page("faq/admin.html", "FAQ: The admin", section("faq-admin", 1, "FAQ: The admin", ADMIN)),
        "faq/troubleshooting.html": page(
            "faq/troubleshooting.html", "Troubleshooting", section("troubleshooting", 1, "Q", TROUBLESHOOTING)
        ),
        **{path: doc_page(path, title) for path, title in {**DOCS, **LEFT_OUT}.items()},
    }
    for path, text in pages.items():
        (html / path).parent.mkdir(parents=True, exist_ok=True)
        (html / path).write_text(text, encoding="utf-8")
    (root / "usr/share/doc/python-django-doc/copyright").write_text(COPYRIGHT, encoding="utf-8")
    return root


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert make.main(["--source", str(source), "--out", str(out)]) == 0
    return out / "django", json.loads(printed.getvalue())


def test_questions_are_the_faq_headings_and_gold_the_linked_corpus_pages(generated: tuple[Path, dict]) -> None:
    folder, counts = generated
    rows = [json.loads(line) for line in (folder / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["django-faq-001", "django-faq-002", "django-faq-003"]
    assert [r["question"] for r in rows] == [
        "How do I limit admin access so that objects can only be edited by the users who created them?",
        "command not found: django-admin",  # an <h3> question: its <h2> only groups it
        "How do I deploy?",
    ]
    # fragments dropped, pages deduplicated; external, release-note and FAQ (other page, same page) links dropped
    assert rows[0]["gold_doc_ids"] == ["ref/contrib/admin/index.html", "topics/cache.html"]
    assert rows[1]["gold_doc_ids"] == ["intro/tutorial01.html", "ref/django-admin.html"]
    assert rows[2]["gold_doc_ids"] == ["glossary.html", "howto/deployment/index.html"]
    assert [(r["faq_page"], r["anchor"]) for r in rows] == [
        ("faq/admin.html", "how-do-i-limit-admin-access"),
        ("faq/troubleshooting.html", "command-not-found-django-admin"),
        ("faq/troubleshooting.html", "deployment-question"),
    ]
    # left out: an answer with only an external link, one linking only to internals/; the group heading is no question
    assert counts == {
        "corpus": "django",
        "documents": 6,
        "questions": 3,
        "questions_without_corpus_links": 2,
        "gold_per_question_mean": 2.0,
        "gold_pages_distinct": 6,
        "links_dropped": {"external": 2, "faq": 2, "outside_corpus": 2},
    }
    assert "2 FAQ questions link to no corpus page" in (folder / "README.md").read_text(encoding="utf-8")
    items = load_qa(folder / "qa.jsonl")  # the format eval-router reads
    assert [i.gold for i in items] == [tuple(r["gold_doc_ids"]) for r in rows]


def test_docs_are_the_main_content_of_the_user_documentation_only(generated: tuple[Path, dict]) -> None:
    folder, _ = generated
    assert sorted(files(folder / "docs")) == sorted(DOCS)  # no FAQ, releases, internals, misc, indexes, _modules
    text = (folder / "docs" / "topics" / "cache.html").read_text(encoding="utf-8")
    assert "<title>Django’s cache framework — Django 3.2.25 documentation</title>" in text
    assert "About django’s cache framework." in text
    for chrome in ("header trimmed", "sidebar trimmed", "footer trimmed", "Last update", "headerlink", "search.html"):
        assert chrome not in text
    spec = load_spec(folder)
    assert spec.name == "django" and "BSD-3-Clause" in spec.license and "3:3.2.25-0+deb12u7" in spec.license
    assert [c.id for c in spec.categories] == ["intro", "topics", "ref", "howto", "glossary"]
    license_file = (folder / "LICENSE").read_text(encoding="utf-8")
    assert license_file.startswith("BSD-3-Clause, the Django Software Foundation") and "Files: *" in license_file


def test_output_is_deterministic_and_replaces_only_its_own_folder(
    source: Path, generated: tuple[Path, dict], tmp_path: Path
) -> None:
    folder, _ = generated
    assert make.main(["--source", str(source), "--out", str(tmp_path)]) == 0
    assert files(tmp_path / "django") == files(folder)  # byte for byte
    assert make.main(["--source", str(source / HTML), "--out", str(tmp_path)]) == 0  # a generated folder is replaced
    again, first = files(tmp_path / "django"), files(folder)
    assert again.pop("LICENSE") != first.pop("LICENSE")  # from the html folder itself there is no copyright file
    assert again == first
    foreign = tmp_path / "other"
    (foreign / "django").mkdir(parents=True)
    (foreign / "django" / "notes.md").write_text("mine\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="not a generated django corpus"):
        make.main(["--source", str(source), "--out", str(foreign)])
    assert files(foreign) == {"django/notes.md": b"mine\n"}


def test_a_source_that_is_not_the_package_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no usr/share/doc/python-django-doc/html/faq/index\.html"):
        make.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "django").exists()
