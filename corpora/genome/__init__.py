"""Streaming FASTA / GenBank parsers and their converter to the corpus parquet format.

The parsers read line by line (gzip is detected from the magic bytes, whatever the file is called)
and hold at most one record's sequence; the windowed converter holds only one window, so a
chromosome of hundreds of megabases converts in constant memory.

Coordinates: GenBank locations are 1-based and inclusive (``10..20`` is 11 bases); everything this
module returns is 0-based and end-exclusive (``(9, 20)``), the Python slice of the sequence.

Output rows follow the contract in :mod:`corpora`: ``id``, ``text`` (upper-case
A/C/G/T/N: U becomes T, other IUPAC ambiguity codes become N), ``source``, plus ``spans`` for
GenBank input, ``label`` when a header regex is given and ``offset`` when windowing.

CLI::

    python -m corpora.genome INPUT... --output DIR [--format auto|fasta|genbank]
        [--window N --overlap N] [--features exon,CDS] [--label-regex RE]

The implementation lives in one module per job; this module is the public facade and the
``python -m corpora.genome`` entry point, and re-exports the public names:

- :mod:`corpora.genome.records`: record types, constants, plain/gzip text reading
- :mod:`corpora.genome.fasta`: FASTA parser (:func:`iter_fasta`)
- :mod:`corpora.genome.genbank`: GenBank parser (:func:`iter_genbank`, :func:`parse_location`)
- :mod:`corpora.genome.windows`: windowing (:func:`iter_windows`) and span clipping
- :mod:`corpora.genome.convert`: :func:`detect_format`, :func:`convert_to_parquet`, :class:`ConvertStats`
- :mod:`corpora.genome.cli`: :func:`build_parser`, :func:`main`
"""

from __future__ import annotations

from corpora.genome.cli import build_parser, main
from corpora.genome.convert import ConvertStats, convert_to_parquet, detect_format
from corpora.genome.fasta import iter_fasta
from corpora.genome.genbank import iter_genbank, parse_location
from corpora.genome.records import (
    DEFAULT_FEATURE_TYPES,
    IUPAC_DNA,
    FastaRecord,
    Format,
    GenBankFeature,
    GenBankRecord,
    OnInvalid,
)
from corpora.genome.windows import iter_windows

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
