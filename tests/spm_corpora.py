"""Real documents for the SentencePiece parity tests and ``tests/spm_parity.py``, raw: trailing newlines kept.

Corpora (each a list of texts; paragraphs end in their own ``"\\n"``):
- ``pydocs``: the Python 3.11 documentation sources of Debian's ``python3.11-doc`` (497 ``.rst.txt`` files,
  installed by ``.ci/run``), or the 10 pages committed in ``tests/fixtures/corpora/pydocs`` without it;
- ``wikipedia``: the 30 pages of ``tests/fixtures/corpora/enwiki-excerpt.xml.bz2`` (wiki markup) and their
  paragraphs;
- ``triviaqa``: the 19 evidence documents of ``tests/fixtures/corpora/triviaqa-sample.tgz`` and their paragraphs;
- ``crlf``: the Python docs pages with Windows line ends;
- ``lines``: raw lines of ``pang_lee_polarity.cor`` (each ending in ``" \\n"``) and of the Botchan excerpt.
Pairs: each TriviaQA question with its evidence documents.
"""

from __future__ import annotations

import bz2
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
CORPORA = FIXTURES / "corpora"
PYDOCS_INSTALLED = Path("/usr/share/doc/python3.11/html/_sources")


def paragraphs(text: str) -> list[str]:
    """The paragraphs of a text, each with the newline that ended it."""
    return [p + "\n" for p in text.split("\n\n") if p.strip()]


def pydocs(installed: bool | None = None) -> list[str]:
    """Python documentation pages, raw (the installed corpus when present, else the committed sample)."""
    root = PYDOCS_INSTALLED if (installed is None and PYDOCS_INSTALLED.is_dir()) or installed else CORPORA / "pydocs"
    return [p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.rst.txt"))]


def wikipedia() -> list[str]:
    root = ET.fromstring(bz2.open(CORPORA / "enwiki-excerpt.xml.bz2").read())
    ns = root.tag.split("}")[0] + "}"
    pages = [page.find(f"{ns}revision/{ns}text").text or "" for page in root.iter(f"{ns}page")]
    return pages + [p for page in pages for p in paragraphs(page)]


def _triviaqa() -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    docs: dict[str, str] = {}
    questions: list[tuple[str, list[str]]] = []
    with tarfile.open(CORPORA / "triviaqa-sample.tgz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("evidence/") and member.name.endswith(".txt"):
                docs[member.name.removeprefix("evidence/")] = tar.extractfile(member).read().decode("utf-8")
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("qa/") and member.name.endswith(".json"):
                for entry in json.load(tar.extractfile(member))["Data"]:
                    files = [f"{kind}/{page['Filename']}" for kind, key in (("wikipedia", "EntityPages"),
                                                                             ("web", "SearchResults"))
                             for page in entry.get(key, [])]
                    questions.append((entry["Question"], [docs[f] for f in files if f in docs]))
    return docs, questions


def triviaqa() -> list[str]:
    docs = list(_triviaqa()[0].values())
    return docs + [p for doc in docs for p in paragraphs(doc)]


def triviaqa_pairs() -> list[tuple[str, str]]:
    return [(question, doc) for question, docs in _triviaqa()[1] for doc in docs]


def crlf() -> list[str]:
    return [doc.replace("\n", "\r\n") for doc in pydocs()]


def lines() -> list[str]:
    polarity = (CORPORA / "pang_lee_polarity.cor").read_text(encoding="latin-1")
    botchan = (FIXTURES / "spm" / "botchan_excerpt.txt").read_text(encoding="utf-8")
    return polarity.splitlines(keepends=True) + botchan.splitlines(keepends=True)


CORPUS_LOADERS = {"pydocs": pydocs, "wikipedia": wikipedia, "triviaqa": triviaqa, "crlf": crlf, "lines": lines}
