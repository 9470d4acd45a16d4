"""Streaming FASTA / GenBank parsers and their converter to the corpus parquet format.

The parsers read line by line (gzip is detected from the magic bytes, whatever the file is called)
and hold at most one record's sequence; the windowed converter holds only one window, so a
chromosome of hundreds of megabases converts in constant memory.

Coordinates: GenBank locations are 1-based and inclusive (``10..20`` is 11 bases); everything this
module returns is 0-based and end-exclusive (``(9, 20)``), the Python slice of the sequence.

Output rows follow the contract in :mod:`pipelines.corpora`: ``id``, ``text`` (upper-case
A/C/G/T/N: U becomes T, other IUPAC ambiguity codes become N), ``source``, plus ``spans`` for
GenBank input, ``label`` when a header regex is given and ``offset`` when windowing.

CLI::

    python -m pipelines.genome INPUT... --output DIR [--format auto|fasta|genbank]
        [--window N --overlap N] [--features exon,CDS] [--label-regex RE]

The implementation lives in one module per job; this module is the public facade and the
``python -m pipelines.genome`` entry point, and re-exports the public names:

- :mod:`pipelines.genome_records`: record types, constants, plain/gzip text reading
- :mod:`pipelines.genome_fasta`: FASTA parser (:func:`iter_fasta`)
- :mod:`pipelines.genome_genbank`: GenBank parser (:func:`iter_genbank`, :func:`parse_location`)
- :mod:`pipelines.genome_windows`: windowing (:func:`iter_windows`) and span clipping
- :mod:`pipelines.genome_convert`: :func:`detect_format`, :func:`convert_to_parquet`, :class:`ConvertStats`
- :mod:`pipelines.genome_cli`: :func:`build_parser`, :func:`main`
"""

from __future__ import annotations

import sys

from pipelines.genome_cli import build_parser, main
from pipelines.genome_convert import ConvertStats, convert_to_parquet, detect_format
from pipelines.genome_fasta import iter_fasta
from pipelines.genome_genbank import iter_genbank, parse_location
from pipelines.genome_records import (
    DEFAULT_FEATURE_TYPES,
    IUPAC_DNA,
    FastaRecord,
    Format,
    GenBankFeature,
    GenBankRecord,
    OnInvalid,
)
from pipelines.genome_windows import iter_windows

__all__ = [
    "DEFAULT_FEATURE_TYPES",
    "IUPAC_DNA",
    "ConvertStats",
    "FastaRecord",
    "Format",
    "GenBankFeature",
    "GenBankRecord",
    "OnInvalid",
    "build_parser",
    "convert_to_parquet",
    "detect_format",
    "iter_fasta",
    "iter_genbank",
    "iter_windows",
    "main",
    "parse_location",
]


if __name__ == "__main__":
    sys.exit(main())
