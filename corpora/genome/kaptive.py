"""Kaptive's annotated bacterial capsule loci as a gene-tagging corpus: per-base ``CDS+``/``CDS-`` spans.

Debian ``kaptive-data`` ships GenBank references of capsule (K), outer-core (OC) and O-antigen loci of
*Klebsiella pneumoniae* and *Acinetobacter baumannii*, each ~25 kbp with its CDS annotated. Every locus
becomes one corpus row (``id``, ``text``, ``source``, ``spans``); a span covers one CDS segment, labelled
``CDS+`` (forward strand) or ``CDS-`` (reverse strand). The ``*_variant_reference.gbk`` file is left out: it
holds variants of primary loci, which would put near-copies of one locus on both sides of a split.

Ids name the locus, not the accession (several records have none): ``Kp_K:KL1``, ``Ab_K:KL1``,
``Ab_OC:OCL1``, ``Kp_O:OL101``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from corpora.genome.genbank import iter_genbank

KAPTIVE_DIR = "usr/share/kaptive/reference_database"
PRIMARY_FILES: dict[str, str] = {  # file -> id prefix
    "Klebsiella_k_locus_primary_reference.gbk": "Kp_K",
    "Klebsiella_o_locus_primary_reference.gbk": "Kp_O",
    "Acinetobacter_baumannii_k_locus_primary_reference.gbk": "Ab_K",
    "Acinetobacter_baumannii_OC_locus_primary_reference.gbk": "Ab_OC",
}
STRAND_LABELS = {1: "CDS+", -1: "CDS-"}
_LOCUS_NOTE = re.compile(r'/note="\s*(?:K|O|OC)\s*locus:\s*([^"\s]+)"')
_LOCUS_LINE = re.compile(r"^LOCUS\s+(\S+)", re.MULTILINE)
_TO_ACGTN = str.maketrans("URYSWKMBDHV", "TNNNNNNNNNN")


def locus_names(path: str | Path) -> list[str]:
    """The locus name (``KL1``, ``OCL3``, ...) of each record of a Kaptive GenBank file, in file order.

    A record without a ``/note="K locus: ..."`` (or O / OC) qualifier (the O file's extra ``gmlABD``
    cluster) is named by its LOCUS line.

    Raises:
        ValueError: a record has neither.
    """
    names: list[str] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for i, record in enumerate(r for r in text.split("\n//") if "LOCUS" in r):
        m = _LOCUS_NOTE.search(record)
        if m is None:
            m = _LOCUS_LINE.search(record)
        if m is None:
            raise ValueError(f"{path}: record {i + 1} has neither a locus note nor a LOCUS name")
        names.append(m.group(1))
    return names


def iter_kaptive_file(path: str | Path, prefix: str) -> Iterator[dict]:
    """Rows of one Kaptive GenBank file, ids ``PREFIX:LOCUS``.

    Returns:
        An iterator of rows ``{"id", "text", "source", "spans"}``; spans ``{"start", "end", "label"}`` are
        0-based, end-exclusive, sorted, one per CDS segment, labelled by strand (``CDS+`` / ``CDS-``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a record without a locus name, or fewer names than records.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such Kaptive reference file: {path}")
    names = locus_names(path)
    records = list(iter_genbank(path, feature_types=("CDS",), on_invalid="mask"))
    if len(names) != len(records):
        raise ValueError(f"{path}: {len(records)} records but {len(names)} locus names")
    for locus, rec in zip(names, records):
        spans = sorted({(f.start, f.end, STRAND_LABELS[f.strand]) for f in rec.features})
        yield {"id": f"{prefix}:{locus}", "text": rec.sequence.translate(_TO_ACGTN), "source": path.name,
               "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans]}


def iter_kaptive_records(reference_dir: str | Path) -> Iterator[dict]:
    """Rows of the ``kaptive`` corpus: every locus of the primary reference files of ``kaptive-data``.

    Args:
        reference_dir: the ``reference_database`` folder holding the ``*_primary_reference.gbk`` files.

    Raises:
        FileNotFoundError: a primary reference file is missing.
        ValueError: a record without a locus name, or a duplicate locus id.
    """
    seen: set[str] = set()
    for name, prefix in PRIMARY_FILES.items():
        for row in iter_kaptive_file(Path(reference_dir) / name, prefix):
            if row["id"] in seen:
                raise ValueError(f"{name}: duplicate locus {row['id']!r}")
            seen.add(row["id"])
            yield row
