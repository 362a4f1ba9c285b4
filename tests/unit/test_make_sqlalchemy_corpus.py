"""scripts/make_sqlalchemy_corpus.py on a trimmed copy of the real package (tests/data/sqlalchemy_doc).

The fixture keeps the package's paths and page structure: three FAQ questions (two
whose answers link into the docs, one linking only outside them), four corpus pages,
a changelog page that must stay out. The QA rows, the document set, the determinism
of the output and the errors a wrong source or a foreign folder give are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script

from ragcache.corpus.spec import load_spec
from ragcache.router.evaluate import load_qa

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "sqlalchemy_doc"


make = load_script("make_sqlalchemy_corpus")


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert make.main(["--source", str(FIXTURE), "--out", str(out)]) == 0
    return out / "sqlalchemy"


def test_questions_are_the_faq_headings_and_gold_the_linked_corpus_pages(generated: Path) -> None:
    rows = [json.loads(line) for line in (generated / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["sqlalchemy-faq-001", "sqlalchemy-faq-002"]
    assert rows[0]["question"] == (
        "I’m re-loading data with my Session but it isn’t seeing changes that I committed elsewhere"
    )
    assert rows[1]["question"].startswith("“This Session’s transaction has been rolled back")
    assert "¶" not in rows[0]["question"] + rows[1]["question"]
    # the package's links (session_transaction, queryguide, ...) to pages outside the fixture are dropped
    assert all(r["gold_doc_ids"] == ["orm/session_api.html", "orm/session_basics.html"] for r in rows)
    assert {r["faq_page"] for r in rows} == {"faq/sessions.html"}
    # the third question links only to a wiki page: no gold, left out, and said so
    assert "1 FAQ questions link to no corpus page" in (generated / "README.md").read_text(encoding="utf-8")
    items = load_qa(generated / "qa.jsonl")  # the format eval-router reads
    assert [i.gold for i in items] == [("orm/session_api.html", "orm/session_basics.html")] * 2


def test_docs_are_the_main_content_of_corpus_pages_only(generated: Path) -> None:
    docs = sorted(files(generated / "docs"))
    assert docs == ["core/engines.html", "glossary.html", "orm/session_api.html", "orm/session_basics.html"]
    page = (generated / "docs" / "orm" / "session_basics.html").read_text(encoding="utf-8")
    assert "<title>Session Basics — SQLAlchemy 1.4 Documentation</title>" in page and "<h1>Session Basics</h1>" in page
    for chrome in ("sidebar trimmed", "navigation trimmed", "docs-bottom-navigation", "headerlink", "sidebar-search"):
        assert chrome not in page
    spec = load_spec(generated)
    assert spec.name == "sqlalchemy" and "MIT" in spec.license and "1.4.46+ds1-1" in spec.license
    assert [c.id for c in spec.categories] == ["tutorial", "orm", "core", "dialects", "reference"]
    license_file = (generated / "LICENSE").read_text(encoding="utf-8")
    assert "Appendix: Copyright" in license_file and "This is the MIT license" in license_file  # the docs' own
    assert "Files: *" in license_file and "License: Expat" in license_file  # and Debian's copyright file


def test_output_is_deterministic_and_replaces_only_its_own_folder(generated: Path, tmp_path: Path) -> None:
    assert (
        make.main(["--source", str(FIXTURE / "usr/share/doc/python-sqlalchemy-doc/html"), "--out", str(tmp_path)]) == 0
    )
    again = files(tmp_path / "sqlalchemy")
    assert {k: v for k, v in again.items() if k != "LICENSE"} == {
        k: v for k, v in files(generated).items() if k != "LICENSE"
    }  # from the html folder itself there is no copyright file: the license line stands in
    assert make.main(["--source", str(FIXTURE), "--out", str(tmp_path)]) == 0  # a generated folder is replaced
    assert files(tmp_path / "sqlalchemy") == files(generated)
    foreign = tmp_path / "other"
    (foreign / "sqlalchemy").mkdir(parents=True)
    (foreign / "sqlalchemy" / "notes.md").write_text("mine\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="not a generated sqlalchemy corpus"):
        make.main(["--source", str(FIXTURE), "--out", str(foreign)])
    assert files(foreign) == {"sqlalchemy/notes.md": b"mine\n"}  # untouched, no staging folder left


def test_a_source_that_is_not_the_package_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no usr/share/doc/python-sqlalchemy-doc/html/faq/index\.html"):
        make.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"missing\.deb: dpkg-deb -x failed"):
        make.main(["--deb", str(tmp_path / "missing.deb"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "sqlalchemy").exists()
