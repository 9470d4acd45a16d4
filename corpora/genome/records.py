"""Record types, shared constants and line-level text reading for :mod:`corpora.genome`.

Holds what both parsers share: the record tuples, the IUPAC alphabet, opening plain or gzip
input as text (from a path or a file object) with a line counter for error messages, and the
per-line sequence check.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, NamedTuple

DEFAULT_FEATURE_TYPES: tuple[str, ...] = ("exon", "CDS", "gene")
IUPAC_DNA = "ACGTURYSWKMBDHVN"
_DELETE_IUPAC = str.maketrans("", "", IUPAC_DNA)

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


# --------------------------------------------------------------------------- line reading


class Lines:
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
def open_text(path_or_file: str | Path | IO) -> Iterator[tuple[IO[str], str]]:
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


def clean_sequence(raw: str, lines: Lines, record_id: str, on_invalid: OnInvalid) -> str:
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


def check_on_invalid(on_invalid: str) -> None:
    """Raise ValueError unless ``on_invalid`` is ``'raise'`` or ``'mask'``."""
    if on_invalid not in ("raise", "mask"):
        raise ValueError(f"on_invalid must be 'raise' or 'mask', got {on_invalid!r}")
