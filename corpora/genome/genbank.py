"""Streaming GenBank flat-file parser and feature-location parser for :mod:`corpora.genome`.

GenBank locations are 1-based and inclusive (``10..20`` is 11 bases); everything this module
returns is 0-based and end-exclusive (``(9, 20)``), the Python slice of the sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from corpora.genome.records import (
    DEFAULT_FEATURE_TYPES,
    GenBankFeature,
    GenBankRecord,
    Lines,
    OnInvalid,
    check_on_invalid,
    clean_sequence,
    open_text,
)

_DELETE_DIGITS_SPACE = str.maketrans("", "", "0123456789 \t\r\n")
_NAME_QUALIFIERS = ("gene", "product", "locus_tag", "standard_name")


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
    lines: Lines,
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


def _parse_features(lines: Lines, wanted: frozenset[str] | None) -> list[GenBankFeature]:
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


def genbank_stream(
    lines: Lines, feature_types: Iterable[str] | None, on_invalid: OnInvalid
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


def _genbank_chunks(lines: Lines, record_id: str, on_invalid: OnInvalid) -> Iterator[str]:
    while (line := lines.next()) is not None:
        if line.startswith("//"):
            return
        raw = line.translate(_DELETE_DIGITS_SPACE)
        if raw:
            yield clean_sequence(raw, lines, record_id, on_invalid)
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
    check_on_invalid(on_invalid)
    with open_text(path_or_file) as (fh, source):
        lines = Lines(fh, source)
        for record_id, description, features, chunks in genbank_stream(lines, feature_types, on_invalid):
            sequence = "".join(chunks)
            for f in features if sequence else ():  # a record without ORIGIN has nothing to check
                if f.end > len(sequence):
                    raise ValueError(
                        f"{source}: record {record_id!r} has a {f.type} at {f.start}..{f.end} "
                        f"beyond its {len(sequence)} bp sequence"
                    )
            yield GenBankRecord(record_id, description, sequence, features)
