"""Streaming FASTA parser for :mod:`corpora.genome`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

from corpora.genome.records import (
    FastaRecord,
    Lines,
    OnInvalid,
    check_on_invalid,
    clean_sequence,
    open_text,
)

# --------------------------------------------------------------------------- FASTA


def fasta_stream(lines: Lines, on_invalid: OnInvalid) -> Iterator[tuple[str, str, Iterator[str]]]:
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


def _fasta_chunks(lines: Lines, record_id: str, on_invalid: OnInvalid) -> Iterator[str]:
    while (line := lines.next()) is not None:
        if line.startswith(">"):
            lines.push_back(line)
            return
        raw = line.strip()
        if not raw or raw.startswith(";"):
            continue
        if " " in raw or "\t" in raw:
            raw = "".join(raw.split())
        yield clean_sequence(raw, lines, record_id, on_invalid)


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
    check_on_invalid(on_invalid)
    with open_text(path_or_file) as (fh, source):
        lines = Lines(fh, source)
        for record_id, description, chunks in fasta_stream(lines, on_invalid):
            yield FastaRecord(record_id, description, "".join(chunks))
