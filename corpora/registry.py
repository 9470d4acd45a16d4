"""The named corpora: where each comes from (package, member, licence) and how it becomes rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from corpora.conll import conll_corpora
from corpora.genome.kaptive import KAPTIVE_DIR, iter_kaptive_records
from corpora.genome.prokaryotes import fetch_genomes, iter_prokaryote_records
from corpora.polarity import iter_polarity_records
from corpora.qa import iter_squad_records, iter_triviaqa_records
from corpora.squad import squad_corpora
from corpora.text import iter_pydocs_records, iter_wiki_records

# rRNA16S.gold.fasta headers end in a tab and a taxonomy "Bacteria; Proteobacteria; ...": the phylum
RRNA16S_PHYLUM_REGEX = r"\t(?:Bacteria|Archaea);\s*(?P<label>[^;\t]+)"
_TEXT_COLUMNS = ("id", "text", "source")
_QA_COLUMNS = ("id", "text", "question", "answers", "source")


@dataclass(frozen=True)
class CorpusSpec:
    """Where a named corpus comes from and how its raw file becomes rows.

    Text corpora give ``rows`` (raw path -> corpus rows) and ``columns``; DNA corpora give
    ``genome_options`` for :func:`corpora.genome.convert_to_parquet` instead.
    """

    name: str
    description: str
    registry: Literal["pypi", "deb"]
    package: str  # "gensim==4.4.0" or a Debian package name
    member: str  # path inside the wheel / the .deb
    licence: str
    columns: tuple[str, ...] = _TEXT_COLUMNS
    rows: Callable[[Path], Iterable[dict]] | None = None
    genome_options: dict[str, Any] | None = None
    fetcher: Callable[[Path, bool], Path] | None = None  # (raw dir, progress) -> raw path, for several packages


_GENSIM = "gensim==4.4.0"
_ALLENNLP = "allennlp==0.9.0"

CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in [
        CorpusSpec(
            "wiki", "English Wikipedia articles (gensim's shortened dump: 206 pages, 105 articles)", "pypi",
            _GENSIM, "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            "CC BY-SA 3.0 (Wikipedia)", rows=iter_wiki_records,
        ),
        CorpusSpec(
            "pydocs", "Python 3.11 documentation, reST sources (497 pages)", "deb", "python3.11-doc",
            "usr/share/doc/python3.11/html/_sources", "PSF License", rows=iter_pydocs_records,
        ),
        CorpusSpec(
            "triviaqa", "TriviaQA sample: 11 questions x their long evidence documents (AllenNLP fixture)",
            "pypi", _ALLENNLP, "allennlp/tests/fixtures/data/triviaqa-sample.tgz",
            "Apache-2.0 as shipped in allennlp; evidence: Wikipedia CC BY-SA and web pages",
            columns=_QA_COLUMNS, rows=iter_triviaqa_records,
        ),
        CorpusSpec(
            "squad", "SQuAD v1.1 sample, 5 questions (AllenNLP fixture)", "pypi", _ALLENNLP,
            "allennlp/tests/fixtures/data/squad.json", "CC BY-SA 4.0 (SQuAD)",
            columns=(*_QA_COLUMNS, "answer_start"), rows=iter_squad_records,
        ),
        CorpusSpec(
            "polarity", "Pang & Lee sentence polarity, 200 sentences pos/neg (gensim fixture)", "pypi", _GENSIM,
            "gensim/test/test_data/pang_lee_polarity.cor", "LGPL-2.1 as shipped in gensim",
            columns=("id", "text", "label", "source"), rows=iter_polarity_records,
        ),
        CorpusSpec(
            "rrna16s", "5,181 near-full-length 16S rRNA genes labelled by phylum", "deb", "microbiomeutil-data",
            "usr/share/microbiomeutil-data/RESOURCES/rRNA16S.gold.fasta", "BSD-3-Clause (Broad Institute)",
            genome_options={"format": "fasta", "label_from_header": RRNA16S_PHYLUM_REGEX, "source": "rRNA16S.gold"},
        ),
        CorpusSpec(
            "genbank-hla", "18 human GenBank records (HLA class I region 2.2 Mbp, beta-globin 73 kbp) with "
            "exon/CDS/gene spans", "deb", "emboss-test", "usr/share/EMBOSS/test/genbank/gbpri1.seq",
            "GPL (EMBOSS test data)", genome_options={"format": "genbank", "feature_types": ("exon", "CDS", "gene")},
        ),
        CorpusSpec(
            "kaptive", "437 bacterial capsule / O-antigen loci (~25 kbp, Kaptive primary references) with "
            "per-strand CDS spans (CDS+, CDS-)", "deb", "kaptive-data", KAPTIVE_DIR, "GPL-3+ (Kaptive)",
            columns=("id", "text", "source", "spans"), rows=iter_kaptive_records,
        ),
        CorpusSpec(
            "nctc11397", "a 2.46 Mbp bacterial chromosome, no annotation (pyrodigal test data)", "pypi",
            "pyrodigal==3.7.1", "pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz", "GPL-3.0 (pyrodigal)",
            genome_options={"format": "fasta", "source": "GCF_001457455.1_NCTC11397"},
        ),
        *[CorpusSpec(**fields) for fields in (*squad_corpora(), *conll_corpora())],
        CorpusSpec(
            "prokaryotes", "17 annotated genomes (~38 Mbp: 14 bacteria and archaea of 4 phyla, 3 phages), 50 kbp windows, "
            "per-strand CDS spans", "deb", "cct-examples, any2fasta-examples, gbdraw==0.14.2, pycirclize==1.10.1",
            "corpora/genome/prokaryotes.py", "GPL-2+ / GPL-3 (Debian examples), MIT (gbdraw, pyCirclize)",
            columns=("id", "text", "source", "spans", "offset"), rows=iter_prokaryote_records, fetcher=fetch_genomes,
        ),
    ]
}  # fmt: skip


def corpus_spec(name: str) -> CorpusSpec:
    """The spec of a named corpus; ValueError lists the known names."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return CORPORA[name]
