"""HTML → readable text with BeautifulSoup.

Navigation, scripts, styles, inline SVG and forms are dropped; headings become
``#`` lines, list items ``-`` lines, table rows ``a | b`` lines, ``<pre>`` is
kept verbatim. The output is plain text a model can read and cite, not markup.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

__all__ = ["html_to_text"]

_DROP_TAGS = [
    "script",
    "style",
    "svg",
    "noscript",
    "form",
    "nav",
    "header",
    "footer",
    "head",
    "button",
    "iframe",
    "template",
    "select",
    "input",
]
# Site chrome that carries no content (menus, search boxes, generated tables of contents).
_DROP_SELECTORS = ".nosearch, .menu, .searchmenu, .fancy_toc, .breadcrumb, .sidebar, [aria-hidden=true]"
_BLOCK = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "ul",
    "ol",
    "dl",
    "table",
    "blockquote",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "hr",
    "center",
    "tbody",
    "thead",
    "tfoot",
}
_SPACES = re.compile(r"[ \t\u00a0\u2009\u200b]+")
_PRE = re.compile("\x00(\\d+)\x00")
_EMPTY_BULLET = re.compile(r"(?m)^-\n+(?=\S)")


def html_to_text(html: str) -> tuple[str, str]:
    """Return ``(title, text)`` for an HTML document."""
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    for tag in soup.select(_DROP_SELECTORS):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    parts: list[str] = []
    pres: list[str] = []
    _walk(soup.body or soup, parts, pres)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    text = _EMPTY_BULLET.sub("- ", text)  # <li><p>text</p>: the bullet and its text on one line
    text = _PRE.sub(lambda m: pres[int(m.group(1))], text)
    if not title:
        first = next((line for line in text.splitlines() if line.startswith("# ")), "")
        title = first[2:]
    return _SPACES.sub(" ", title).strip(), text


def _walk(root: Tag, parts: list[str], pres: list[str]) -> None:
    """Iterative walk: html.parser nests unclosed <p>/<li> deeply, past Python's recursion limit."""
    stack: list[Tag | NavigableString | str] = list(reversed(root.contents))
    while stack:
        item = stack.pop()
        if isinstance(item, NavigableString):
            parts.append(str(item).replace("\n", " "))
        elif isinstance(item, str):
            parts.append(item)
        elif isinstance(item, Tag):
            before, children, after = _render(item, pres)
            parts.append(before)
            stack.append(after)
            stack.extend(reversed(children))


def _render(tag: Tag, pres: list[str]) -> tuple[str, list[Tag | NavigableString], str]:
    """What to emit before a tag, which children to visit, and what to emit after."""
    name = tag.name
    if name == "pre":
        pres.append(tag.get_text().strip("\n"))
        return f"\n\n\x00{len(pres) - 1}\x00\n\n", [], ""
    if name in {"h1", "h2", "h3", "h4", "h5", "h6"}:
        heading = tag.get_text(" ", strip=True)
        return (f"\n\n{'#' * int(name[1])} {heading}\n\n" if heading else ""), [], ""
    if name == "br":
        return "\n", [], ""
    if name == "li":
        return "\n- ", list(tag.contents), "\n"
    if name == "tr":
        cells = [cell.get_text(" ", strip=True) for cell in tag.find_all(["td", "th"], recursive=False)]
        return "\n" + " | ".join(c for c in cells if c) + "\n", [], ""
    if name in _BLOCK:
        return "\n\n", list(tag.contents), "\n\n"
    return "", list(tag.contents), ""
