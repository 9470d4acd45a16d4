"""Streaming conversion of FASTA / GenBank files to the corpus parquet format (:mod:`corpora.genome`).

Output rows follow the contract in :mod:`corpora`: ``id``, ``text`` (upper-case
A/C/G/T/N: U becomes T, other IUPAC ambiguity codes become N), ``source``, plus ``spans`` for
GenBank input, ``label`` when a header regex is given and ``offset`` when windowing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from corpora.format import CorpusWriter, corpus_schema
from corpora.genome.fasta import fasta_stream
from corpora.genome.genbank import genbank_stream
from corpora.genome.records import (
    DEFAULT_FEATURE_TYPES,
    Format,
    Lines,
    OnInvalid,
    check_on_invalid,
    open_text,
)
from corpora.genome.windows import SpanIndex, check_spans, check_window, iter_windows

_TO_ACGTN = str.maketrans("URYSWKMBDHV", "TNNNNNNNNNN")
_DELETE_ACGTNU = str.maketrans("", "", "ACGTNU")
_FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas", ".ffn", ".frn", ".faa", ".seq.fa"}
_GENBANK_SUFFIXES = {".gb", ".gbk", ".gbff", ".genbank", ".seq"}


@dataclass
class ConvertStats:
    """What :func:`convert_to_parquet` wrote."""

    records: int = 0  # input sequences read
    rows: int = 0  # parquet rows written (windows when windowing)
    bases: int = 0  # bases in the input sequences
    ambiguous_bases: int = 0  # IUPAC ambiguity codes written as N
    spans: int = 0
    skipped_empty: int = 0
    unlabeled: int = 0  # records whose header did not match the label regex
    labels: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The stats as plain JSON-friendly values."""
        return asdict(self)


def detect_format(path: str | Path) -> Literal["fasta", "genbank"]:
    """Guess whether a file is FASTA or GenBank from its first lines, then from its suffix.

    Args:
        path: the file (plain or gzip).

    Returns:
        ``"fasta"`` or ``"genbank"``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: neither format is recognised.
    """
    with open_text(path) as (fh, source):
        for _ in range(200):
            line = fh.readline()
            if not line:
                break
            if line.startswith(">"):
                return "fasta"
            if line.startswith("LOCUS"):
                return "genbank"
    suffixes = Path(str(path).removesuffix(".gz")).suffix.lower()
    if suffixes in _FASTA_SUFFIXES:
        return "fasta"
    if suffixes in _GENBANK_SUFFIXES:
        return "genbank"
    raise ValueError(
        f"cannot tell the format of {source}: no '>' or LOCUS line; pass format='fasta' or 'genbank'"
    )


def convert_to_parquet(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    format: Format = "auto",
    window: int | None = None,
    overlap: int = 0,
    feature_types: Iterable[str] | None = DEFAULT_FEATURE_TYPES,
    label_map: Mapping[str, str] | None = None,
    label_from_header: str | re.Pattern[str] | None = None,
    records_per_file: int = 50_000,
    row_group_size: int = 1024,
    limit: int | None = None,
    on_invalid: OnInvalid = "raise",
    source: str | None = None,
    overwrite: bool = False,
) -> ConvertStats:
    """Convert FASTA / GenBank files to the corpus parquet format, streaming.

    Without ``window`` each sequence becomes one row (id = the record id). With ``window`` each
    sequence is cut into rows ``"{id}:{start}-{end}"`` (0-based, end exclusive) with an ``offset``
    column holding ``start``, and spans clipped to the window and re-based to it. Spans are
    sorted by start; identical ``(start, end, label)`` spans of one record are written once.

    Args:
        inputs: FASTA / GenBank files, plain or gzip.
        output_dir: directory for ``part-NNNNN.parquet`` files.
        format: ``"auto"`` (detect per file), ``"fasta"`` or ``"genbank"``.
        window: bases per row, or ``None`` for one row per sequence.
        overlap: bases shared by consecutive windows.
        feature_types: GenBank feature keys written as spans (``None``: all).
        label_map: maps a feature key to the span label (keys not in it keep their name).
        label_from_header: regex searched in each ``"id description"`` header; its group
            ``label`` (or group 1, or the whole match) becomes the row's ``label``.
        records_per_file: rows per parquet file.
        row_group_size: rows per parquet row group.
        limit: stop after this many input sequences.
        on_invalid: ``"raise"`` or ``"mask"`` (write N) for non-IUPAC characters.
        source: the ``source`` column (default: the input file name).
        overwrite: replace parquet files already in ``output_dir``.

    Returns:
        A :class:`ConvertStats`.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: bad option values, an unknown format, duplicate ids or malformed input.
    """
    if window is not None:
        check_window(window, overlap)
    elif overlap:
        raise ValueError(f"overlap={overlap} needs a window")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    check_on_invalid(on_invalid)
    if format not in ("auto", "fasta", "genbank"):
        raise ValueError(f"unknown format {format!r}; expected 'auto', 'fasta' or 'genbank'")
    if not inputs:
        raise ValueError("no input files given")
    for path in inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such input file: {path}")
    pattern = _compile_label_regex(label_from_header)
    formats = [detect_format(p) if format == "auto" else format for p in inputs]

    columns = ["id", "text", "source"]
    if "genbank" in formats:
        columns.append("spans")
    if pattern is not None:
        columns.append("label")
    if window is not None:
        columns.append("offset")
    stats = ConvertStats()
    labels: Counter[str] = Counter()
    seen: set[str] = set()
    writer = CorpusWriter(
        output_dir,
        corpus_schema(columns),
        records_per_file=records_per_file,
        row_group_size=row_group_size,
        overwrite=overwrite,
    )
    with writer:
        for path, fmt in zip(inputs, formats):
            src = source if source is not None else Path(path).name
            with open_text(path) as (fh, name):
                lines = Lines(fh, name)
                if fmt == "fasta":
                    stream = ((i, d, None, c) for i, d, c in fasta_stream(lines, on_invalid))
                else:
                    stream = genbank_stream(lines, feature_types, on_invalid)
                for record_id, description, features, chunks in stream:
                    if limit is not None and stats.records >= limit:
                        break
                    if record_id in seen:
                        raise ValueError(f"{lines.where()}: duplicate record id {record_id!r}")
                    seen.add(record_id)
                    stats.records += 1
                    row: dict = {"source": src}
                    if pattern is not None:
                        label = _header_label(pattern, f"{record_id} {description}")
                        row["label"] = label
                        if label is None:
                            stats.unlabeled += 1
                        else:
                            labels[label] += 1
                    spans = None
                    if features is not None:
                        # real annotations repeat segments (an mRNA's exon and an allele's): keep one
                        spans = sorted({(f.start, f.end, _map_label(f.type, label_map)) for f in features})
                        row["spans"] = []
                    _write_sequence(writer, stats, row, record_id, chunks, spans, window, overlap)
    stats.files = [str(p) for p in writer.files]
    stats.labels = dict(labels.most_common())
    return stats


def _write_sequence(
    writer: CorpusWriter,
    stats: ConvertStats,
    row: dict,
    record_id: str,
    chunks: Iterator[str],
    spans: list[tuple[int, int, str]] | None,
    window: int | None,
    overlap: int,
) -> None:
    """Normalise one record's bases to ACGTN and write it as one row or as windows."""

    def normalised() -> Iterator[str]:
        for chunk in chunks:
            stats.bases += len(chunk)
            stats.ambiguous_bases += len(chunk.translate(_DELETE_ACGTNU))
            yield chunk.translate(_TO_ACGTN)

    if window is None:
        text = "".join(normalised())
        if not text:
            stats.skipped_empty += 1
            return
        if spans is not None:
            check_spans(spans, len(text), record_id)
            row["spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in sorted(spans)]
            stats.spans += len(spans)
        writer.write({**row, "id": record_id, "text": text})
        stats.rows += 1
        return
    index = SpanIndex(spans) if spans is not None else None
    length = 0  # the sequence's length is known only once it has streamed past
    for start, text in iter_windows(normalised(), window, overlap):
        length = start + len(text)
        out = {**row, "id": f"{record_id}:{start}-{length}", "text": text, "offset": start}
        if index is not None:
            out["spans"] = index.window(start, length)
            stats.spans += len(out["spans"])
        writer.write(out)
        stats.rows += 1
    if length == 0:
        stats.skipped_empty += 1
    elif spans:
        check_spans(spans, length, record_id)


def _map_label(feature_type: str, label_map: Mapping[str, str] | None) -> str:
    return label_map.get(feature_type, feature_type) if label_map is not None else feature_type


def _compile_label_regex(regex: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if regex is None or isinstance(regex, re.Pattern):
        return regex
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ValueError(f"bad label regex {regex!r}: {exc}") from None


def _header_label(pattern: re.Pattern[str], header: str) -> str | None:
    m = pattern.search(header)
    if m is None:
        return None
    if "label" in pattern.groupindex:
        value = m.group("label")
    else:
        value = m.group(1) if pattern.groups else m.group(0)
    return value.strip() if value else None
