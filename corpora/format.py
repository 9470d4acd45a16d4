"""The corpus parquet format: its schema, a streaming writer, a reader and a validator.

The contract itself (columns, types, file layout) is described in :mod:`corpora`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SPAN_TYPE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])
COLUMN_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "text": pa.string(),
    "question": pa.string(),
    "label": pa.string(),
    "spans": pa.list_(SPAN_TYPE),
    "source": pa.string(),
    "offset": pa.int64(),
    "answers": pa.list_(pa.string()),
    "answer_start": pa.list_(pa.int64()),
}


def corpus_schema(columns: Sequence[str]) -> pa.Schema:
    """The arrow schema for a corpus with the given columns (``id`` and ``text`` always first).

    Args:
        columns: column names from :data:`COLUMN_TYPES`.

    Returns:
        The schema, ``id`` and ``text`` non-nullable.

    Raises:
        ValueError: an unknown column name.
    """
    unknown = [c for c in columns if c not in COLUMN_TYPES]
    if unknown:
        raise ValueError(f"unknown corpus columns {unknown}; known: {sorted(COLUMN_TYPES)}")
    names = ["id", "text"] + [c for c in dict.fromkeys(columns) if c not in ("id", "text")]
    return pa.schema([pa.field(n, COLUMN_TYPES[n], nullable=n not in ("id", "text")) for n in names])


class CorpusWriter:
    """Streams rows (dicts) into ``output_dir/part-NNNNN.parquet``, checking ids are unique.

    Use as a context manager; rows are buffered one row group at a time.
    """

    def __init__(
        self,
        output_dir: str | Path,
        schema: pa.Schema,
        *,
        records_per_file: int = 50_000,
        row_group_size: int = 1024,
        overwrite: bool = False,
    ) -> None:
        """Prepare the writer.

        Args:
            output_dir: directory for the part files (created if missing).
            schema: from :func:`corpus_schema`.
            records_per_file: rows per part file.
            row_group_size: rows per row group.
            overwrite: delete parquet files already in ``output_dir``.

        Raises:
            ValueError: non-positive sizes.
            FileExistsError: ``output_dir`` already holds parquet files and ``overwrite`` is False.
        """
        if records_per_file <= 0 or row_group_size <= 0:
            raise ValueError(
                f"records_per_file and row_group_size must be positive, got {records_per_file}, {row_group_size}"
            )
        self.output_dir = Path(output_dir)
        existing = sorted(self.output_dir.glob("*.parquet")) if self.output_dir.is_dir() else []
        if existing and not overwrite:
            raise FileExistsError(
                f"{self.output_dir} already holds {len(existing)} parquet file(s); pass overwrite"
            )
        for path in existing:
            path.unlink()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.records_per_file = records_per_file
        self.row_group_size = row_group_size
        self.files: list[Path] = []
        self.rows = 0
        self._buffer: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0
        self._ids: set[str] = set()

    def write(self, row: dict[str, Any]) -> None:
        """Add one row.

        Args:
            row: column name -> value; ``id`` and ``text`` required, other schema columns optional.

        Raises:
            ValueError: missing ``id``/``text``, an unknown column, or a duplicate ``id``.
        """
        rid, text = row.get("id"), row.get("text")
        if not isinstance(rid, str) or not rid or not isinstance(text, str):
            raise ValueError(f"a corpus row needs a non-empty string id and a string text, got id={rid!r}")
        extra = row.keys() - set(self.schema.names)
        if extra:
            raise ValueError(f"row {rid!r} has columns {sorted(extra)} not in the schema {self.schema.names}")
        if rid in self._ids:
            raise ValueError(f"duplicate corpus id {rid!r}")
        self._ids.add(rid)
        self._buffer.append(row)
        if len(self._buffer) >= min(self.row_group_size, self.records_per_file - self._in_file):
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None or self._in_file >= self.records_per_file:
            self._open_next()
        assert self._writer is not None
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._in_file += len(self._buffer)
        self.rows += len(self._buffer)
        self._buffer = []

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.output_dir / f"part-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.files.append(path)
        self._in_file = 0

    def close(self) -> None:
        """Flush and close; a corpus with no rows still gets one (empty) file with the schema."""
        self._flush()
        if self._writer is None:
            self._open_next()
        assert self._writer is not None
        self._writer.close()

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_corpus(path: str | Path) -> pa.Table:
    """Read a corpus directory (or one parquet file) into one table.

    Args:
        path: the corpus directory (its ``*.parquet`` files in name order) or one file.

    Returns:
        The concatenated table.

    Raises:
        FileNotFoundError: no parquet file there.
    """
    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        raise FileNotFoundError(f"no parquet corpus at {path}")
    return pa.concat_tables([pq.read_table(f) for f in files])


def validate_corpus(table: pa.Table) -> None:
    """Check a table against the corpus contract.

    Args:
        table: a corpus table, e.g. from :func:`read_corpus`.

    Raises:
        ValueError: a missing or mistyped column, a null or duplicate id, or a span outside its text.
    """
    for name in table.schema.names:
        if name not in COLUMN_TYPES:
            raise ValueError(f"column {name!r} is not part of the corpus contract")
        if not table.schema.field(name).type.equals(COLUMN_TYPES[name]):
            raise ValueError(
                f"column {name!r} has type {table.schema.field(name).type}, expected {COLUMN_TYPES[name]}"
            )
    for name in ("id", "text"):
        if name not in table.schema.names:
            raise ValueError(f"corpus has no {name!r} column")
        if table.column(name).null_count:
            raise ValueError(f"corpus column {name!r} has {table.column(name).null_count} nulls")
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"corpus id {dup!r} is not unique")
    if "spans" in table.schema.names:
        for rid, text, spans in zip(ids, table.column("text").to_pylist(), table.column("spans").to_pylist()):
            for span in spans or []:
                if not 0 <= span["start"] < span["end"] <= len(text):
                    raise ValueError(f"record {rid!r}: span {span} outside its text of length {len(text)}")


@dataclass
class CorpusStats:
    """What a ``convert_*`` function wrote."""

    records: int = 0
    words: int = 0
    skipped: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The stats as plain JSON-friendly values."""
        return asdict(self)


def write_corpus(
    rows: Iterable[dict[str, Any]],
    output_dir: str | Path,
    columns: Sequence[str],
    *,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    desc: str = "records",
) -> CorpusStats:
    """Write text records to a corpus directory.

    Args:
        rows: dicts with the corpus columns.
        output_dir: the corpus directory.
        columns: the corpus columns (see :data:`COLUMN_TYPES`).
        limit: stop after this many rows.
        overwrite: replace parquet files already there.
        progress: show a progress bar (tqdm) on stderr.
        desc: progress bar label.

    Returns:
        A :class:`CorpusStats` (words are whitespace-separated tokens of ``text``).

    Raises:
        ValueError: bad rows, duplicate ids, or a negative limit.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    stats = CorpusStats()
    with CorpusWriter(output_dir, corpus_schema(columns), overwrite=overwrite) as writer:
        for row in _progress(rows, desc, progress):
            if limit is not None and stats.records >= limit:
                break
            writer.write(row)
            stats.records += 1
            stats.words += len(row["text"].split())
    stats.files = [str(p) for p in writer.files]
    return stats


def _progress(items: Iterable, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=" rec", file=sys.stderr, leave=False)
