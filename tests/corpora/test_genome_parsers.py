"""Tests for corpora.genome's parsers: FASTA records and GenBank records, locations and features."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import pytest

from corpora import genome

FIXTURES = Path(__file__).parents[1] / "fixtures" / "corpora"
GENBANK = FIXTURES / "gbpri1-excerpt.seq"
RRNA = FIXTURES / "rRNA16S.gold.sample.fasta"

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
