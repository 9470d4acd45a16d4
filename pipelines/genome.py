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
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Literal, NamedTuple

from pipelines.corpora import CorpusWriter, corpus_schema

DEFAULT_FEATURE_TYPES: tuple[str, ...] = ("exon", "CDS", "gene")
IUPAC_DNA = "ACGTURYSWKMBDHVN"
_DELETE_IUPAC = str.maketrans("", "", IUPAC_DNA)
_TO_ACGTN = str.maketrans("URYSWKMBDHV", "TNNNNNNNNNN")
_DELETE_ACGTNU = str.maketrans("", "", "ACGTNU")
_DELETE_DIGITS_SPACE = str.maketrans("", "", "0123456789 \t\r\n")
_FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas", ".ffn", ".frn", ".faa", ".seq.fa"}
_GENBANK_SUFFIXES = {".gb", ".gbk", ".gbff", ".genbank", ".seq"}
_NAME_QUALIFIERS = ("gene", "product", "locus_tag", "standard_name")

Format = Literal["auto", "fasta", "genbank"]
OnInvalid = Literal["raise", "mask"]


class FastaRecord(NamedTuple):
    """One FASTA record: ``sequence`` is upper case, IUPAC letters only."""

    id: str
    description: str
    sequence: str


class GenBankFeature(NamedTuple):
    """One feature segment: 0-based end-exclusive ``[start, end)``, ``strand`` is 1 or -1."""

    start: int
    end: int
    type: str
    strand: int
    name: str | None


class GenBankRecord(NamedTuple):
    """One GenBank record; ``id`` is ACCESSION.VERSION when present, else the LOCUS name."""

    id: str
    description: str
    sequence: str
    features: list[GenBankFeature]


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


# --------------------------------------------------------------------------- line reading


class _Lines:
    """A line iterator with one line of push-back and a line counter for error messages."""

    def __init__(self, fh: IO[str], source: str) -> None:
        self._fh = fh
        self._pushed: str | None = None
        self.source = source
        self.lineno = 0

    def next(self) -> str | None:
        if self._pushed is not None:
            line, self._pushed = self._pushed, None
            return line
        line = self._fh.readline()
        if not line:
            return None
        self.lineno += 1
        return line

    def push_back(self, line: str) -> None:
        self._pushed = line

    def where(self) -> str:
        return f"{self.source}:{self.lineno}"


@contextlib.contextmanager
def _open_text(path_or_file: str | Path | IO) -> Iterator[tuple[IO[str], str]]:
    """Open a path or wrap a file object as text, un-gzipping when the data starts with gzip magic."""
    if isinstance(path_or_file, (str, Path)):
        path = Path(path_or_file)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        binary: IO[bytes] = gzip.open(path, "rb") if gz else open(path, "rb")
        with binary, io.TextIOWrapper(binary, encoding="utf-8", errors="replace") as text:
            yield text, str(path)
        return
    source = str(getattr(path_or_file, "name", "<stream>"))
    if isinstance(path_or_file, io.TextIOBase):
        yield path_or_file, source
        return
    wrapped = not hasattr(path_or_file, "peek")
    buffered = io.BufferedReader(path_or_file) if wrapped else path_or_file
    gz = buffered.peek(2)[:2] == b"\x1f\x8b"
    stream = gzip.GzipFile(fileobj=buffered, mode="rb") if gz else buffered
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    try:
        yield text, source
    finally:
        # detach every wrapper we made so that none closes the caller's file when collected
        text.detach()
        if wrapped:
            buffered.detach()


def _clean_sequence(raw: str, lines: _Lines, record_id: str, on_invalid: OnInvalid) -> str:
    """Upper-case one line of sequence and check it holds IUPAC letters only."""
    seq = raw.upper()
    bad = seq.translate(_DELETE_IUPAC)
    if bad:
        if on_invalid == "raise":
            raise ValueError(
                f"{lines.where()}: record {record_id!r} has non-IUPAC characters "
                f"{''.join(sorted(set(bad)))!r}; pass on_invalid='mask' to write them as N"
            )
        seq = seq.translate({ord(c): "N" for c in set(bad)})
    return seq


# --------------------------------------------------------------------------- FASTA


def _fasta_stream(lines: _Lines, on_invalid: OnInvalid) -> Iterator[tuple[str, str, Iterator[str]]]:
    """Yield ``(id, description, sequence_chunks)``; each chunk iterator must be used before the next."""
    line = lines.next()
    while line is not None and (not line.strip() or line.startswith(";")):
        line = lines.next()
    while line is not None:
        if not line.startswith(">"):
            raise ValueError(f"{lines.where()}: expected a FASTA header starting with '>', got {line[:40]!r}")
        header = line[1:].strip()
        if not header:
            raise ValueError(f"{lines.where()}: empty FASTA header")
        parts = header.split(None, 1)
        record_id, description = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        chunks = _fasta_chunks(lines, record_id, on_invalid)
        yield record_id, description, chunks
        for _ in chunks:  # drain what the consumer left
            pass
        line = lines.next()


def _fasta_chunks(lines: _Lines, record_id: str, on_invalid: OnInvalid) -> Iterator[str]:
    while (line := lines.next()) is not None:
        if line.startswith(">"):
            lines.push_back(line)
            return
        raw = line.strip()
        if not raw or raw.startswith(";"):
            continue
        if " " in raw or "\t" in raw:
            raw = "".join(raw.split())
        yield _clean_sequence(raw, lines, record_id, on_invalid)


def iter_fasta(path_or_file: str | Path | IO, *, on_invalid: OnInvalid = "raise") -> Iterator[FastaRecord]:
    """Stream the records of a FASTA file (plain or gzip), one at a time.

    Args:
        path_or_file: a path, or an open text or binary file (left open).
        on_invalid: ``"raise"`` on a character that is not an IUPAC nucleotide letter, or
            ``"mask"`` to replace it with N.

    Returns:
        An iterator of :class:`FastaRecord` with the sequence upper-cased (IUPAC codes kept).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: malformed FASTA or invalid characters; the message names file, line and record.
    """
    _check_on_invalid(on_invalid)
    with _open_text(path_or_file) as (fh, source):
        lines = _Lines(fh, source)
        for record_id, description, chunks in _fasta_stream(lines, on_invalid):
            yield FastaRecord(record_id, description, "".join(chunks))


# --------------------------------------------------------------------------- GenBank locations

_LOC_TOKEN = re.compile(r"\s*(complement|join|order|gap|\(|\)|,|[^(),\s]+)")
_LOC_SIMPLE = re.compile(r"^(<?)(\d+)(?:(\.\.|\^|\.)(>?)(\d+))?(>?)$")


def parse_location(text: str) -> list[tuple[int, int, int]]:
    """Parse a GenBank feature location into 0-based end-exclusive segments.

    ``join``/``order`` give one segment per part, ``complement`` flips the strand (and the
    order of its parts), ``<``/``>`` partial markers are dropped, and parts on another record
    (``J00194.1:100..202``), ``gap()`` and between-base sites (``12^13``) are skipped.

    Args:
        text: the location, e.g. ``"complement(join(1..10,<20..>30))"``.

    Returns:
        A list of ``(start, end, strand)`` with ``strand`` 1 or -1.

    Raises:
        ValueError: the location cannot be parsed; the message quotes it.
    """
    tokens = _LOC_TOKEN.findall(text.strip())
    if not tokens or "".join(tokens) != re.sub(r"\s+", "", text):
        raise ValueError(f"cannot parse GenBank location {text!r}")
    pos = 0

    def expect(tok: str) -> None:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != tok:
            raise ValueError(f"cannot parse GenBank location {text!r}: expected {tok!r} at token {pos}")
        pos += 1

    def parse() -> list[tuple[int, int, int]]:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"cannot parse GenBank location {text!r}: unexpected end")
        tok = tokens[pos]
        pos += 1
        if tok in ("complement", "join", "order", "gap"):
            expect("(")
            if tok == "gap":  # gap(), gap(100), gap(unk100): no bases of this record
                while pos < len(tokens) and tokens[pos] != ")":
                    pos += 1
                expect(")")
                return []
            parts = parse()
            while pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                parts += parse()
            expect(")")
            if tok == "complement":
                return [(s, e, -strand) for s, e, strand in reversed(parts)]
            return parts
        if ":" in tok:  # a segment of another record
            return []
        m = _LOC_SIMPLE.match(tok)
        if not m:
            raise ValueError(f"cannot parse GenBank location {text!r}: bad segment {tok!r}")
        first = int(m.group(2))
        if m.group(3) == "^":
            return []
        last = int(m.group(5)) if m.group(5) else first
        if first < 1 or last < first:
            raise ValueError(f"bad coordinates {tok!r} in GenBank location {text!r}")
        return [(first - 1, last, 1)]

    segments = parse()
    if pos != len(tokens):
        raise ValueError(f"cannot parse GenBank location {text!r}: trailing {''.join(tokens[pos:])!r}")
    return segments


# --------------------------------------------------------------------------- GenBank records


def _finish_feature(
    key: str | None,
    location: list[str],
    qualifiers: dict[str, str],
    wanted: frozenset[str] | None,
    lines: _Lines,
    out: list[GenBankFeature],
) -> None:
    if key is None or (wanted is not None and key not in wanted):
        return
    loc = "".join(location)
    try:
        segments = parse_location(loc)
    except ValueError as exc:
        raise ValueError(f"{lines.where()}: {exc}") from None
    name = next((qualifiers[q].strip().strip('"') for q in _NAME_QUALIFIERS if q in qualifiers), None)
    out.extend(GenBankFeature(s, e, key, strand, name) for s, e, strand in segments)


def _parse_features(lines: _Lines, wanted: frozenset[str] | None) -> list[GenBankFeature]:
    """Read the feature table up to (not including) the first line that is not indented."""
    features: list[GenBankFeature] = []
    key: str | None = None
    location: list[str] = []
    qualifiers: dict[str, str] = {}
    last_q: str | None = None
    in_location = open_quote = False
    while (line := lines.next()) is not None:
        if line[:1] not in (" ", "\t") or not line.strip():
            if line.strip():
                lines.push_back(line)
                break
            continue
        if line[:5] == "     " and line[5:6] not in (" ", ""):  # a new feature key at column 6
            _finish_feature(key, location, qualifiers, wanted, lines, features)
            parts = line.split(None, 1)
            key, location, qualifiers, last_q = (
                parts[0],
                [parts[1].strip() if len(parts) > 1 else ""],
                {},
                None,
            )
            in_location, open_quote = True, False
            continue
        content = line.strip()
        if open_quote:  # inside a quoted value; embedded quotes are doubled, so parity tells the end
            if content.count('"') % 2 == 1:
                open_quote = False
            if last_q is not None:
                qualifiers[last_q] += " " + content
        elif content.startswith("/"):
            in_location = False
            name, _, value = content[1:].partition("=")
            open_quote = value.count('"') % 2 == 1
            last_q = None
            if name in _NAME_QUALIFIERS and name not in qualifiers:  # only the names are kept
                qualifiers[name] = value
                last_q = name
        elif in_location:
            location.append(content)
        elif last_q is not None:  # an unquoted value continued
            qualifiers[last_q] += " " + content
    _finish_feature(key, location, qualifiers, wanted, lines, features)
    return features


def _genbank_stream(
    lines: _Lines, feature_types: Iterable[str] | None, on_invalid: OnInvalid
) -> Iterator[tuple[str, str, list[GenBankFeature], Iterator[str]]]:
    """Yield ``(id, description, features, sequence_chunks)`` per record; chunks are lazy."""
    wanted = frozenset(feature_types) if feature_types is not None else None
    found_locus = False
    while (line := lines.next()) is not None:
        if not line.startswith("LOCUS"):
            if found_locus and line.strip() and not line.startswith("//"):
                raise ValueError(f"{lines.where()}: expected LOCUS after '//', got {line[:40]!r}")
            continue
        found_locus = True
        locus = line.split()
        name = locus[1] if len(locus) > 1 else ""
        header: dict[str, list[str]] = {}
        features: list[GenBankFeature] = []
        current = None
        has_origin = False
        while (line := lines.next()) is not None:
            if line.startswith("//"):
                break
            if line.startswith("ORIGIN"):
                has_origin = True
                break
            if line.startswith("FEATURES"):
                features = _parse_features(lines, wanted)
                current = None
                continue
            if line[:1].isalpha():
                current = line[:12].strip()
                header.setdefault(current, []).append(line[12:].strip())
            elif current is not None and line[:12].strip() == "":  # continuation of the last keyword
                header[current].append(line.strip())
        else:
            raise ValueError(f"{lines.where()}: GenBank record {name!r} is not terminated by '//'")
        version = " ".join(header.get("VERSION", [])).split()
        accession = " ".join(header.get("ACCESSION", [])).split()
        record_id = version[0] if version else accession[0] if accession else name
        description = " ".join(header.get("DEFINITION", []))
        chunks = _genbank_chunks(lines, record_id, on_invalid) if has_origin else iter(())
        yield record_id, description, features, chunks
        for _ in chunks:
            pass
    if not found_locus:
        raise ValueError(f"{lines.source}: no LOCUS line found; is this a GenBank file?")


def _genbank_chunks(lines: _Lines, record_id: str, on_invalid: OnInvalid) -> Iterator[str]:
    while (line := lines.next()) is not None:
        if line.startswith("//"):
            return
        raw = line.translate(_DELETE_DIGITS_SPACE)
        if raw:
            yield _clean_sequence(raw, lines, record_id, on_invalid)
    raise ValueError(f"{lines.where()}: GenBank record {record_id!r} is not terminated by '//'")


def iter_genbank(
    path_or_file: str | Path | IO,
    feature_types: Iterable[str] | None = DEFAULT_FEATURE_TYPES,
    *,
    on_invalid: OnInvalid = "raise",
) -> Iterator[GenBankRecord]:
    """Stream the records of a GenBank flat file (plain or gzip), one at a time.

    Args:
        path_or_file: a path, or an open text or binary file (left open).
        feature_types: feature keys to keep (``None`` keeps all); ``join``/``order`` locations
            give one :class:`GenBankFeature` per segment.
        on_invalid: ``"raise"`` on a non-IUPAC sequence character, or ``"mask"`` to write N.

    Returns:
        An iterator of :class:`GenBankRecord`, features in file order with 0-based end-exclusive
        coordinates.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: malformed record, location or sequence; the message names file and line.
    """
    _check_on_invalid(on_invalid)
    with _open_text(path_or_file) as (fh, source):
        lines = _Lines(fh, source)
        for record_id, description, features, chunks in _genbank_stream(lines, feature_types, on_invalid):
            sequence = "".join(chunks)
            for f in features if sequence else ():  # a record without ORIGIN has nothing to check
                if f.end > len(sequence):
                    raise ValueError(
                        f"{source}: record {record_id!r} has a {f.type} at {f.start}..{f.end} "
                        f"beyond its {len(sequence)} bp sequence"
                    )
            yield GenBankRecord(record_id, description, sequence, features)


# --------------------------------------------------------------------------- conversion


def iter_windows(chunks: Iterable[str], window: int, overlap: int = 0) -> Iterator[tuple[int, str]]:
    """Cut a stream of sequence chunks into windows of ``window`` bases, ``overlap`` shared.

    Windows start at ``0, stride, 2*stride, ...`` with ``stride = window - overlap``; the last one
    may be shorter, and none is emitted that lies wholly inside the previous window. Only about
    one window is held in memory.

    Args:
        chunks: pieces of one sequence, in order.
        window: bases per window (> 0).
        overlap: bases shared by consecutive windows (0 <= overlap < window).

    Returns:
        An iterator of ``(start, text)``.

    Raises:
        ValueError: window or overlap out of range.
    """
    _check_window(window, overlap)
    stride = window - overlap
    start = 0  # genome coordinate of buf[0]
    parts: list[str] = []
    size = 0
    emitted = False
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size < window:
            continue
        buf = "".join(parts)
        cut = 0
        while len(buf) - cut >= window:
            yield start, buf[cut : cut + window]
            emitted = True
            cut += stride
            start += stride
        parts, size = [buf[cut:]], len(buf) - cut
    rest = "".join(parts)
    # the tail is new only if it runs past the previous window, which ended at start + overlap
    if rest and (not emitted or len(rest) > overlap):
        yield start, rest


class _SpanIndex:
    """Features sorted by start, queried with windows that only move right."""

    def __init__(self, spans: Sequence[tuple[int, int, str]]) -> None:
        self._spans = sorted(spans)
        self._next = 0
        self._active: list[tuple[int, int, str]] = []

    def window(self, start: int, end: int) -> list[dict]:
        while self._next < len(self._spans) and self._spans[self._next][0] < end:
            self._active.append(self._spans[self._next])
            self._next += 1
        self._active = [s for s in self._active if s[1] > start]
        clipped = sorted(
            {(max(s, start) - start, min(e, end) - start, label) for s, e, label in self._active}
        )
        return [{"start": s, "end": e, "label": label} for s, e, label in clipped]


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
    with _open_text(path) as (fh, source):
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
        _check_window(window, overlap)
    elif overlap:
        raise ValueError(f"overlap={overlap} needs a window")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    _check_on_invalid(on_invalid)
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
            with _open_text(path) as (fh, name):
                lines = _Lines(fh, name)
                if fmt == "fasta":
                    stream = ((i, d, None, c) for i, d, c in _fasta_stream(lines, on_invalid))
                else:
                    stream = _genbank_stream(lines, feature_types, on_invalid)
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
            _check_spans(spans, len(text), record_id)
            row["spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in sorted(spans)]
            stats.spans += len(spans)
        writer.write({**row, "id": record_id, "text": text})
        stats.rows += 1
        return
    index = _SpanIndex(spans) if spans is not None else None
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
        _check_spans(spans, length, record_id)


def _check_spans(spans: Sequence[tuple[int, int, str]], length: int, record_id: str) -> None:
    for s, e, label in spans:
        if e > length:
            raise ValueError(
                f"record {record_id!r} has a {label} span {s}..{e} beyond its {length} bp sequence"
            )


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


def _check_window(window: int, overlap: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap!r}")


def _check_on_invalid(on_invalid: str) -> None:
    if on_invalid not in ("raise", "mask"):
        raise ValueError(f"on_invalid must be 'raise' or 'mask', got {on_invalid!r}")


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pipelines.genome``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.genome",
        description=(
            "Convert FASTA / GenBank files (plain or .gz) to the corpus parquet format "
            "(id, text, source [, spans, label, offset]), streaming."
        ),
        epilog=(
            "examples:\n"
            "  python -m pipelines.genome gbpri1.seq --output out/ --window 4096 --features exon,CDS\n"
            "  python -m pipelines.genome rRNA16S.fasta --output out/ "
            "--label-regex '\\t(?:Bacteria|Archaea);\\s*([^;\\t]+)'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA or GenBank files")
    parser.add_argument("--output", "-o", required=True, help="output directory for part-*.parquet")
    parser.add_argument("--format", default="auto", help="auto (default), fasta or genbank")
    parser.add_argument("--window", type=int, default=None, help="split sequences into windows of N bases")
    parser.add_argument("--overlap", type=int, default=0, help="bases shared by consecutive windows")
    parser.add_argument(
        "--features",
        default=",".join(DEFAULT_FEATURE_TYPES),
        help="GenBank feature keys to keep as spans, comma separated, or 'all' (default: %(default)s)",
    )
    parser.add_argument("--label-regex", default=None, help="regex on the header; group 1 is the row label")
    parser.add_argument("--records-per-file", type=int, default=50_000, help="rows per parquet file")
    parser.add_argument("--limit", type=int, default=None, help="stop after N input sequences")
    parser.add_argument(
        "--on-invalid", default="raise", help="raise (default) or mask: non-IUPAC characters become N"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace parquet files already in --output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 bad input, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    features = None if args.features == "all" else [f for f in args.features.split(",") if f]
    try:
        stats = convert_to_parquet(
            args.inputs,
            args.output,
            format=args.format,
            window=args.window,
            overlap=args.overlap,
            feature_types=features,
            label_from_header=args.label_regex,
            records_per_file=args.records_per_file,
            limit=args.limit,
            on_invalid=args.on_invalid,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    labels = f", {len(stats.labels)} labels" if stats.labels else ""
    print(
        f"wrote {stats.rows} rows from {stats.records} sequences ({stats.bases} bases, "
        f"{stats.spans} spans{labels}) to {len(stats.files)} file(s) in {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
