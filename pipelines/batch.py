"""``bigbird batch``: score a parquet corpus with Ray Data and write one result row per record.

    read_parquet -> preprocess (tokenize + window each record, CPU tasks) -> Scorer (model actors: the windows
    of a batch of records scored together, batched by length, merged back per record) -> write_parquet

Run locally (a Ray cluster sized to the machine is started) or on a cluster with ``--address`` /
``ray job submit --working-dir . -- python -m pipelines.batch ...``. Re-running a stopped job skips the
records whose results are already in the output folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipelines import stages
from pipelines.settings import BATCH_TASKS, BatchSettings


@dataclass
class JobStats:
    records: int
    errors: int
    tokens: int
    padding_tokens: int
    skipped: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        pad = self.padding_tokens / max(1, self.tokens + self.padding_tokens)
        return (f"records {self.records} (skipped {self.skipped} already done), errors {self.errors}, "
                f"tokens {self.tokens}, wall {self.seconds:.1f} s, {self.tokens_per_second:,.0f} tokens/s, "
                f"padding {pad:.1%}")


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), os.path.abspath(uri))


def scan_input(settings: BatchSettings) -> tuple[list[str], int]:
    """Check the input exists and has the columns the settings name, from its parquet footers (no data read).

    Returns:
        The columns to read, and the records the job will see (capped by ``limit``).
    """
    fs, path = _filesystem(settings.input)
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
    rows = dataset.count_rows()
    return wanted, min(rows, settings.limit) if settings.limit else rows


def output_files(output: str) -> list[str]:
    """The parquet files under the output folder (none if it does not exist)."""
    fs, path = _filesystem(output)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    return [f.path for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if f.type == pafs.FileType.File and f.path.endswith(".parquet")]


def done_ids(output: str) -> tuple[set[str], list[str]]:
    """Ids already written by an earlier run, and the output files (unreadable partial files are removed)."""
    fs, _ = _filesystem(output)
    ids: set[str] = set()
    good = []
    for f in output_files(output):
        try:
            table = pads.dataset(f, filesystem=fs, format="parquet").to_table(columns=["id"])
        except Exception:
            fs.delete_file(f)  # a file cut short by an interrupted run: its records are scored again
            continue
        ids.update(table.column("id").to_pylist())
        good.append(f)
    return ids, good


def run(settings: BatchSettings) -> JobStats:
    """Run the job on the current Ray cluster (started locally if none) and return its statistics."""
    import numpy as np
    import ray

    columns, total = scan_input(settings)
    start = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=True)
    gpus = ray.cluster_resources().get("GPU", 0)
    num_gpus = settings.num_gpus if settings.num_gpus is not None else (1 if gpus else 0)
    actors = settings.actors or (max(1, int(gpus // num_gpus)) if num_gpus else 1)
    threads = settings.threads or stages.default_threads(actors)
    common = {"model": settings.model, "task": settings.task, "max_length": settings.max_length,
              "stride": settings.stride}
    params = stages.batch_params(settings.task, settings)

    done, before = done_ids(settings.output)
    if not settings.resume:
        done = set()
    ds = ray.data.read_parquet(settings.input).select_columns(columns)
    if settings.limit:
        ds = ds.limit(settings.limit)
    ds = ds.map_batches(stages.preprocess, batch_format="numpy", batch_size=16, fn_kwargs={
        **common, "id_column": settings.id_column, "text_column": settings.text_column,
        "question_column": settings.question_column, "question": settings.question,
        "offset_column": settings.offset_column, "keep_columns": tuple(settings.kept),
        "skip_ids": ray.put(np.array(sorted(done))) if done else None})
    ds = ds.map_batches(
        stages.Scorer, batch_format="numpy", batch_size=settings.records_per_batch, concurrency=actors,
        num_gpus=num_gpus, num_cpus=0 if num_gpus else 1,
        fn_constructor_kwargs={**common, "batch_size": settings.batch_size, "max_tokens": settings.max_tokens,
                               "threads": threads, "params": params, "keep_columns": tuple(settings.kept)})
    ds.write_parquet(settings.output)
    new = sorted(set(output_files(settings.output)) - set(before))
    fs, _ = _filesystem(settings.output)
    table = pads.dataset(new, filesystem=fs, format="parquet").to_table(
        columns=["error", "num_tokens", "padding_tokens"]) if new else None
    seconds = time.perf_counter() - start
    if table is None:
        return JobStats(0, 0, 0, 0, total, seconds)  # nothing new: every input record was already done
    return JobStats(records=table.num_rows, errors=table.num_rows - table.column("error").null_count,
                    tokens=int(np.nansum(table.column("num_tokens").to_numpy(zero_copy_only=False))),
                    padding_tokens=int(np.nansum(table.column("padding_tokens").to_numpy(zero_copy_only=False))),
                    skipped=total - table.num_rows, seconds=seconds)


EXAMPLE = """examples:
  bigbird batch --task text-classification --model models/rrna16s-phylum \\
      --input data/rrna16s --output outputs/rrna16s-phylum
  bigbird batch --task question-answering --model google/bigbird-base-trivia-itc \\
      --input s3://bucket/docs --question-column question --output s3://bucket/answers --address auto
  ray job submit --working-dir . -- python -m pipelines.batch --task token-classification ...
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bigbird batch", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of these settings (flags override it)")
    p.add_argument("--task", choices=BATCH_TASKS)
    p.add_argument("--model", help="model folder or hub id")
    p.add_argument("--input", help="parquet file or folder (local, s3://, gs://, ...)")
    p.add_argument("--output", help="output folder")
    p.add_argument("--id-column")
    p.add_argument("--text-column")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--question-column", help="question per record (question-answering)")
    q.add_argument("--question", help="one question for the whole corpus (question-answering)")
    p.add_argument("--offset-column", help="genome coordinate of each record's first base (spans are shifted)")
    p.add_argument("--keep-columns", nargs="+", metavar="COLUMN[=NEW]",
                   help="input columns to copy into the output, optionally renamed (label=label_true)")
    p.add_argument("--max-length", type=int, help="tokens per window (default: the model's maximum)")
    p.add_argument("--stride", type=int, help="overlap between windows, in tokens (default 128)")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default 8)")
    p.add_argument("--max-tokens", type=int, help="cap on tokens per forward pass")
    p.add_argument("--actors", type=int, help="model actors (default: one per GPU, else 1)")
    p.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 when the cluster has GPUs)")
    p.add_argument("--threads", type=int, help="torch threads per CPU actor")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="score every record even if the output already has it")
    p.add_argument("--limit", type=int, help="only the first N records")
    return p


def settings_from_args(args: argparse.Namespace) -> BatchSettings:
    values = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    if args.config:
        return BatchSettings.from_yaml(args.config, **values)
    return BatchSettings(**values)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bigbird batch`` and ``python -m pipelines.batch``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        stats = run(settings)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("BIGBIRD_DEBUG"):
            raise
        message = str(e).splitlines()
        if hasattr(e, "errors"):  # pydantic: one line per bad field
            message = [f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors()]
        print(f"bigbird batch: error: {'; '.join(message)}", file=sys.stderr)
        return 2
    print(f"bigbird batch: done: {stats.summary()}")
    print(f"bigbird batch: output: {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
