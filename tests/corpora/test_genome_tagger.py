"""The shipped gene tagger (models/kaptive-cds) and its data: Kaptive rows, the by-locus split, the scores,
the committed model on real excerpts, and the README's batch command over a chromosome slice.

Fixtures (tests/fixtures/genome-tagger, see SOURCE.md): the Kaptive OCL1 locus (held out from training) as
annotated, and 12 kbp of the NCTC11397 chromosome. ``expected.json`` holds the model's tag runs and decoded
genes on both, written by ``python -m tests.corpora.test_genome_tagger`` from the committed model.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from corpora.genome import iter_fasta
from corpora.genome.cds import (
    STRANDS,
    base_counts,
    base_f1,
    base_labels,
    gene_counts,
    iter_spans,
    reverse_complement,
    spans_of,
    split_rows,
)
from corpora.genome.genes import decode_genes, merge_runs, open_reading_frames, tags_of
from corpora.genome.kaptive import iter_kaptive_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "genome-tagger"
MODEL = ROOT / "models" / "kaptive-cds"
LOCUS = FIXTURES / "Acinetobacter_baumannii_OC_locus_OCL1.gbk"
CHROMOSOME = FIXTURES / "nctc11397-1200000-1212000.fasta"
EXPECTED = FIXTURES / "expected.json"
AGREEMENT = 0.99  # share of bases whose tag must match the stored run (other CPUs and thread counts may flip
# the few bases where the model hesitates between strands)
GENE_AGREEMENT = 0.9  # share of the stored decoded genes found again (same strand, 80% overlap)


def _locus() -> dict:
    return next(iter_kaptive_file(LOCUS, "Ab_OC"))


def _chromosome() -> tuple[str, int]:
    rec = next(iter_fasta(CHROMOSOME))
    return rec.sequence, int(re.search(r":(\d+)-\d+$", rec.id).group(1))


# --------------------------------------------------------------------------- data and scores


def test_kaptive_rows_are_cds_segments_by_strand():
    row = _locus()
    assert row["id"] == "Ab_OC:OCL1" and len(row["text"]) == 8658 and set(row["text"]) <= set("ACGTN")
    spans = list(iter_spans(row))
    assert len(spans) == 9 and {lab for *_, lab in spans} == {"CDS+", "CDS-"}
    for start, end, label in spans:  # every annotated CDS starts with a start codon on its strand
        gene = row["text"][start:end] if label == "CDS+" else reverse_complement(
            {"id": "x", "text": row["text"][start:end], "spans": []})["text"]
        assert gene[:3] in ("ATG", "GTG", "TTG"), (start, end, label, gene[:3])
        assert (end - start) % 3 == 0


def test_reverse_complement_mirrors_spans_and_swaps_strands():
    row = _locus()
    rc = reverse_complement(row)
    assert rc["id"] == "Ab_OC:OCL1:rc" and len(rc["text"]) == len(row["text"])
    assert reverse_complement(rc)["text"] == row["text"]
    back = sorted(iter_spans(reverse_complement(rc)))
    assert back == sorted(iter_spans(row))
    n = len(row["text"])
    for (s, e, lab), (rs, re_, rlab) in zip(sorted(iter_spans(row), key=lambda x: -x[1]), iter_spans(rc)):
        assert (rs, re_) == (n - e, n - s) and {lab, rlab} == {"CDS+", "CDS-"}
    with pytest.raises(ValueError, match="'exon' is not one of"):
        reverse_complement({"id": "x", "text": "ACGT", "spans": [{"start": 0, "end": 2, "label": "exon"}]})


def test_split_holds_out_whole_loci():
    rows = [{"id": f"L{i}", "text": "ACGT", "spans": []} for i in range(200)]
    train, test = split_rows(rows, 0.1, seed=0)
    assert 5 < len(test) < 40 and len(train) + len(test) == 200
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert split_rows(rows, 0.1, seed=0) == (train, test)
    with pytest.raises(ValueError, match="fraction must be in"):
        split_rows(rows, 1.0)


def test_base_and_gene_scores():
    truth = [(0, 300, "CDS+"), (400, 700, "CDS-")]
    labels = base_labels(truth, 1000)
    assert labels[0] == 1 and labels[450] == 2 and labels[350] == 0 and (labels > 0).sum() == 600
    # a prediction shifted by 60 bases (80% overlap) matches; by 61, or on the wrong strand, it does not
    assert gene_counts([(60, 360, "CDS+")], truth).tolist() == [1, 2, 1, 1]
    assert gene_counts([(61, 361, "CDS+")], truth).tolist() == [0, 2, 0, 1]
    assert gene_counts([(400, 700, "CDS+")], truth).tolist() == [0, 2, 0, 1]
    # one long prediction over both genes matches neither
    assert gene_counts([(0, 700, "CDS+")], truth).tolist() == [0, 2, 0, 1]
    counts = base_counts(base_labels([(0, 350, "CDS+")], 1000), labels)
    assert counts.tolist() == [300, 50, 300, 350]
    assert base_f1(counts) == pytest.approx(600 / 950)


def test_orfs_follow_the_codon_grammar_on_both_strands():
    row = _locus()
    text, n = row["text"], len(row["text"])
    comp = str.maketrans("ACGT", "TGCA")
    orfs = open_reading_frames(text, min_length=90)
    assert len(orfs) > 20
    for (a, b, strand), score, coverage in orfs:
        gene = text[a:b] if strand == "CDS+" else text[a:b].translate(comp)[::-1]
        assert (b - a) % 3 == 0 and b - a >= 90 and coverage == 1.0 and score == b - a
        assert gene[:3] in ("ATG", "GTG", "TTG") and gene[-3:] in ("TAA", "TAG", "TGA")
        assert not {gene[i:i + 3] for i in range(0, len(gene) - 3, 3)} & {"TAA", "TAG", "TGA"}, (a, b, strand)
    truth = list(iter_spans(row))
    # the annotation's own tags decode back to its genes; all-O tags decode to none
    assert gene_counts(decode_genes(text, base_labels(truth, n)), truth).tolist()[:2] == [9, 9]
    assert decode_genes(text, base_labels([], n)) == []
    # tags on the wrong strand lose the gene to nothing; codon starts pick the frame of a tagged stretch
    wrong = base_labels([(a, b, "CDS-" if lab == "CDS+" else "CDS+") for a, b, lab in truth], n)
    assert gene_counts(decode_genes(text, wrong), truth).tolist()[0] == 0
    tags, begins = tags_of([(a + i, a + i + 3, lab) for a, b, lab in truth for i in range(0, b - a, 3)], n)
    assert (tags == base_labels(truth, n)).all() and begins.sum() == sum((b - a) // 3 for a, b, _ in truth)
    assert gene_counts(decode_genes(text, tags, codon_starts=begins), truth).tolist()[:2] == [9, 9]
    assert merge_runs([(0, 3, "CDS+"), (3, 6, "CDS+"), (6, 9, "CDS-"), (12, 15, "CDS-")]) == \
        [(0, 6, "CDS+"), (6, 9, "CDS-"), (12, 15, "CDS-")]
    with pytest.raises(ValueError, match="tags has 3 entries for a sequence of 8658 bases"):
        decode_genes(text, base_labels([], 3))


def test_decoding_from_probabilities():
    row = _locus()
    text, n = row["text"], len(row["text"])
    truth = list(iter_spans(row))
    labels = base_labels(truth, n)
    onehot = np.stack([labels == 1, labels == 2], axis=1).astype(float)
    # certain probabilities are the tags: the same ORFs, scores and genes
    hard = open_reading_frames(text, tags=labels)
    assert open_reading_frames(text, strand_probs=onehot) == hard
    assert decode_genes(text, strand_probs=onehot) == decode_genes(text, labels)
    # a tagger torn between the strands (0.5 / 0.5) votes nothing: no ORF scores above 0, no gene
    assert decode_genes(text, strand_probs=np.full((n, 2), 0.5)) == []
    # leaning 0.6 to the annotated strand is still enough, and codon-start probabilities pick the frame
    leaning = 0.2 + 0.4 * onehot  # 0.6 on the annotated strand, 0.2 on the other
    begins = np.zeros((n, 2))
    for a, b, lab in truth:
        begins[a:b:3, STRANDS.index(lab)] = 0.6
    genes = decode_genes(text, strand_probs=leaning, codon_probs=begins)
    assert gene_counts(genes, truth).tolist()[:2] == [9, 9]
    with pytest.raises(ValueError, match=r"strand_probs has shape \(3, 2\), expected \(8658, 2\)"):
        decode_genes(text, strand_probs=np.zeros((3, 2)))


# --------------------------------------------------------------------------- the committed model


@pytest.fixture(scope="module")
def tagger():
    from bigbird.tasks import pipeline

    if not (MODEL / "model.safetensors").exists():
        pytest.fail(f"the committed model is missing: {MODEL}")
    return pipeline("token-classification", str(MODEL), batch_size=4, stride=256)


def _agreement(got: list, expected: list, length: int) -> float:
    """Share of bases with the same tag (O, CDS+, CDS-) in two span lists."""
    return float((base_labels(got, length) == base_labels(expected, length)).mean())


def tag_and_decode(tagger, text: str) -> tuple[list, list]:
    """(tag runs, decoded genes) of the tagger on ``text``: its entities start at its B tags (codon starts)."""
    spans = spans_of(tagger(text))
    tags, begins = tags_of(spans, len(text))
    return merge_runs(spans), decode_genes(text, tags, codon_starts=begins)


def _same_genes(got: list, expected: list) -> float:
    """Share of the expected genes found again in ``got`` (same strand, 80% overlap of both)."""
    return float(gene_counts(got, expected)[0]) / max(1, len(expected))


def test_model_on_held_out_locus_matches_expectations_and_annotation(tagger):
    row = _locus()
    n = len(row["text"])
    runs, genes = tag_and_decode(tagger, row["text"])
    expected = json.loads(EXPECTED.read_text())["locus"]
    assert _agreement(runs, [tuple(s) for s in expected["runs"]], n) >= AGREEMENT
    assert _same_genes(genes, [tuple(s) for s in expected["genes"]]) >= GENE_AGREEMENT
    truth = list(iter_spans(row))
    f1 = base_f1(base_counts(base_labels(runs, n), base_labels(truth, n)))
    assert f1 == pytest.approx(expected["base_f1"], abs=0.01)
    found = gene_counts(genes, truth)[0]
    assert abs(int(found) - expected["genes_found"]) <= 1


def test_model_on_chromosome_excerpt_matches_expectations(tagger):
    text, _ = _chromosome()
    runs, genes = tag_and_decode(tagger, text)
    expected = json.loads(EXPECTED.read_text())["chromosome"]
    assert {lab for *_, lab in expected["runs"]} == {"CDS+", "CDS-"}  # both strands: not a constant tagger
    assert _agreement(runs, [tuple(s) for s in expected["runs"]], len(text)) >= AGREEMENT
    assert _same_genes(genes, [tuple(s) for s in expected["genes"]]) >= GENE_AGREEMENT


def _readme_command(prefix: str) -> list[str]:
    """The arguments of the README command starting with ``prefix``, continuation lines joined."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(x.strip() for x in readme.splitlines() if x.strip().startswith(prefix))
    return re.sub(r"\s+#\s.*$", "", line).split()


def test_readme_batch_command_on_a_chromosome_slice(ray_cluster, tmp_path, monkeypatch):
    """The README's three commands as written, on the committed 12 kbp slice instead of the whole chromosome:
    ``fetch nctc11397`` converts it (the conversion step, offline), the batch job tags it (tags in genome
    coordinates, equal to the pipeline's spans on the slice shifted by its offset), and ``corpora.genome.genes``
    decodes the genes, equal to the decoded genes of the pipeline's tags, shifted."""
    from bigbird.tasks import pipeline
    from corpora.fetching import convert
    from pipelines import batch

    fetch = _readme_command("python -m corpora fetch nctc11397")
    window = int(fetch[fetch.index("--window") + 1])
    corpus = tmp_path / fetch[fetch.index("--dest") + 1] / "nctc11397"
    convert("nctc11397", CHROMOSOME, corpus, window=window)
    text, start = _chromosome()
    table = pq.read_table(corpus).to_pandas()
    assert table["text"].tolist() == [text]  # 12 kbp < the README's window: one row
    table["offset"] += start  # at its place in the chromosome
    table.to_parquet(corpus / "part-00000.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ROOT / "models")
    args = _readme_command("bigbird batch --task token-classification")[2:]
    settings = batch.settings_from_args(batch.build_parser().parse_args(args))
    assert settings.model == "models/kaptive-cds" and settings.offset_column == "offset"
    stats = batch.run(settings)
    assert stats.errors == 0 and stats.tokens >= len(text)
    (row,) = pq.read_table(tmp_path / settings.output).to_pylist()
    got = [(e["start"], e["end"], e["label"]) for e in row["entities"]]
    tag = pipeline("token-classification", str(MODEL), stride=settings.stride)
    assert got == [(s + start, e + start, lab) for s, e, lab in spans_of(tag(text))]
    assert len(got) >= 3 and all(start <= s < e <= start + len(text) for s, e, _ in got)
    from corpora.genome.genes import main as genes_main

    args = _readme_command("python -m corpora.genome.genes")[3:]
    assert genes_main(args) == 0
    out = tmp_path / args[args.index("--output") + 1]
    header, *lines = out.read_text().splitlines()
    assert header == "seqid\tstart\tend\tstrand"
    genes = [(int(a), int(b), f"CDS{s}") for _, a, b, s in (line.split("\t") for line in lines)]
    assert genes == [(s + start, e + start, lab) for s, e, lab in tag_and_decode(tag, text)[1]] and len(genes) >= 3


def write_expected() -> None:
    """Run the committed model on both fixtures; store its tag runs, decoded genes and locus scores."""
    from bigbird.tasks import pipeline

    tag = pipeline("token-classification", str(MODEL), batch_size=4, stride=256)
    row = _locus()
    runs, genes = tag_and_decode(tag, row["text"])
    n = len(row["text"])
    truth = list(iter_spans(row))
    f1 = base_f1(base_counts(base_labels(runs, n), base_labels(truth, n)))
    found = int(gene_counts(genes, truth)[0])
    text, _ = _chromosome()
    c_runs, c_genes = tag_and_decode(tag, text)
    out = {"model": "models/kaptive-cds",
           "locus": {"id": row["id"], "base_f1": round(f1, 4), "genes_found": found, "runs": runs, "genes": genes},
           "chromosome": {"id": next(iter_fasta(CHROMOSOME)).id, "runs": c_runs, "genes": c_genes}}
    EXPECTED.write_text(json.dumps(out, indent=None).replace("]], ", "]],\n ") + "\n")
    print(f"{EXPECTED}: locus F1 {f1:.4f}, {found}/{len(truth)} genes; chromosome {len(c_runs)} runs, "
          f"{len(c_genes)} genes", file=sys.stderr)


if __name__ == "__main__":
    write_expected()
