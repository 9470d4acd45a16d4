"""Tests for corpora: the parquet contract, the converters on real samples, fetch, CLI.

Everything runs offline on tests/fixtures/corpora; the one test that downloads is marked slow
and runs only with BIGBIRD_NETWORK_TESTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

import corpora
from corpora import fetching

FIXTURES = Path(__file__).parents[1] / "fixtures" / "corpora"
REPO = Path(__file__).parents[2]
RAW = {
    "wiki": FIXTURES / "enwiki-excerpt.xml.bz2",
    "pydocs": FIXTURES / "pydocs",
    "triviaqa": FIXTURES / "triviaqa-sample.tgz",
    "squad": FIXTURES / "squad.json",
    "polarity": FIXTURES / "pang_lee_polarity.cor",
    "rrna16s": FIXTURES / "rRNA16S.gold.sample.fasta",
    "genbank-hla": FIXTURES / "gbpri1-excerpt.seq",
}


def convert_fixture(name: str, out: Path, **kwargs: object) -> list[dict]:
    corpora.convert(name, RAW[name], out, **kwargs)
    table = corpora.read_corpus(out)
    corpora.validate_corpus(table)
    return table.to_pylist()


# --------------------------------------------------------------------------- the contract


def test_corpus_schema() -> None:
    schema = corpora.corpus_schema(["source", "spans", "text", "id"])
    assert schema.names == ["id", "text", "source", "spans"]
    assert not schema.field("id").nullable and schema.field("source").nullable
    assert schema.field("spans").type == pa.list_(
        pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])
    )
    with pytest.raises(ValueError, match=r"unknown corpus columns \['title'\]"):
        corpora.corpus_schema(["id", "text", "title"])


def test_corpus_writer_splits_files_and_row_groups(tmp_path: Path) -> None:
    schema = corpora.corpus_schema(["id", "text", "label"])
    with corpora.CorpusWriter(tmp_path, schema, records_per_file=10, row_group_size=4) as writer:
        for i in range(23):
            writer.write({"id": f"r{i}", "text": "x " * i, "label": "odd" if i % 2 else None})
    assert [p.name for p in writer.files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(writer.files[0]).metadata
    assert meta.num_rows == 10 and [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        4,
        4,
        2,
    ]
    table = corpora.read_corpus(tmp_path)
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(23)]
    assert table.column("label").null_count == 12


def test_corpus_writer_rejects_bad_rows(tmp_path: Path) -> None:
    schema = corpora.corpus_schema(["id", "text"])
    writer = corpora.CorpusWriter(tmp_path / "a", schema)
    writer.write({"id": "a", "text": "t"})
    with pytest.raises(ValueError, match="duplicate corpus id 'a'"):
        writer.write({"id": "a", "text": "u"})
    with pytest.raises(ValueError, match=r"columns \['label'\] not in the schema"):
        writer.write({"id": "b", "text": "u", "label": "x"})
    with pytest.raises(ValueError, match="non-empty string id"):
        writer.write({"id": "", "text": "u"})
    writer.close()
    with pytest.raises(FileExistsError, match="already holds 1 parquet"):
        corpora.CorpusWriter(tmp_path / "a", schema)
    with pytest.raises(ValueError, match="must be positive"):
        corpora.CorpusWriter(tmp_path / "b", schema, records_per_file=0)


def test_empty_corpus_still_has_a_schema(tmp_path: Path) -> None:
    stats = corpora.write_corpus([], tmp_path, ["id", "text", "label"])
    assert stats.records == 0 and len(stats.files) == 1
    assert corpora.read_corpus(tmp_path).schema.names == ["id", "text", "label"]


def test_validate_corpus_catches_contract_violations() -> None:
    spans_type = corpora.COLUMN_TYPES["spans"]
    good = pa.table(
        {
            "id": ["a"],
            "text": ["ACGT"],
            "spans": pa.array([[{"start": 0, "end": 4, "label": "exon"}]], spans_type),
        }
    )
    corpora.validate_corpus(good)
    bad_span = good.set_column(2, "spans", pa.array([[{"start": 2, "end": 5, "label": "exon"}]], spans_type))
    with pytest.raises(ValueError, match="outside its text of length 4"):
        corpora.validate_corpus(bad_span)
    with pytest.raises(ValueError, match="'a' is not unique"):
        corpora.validate_corpus(pa.table({"id": ["a", "a"], "text": ["x", "y"]}))
    with pytest.raises(ValueError, match="'offset' has type string"):
        corpora.validate_corpus(pa.table({"id": ["a"], "text": ["x"], "offset": ["0"]}))
    with pytest.raises(ValueError, match="no 'text' column"):
        corpora.validate_corpus(pa.table({"id": ["a"]}))


# --------------------------------------------------------------------------- Wikipedia


def test_strip_wiki_markup_synthetic() -> None:
    markup = """{{Infobox|name={{nested|x}}|size=3}}
'''Bird''' is a [[animal]] with [[Feather|feathers]].<ref name="a">{{cite web|url=x}}</ref> See [http://example.org the site].<ref name="b"/>
[[File:Bird.jpg|thumb|A bird [[flight|flying]] over [1.0] water]]
<!-- hidden
comment -->
== History ==
{| class="wikitable"
| cell || {{flag|x}}
|}
* Birds &amp; bees&nbsp;fly.
[[Category:Animals]] [[de:Vogel]] [[:Category:Birds|bird category]]

== References ==
{{reflist}}
* A reference line.
=== Sub ===
still references
== Biology ==
Eggs.
"""
    text = strip_wiki = corpora.strip_wiki_markup(markup)
    assert text == (
        "Bird is a animal with feathers. See the site.\n\nHistory\n\nBirds & bees fly.\nbird category"
        "\n\nBiology\n\nEggs."
    ), strip_wiki


def test_wiki_fixture_articles_are_clean_plain_text(tmp_path: Path) -> None:
    pages = list(corpora.iter_wiki_pages(RAW["wiki"]))
    assert len(pages) == 30 and sum(p.redirect for p in pages) == 4
    rows = convert_fixture("wiki", tmp_path)
    assert len(rows) == 26  # namespace-0 pages that are not redirects
    words = {r["id"]: len(r["text"].split()) for r in rows}
    assert sum(n > 3_000 for n in words.values()) >= 6
    assert sum(words.values()) > 40_000
    for row in rows:
        for leftover in ("{{", "}}", "[[", "]]", "<ref", "{|", "&nbsp;", "<!--", "thumb|"):
            assert leftover not in row["text"], (row["id"], leftover)
        assert re.fullmatch(r"[a-z0-9-]+", row["id"])
        assert row["source"].startswith("wikipedia:")
    albedo = next(r["text"] for r in rows if r["id"] == "albedo")
    assert albedo.startswith("Albedo or reflection coefficient, derived from Latin albedo")
    assert "\nTerrestrial albedo\n" in albedo  # headings kept as their own lines
    assert "Albedo depends on the frequency of the radiation." in albedo
    assert "External links" not in albedo and "Category:" not in albedo
    assert "accessibletomputing" not in words and "accessiblecomputing" not in words


# --------------------------------------------------------------------------- Python docs, QA, polarity


def test_pydocs_fixture(tmp_path: Path) -> None:
    rows = convert_fixture("pydocs", tmp_path)
    ids = [r["id"] for r in rows]
    assert len(rows) == 10 and ids == sorted(ids)
    assert "library/functions" in ids and "glossary" in ids
    assert sum(len(r["text"].split()) > 3_000 for r in rows) >= 4
    functions = rows[ids.index("library/functions")]["text"]
    assert ":func:`" not in functions and ".. index::" not in functions
    assert "Return the absolute value of a number." in functions


def test_clean_rst() -> None:
    rst = (
        ".. _label:\n\n.. index:: single: x\n   pair: y\n\n   .. index:: builtin: z\n\nUse :func:`len` and :meth:`~str.join`, "
        "see :ref:`the docs <tut>`.\n\n.. a comment\n\n.. function:: f(x)\n"
    )
    assert corpora.clean_rst(rst) == "Use len and join, see the docs.\n\n.. function:: f(x)\n"


def test_triviaqa_fixture(tmp_path: Path) -> None:
    rows = convert_fixture("triviaqa", tmp_path)
    assert len(rows) == 19 and len({r["question"] for r in rows}) == 9  # 11 entries, 2 repeated
    by_id = {r["id"]: r for r in rows}
    dench = by_id["tc_3/wikipedia/Judi_Dench"]
    assert dench["question"] == "Where in England was Dame Judi Dench born?"
    assert dench["answers"][0] == "York" and "York, North Yorkshire" in dench["answers"]
    assert "York" in dench["text"]
    assert by_id["tc_2/web/61_97"]["source"] == "triviaqa/web-dev"
    assert max(len(r["text"].split()) for r in rows) > 10_000  # long evidence documents


def test_squad_fixture_answer_offsets(tmp_path: Path) -> None:
    rows = convert_fixture("squad", tmp_path)
    assert len(rows) == 5
    for row in rows:
        for answer, start in zip(row["answers"], row["answer_start"], strict=True):
            assert row["text"][start : start + len(answer)] == answer


def test_polarity_fixture(tmp_path: Path) -> None:
    rows = convert_fixture("polarity", tmp_path)
    assert Counter(r["label"] for r in rows) == {"neg": 100, "pos": 100}
    assert rows[0]["text"] == "simplistic , silly and tedious ."
    bad = tmp_path / "bad.cor"
    bad.write_text("__label__pos fine\nno label here\n")
    with pytest.raises(ValueError, match=r"bad\.cor:2: expected '__label__NAME text'"):
        list(corpora.iter_polarity_records(bad))


# --------------------------------------------------------------------------- DNA through the named converters


def test_rrna16s_fixture(tmp_path: Path) -> None:
    rows = convert_fixture("rrna16s", tmp_path)
    assert len(rows) == 200
    labels = Counter(r["label"] for r in rows)
    assert labels.most_common(2) == [("Proteobacteria", 81), ("Actinobacteria", 46)]
    assert all(re.fullmatch("[ACGTN]+", r["text"]) for r in rows)


def test_genbank_fixture_windowed(tmp_path: Path) -> None:
    rows = convert_fixture("genbank-hla", tmp_path, window=8192, overlap=192)
    assert {r["id"].split(":")[0] for r in rows} == {"Z69719.1", "U01317.1"}
    assert all(len(r["text"]) <= 8192 for r in rows)
    assert sum(s["label"] == "exon" for r in rows for s in r["spans"]) >= 20
    with pytest.raises(ValueError, match="DNA corpora only"):
        corpora.convert("wiki", RAW["wiki"], tmp_path / "w", window=10)


# --------------------------------------------------------------------------- fetch (offline parts)


def test_fetch_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corpus 'nope'; known: wiki, pydocs"):
        corpora.fetch("nope", tmp_path)


def test_failed_command_names_the_command() -> None:
    with pytest.raises(
        corpora.FetchError, match=r"command failed \(exit 3\): .* -c 'import sys; sys.exit\(3\)'"
    ):
        fetching.run_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(corpora.FetchError, match="command not found: 'no-such-tool-xyz'"):
        fetching.run_command(["no-such-tool-xyz", "download", "x"])


def _no_download(cmd: list[str], cwd: Path | None = None) -> None:
    raise AssertionError(f"fetch ran {cmd} although the raw file was cached")


def test_fetch_uses_cached_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = corpora.CORPORA["polarity"]
    wheel = tmp_path / "_raw" / "pypi" / "gensim-4.4.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(RAW["polarity"], spec.member)
    monkeypatch.setattr(fetching, "run_command", _no_download)
    out = corpora.fetch("polarity", tmp_path, progress=False)
    assert out == tmp_path / "polarity"
    assert corpora.read_corpus(out).num_rows == 200
    out = corpora.fetch("polarity", tmp_path, limit=7, progress=False)  # rewritten on every call
    assert corpora.read_corpus(out).num_rows == 7


def test_fetch_uses_cached_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = corpora.CORPORA["genbank-hla"]
    root = tmp_path / "_raw" / "deb" / spec.package
    (root / spec.member).parent.mkdir(parents=True)
    shutil.copy(RAW["genbank-hla"], root / spec.member)
    (root / ".complete").write_text("emboss-test_test.deb\n")
    monkeypatch.setattr(fetching, "run_command", _no_download)
    out = corpora.fetch("genbank-hla", tmp_path, window=4096, progress=False)
    assert corpora.read_corpus(out).schema.names == ["id", "text", "source", "spans", "offset"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BIGBIRD_NETWORK_TESTS") != "1", reason="needs BIGBIRD_NETWORK_TESTS=1 (network)"
)
@pytest.mark.parametrize("name", list(corpora.CORPORA))
def test_fetch_real_corpus(
    name: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path_factory.getbasetemp() / "fetched"  # shared: the wheels are downloaded once
    out = corpora.fetch(name, dest, limit=50)
    table = corpora.read_corpus(out)
    corpora.validate_corpus(table)
    assert 0 < table.num_rows <= 50
    monkeypatch.setattr(fetching, "run_command", _no_download)
    corpora.fetch(name, dest, limit=5, progress=False)  # the second call reuses dest/_raw


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corpora", *args], cwd=REPO, capture_output=True, text=True
    )


def test_cli_help_and_list() -> None:
    result = _cli("--help")
    assert result.returncode == 0 and "fetch" in result.stdout and "list" in result.stdout
    listing = _cli("list")
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(corpora.CORPORA)


def test_cli_convert_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pol"
    assert corpora.main(["convert", "polarity", str(RAW["polarity"]), "--output", str(out), "--quiet"]) == 0
    assert '"records": 200' in capsys.readouterr().out
    assert corpora.main(["convert", "nope", str(RAW["polarity"]), "--output", str(out)]) == 1
    assert "unknown corpus 'nope'" in capsys.readouterr().err
    assert corpora.main(["convert", "squad", str(tmp_path / "missing.json"), "--output", str(out)]) == 1
    assert "missing.json" in capsys.readouterr().err
    result = _cli("fetch", "wiki")  # --dest is required
    assert result.returncode == 2 and "--dest" in result.stderr
