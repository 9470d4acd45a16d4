"""Everything a batch job settles on the driver before Ray starts: the model's limits, the input's files,
columns and ids, the output folder's ownership, and the blocks still to score."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipelines import manifest, stages
from pipelines.settings import BatchSettings


@dataclass
class InputScan:
    """The input as its parquet footers describe it (no data read)."""

    columns: list[str]  # the columns the job reads
    schema: pa.Schema  # their types
    files: list[tuple[str, int, int]]  # (path, rows, text bytes) per file, in reading order
    names: list[list]  # each file's name relative to the input and its row count, for the manifest
    rows: int  # records the job sees (capped by ``limit``)


@dataclass
class JobPlan:
    config: str  # the model's config, JSON (read once, here)
    max_length: int
    params: dict[str, Any]
    schema: pa.Schema  # the result files' schema
    parts: list[manifest.Part]
    skipped: int  # records an earlier run of the job already wrote


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
    files, rel = [], []
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
    return InputScan(wanted, schema, files, rel, sum(r for _, r, _ in files))


def check_ids(settings: BatchSettings, rows: int) -> None:
    """Refuse null or repeated ids up front, with counts (resume and "each record once" rely on them).

    Raises:
        ValueError: Giving how many ids are null and how many repeat, with examples.
    """
    fs, path = stages.filesystem(settings.input, settings.storage)
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    ids = dataset.head(rows, columns=[settings.id_column]).column(0) if rows else pa.chunked_array([], pa.null())
    nulls = ids.null_count
    try:
        counts = pc.value_counts(ids.drop_null())
    except pa.ArrowNotImplementedError as e:
        raise ValueError(f"input {settings.input!r}: id column {settings.id_column!r} has type {ids.type}, which "
                         f"cannot serve as an id; use strings or integers") from e
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if nulls or len(repeated):
        examples = ", ".join(repr(v) for v in repeated.field("values")[:3].to_pylist())
        extra = f"{len(repeated)} id(s) appear more than once, {pc.sum(repeated.field('counts')).as_py()} " \
                f"records in all (e.g. {examples})" if len(repeated) else "no id repeats"
        raise ValueError(f"input {settings.input!r}, column {settings.id_column!r}: {nulls} record(s) have a null "
                         f"id and {extra}; every record needs its own id: fix the input or pass another --id-column")


def _rows_per_block(settings: BatchSettings, rows: int, nbytes: int) -> int:
    per_row = nbytes / max(1, rows)
    return max(1, min(settings.block_records, int(settings.block_bytes // max(1.0, per_row))))


def _check_output_apart(settings: BatchSettings) -> None:
    in_fs, in_path = stages.filesystem(settings.input, settings.storage)
    out_fs, out_path = stages.filesystem(settings.output, settings.storage)
    if type(in_fs) is type(out_fs) and (out_path.rstrip("/") + "/").startswith(in_path.rstrip("/") + "/"):
        raise ValueError(f"output {settings.output!r} is the input {settings.input!r} or inside it: a re-run "
                         f"would read the results as input; choose an --output outside the input")


def plan_job(settings: BatchSettings) -> JobPlan:
    """Check everything that needs no Ray, claim the output folder, and plan the blocks still to score.

    Raises:
        ValueError: For settings the model cannot take, a bad input, or an output folder the job may not use.
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
    params = stages.batch_params(settings.task, settings)
    kept = tuple((dst, scan.schema.field(src).type) for src, dst in settings.kept)
    schema = stages.output_schema(settings.task, scan.schema.field(settings.id_column).type, kept)
    identity = {"task": settings.task, "model": settings.model, "id_column": settings.id_column,
                "text_column": settings.text_column, "question_column": settings.question_column,
                "question": settings.question, "offset_column": settings.offset_column,
                "keep_columns": settings.keep_columns, "max_length": pipe.max_length, "stride": settings.stride,
                "params": params, "revision": settings.revision,
                **manifest.precision(settings.dtype, settings.quantize)}
    inputs = scan.names
    fs, root = stages.filesystem(settings.output, settings.storage)
    folder = manifest.inspect(fs, root)
    manifest.check_ownership(folder, settings.output, identity, inputs, settings.resume)
    done = manifest.reset(fs, root, folder, identity, inputs, settings.resume)
    blocks = [(p, rows, _rows_per_block(settings, rows, nbytes)) for p, rows, nbytes in scan.files]
    parts, skipped = manifest.plan(blocks, done)
    return JobPlan(config=json.dumps(config.to_dict()), max_length=pipe.max_length, params=params, schema=schema,
                   parts=parts, skipped=skipped)
