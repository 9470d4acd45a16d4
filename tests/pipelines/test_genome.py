"""Tests for pipelines.genome: FASTA/GenBank parsing, windowing, streaming conversion, CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import genome
from pipelines.corpora import read_corpus, validate_corpus

FIXTURES = Path(__file__).parents[1] / "fixtures" / "corpora"
GENBANK = FIXTURES / "gbpri1-excerpt.seq"
RRNA = FIXTURES / "rRNA16S.gold.sample.fasta"
REPO = Path(__file__).parents[2]

_CODONS = {
    a + b + c: aa
    for (a, b, c), aa in zip(
        ((a, b, c) for a in "TCAG" for b in "TCAG" for c in "TCAG"),
        "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
    )
}


def translate(dna: str) -> str:
    return "".join(_CODONS.get(dna[i : i + 3], "X") for i in range(0, len(dna) - 2, 3))


def reverse_complement(dna: str) -> str:
    return dna.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def file_translation(record_text: str, location_start: str) -> str:
    """The /translation qualifier of the CDS whose location starts with ``location_start``."""
    m = re.search(
        r"^     CDS +" + re.escape(location_start) + r'.*?/translation="([^"]+)"', record_text, re.M | re.S
    )
    assert m, location_start
    return re.sub(r"\s+", "", m.group(1))


def genbank_record_text(record_id: str) -> str:
    for chunk in GENBANK.read_text().split("//\n"):
        if f"VERSION     {record_id}" in chunk:
            return chunk
    raise AssertionError(record_id)


# --------------------------------------------------------------------------- FASTA

FASTA_TEXT = """>seq1 first record
acgtacgtac
GTACNN

>seq2
ACGT
RYKM
>seq3 empty
>seq4 last one
ttt
"""


def test_iter_fasta_multiline_and_lowercase(tmp_path: Path) -> None:
    path = tmp_path / "a.fa"
    path.write_text(FASTA_TEXT)
    records = list(genome.iter_fasta(path))
    assert [r.id for r in records] == ["seq1", "seq2", "seq3", "seq4"]
    assert records[0] == genome.FastaRecord("seq1", "first record", "ACGTACGTACGTACNN")
    assert records[1].sequence == "ACGTRYKM"  # IUPAC codes kept by the parser
    assert records[2].sequence == "" and records[2].description == "empty"
    assert records[3].sequence == "TTT"


def test_iter_fasta_gzip_is_detected_from_content(tmp_path: Path) -> None:
    plain = list(genome.iter_fasta(io.StringIO(FASTA_TEXT)))
    gz = tmp_path / "a.fasta"  # no .gz suffix: detection is by magic bytes
    gz.write_bytes(gzip.compress(FASTA_TEXT.encode()))
    assert list(genome.iter_fasta(gz)) == plain
    fh = io.BytesIO(gzip.compress(FASTA_TEXT.encode()))
    assert list(genome.iter_fasta(fh)) == plain
    assert not fh.closed  # the caller's file stays open
    assert list(genome.iter_fasta(io.BytesIO(FASTA_TEXT.encode()))) == plain


def test_iter_fasta_reports_bad_characters(tmp_path: Path) -> None:
    path = tmp_path / "bad.fa"
    path.write_text(">ok\nACGT\n>broken\nACGT\nAC-GT*X\n")
    with pytest.raises(ValueError, match=r"bad\.fa:5: record 'broken' has non-IUPAC characters '\*-X'"):
        list(genome.iter_fasta(path))
    masked = list(genome.iter_fasta(path, on_invalid="mask"))
    assert masked[1].sequence == "ACGTACNGTNN"


@pytest.mark.parametrize(
    "text, message",
    [("ACGT\n>x\nA\n", "expected a FASTA header"), (">\nACGT\n", "empty FASTA header")],
)
def test_iter_fasta_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(genome.iter_fasta(io.StringIO(text)))


def test_iter_fasta_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.fa"):
        list(genome.iter_fasta(tmp_path / "missing.fa"))
    with pytest.raises(ValueError, match="on_invalid"):
        list(genome.iter_fasta(io.StringIO(FASTA_TEXT), on_invalid="skip"))  # type: ignore[arg-type]


def test_iter_fasta_real_16s_records() -> None:
    records = list(genome.iter_fasta(RRNA))
    assert len(records) == 200
    assert len({r.id for r in records}) == 200
    lengths = [len(r.sequence) for r in records]
    assert 1_000 < min(lengths) and max(lengths) < 2_000  # near-full-length 16S genes
    assert all("\t" in r.description for r in records)  # taxonomy in the last tab field
    assert all(set(r.sequence) <= set(genome.IUPAC_DNA) for r in records)
    assert any(set(r.sequence) - set("ACGT") for r in records)  # real data has N and ambiguity codes


# --------------------------------------------------------------------------- GenBank locations


@pytest.mark.parametrize(
    "location, expected",
    [
        ("10..20", [(9, 20, 1)]),
        ("7", [(6, 7, 1)]),
        ("<1..>200", [(0, 200, 1)]),
        ("complement(5..8)", [(4, 8, -1)]),
        ("join(1..10,20..30)", [(0, 10, 1), (19, 30, 1)]),
        ("complement(join(1..10, 20..30))", [(19, 30, -1), (0, 10, -1)]),
        ("join(complement(20..30),complement(1..10))", [(19, 30, -1), (0, 10, -1)]),
        ("order(1..2,<5..9)", [(0, 2, 1), (4, 9, 1)]),
        ("join(1..10,J00194.1:100..202,30..40)", [(0, 10, 1), (29, 40, 1)]),
        ("order(complement(Z84723.1:8698..15872))", []),
        ("12^13", []),
        ("102.110", [(101, 110, 1)]),
    ],
)
def test_parse_location(location: str, expected: list[tuple[int, int, int]]) -> None:
    assert genome.parse_location(location) == expected


@pytest.mark.parametrize(
    "location", ["", "join(1..10", "1..10)", "complement(a..b)", "20..10", "join(1..2 3..4)"]
)
def test_parse_location_rejects(location: str) -> None:
    with pytest.raises(ValueError, match="location"):
        genome.parse_location(location)


SYNTHETIC_GENBANK = """\
LOCUS       TEST1                     40 bp    DNA     linear   PRI 01-JAN-2000
DEFINITION  A synthetic record for
            parser tests.
ACCESSION   TEST1
VERSION     TEST1.2
FEATURES             Location/Qualifiers
     source          1..40
                     /organism="none"
     gene            complement(join(2..5,
                     10..12))
                     /note="a quoted value that spans lines
                     /gene="wrong" inside the quotes"
                     /gene="abc"
     CDS             join(complement(30..32),complement(20..25))
                     /product="thing"
     exon            <1..>3
                     /gene="xyz"
ORIGIN
        1 acgtacgtac gtacgtacgt acgtacgtac gtacgtacgt
//
LOCUS       TEST2                      8 bp    DNA     linear   PRI 01-JAN-2000
DEFINITION  Second.
FEATURES             Location/Qualifiers
     exon            1..8
ORIGIN
        1 ggggcccc
//
"""


def test_iter_genbank_synthetic() -> None:
    first, second = genome.iter_genbank(io.StringIO(SYNTHETIC_GENBANK))
    assert first.id == "TEST1.2"
    assert first.description == "A synthetic record for parser tests."
    assert first.sequence == "ACGT" * 10
    assert first.features == [
        genome.GenBankFeature(9, 12, "gene", -1, "abc"),
        genome.GenBankFeature(1, 5, "gene", -1, "abc"),
        genome.GenBankFeature(29, 32, "CDS", -1, "thing"),
        genome.GenBankFeature(19, 25, "CDS", -1, "thing"),
        genome.GenBankFeature(0, 3, "exon", 1, "xyz"),
    ]
    assert second.id == "TEST2"  # no VERSION or ACCESSION: the LOCUS name
    assert second.features == [genome.GenBankFeature(0, 8, "exon", 1, None)]
    only_cds = next(genome.iter_genbank(io.StringIO(SYNTHETIC_GENBANK), feature_types=["CDS"]))
    assert {f.type for f in only_cds.features} == {"CDS"}
    everything = next(genome.iter_genbank(io.StringIO(SYNTHETIC_GENBANK), feature_types=None))
    assert "source" in {f.type for f in everything.features}


def test_iter_genbank_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no LOCUS line"):
        list(genome.iter_genbank(io.StringIO(">fasta\nACGT\n")))
    truncated = SYNTHETIC_GENBANK.split("//")[0]
    with pytest.raises(ValueError, match="not terminated"):
        list(genome.iter_genbank(io.StringIO(truncated)))
    beyond = SYNTHETIC_GENBANK.replace("1..8", "1..9")
    with pytest.raises(ValueError, match="beyond its 8 bp"):
        list(genome.iter_genbank(io.StringIO(beyond)))
    bad = SYNTHETIC_GENBANK.replace("<1..>3", "join(1..3")
    with pytest.raises(ValueError, match=r":\d+: cannot parse GenBank location"):
        list(genome.iter_genbank(io.StringIO(bad)))


def test_real_beta_globin_record() -> None:
    records = {r.id: r for r in genome.iter_genbank(GENBANK)}
    assert list(records) == ["Z69719.1", "U01317.1"]
    hbb = records["U01317.1"]
    text = genbank_record_text("U01317.1")
    assert len(hbb.sequence) == 73_308
    assert hbb.description == "Human beta globin region on chromosome 11."
    exons = [f for f in hbb.features if f.type == "exon"]
    assert len(exons) == len(re.findall(r"^     exon ", text, re.M)) == 20
    # the file says "exon 62137..62278 /gene="HBB"": 1-based inclusive -> 0-based end-exclusive
    assert '     exon            62137..62278\n                     /gene="HBB"' in text
    assert genome.GenBankFeature(62136, 62278, "exon", 1, "HBB") in exons
    # the spliced CDS segments translate to the protein the file gives (beta-globin)
    cds = [f for f in hbb.features if f.type == "CDS" and f.name == "HBB"][:3]
    assert [(f.start, f.end) for f in cds] == [(62186, 62278), (62408, 62631), (63481, 63610)]
    coding = "".join(hbb.sequence[f.start : f.end] for f in cds)
    assert translate(coding) == file_translation(text, "join(62187..62278") + "*"
    assert translate(coding).startswith("MVHLTPEEKSAVTALWGKV")


def test_real_complement_join_record() -> None:
    z = next(genome.iter_genbank(GENBANK))
    text = genbank_record_text("Z69719.1")
    # CDS complement(join(10124..10251,14252..14339,16170..16280)), POLR3K, on the minus strand
    cds = [f for f in z.features if f.type == "CDS" and f.name == "POLR3K"]
    assert [(f.start, f.end, f.strand) for f in cds] == [
        (16169, 16280, -1),
        (14251, 14339, -1),
        (10123, 10251, -1),
    ]
    coding = "".join(reverse_complement(z.sequence[f.start : f.end]) for f in cds)
    assert translate(coding) == file_translation(text, "complement(join(10124..10251") + "*"
    # segments on other entries (Z84723.1:...) are skipped, the local one kept
    il9r = [f for f in z.features if f.type == "CDS" and f.name == "interleukin 9 receptor (IL9R) pseudogene"]
    assert [(f.start, f.end, f.strand) for f in il9r] == [(903, 1015, -1)]


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
        [sys.executable, "-m", "pipelines.genome", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in ("--output", "--format", "--window", "--overlap", "--features", "--label-regex"):
        assert flag in result.stdout


def test_cli_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.genome", str(tmp_path / "missing.fa"), "--output", str(tmp_path)],
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
