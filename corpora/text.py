"""Converters for the prose corpora: Wikipedia (MediaWiki XML dumps) and the Python docs (reST sources)."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from corpora.rawfiles import open_binary

# --------------------------------------------------------------------------- Wikipedia

_WIKI_DROP_SECTIONS = {
    "references", "external links", "see also", "further reading", "notes", "bibliography",
    "sources", "footnotes", "citations", "notes and references", "works cited",
}  # fmt: skip
_WIKI_DROP_LINK_PREFIXES = {"file", "image", "media", "category"}


@dataclass(frozen=True)
class WikiPage:
    """One page of a MediaWiki XML dump."""

    title: str
    namespace: int
    redirect: bool
    text: str


def iter_wiki_pages(path_or_file: str | Path | IO[bytes]) -> Iterator[WikiPage]:
    """Stream the pages of a MediaWiki XML export (plain or ``.bz2``).

    Args:
        path_or_file: the dump, or an open binary file of it.

    Returns:
        An iterator of :class:`WikiPage` (wiki markup, unconverted).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the XML is malformed.
    """
    with open_binary(path_or_file) as fh:
        try:
            for _, elem in ET.iterparse(fh, events=("end",)):
                if _local(elem.tag) != "page":
                    continue
                fields = {_local(child.tag): child for child in elem}
                revision = fields.get("revision")
                text_elem = None
                if revision is not None:
                    text_elem = next((c for c in revision if _local(c.tag) == "text"), None)
                yield WikiPage(
                    title=(fields["title"].text or "") if "title" in fields else "",
                    namespace=int(fields["ns"].text or 0) if "ns" in fields else 0,
                    redirect="redirect" in fields,
                    text=(text_elem.text or "") if text_elem is not None else "",
                )
                elem.clear()
        except ET.ParseError as exc:
            raise ValueError(
                f"malformed MediaWiki XML in {getattr(fh, 'name', path_or_file)}: {exc}"
            ) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _drop_nested(text: str, opener: str, closer: str) -> str:
    """Remove balanced ``opener ... closer`` spans (nesting allowed); unmatched markers are dropped."""
    out: list[str] = []
    depth = 0
    last = 0
    outer = 0
    for m in re.finditer(re.escape(opener) + "|" + re.escape(closer), text):
        if m.group() == opener:
            if depth == 0:
                out.append(text[last : m.start()])
                outer = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                last = m.end()
        else:  # a stray closer
            out.append(text[last : m.start()])
            last = m.end()
    if depth:  # unclosed: keep what follows the opener rather than lose the rest of the page
        out.append(_drop_nested(text[outer + len(opener) :], opener, closer))
    else:
        out.append(text[last:])
    return "".join(out)


def _drop_tables(text: str) -> str:
    out: list[str] = []
    depth = 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
        elif depth and s.startswith("|}"):
            depth -= 1
        elif not depth:
            out.append(line)
    return "\n".join(out)


_INNER_LINK = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)  # innermost: no [[ or ]] inside
_INTERWIKI = re.compile(r"^[a-z][a-z-]{1,11}$")


def _replace_link(m: re.Match[str]) -> str:
    target, _, label = m.group(1).partition("|")
    visible = target.startswith(":")  # [[:Category:X]] is a link, [[Category:X]] a tag
    target = target.strip().lstrip(":")
    prefix = target.split(":", 1)[0].strip() if ":" in target else ""
    if not visible and (prefix.lower() in _WIKI_DROP_LINK_PREFIXES or _INTERWIKI.match(prefix)):
        return ""
    if label:
        return label.rsplit("|", 1)[-1] if "|" in label else label
    return target.split("#", 1)[0] if not target.startswith("#") else target[1:]


def strip_wiki_markup(text: str) -> str:
    """Turn MediaWiki markup into readable plain text.

    Drops comments, ``<ref>``s, templates ``{{...}}``, tables ``{|...|}``, files, images,
    categories and interlanguage links, and the reference/link sections; keeps link text
    (``[[a|b]]`` -> ``b``), external link labels, and headings as their own lines.

    Args:
        text: wiki markup of one page.

    Returns:
        Plain text, paragraphs separated by blank lines.
    """
    text = re.sub(r"<!--.*?(-->|$)", "", text, flags=re.S)
    text = re.sub(r"<ref\b[^>]*/\s*>", "", text, flags=re.I)
    text = re.sub(r"<ref\b[^>]*>.*?(</ref\s*>|$)", "", text, flags=re.I | re.S)
    text = re.sub(
        r"<(gallery|math|timeline|score|syntaxhighlight|source|imagemap|chem|hiero)\b[^>]*>.*?</\1\s*>",
        "",
        text,
        flags=re.I | re.S,
    )
    text = _drop_nested(text, "{{", "}}")
    text = _drop_tables(text)
    for _ in range(8):  # innermost links first, so a file caption's links go before the file
        text, n = _INNER_LINK.subn(_replace_link, text)
        if not n:
            break
    text = text.replace("[[", "").replace("]]", "")
    text = re.sub(r"\[(?:https?:|ftp:)?//[^\s\]]+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^<>]{0,200}>", "", text)  # remaining html tags: <br>, <small>, <sup>...
    text = html.unescape(text).replace("\xa0", " ")
    text = re.sub(r"__[A-Z]+__", "", text)

    lines: list[str] = []
    skip_level = 0
    for line in text.split("\n"):
        heading = re.match(r"^(={1,6})\s*(.*?)\s*\1\s*$", line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2).strip()
            if skip_level and level > skip_level:
                continue
            skip_level = level if title.lower() in _WIKI_DROP_SECTIONS else 0
            if not skip_level and title:
                lines += ["", title, ""]
            continue
        if skip_level:
            continue
        line = re.sub(r"^[*#:;]+\s*", "", line)
        if re.fullmatch(r"-{4,}\s*", line):
            continue
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # "( )" left by a dropped template
        line = re.sub(r"[ \t]{2,}", " ", line).strip()
        line = re.sub(r"\s+([,.;:])", r"\1", line)
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def slugify(title: str) -> str:
    """Lower-case ``title`` with runs of non-alphanumerics turned into ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def iter_wiki_records(path_or_file: str | Path | IO[bytes], *, min_words: int = 20) -> Iterator[dict]:
    """Articles (namespace 0, not redirects) of a dump as corpus rows ``id, text, source``.

    Args:
        path_or_file: the MediaWiki XML dump (plain or ``.bz2``).
        min_words: skip articles with fewer words after stripping.

    Returns:
        An iterator of rows; ``id`` is the title slug (``-2``, ``-3``... on a clash).
    """
    used: set[str] = set()
    for page in iter_wiki_pages(path_or_file):
        if page.namespace != 0 or page.redirect or page.text.lstrip().upper().startswith("#REDIRECT"):
            continue
        text = strip_wiki_markup(page.text)
        if len(text.split()) < min_words:
            continue
        base = slugify(page.title) or "page"
        rid, n = base, 1
        while rid in used:
            n += 1
            rid = f"{base}-{n}"
        used.add(rid)
        yield {"id": rid, "text": text, "source": f"wikipedia:{page.title}"}


# --------------------------------------------------------------------------- Python docs

_RST_COMMENT = re.compile(r"^\.\.(?:\s*$| (?![\w:-]+::|_|\[|\|))")  # ".. text" that is no directive
_RST_ROLE = re.compile(r":(?:[\w-]+:)*[\w-]+:`([^`]+)`")
_RST_DROP_DIRECTIVES = re.compile(
    r"^\.\. (index|highlight|sectionauthor|moduleauthor|testsetup|testcleanup|toctree)::"
)


def _rst_role_text(m: re.Match[str]) -> str:
    inner = m.group(1).strip()
    if inner.endswith(">") and "<" in inner:  # :ref:`title <target>`
        return inner[: inner.rindex("<")].strip()
    inner = inner.lstrip("!")
    if inner.startswith("~"):  # :func:`~os.path.join` shows as join
        return inner[1:].rsplit(".", 1)[-1]
    return inner


def clean_rst(text: str) -> str:
    """Make reStructuredText easier to read as prose.

    Roles become their text (``:func:`len``` -> ``len``); label targets (``.. _x:``), comments and
    the ``index``/``highlight``/``toctree``... directives go with their indented bodies.

    Args:
        text: a ``.rst`` source.

    Returns:
        The cleaned text.
    """
    out: list[str] = []
    drop_indent: int | None = None  # indent of the directive being dropped; its body is deeper
    for line in text.split("\n"):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if drop_indent is not None:
            if not stripped or indent > drop_indent:
                continue
            drop_indent = None
        if _RST_DROP_DIRECTIVES.match(stripped) or _RST_COMMENT.match(stripped):
            drop_indent = indent
            continue
        if re.match(r"^\.\. _[^:]+:\s*$", stripped):
            continue
        out.append(_RST_ROLE.sub(_rst_role_text, line).rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def iter_pydocs_records(sources_dir: str | Path) -> Iterator[dict]:
    """The ``*.rst.txt`` pages under a Sphinx ``_sources`` directory as corpus rows.

    Args:
        sources_dir: e.g. ``/usr/share/doc/python3.11/html/_sources``.

    Returns:
        Rows ``id`` (the page path without ``.rst.txt``, e.g. ``library/functions``), ``text``,
        ``source``, in path order.

    Raises:
        FileNotFoundError: the directory does not exist or holds no ``.rst.txt`` page.
    """
    root = Path(sources_dir)
    pages = sorted(root.rglob("*.rst.txt")) if root.is_dir() else []
    if not pages:
        raise FileNotFoundError(f"no *.rst.txt pages under {root}")
    for page in pages:
        rid = page.relative_to(root).as_posix().removesuffix(".rst.txt")
        text = clean_rst(page.read_text(encoding="utf-8", errors="replace"))
        if text.strip():
            yield {"id": rid, "text": text, "source": "python-docs"}
