"""Converters for the question-answering corpora: TriviaQA archives and SQuAD v1.1 JSON."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from corpora.rawfiles import existing_path, open_binary


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
        open_binary(tgz, decompress=False) as fh,
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
    squad = json.loads(existing_path(path).read_text(encoding="utf-8"))
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
