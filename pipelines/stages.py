"""The batch job's stages as plain functions over Arrow tables (no Ray imports: testable alone).

prepare_blocks -> reads each planned block of input rows and tokenizes and windows its records: one Arrow row
                  per block (see :mod:`pipelines.arrow_windows`), a record that cannot be scored carrying its
                  reason (CPU tasks);
Scorer         -> scores the windows of a block (the model loads once per actor), merges them per record and
                  writes the block's result file; returns one line of statistics per block.

Every value is read as Arrow, never through numpy or pandas: ids and kept columns keep their type and value
exactly, and a bad value (invalid UTF-8, a number where text belongs, null, empty) fails only its record.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bigbird.config import BigBirdConfig
from bigbird.model_store import StorageOptions, fetch_model, is_remote
from bigbird.tasks import get_spec, load, task_class
from bigbird.tasks.base import Encoded, Prepared, TaskPipeline
from bigbird.windows import RecordError, padded_length
from jobs import storage as object_storage
from jobs.settings import StorageSettings
from pipelines import arrow_windows, errors, lease, manifest

STATS = pa.schema([("name", pa.string()), ("records", pa.int64()), ("errors", pa.int64()), ("tokens", pa.int64()),
                   ("padding_tokens", pa.int64())])


def output_schema(task: str, id_type: pa.DataType | None = None,
                  kept: tuple[tuple[str, pa.DataType], ...] = ()) -> pa.Schema:
    """The result table's schema: the task's (:meth:`TaskSpec.result_schema`) with the input's id type and the
    kept columns as they are in the input."""
    schema = get_spec(task).result_schema()
    if id_type is not None:
        schema = schema.set(schema.get_field_index("id"), pa.field("id", id_type))
    for name, kind in kept:
        schema = schema.append(pa.field(name, kind))
    return schema


def filesystem(uri: str, storage: StorageSettings | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a URI (``s3://``, ``gs://``, ``file://``) or local path, and the path inside it.

    With object-storage options (``storage``: endpoint, region, anonymous) an ``s3://`` or ``gs://`` URI is
    opened with them, by the fine-tuning job's rule (:func:`jobs.storage.filesystem`); with none, by pyarrow's
    defaults (the bucket's region looked up, the ``AWS_*`` variables read).
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if storage is not None and storage != StorageSettings():
        fs, inner = object_storage.filesystem(uri, storage)
        if fs is not None:
            return fs, inner
    return pafs.FileSystem.from_uri(uri)


def display_uri(fs: pafs.FileSystem, path: str) -> str:
    """A path inside ``fs`` as the user would write it (``s3://bucket/key``, a local path)."""
    scheme = {"s3": "s3://", "gcs": "gs://"}.get(fs.type_name, "")
    return f"{scheme}{path}"


def read_blocks(fs: pafs.FileSystem, path: str, ranges: list[tuple[int, int]],
                columns: list[str]) -> Iterator[tuple[int, int, pa.Table]]:
    """Rows ``[start, stop)`` of one parquet file for each of ``ranges`` (ascending, disjoint), in one pass:
    the row groups that hold them are streamed once, front to back, and each range is yielded as soon as its
    last row is read (so a row group of a million rows cut into blocks is decoded once, not once per block)."""
    if not ranges:
        return
    pf = pq.ParquetFile(path, filesystem=fs)
    lo, hi = ranges[0][0], ranges[-1][1]
    groups, first, pos = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if pos < hi and pos + n > lo:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
    pending, pos = list(ranges), first or 0
    pieces: list[pa.RecordBatch] = []
    size = max(1, min(4096, max(b - a for a, b in ranges)))
    for batch in pf.iter_batches(batch_size=size, row_groups=groups, columns=columns):
        end = pos + len(batch)
        while pending:
            start, stop = pending[0]
            a, b = max(start, pos), min(stop, end)
            if b > a:
                pieces.append(batch.slice(a - pos, b - a))
            if stop > end:
                break
            yield start, stop, pa.Table.from_batches(pieces, schema=schema)
            pieces = []
            pending.pop(0)
        pos = end
        if not pending:
            return
    for start, stop in pending:  # past the file's end: what there is
        yield start, stop, pa.Table.from_batches(pieces, schema=schema)
        pieces = []


def read_rows(fs: pafs.FileSystem, path: str, start: int, stop: int, columns: list[str]) -> pa.Table:
    """Rows ``[start, stop)`` of one parquet file, streaming only the row groups that hold them."""
    return next(read_blocks(fs, path, [(start, stop)], columns))[2]


def strings(values: pa.ChunkedArray | pa.Array, what: str) -> list[str | RecordError]:
    """Each value as text, or the reason it is not text (null, invalid UTF-8, another type: its real type)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raw = values.view(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary()).to_pylist()
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        raw = values.to_pylist()
    else:
        return [RecordError(f"{what} is null") if v is None else
                RecordError(f"{what} must be a string, got {type(v).__name__} {_short(v)} (column type {kind})")
                for v in values.to_pylist()]
    out: list[str | RecordError] = []
    for v in raw:
        if v is None:
            out.append(RecordError(f"{what} is null"))
            continue
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError as e:
            out.append(RecordError(f"{what} is not valid UTF-8: byte {v[e.start]:#04x} at position {e.start}"))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integers(values: pa.ChunkedArray, what: str) -> list[int | None | RecordError]:
    """Each value as an integer or None (null), or the reason it is not one."""
    return [v if v is None or (isinstance(v, int) and not isinstance(v, bool)) else
            RecordError(f"{what} must be an integer, got {type(v).__name__} {_short(v)} (column type {values.type})")
            for v in values.to_pylist()]


def model_storage(storage: StorageSettings | None) -> StorageOptions | None:
    """The core loader's object-storage options (hashable) of the job's ``storage`` settings."""
    return None if storage is None else StorageOptions(**storage.model_dump())


def local_model(model: str, storage: StorageSettings | StorageOptions | None = None) -> str:
    """A local folder or hub id of ``model``: an ``s3://`` / ``gs://`` folder is fetched into this node's cache
    (:func:`bigbird.model_store.fetch_model`: once per node and version)."""
    if not is_remote(model):
        return model
    options = model_storage(storage) if isinstance(storage, StorageSettings) else storage
    return str(fetch_model(model, options))


@functools.lru_cache(maxsize=4)
def tokenizer(model: str, revision: str | None = None, storage: StorageOptions | None = None):
    """The tokenizer of a model, cached per process."""
    import bigbird

    return bigbird.BigBirdTokenizer.from_pretrained(local_model(model, storage), revision=revision)


@functools.lru_cache(maxsize=4)
def preprocessor(model: str, task: str, config: str, max_length: int, stride: int, revision: str | None = None,
                 storage: StorageOptions | None = None) -> TaskPipeline:
    """A model-less task pipeline, cached per worker process, from the config the driver read (JSON)."""
    return task_class(task).preparer(tokenizer(model, revision, storage), BigBirdConfig.from_dict(json.loads(config)),
                                     max_length=max_length, stride=stride)


def prepare_blocks(batch: pa.Table, *, model: str, task: str, config: str, max_length: int, stride: int,
                   input_uri: str, id_column: str, text_column: str, question_column: str | None = None,
                   question: str | None = None, offset_column: str | None = None,
                   keep_columns: tuple[tuple[str, str], ...] = (), storage: StorageSettings | None = None,
                   revision: str | None = None, lease_token: str | None = None) -> Iterator[pa.Table]:
    """Read, tokenize and window the planned blocks of each read unit (a row: ``file``, ``path``, and the
    blocks' ``starts`` and ``stops``, read in one pass by :func:`read_blocks`), yielding each block packed as
    one row as soon as it is ready. ``lease_token``, the job's lease, travels with each block to the writer,
    which publishes it only under that lease."""
    fs, _ = filesystem(input_uri, storage)
    pipe = preprocessor(model, task, config, max_length, stride, revision, model_storage(storage))
    columns = list(dict.fromkeys(c for c in (id_column, text_column, question_column, offset_column,
                                             *(src for src, _ in keep_columns)) if c is not None))
    for unit in batch.to_pylist():
        ranges = list(zip(unit["starts"], unit["stops"]))
        for start, stop, table in read_blocks(fs, unit["path"], ranges, columns):
            name = manifest.part_name(unit["file"], start, stop)
            packed = _prepare(pipe, name, table, id_column, text_column, question_column, question, offset_column,
                              keep_columns)
            yield packed.append_column("lease", pa.array([lease_token], pa.string()))


def _prepare(pipe: TaskPipeline, name: str, table: pa.Table, id_column: str, text_column: str,
             question_column: str | None, question: str | None, offset_column: str | None,
             keep_columns: tuple[tuple[str, str], ...]) -> pa.Table:
    n = table.num_rows
    texts: list[Any] = strings(table.column(text_column), "text")
    questions: list[Any] | None = None
    if question_column is not None:
        questions = strings(table.column(question_column), "question")
    elif question is not None:
        questions = [question] * n
    offsets: list[Any] = integers(table.column(offset_column), "offset") if offset_column else [None] * n
    problems: dict[int, RecordError] = {}
    for i in range(n):
        for value in (texts[i], None if questions is None else questions[i], offsets[i]):
            if isinstance(value, RecordError):
                problems.setdefault(i, value)
    records = [{"text": None if i in problems else texts[i]} for i in range(n)]
    if questions is not None:
        for i, record in enumerate(records):
            record["question"] = None if i in problems else questions[i]
    prepared = pipe.prepare_records(records)  # tokenizes (with the vocabulary's checks) and windows
    errors = {**prepared.errors, **problems}
    encoded = [problems.get(i, e) for i, e in enumerate(prepared.encoded)]
    windows = prepared.windows
    return arrow_windows.pack(
        name, table.column(id_column).combine_chunks(),
        texts=[None if i in errors else texts[i] for i in range(n)],
        errors=[str(errors[i]) if i in errors else None for i in range(n)],
        offsets=[None if isinstance(o, RecordError) else o for o in offsets],
        kept={dst: table.column(src).combine_chunks() for src, dst in keep_columns},
        encoded=[None if i in errors else encoded[i] for i in range(n)], windows=windows)


class Scorer:
    """Model actor: loads the model once; scores each block's windows together (grouped by padded length),
    merges them per record and writes the block's result file under the output folder."""

    def __init__(self, *, model: str, task: str, max_length: int, stride: int, batch_size: int,
                 max_tokens: int | None, threads: int | None, params: dict[str, Any], schema: pa.Schema,
                 output_uri: str, storage: StorageSettings | None = None, actors: int = 1, device: str = "auto",
                 dtype: str | None = None, quantize: str | None = None, revision: str | None = None) -> None:
        self.spec, self.schema = get_spec(task), schema
        # Threads counted here, on the actor's node (the driver's machine may differ); Ray sets OMP_NUM_THREADS
        # to the actor's num_cpus, which is 1 for a CPU scorer: too few when it is alone on the node.
        self.pipe = load(task, model, device=device, dtype=dtype, quantize=quantize, revision=revision,
                         threads=threads or default_threads(actors), storage=model_storage(storage),
                         batch_size=batch_size, max_length=max_length, stride=stride, max_tokens=max_tokens)
        self.params = {**self.spec.defaults(), **self.spec.batch_params, **params}
        self.block_size = self.pipe.config.block_size
        self.fs, self.root = filesystem(output_uri, storage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tokens = batch.column("lease").to_pylist() if "lease" in batch.column_names else [None] * batch.num_rows
        stats = [self._score(arrow_windows.unpack(batch, row), tokens[row]) for row in range(batch.num_rows)]
        return pa.Table.from_pylist(stats, schema=STATS)

    def _score(self, block: arrow_windows.Block, token: str | None = None) -> dict[str, Any]:
        prepared = block.prepared(self.params)
        outputs = self.pipe.score(prepared.windows, **self.params) if prepared.windows else []
        groups = prepared.windows_of()
        results = self._finish(prepared, outputs, groups)
        rows = [self._row(block, i, results[i], [prepared.windows[k] for k in groups.get(i, [])])
                for i in range(len(block))]
        fields = self.schema.names[1:len(self.schema.names) - len(block.kept)]
        table = pa.Table.from_pylist(rows, schema=pa.schema([self.schema.field(f) for f in fields]))
        table = table.add_column(0, self.schema.field("id"), block.ids)
        for dst, values in block.kept.items():
            table = table.append_column(self.schema.field(dst), values)
        self._write(block.name, table, token)
        return {"name": block.name, "records": table.num_rows, "errors": sum(r["error"] is not None for r in rows),
                "tokens": sum(r["num_tokens"] for r in rows), "padding_tokens": sum(r["padding_tokens"] for r in rows)}

    def _write(self, name: str, table: pa.Table, token: str | None = None) -> None:
        """Write under a hidden temporary name, then rename: a result file present is a complete one; with the
        job's lease ``token``, renamed only while the folder's lease is still that job's (else deleted)."""
        final, temp = f"{self.root}/{name}", f"{self.root}/{manifest.temp_name(name)}"
        try:
            with self.fs.open_output_stream(temp) as f:
                pq.write_table(table, f)
        except OSError as e:  # named here, where the URI is known; the driver makes it its one line
            raise errors.WriteError(display_uri(self.fs, final), e) from e
        if token is not None:
            try:
                lease.verify(self.fs, self.root, token)
            except lease.LeaseLost:
                self.fs.delete_file(temp)
                raise
        self.fs.move(temp, final)

    def _finish(self, prepared: Prepared, outputs: list, groups: dict[int, list[int]]) -> list[Any]:
        """Per record its result or :class:`RecordError` (:meth:`TaskPipeline.finish`); if merging fails, the
        records are merged one by one so that only the failing ones get an ``internal:`` error."""
        try:
            return self.pipe.finish(prepared, outputs)
        except Exception:  # one record's failure must not fail the block
            pass
        results: list[Any] = []
        for i, record in enumerate(prepared.records):
            if i in prepared.errors:
                results.append(prepared.errors[i])
                continue
            try:
                results.append(self.pipe.merge(record, prepared.encoded[i], [prepared.windows[k] for k in groups[i]],
                                               [outputs[k] for k in groups[i]], **prepared.params))
            except Exception as e:
                results.append(RecordError(f"internal: {type(e).__name__}: {e}"))
        return results

    def _row(self, block: arrow_windows.Block, i: int, result: Any, windows: list) -> dict[str, Any]:
        row: dict[str, Any] = {name: None for name in self.schema.names[1:len(self.schema.names) - len(block.kept)]}
        row.update(num_windows=0, num_tokens=0, padding_tokens=0)
        if isinstance(result, RecordError):
            row["error"] = str(result)
            return row
        encoded: Encoded = block.encoded[i]  # type: ignore[assignment]
        # Padding actually spent: the model pads each window to whole blocks (its batch shares that length).
        padding = sum(padded_length(len(w.input_ids), self.block_size) - len(w.input_ids) for w in windows)
        row.update(num_windows=len(windows), num_tokens=len(encoded.ids), padding_tokens=padding)
        row.update(self.spec.row(result, self.params, block.offsets[i]))
        return row


def batch_params(task: str, settings: Any) -> dict[str, Any]:
    """The task parameters a batch job passes to the pipeline stages: of the settings' task parameters
    (:data:`pipelines.settings.TASK_PARAMS`) those the task takes, each the settings' value or, when unset,
    the task's batch default (:attr:`TaskSpec.batch_params`, else its parameter default)."""
    from pipelines.settings import TASK_PARAMS

    spec = get_spec(task)
    defaults = {**spec.defaults(), **spec.batch_params}
    return {name: defaults[name] if getattr(settings, name) is None else getattr(settings, name)
            for name in TASK_PARAMS if name in defaults}


def default_threads(actors: int) -> int:
    """Torch threads of one CPU scorer: the CPUs this process may use on its node, shared by ``actors``."""
    return max(1, len(os.sched_getaffinity(0)) // actors)
