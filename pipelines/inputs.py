"""Everything a batch job settles on the driver before Ray starts: the model's limits, the input's files,
columns and ids, the output folder's ownership, and the blocks still to score."""

from __future__ import annotations

import bisect
import functools
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import ids, manifest, stages
from pipelines.settings import BatchSettings


@dataclass
class InputScan:
    """The input as its parquet footers describe it (no data read)."""

    columns: list[str]  # the columns the job reads
    schema: pa.Schema  # their types
    files: list[tuple[str, int, int]]  # (path, rows, text bytes) per file, in reading order
    names: list[list]  # each file's name relative to the input and its row count, for the manifest
    rows: int  # records the job sees (capped by ``limit``)
    groups: list[list[int]] = field(default_factory=list)  # rows of each row group, per file


@dataclass
class JobPlan:
    config: str  # the model's config, JSON (read once, here)
    max_length: int
    params: dict[str, Any]
    schema: pa.Schema  # the result files' schema
    parts: list[manifest.Part]
    skipped: int  # records an earlier run of the job already wrote
    units: list[list[manifest.Part]] = field(default_factory=list)  # parts read together (:func:`read_units`)


def scan_input(settings: BatchSettings) -> InputScan:
    """Check the input exists and has the columns the settings name, with one type each, from its footers.

    Raises:
        ValueError: For an unreadable input, missing columns, or a column whose type differs between files.
    """
    fs, path = stages.filesystem(settings.input, settings.storage)
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
    except Exception as e:  # missing paths, unreadable files: pyarrow raises its own error types
        raise ValueError(f"cannot read input {settings.input!r}: {e}") from e
    names = dataset.schema.names
    wanted = [settings.id_column, settings.text_column, settings.question_column, settings.offset_column,
              *(src for src, _ in settings.kept)]
    wanted = list(dict.fromkeys(c for c in wanted if c is not None))
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"input {settings.input!r} has no column(s) {missing}; it has {names}")
    schema = pa.schema([dataset.schema.field(c) for c in wanted])
    files, rel, groups = [], [], []
    left = settings.limit if settings.limit else None
    for frag in dataset.get_fragments():
        meta, physical = frag.metadata, frag.physical_schema
        for f in schema:
            have = physical.field(f.name).type if f.name in physical.names else None
            if have != f.type:
                raise ValueError(f"input file {frag.path!r}: column {f.name!r} is {have}, other files have {f.type}")
        # The text's leaf column (nested columns before it have several leaves each).
        leaf = next((j for j in range(meta.num_columns) if meta.schema.column(j).path == settings.text_column), None)
        nbytes = 0 if leaf is None else sum(meta.row_group(g).column(leaf).total_uncompressed_size
                                            for g in range(meta.num_row_groups))
        rows = meta.num_rows if left is None else min(meta.num_rows, left)
        if left is not None:
            left -= rows
        files.append((frag.path, rows, nbytes * rows // max(1, meta.num_rows)))
        name = frag.path[len(path.rstrip("/")) + 1:] if frag.path.startswith(path.rstrip("/") + "/") \
            else frag.path.rsplit("/", 1)[-1]
        rel.append([name, meta.num_rows])
        groups.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    return InputScan(wanted, schema, files, rel, sum(r for _, r, _ in files), groups)


def check_ids(settings: BatchSettings, rows: int) -> None:
    """Refuse null or repeated ids up front, with counts (resume and "each record once" rely on them).

    Raises:
        ValueError: Giving how many ids are null and how many repeat, with examples.
    """
    fs, path = stages.filesystem(settings.input, settings.storage)
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    id_type = dataset.schema.field(settings.id_column).type

    def batches() -> Iterator[pa.Array]:  # the first ``rows`` ids, streamed page by page (:mod:`pipelines.ids`)
        left = rows
        for file in dataset.files:  # the scanner's readahead would buffer whole row groups of several files
            for batch in pq.ParquetFile(file, filesystem=fs).iter_batches(batch_size=65_536,
                                                                          columns=[settings.id_column]):
                if left <= 0:
                    return
                column = batch.column(0)[:left]
                left -= len(column)
                yield column

    try:
        found = ids.count_ids(batches(), rows, id_type)
    except TypeError as e:
        raise ValueError(f"input {settings.input!r}: id column {settings.id_column!r} has type {id_type}, which "
                         f"cannot serve as an id; use strings or integers") from e
    if found.nulls or found.repeated:
        examples = ", ".join(repr(v) for v in found.examples)
        extra = f"{found.repeated} id(s) appear more than once, {found.repeated_records} records in all (e.g. " \
                f"{examples})" if found.repeated else "no id repeats"
        raise ValueError(f"input {settings.input!r}, column {settings.id_column!r}: {found.nulls} record(s) have a "
                         f"null id and {extra}; every record needs its own id: fix the input or pass another "
                         f"--id-column")


def _rows_per_block(settings: BatchSettings, rows: int, nbytes: int) -> int:
    per_row = nbytes / max(1, rows)
    return max(1, min(settings.block_records, int(settings.block_bytes // max(1.0, per_row))))


def _check_output_apart(settings: BatchSettings) -> None:
    in_fs, in_path = stages.filesystem(settings.input, settings.storage)
    out_fs, out_path = stages.filesystem(settings.output, settings.storage)
    if type(in_fs) is type(out_fs) and (out_path.rstrip("/") + "/").startswith(in_path.rstrip("/") + "/"):
        raise ValueError(f"output {settings.output!r} is the input {settings.input!r} or inside it: a re-run "
                         f"would read the results as input; choose an --output outside the input")
    if out_fs.get_file_info(out_path).type == pafs.FileType.File:
        raise ValueError(f"output {out_path!r} is a file, not a folder: pass the folder the job may write into")


@dataclass
class Checked:
    """What :func:`check_job` settled: everything but the output folder's state."""

    config: Any  # BigBirdConfig
    max_length: int
    scan: InputScan


def plan_job(settings: BatchSettings) -> JobPlan:
    """:func:`check_job` then :func:`plan_output` (the caller holds the output folder's lease, if any).

    Raises:
        ValueError: For settings the model cannot take, a bad input, or an output folder the job may not use.
        FileNotFoundError: If the model or its config does not exist.
    """
    return plan_output(settings, check_job(settings))


def check_job(settings: BatchSettings) -> Checked:
    """Check everything that needs neither Ray nor the output folder's contents: the model's limits, the input's
    columns and ids, the output apart from the input.

    Raises:
        ValueError: For settings the model cannot take or a bad input.
        FileNotFoundError: If the model or its config does not exist.
    """
    from bigbird.config import BigBirdConfig
    from bigbird.hub import resolve_file
    from bigbird.tasks import task_class

    model = stages.local_model(settings.model, settings.storage)  # s3:// / gs://: fetched into this node's cache
    config = BigBirdConfig.from_json_file(resolve_file(model, "config.json", revision=settings.revision))
    # The workers' pipeline, built once here: it checks max_length and stride against the model's limits.
    pipe = task_class(settings.task).preparer(
        stages.tokenizer(settings.model, settings.revision, stages.model_storage(settings.storage)), config,
        max_length=settings.max_length, stride=settings.stride)
    scan = scan_input(settings)
    check_ids(settings, scan.rows)
    _check_output_apart(settings)
    return Checked(config=config, max_length=pipe.max_length, scan=scan)


def plan_output(settings: BatchSettings, checked: Checked) -> JobPlan:
    """Claim the output folder (its manifest) and plan the blocks still to score.

    Raises:
        ValueError: For an output folder the job may not use.
    """
    config, scan = checked.config, checked.scan
    params = stages.batch_params(settings.task, settings)
    kept = tuple((dst, scan.schema.field(src).type) for src, dst in settings.kept)
    schema = stages.output_schema(settings.task, scan.schema.field(settings.id_column).type, kept)
    identity = {"task": settings.task, "model": settings.model, "id_column": settings.id_column,
                "text_column": settings.text_column, "question_column": settings.question_column,
                "question": settings.question, "offset_column": settings.offset_column,
                "keep_columns": settings.keep_columns, "max_length": checked.max_length, "stride": settings.stride,
                "params": params, "revision": settings.revision,
                **manifest.precision(settings.dtype, settings.quantize)}
    inputs = scan.names
    fs, root = stages.filesystem(settings.output, settings.storage)
    folder = manifest.inspect(fs, root)
    manifest.check_ownership(folder, settings.output, identity, inputs, settings.resume)
    done = manifest.reset(fs, root, folder, identity, inputs, settings.resume)
    blocks = [(p, rows, _rows_per_block(settings, rows, nbytes)) for p, rows, nbytes in scan.files]
    parts, skipped = manifest.plan(blocks, done)
    return JobPlan(config=json.dumps(config.to_dict()), max_length=checked.max_length, params=params, schema=schema,
                   parts=parts, skipped=skipped, units=read_units(parts, scan.groups))


def read_units(parts: list[manifest.Part], groups: list[list[int]]) -> list[list[manifest.Part]]:
    """The parts grouped so that no row group is read twice: consecutive parts of a file that share a row group
    go to one read task, which reads their row groups once, front to back (:func:`stages.read_blocks`).

    A parquet reader cannot start inside a row group without decoding it from its first row, so a file of one
    1 M-row group read block by block costs ~N^2/2 rows decoded; read as one unit it costs N. The price: one
    row group's tokenizing runs in one task (parallel across row groups and files, not within one).
    """
    units: list[list[manifest.Part]] = []
    last_group = -1
    for part in parts:
        bounds = _bounds(groups, part.file)
        first = bisect.bisect_right(bounds, part.start) - 1
        if units and units[-1][-1].file == part.file and first <= last_group:
            units[-1].append(part)
        else:
            units.append([part])
        last_group = bisect.bisect_right(bounds, part.stop - 1) - 1
    return units


@functools.lru_cache(maxsize=64)
def _cumulative(sizes: tuple[int, ...]) -> list[int]:
    return [0, *itertools.accumulate(sizes)]


def _bounds(groups: list[list[int]], file: int) -> list[int]:
    """The first row of each row group of file ``file`` (one group of all rows when the scan has none)."""
    return _cumulative(tuple(groups[file])) if file < len(groups) else [0]
