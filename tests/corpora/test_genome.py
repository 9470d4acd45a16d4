"""Tests for corpora.genome: windowing, streaming conversion to parquet, options and CLI (parsers:
test_genome_parsers.py)."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpora import genome, read_corpus, validate_corpus

FIXTURES = Path(__file__).parents[1] / "fixtures" / "corpora"
GENBANK = FIXTURES / "gbpri1-excerpt.seq"
RRNA = FIXTURES / "rRNA16S.gold.sample.fasta"
REPO = Path(__file__).parents[2]

# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("length", [0, 1, 9, 10, 11, 4096, 10_000])
@pytest.mark.parametrize("window, overlap", [(10, 0), (10, 3), (4096, 0), (7, 6)])
def test_iter_windows_cover_the_sequence(length: int, window: int, overlap: int) -> None:
    rng = random.Random(length * 31 + window)
    seq = "".join(rng.choice("ACGT") for _ in range(length))
    cuts = sorted(rng.sample(range(1, length), min(20, max(0, length - 1)))) if length > 1 else []
    chunks = [seq[a:b] for a, b in zip([0, *cuts], [*cuts, length])]
    windows = list(genome.iter_windows(chunks, window, overlap))
    if length == 0:
        assert windows == []
        return
    starts = [s for s, _ in windows]
    assert starts == list(range(0, starts[-1] + 1, window - overlap))
    assert all(text == seq[s : s + window] for s, text in windows)
    assert windows[-1][0] + len(windows[-1][1]) == length  # the last window reaches the end
    assert all(len(text) == window for _, text in windows[:-1])
    if len(windows) > 1:  # no window lies wholly inside the one before it
        assert windows[-1][0] + len(windows[-1][1]) > windows[-2][0] + window
    if overlap == 0:
        assert "".join(text for _, text in windows) == seq


@pytest.mark.parametrize("window, overlap", [(0, 0), (-5, 0), (10, 10), (10, -1), (True, 0)])
def test_iter_windows_rejects(window: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="window|overlap"):
        list(genome.iter_windows(["ACGT"], window, overlap))


@pytest.mark.parametrize("overlap", [0, 1000])
def test_windowed_genbank_conversion(tmp_path: Path, overlap: int) -> None:
    window = 4096
    stride = window - overlap
    stats = genome.convert_to_parquet([GENBANK], tmp_path / "out", window=window, overlap=overlap)
    table = read_corpus(tmp_path / "out")
    validate_corpus(table)
    assert table.schema.names == ["id", "text", "source", "spans", "offset"]
    rows = table.to_pylist()
    assert stats.rows == len(rows) and stats.records == 2
    records = {r.id: r for r in genome.iter_genbank(GENBANK)}
    for rid, record in records.items():
        mine = [r for r in rows if r["id"].startswith(rid + ":")]
        seq = record.sequence
        assert [r["offset"] for r in mine] == list(range(0, mine[-1]["offset"] + 1, stride))
        assert mine[-1]["offset"] + len(mine[-1]["text"]) == len(seq)
        if overlap == 0:  # every base exactly once, in order
            assert len(mine) == -(-len(seq) // window)
            assert "".join(r["text"] for r in mine) == seq
        for r in mine:
            start, end = r["offset"], r["offset"] + len(r["text"])
            assert r["id"] == f"{rid}:{start}-{end}" and r["text"] == seq[start:end]
            assert all(0 <= s["start"] < s["end"] <= len(r["text"]) for s in r["spans"])
            # the spans, shifted back by the offset, are exactly the features clipped to this window
            back = {(s["start"] + start, s["end"] + start, s["label"]) for s in r["spans"]}
            expected = {
                (max(f.start, start), min(f.end, end), f.type)
                for f in record.features
                if f.start < end and f.end > start
            }
            assert back == expected
    hbb_row = next(
        r for r in rows if r["id"].startswith("U01317.1:") and r["offset"] <= 62136 < r["offset"] + 3000
    )
    offset = hbb_row["offset"]
    assert {"start": 62136 - offset, "end": 62278 - offset, "label": "exon"} in hbb_row["spans"]


def test_unwindowed_genbank_conversion_with_label_map(tmp_path: Path) -> None:
    stats = genome.convert_to_parquet(
        [GENBANK], tmp_path, feature_types=["exon", "CDS"], label_map={"exon": "E", "CDS": "C"}
    )
    rows = read_corpus(tmp_path).to_pylist()
    assert [r["id"] for r in rows] == ["Z69719.1", "U01317.1"]
    assert "offset" not in rows[0]
    hbb = rows[1]
    assert len(hbb["text"]) == 73_308 and set(hbb["text"]) <= set("ACGTN")
    assert {s["label"] for s in hbb["spans"]} == {"E", "C"}
    assert sum(s["label"] == "E" for s in hbb["spans"]) == 20
    starts = [(s["start"], s["end"], s["label"]) for s in hbb["spans"]]
    assert starts == sorted(set(starts))  # sorted, duplicates written once
    assert stats.spans == sum(len(r["spans"]) for r in rows)


def test_fasta_conversion_with_phylum_labels(tmp_path: Path) -> None:
    regex = r"\t(?:Bacteria|Archaea);\s*([^;\t]+)"
    stats = genome.convert_to_parquet([RRNA], tmp_path, label_from_header=regex, records_per_file=64)
    table = read_corpus(tmp_path)
    validate_corpus(table)
    assert table.num_rows == 200 and len(stats.files) == 4
    assert table.schema.names == ["id", "text", "source", "label"]
    expected = Counter(
        line.rsplit("\t", 1)[1].split(";")[1].strip()
        for line in RRNA.read_text().splitlines()
        if line[:1] == ">"
    )
    assert Counter(table.column("label").to_pylist()) == expected == Counter(stats.labels)
    assert expected.most_common(1)[0][0] == "Proteobacteria"
    assert all(re.fullmatch("[ACGTN]+", t) for t in table.column("text").to_pylist())
    assert stats.ambiguous_bases > 0 and stats.unlabeled == 0
    assert set(table.column("source").to_pylist()) == {RRNA.name}


def test_label_regex_without_match_leaves_null(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_text(">a class=foo\nACGT\n>b\nACGT\n")
    stats = genome.convert_to_parquet([path], tmp_path / "out", label_from_header=r"class=(\w+)")
    assert read_corpus(tmp_path / "out").column("label").to_pylist() == ["foo", None]
    assert stats.unlabeled == 1


def test_streaming_conversion_memory_is_bounded(tmp_path: Path) -> None:
    """A 3 Mbp chromosome converts with window=4096 without ever holding the whole sequence."""
    length, rng = 3_000_000, random.Random(0)
    path = tmp_path / "chr.fa"
    digest = hashlib.sha256()
    with open(path, "w") as fh:
        fh.write(">chrT synthetic\n")
        for _ in range(length // 60):
            line = "".join(rng.choices("acgt", k=60))
            digest.update(line.upper().encode())
            fh.write(line + "\n")
    # warm up first: the first conversion in a process imports and caches ~30 MB of library state
    genome.convert_to_parquet([RRNA], tmp_path / "warm", window=4096, limit=2)
    tracemalloc.start()
    try:
        stats = genome.convert_to_parquet([path], tmp_path / "out", window=4096, row_group_size=128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.rows == -(-length // 4096) and stats.bases == length
    assert peak < 50 * 2**20
    assert peak < length  # less than the sequence itself: it was never held whole
    out = hashlib.sha256()
    offsets = []
    for batch in pq.ParquetFile(stats.files[0]).iter_batches(columns=["text", "offset"]):
        for text, offset in zip(batch.column("text").to_pylist(), batch.column("offset").to_pylist()):
            out.update(text.encode())
            offsets.append(offset)
    assert out.hexdigest() == digest.hexdigest()
    assert offsets == list(range(0, length, 4096))


# --------------------------------------------------------------------------- options and CLI


def test_convert_rejects_bad_options(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="nope.fa"):
        genome.convert_to_parquet([tmp_path / "nope.fa"], out)
    with pytest.raises(ValueError, match="unknown format 'embl'"):
        genome.convert_to_parquet([RRNA], out, format="embl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overlap=5 needs a window"):
        genome.convert_to_parquet([RRNA], out, overlap=5)
    with pytest.raises(ValueError, match="overlap must be in"):
        genome.convert_to_parquet([RRNA], out, window=100, overlap=100)
    with pytest.raises(ValueError, match="bad label regex"):
        genome.convert_to_parquet([RRNA], out, label_from_header="(unclosed")
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        genome.convert_to_parquet([garbage], out)
    genome.convert_to_parquet([RRNA], out, limit=3)
    with pytest.raises(FileExistsError, match="parquet"):
        genome.convert_to_parquet([RRNA], out, limit=3)
    assert genome.convert_to_parquet([RRNA], out, limit=3, overwrite=True).rows == 3


def test_duplicate_record_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.fa"
    path.write_text(">a\nACGT\n>a\nACGT\n")
    with pytest.raises(ValueError, match="duplicate record id 'a'"):
        genome.convert_to_parquet([path], tmp_path / "out")


def test_detect_format() -> None:
    assert genome.detect_format(GENBANK) == "genbank"
    assert genome.detect_format(RRNA) == "fasta"


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corpora.genome", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in ("--output", "--format", "--window", "--overlap", "--features", "--label-regex"):
        assert flag in result.stdout


def test_cli_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corpora.genome", str(tmp_path / "missing.fa"), "--output", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.fa" in result.stderr


def test_cli_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert genome.main([str(RRNA), "--output", str(tmp_path / "x"), "--format", "embl"]) == 1
    assert "unknown format 'embl'" in capsys.readouterr().err
    assert (
        genome.main([str(GENBANK), "-o", str(tmp_path / "g"), "--window", "5000", "--features", "exon,CDS"])
        == 0
    )
    assert "wrote 22 rows from 2 sequences" in capsys.readouterr().out
    assert {s["label"] for r in read_corpus(tmp_path / "g").to_pylist() for s in r["spans"]} == {
        "exon",
        "CDS",
    }
    with pytest.raises(SystemExit) as exc:
        genome.main(["--output", str(tmp_path)])  # no input: argparse usage error
    assert exc.value.code == 2
