"""The annotated-genome corpus (corpora/genome/prokaryotes.py): its list, windows, by-genome split and cache,
and the gene-caller scores (same stop, start-exact) of corpora/genome/cds.py.

The genomes here are tiny synthetic GenBank files laid out as the fetcher keeps the real ones
(``ROOT/PACKAGE/MEMBER``), so nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpora.format import write_corpus
from corpora.genome.cds import f1, gene_end_counts
from corpora.genome.prokaryotes import (
    GENOMES,
    HOLDOUT,
    PACKAGES,
    Genome,
    clip_spans,
    fetch_genomes,
    genome,
    iter_genome_rows,
    split_genomes,
)


def _genbank(name: str, seq: str, features: list[str]) -> str:
    lines = [f"LOCUS       {name}  {len(seq)} bp    DNA     linear   BCT 01-JAN-2000",
             f"DEFINITION  {name}.", f"ACCESSION   {name}", f"VERSION     {name}.1",
             "FEATURES             Location/Qualifiers", f"     source          1..{len(seq)}"]
    lines += [f"     CDS             {loc}" for loc in features]
    lines.append("ORIGIN")
    lines += [f"{i + 1:>9} {seq[i:i + 60].lower()}" for i in range(0, len(seq), 60)]
    return "\n".join(lines) + "\n//\n"


def _layout(root: Path, seeds: dict[str, int]) -> list[Genome]:
    """One 1,000-base genome per key, CDS 11..310 (+) and complement(401..700), in ROOT/pkg/KEY.gbk."""
    genomes = []
    for key, seed in seeds.items():
        rng = random.Random(seed)
        seq = "".join(rng.choice("ACGT") for _ in range(1000))
        path = root / "pkg" / f"{key}.gbk"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_genbank(key.upper(), seq, ["11..310", "complement(401..700)"]))
        genomes.append(Genome(key, key, "test", "pkg", f"{key}.gbk"))
    return genomes


def test_the_genome_list_names_each_genome_once_and_no_gene_caller_output():
    keys = [g.key for g in GENOMES]
    assert len(keys) == len(set(keys)) == 17 and HOLDOUT == ("thermococcus_kodakarensis",)
    members = [g.member for g in GENOMES]
    assert len(members) == len(set(members))
    assert not any("prokka" in m or m.endswith((".gff", ".gff.gz")) for m in members)
    assert sum("R_denitrificans" in m for m in members) == 1  # shipped three times, read once
    assert sum(m.endswith(("NC_000913.gbk.gz", "E_coli.gbk.gz")) for m in members) == 1  # shipped twice
    assert {g.package for g in GENOMES} == set(PACKAGES)
    assert genome("thermococcus_kodakarensis").clade.startswith("Euryarchaeota")
    with pytest.raises(ValueError, match="unknown genome 'nope'"):
        genome("nope")


def test_clipped_spans_keep_the_genes_codon_phase():
    spans = [(10, 100, "CDS+"), (40, 70, "CDS-"), (120, 200, "CDS+")]
    # window 50..110: the first gene is cut at 50 and restarts at 52 ((52 - 10) % 3 == 0); the second at 52 too
    assert clip_spans(spans, 50, 110) == [{"start": 2, "end": 20, "label": "CDS-"},
                                          {"start": 2, "end": 50, "label": "CDS+"}]
    assert clip_spans(spans, 0, 60) == [{"start": 10, "end": 60, "label": "CDS+"},
                                        {"start": 40, "end": 60, "label": "CDS-"}]
    assert clip_spans([(10, 13, "CDS+")], 11, 50) == []  # nothing left after the codon boundary


def test_windows_tile_each_genome_with_offsets_and_spans(tmp_path):
    genomes = _layout(tmp_path, {"alpha": 1, "beta": 2})
    rows = list(iter_genome_rows(tmp_path, window=400, genomes=genomes))
    assert [r["id"] for r in rows[:3]] == ["alpha:ALPHA.1:0-400", "alpha:ALPHA.1:400-800", "alpha:ALPHA.1:800-1000"]
    assert [r["offset"] for r in rows] == [0, 400, 800] * 2 and {r["source"] for r in rows} == {"alpha", "beta"}
    assert rows[0]["spans"] == [{"start": 10, "end": 310, "label": "CDS+"}]
    assert rows[1]["spans"] == [{"start": 0, "end": 300, "label": "CDS-"}]  # 400..700 on the reverse strand
    assert rows[2]["spans"] == []
    assert "".join(r["text"] for r in rows[:3]) == next(iter_genome_rows(tmp_path, window=1000, genomes=genomes))["text"]


def test_the_same_sequence_twice_is_refused(tmp_path):
    genomes = _layout(tmp_path, {"alpha": 1, "copy": 1})
    with pytest.raises(ValueError, match="genomes 'alpha' and 'copy' hold the same sequence"):
        list(iter_genome_rows(tmp_path, window=400, genomes=genomes))
    with pytest.raises(FileNotFoundError, match="no file for genome 'gone'"):
        list(iter_genome_rows(tmp_path, genomes=[Genome("gone", "x", "x", "pkg", "gone.gbk")]))


def test_split_never_puts_one_genome_on_both_sides(tmp_path):
    genomes = _layout(tmp_path / "raw", {"thermococcus_kodakarensis": 1, "escherichia_coli_k12": 2, "phage_lambda": 3})
    corpus = tmp_path / "corpus"
    write_corpus(iter_genome_rows(tmp_path / "raw", window=300, genomes=genomes), corpus,
                 ("id", "text", "source", "spans", "offset"))
    loci = tmp_path / "loci"
    write_corpus([{"id": "Kp_K:KL1", "text": "ACGT" * 10, "source": "kaptive.gbk", "spans": []}], loci,
                 ("id", "text", "source", "spans"))
    counts = split_genomes(corpus, tmp_path / "split", extra_train=[loci])
    assert counts == {"train_genomes": 2, "train_rows": 16, "test_genomes": 1, "test_rows": 4, "extra_rows": 1}
    train = pq.read_table(tmp_path / "split" / "train").to_pylist()
    test = pq.read_table(tmp_path / "split" / "test").to_pylist()
    assert {r["source"] for r in test} == {"thermococcus_kodakarensis"}
    assert {r["source"] for r in train} == {"escherichia_coli_k12", "phage_lambda", "kaptive.gbk"}
    assert not {r["id"].split(":")[0] for r in train} & {r["id"].split(":")[0] for r in test}
    ids = [r["id"] for r in train]
    assert sum(i.endswith(":rc") for i in ids) == 8 and ids != sorted(ids)  # reverse copies, shuffled
    with pytest.raises(ValueError, match="unknown genome"):
        split_genomes(corpus, tmp_path / "x", holdout=["no_such_genome"])
    with pytest.raises(ValueError, match=r"held-out genomes \['methanococcus_maripaludis'\] are not in"):
        split_genomes(corpus, tmp_path / "x", holdout=["methanococcus_maripaludis"])


def test_fetch_reuses_complete_packages_without_downloading(tmp_path):
    for name in PACKAGES:
        (tmp_path / "prokaryotes" / name).mkdir(parents=True)
        (tmp_path / "prokaryotes" / name / ".complete").write_text("cached\n")
    assert fetch_genomes(tmp_path, progress=False) == tmp_path / "prokaryotes"


def test_gene_caller_scores_need_the_stop_codon_and_for_exact_the_start():
    truth = [(0, 300, "CDS+"), (400, 700, "CDS-")]
    # same stop, other start (+); exact (-); a wrong-strand call; a call with another stop
    predicted = [(30, 300, "CDS+"), (400, 700, "CDS-"), (0, 300, "CDS-"), (0, 297, "CDS+")]
    assert gene_end_counts(predicted, truth).tolist() == [2, 1, 2, 2, 1, 4]
    # a CDS-'s stop is its lowest base: a prediction sharing only the top (its start) is no match
    assert gene_end_counts([(403, 700, "CDS-")], truth).tolist() == [0, 0, 2, 0, 0, 1]
    assert f1(0.5, 1.0) == pytest.approx(2 / 3) and f1(0.0, 0.0) == 0.0
