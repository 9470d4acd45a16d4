"""``bigbird batch``: score a parquet corpus with Ray Data and write one result row per record.

    plan blocks (driver: footers, ids, output folder) -> read + tokenize + window each block (CPU tasks)
    -> Scorer (model actors: a block's windows scored together, merged per record, written as one file)

Any corpus, however few files, is read as blocks of bounded size (--block-records, --block-bytes) and each
block's results are written as soon as it is scored, so a job stopped at any moment keeps every block written;
re-running it scores only the rest, each record exactly once. The output folder holds the job's manifest
(_bigbird_batch.json) and its part-*.parquet files; the job never deletes or resumes from anything else and
refuses an output folder holding parquet files it did not write. Run locally (a Ray cluster sized to the
machine is started) or on a cluster with --address / ray job submit --working-dir . -- python -m pipelines.batch.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bigbird import settings_io
from bigbird.commands import UsageError, fail
from bigbird.paths import resolve_path
from bigbird.tasks.spec import DEFAULT_STRIDE
from pipelines import console, errors, lease, manifest, stages
from pipelines.inputs import JobPlan, check_job, plan_job, plan_output, scan_input
from pipelines.progress import Progress, follow
from pipelines.settings import BATCH_TASKS, BatchSettings

__all__ = ["JobStats", "run", "main", "scan_input", "plan_job", "check_resources"]
STORAGE_FLAG = "storage_"  # --storage-endpoint etc.: the fields of the settings' ``storage`` section
RESOURCE_GRACE_S = 20.0  # how long a cluster may lack the CPUs/GPUs the job needs before it is stopped


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


def check_resources(cluster: dict[str, float], *, actors: int, actor_cpus: float, actor_gpus: float) -> None:
    """Raise if the cluster cannot run the model actors and one read task at once (the job would wait forever).

    Raises:
        ValueError: Naming what the cluster has and what the job needs.
    """
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    need_cpus, need_gpus = actors * actor_cpus + 1, actors * actor_gpus
    if cpus >= need_cpus and gpus >= need_gpus:
        return
    gpu_part = f" and {need_gpus:g} GPU(s)" if need_gpus else ""
    raise ValueError(f"the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s), but the job needs {need_cpus:g} "
                     f"CPU(s){gpu_part} at once ({actors} model actor(s) with {actor_cpus:g} CPU and {actor_gpus:g} "
                     f"GPU each, plus 1 CPU to read and tokenize); it would wait forever: use fewer --actors or a "
                     f"larger cluster")


def _watchdog(ray: Any, **need: float) -> Callable[[], None]:
    """A check for :func:`follow`: raises once the cluster has lacked the resources for RESOURCE_GRACE_S."""
    since: list[float] = []

    def check() -> None:
        try:
            check_resources(ray.cluster_resources(), **need)
            since.clear()
        except ValueError as e:
            since.append(time.monotonic())
            if since[-1] - since[0] >= RESOURCE_GRACE_S:
                raise ValueError(f"stopped: for {RESOURCE_GRACE_S:.0f} s {e}") from None

    return check


def run(settings: BatchSettings, report: Callable[[str], None] | None = None) -> JobStats:
    """Run the job on the current Ray cluster (started locally if none) and return its statistics.

    Everything that can be checked without Ray (settings against the model's config, input columns and ids,
    the output folder) is checked first; ``report`` receives the progress lines (default: stderr).
    """
    start = time.perf_counter()
    report = report or (lambda line: print(f"bigbird batch: {line}", file=sys.stderr, flush=True))
    # Resolved on the driver: workers of a running cluster have other working directories.
    settings = with_resolved_paths(settings)
    checked = check_job(settings)
    fs, root = stages.filesystem(settings.output, settings.storage)
    held = lease.Lease(lease.store_for(fs, root, settings.output, settings.storage), settings.output,
                       report=report)
    job, progress = None, None
    try:
        held.acquire()  # before the folder is read: one job plans and writes it at a time
        held.start()
        job = plan_output(settings, checked)
        progress = Progress(total=sum(p.rows for p in job.parts), skipped=job.skipped)
        if job.parts:
            _execute(settings, job, progress, report, held)
            held.check()
            report(progress.line())
    except Exception as e:
        found = errors.find_io_error(e)
        if found is None:
            raise
        raise errors.job_io_error(*found, **_kept(fs, root, job, progress, checked.scan.rows)) from e
    finally:
        held.release()
    return JobStats(records=progress.records, errors=progress.errors, tokens=progress.tokens,
                    padding_tokens=progress.padding_tokens, skipped=job.skipped,
                    seconds=time.perf_counter() - start)


def _kept(fs: Any, root: str, job: JobPlan | None, progress: Progress | None, total: int) -> dict[str, Any]:
    """The records a failed job keeps: those its run wrote and earlier runs had (once it planned), else the
    part files in the output folder; None if neither can be known."""
    if job is not None and progress is not None:
        return {"kept": job.skipped + progress.records, "total": total}
    try:
        folder = manifest.inspect(fs, root)
    except Exception:  # the folder itself is what failed
        return {"kept": None, "total": total}
    extra = set(manifest.settle_overlaps(folder.parts))
    return {"kept": sum(b - a for n, (_, a, b) in folder.parts.items() if n not in extra), "total": total}


def stage_remote_args(settings: BatchSettings) -> dict[str, Any]:
    """Ray arguments of the job's read and model stages: the runtime env that hands the object-storage options
    to every worker that runs them, on any node (``AWS_ENDPOINT_URL``, ``AWS_REGION``;
    :func:`jobs.storage.runtime_env`). Ray merges its variables into the job's own runtime env."""
    from jobs.storage import runtime_env

    env = runtime_env(settings.storage)
    return {"runtime_env": env} if env else {}


def _execute(settings: BatchSettings, job: JobPlan, progress: Progress, report: Callable[[str], None],
             held: lease.Lease) -> None:
    import ray
    from ray.data import ActorPoolStrategy

    if not ray.is_initialized():
        level = {} if settings.verbose else {"logging_level": logging.WARNING}  # no "Started a local Ray" line
        if settings.address or os.environ.get("RAY_ADDRESS"):  # a cluster named, or `ray job submit`'s
            ray.init(address=settings.address, include_dashboard=False, log_to_driver=True, **level)
        else:  # a new local cluster (not another one running here); 2 CPUs at least so 1-core hosts still run
            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=True, **level)
    gpus = ray.cluster_resources().get("GPU", 0)
    on_cpu = settings.device == "cpu" or settings.quantize is not None  # int8 runs on the CPU
    num_gpus = settings.num_gpus if settings.num_gpus is not None else (1 if gpus and not on_cpu else 0)
    actors = settings.actors or (max(1, int(gpus // num_gpus)) if num_gpus else 1)
    actor_cpus = 0 if num_gpus else 1
    need = {"actors": actors, "actor_cpus": actor_cpus, "actor_gpus": num_gpus}
    check_resources(ray.cluster_resources(), **need)
    common = {"model": settings.model, "task": settings.task, "max_length": job.max_length, "stride": settings.stride,
              "revision": settings.revision}
    items = [{"file": u[0].file, "path": u[0].path, "starts": [p.start for p in u], "stops": [p.stop for p in u]}
             for u in job.units]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # Each prepared block its own Ray block, handed on as soon as it is yielded (a read unit yields many):
    # below Ray's default target of 128 MiB, a unit's blocks would wait to fill one.
    ds.context.target_max_block_size = 1
    if not settings.verbose:
        console.quiet_dataset(ds)
    remote = stage_remote_args(settings)  # the storage options: in the filesystem objects and the runtime env
    ds = ds.map_batches(stages.prepare_blocks, batch_format="pyarrow", batch_size=1, **remote, fn_kwargs={
        **common, "config": job.config, "input_uri": settings.input, "id_column": settings.id_column,
        "text_column": settings.text_column, "question_column": settings.question_column,
        "question": settings.question, "offset_column": settings.offset_column, "keep_columns": tuple(settings.kept),
        "storage": settings.storage, "lease_token": held.token})
    ds = ds.map_batches(
        stages.Scorer, batch_format="pyarrow", batch_size=1, compute=ActorPoolStrategy(size=actors),
        num_gpus=num_gpus, num_cpus=actor_cpus, **remote,
        fn_constructor_kwargs={**common, "batch_size": settings.batch_size, "max_tokens": settings.max_tokens,
                               "threads": settings.threads, "actors": actors,
                               "params": job.params, "schema": job.schema, "output_uri": settings.output,
                               "storage": settings.storage, "device": settings.device, "dtype": settings.dtype,
                               "quantize": settings.quantize})
    watchdog = _watchdog(ray, **need)

    def check() -> None:
        held.check()
        watchdog()

    with contextlib.nullcontext() if settings.verbose else console.quiet():
        follow(ds.iter_rows, progress, interval=settings.progress_seconds, report=report, check=check)


EXAMPLE = f"""output folder:
  The job writes {manifest.MANIFEST} (its settings and input files) and one part-*.parquet per block; re-runs
  resume from those only. It refuses an --output holding other parquet files (never deleting or skipping
  them); --no-resume replaces only its own part files. One job writes a folder at a time: a job holds
  its lease ({lease.LEASE}, renewed every {lease.RENEW_S:.0f} s, removed at the end); another job refuses it,
  naming the holder, until it is released or not renewed for {lease.TTL_S:.0f} s (a killed job: taken over).

examples:
  bigbird batch --task text-classification --model models/rrna16s-phylum \\
      --input data/rrna16s --output outputs/rrna16s-phylum
  bigbird batch --task question-answering --model google/bigbird-base-trivia-itc \\
      --input s3://bucket/docs --question-column question --output s3://bucket/answers --address auto
  bigbird batch --task text-classification --model models/rrna16s-phylum --input s3://corpora/rrna16s \\
      --output s3://results/rrna16s --storage-endpoint http://minio.internal:9000 --storage-region us-east-1
  bigbird batch --task text-classification --model s3://models/rrna16s-phylum --quantize int8 \
      --input s3://corpora/rrna16s --output s3://results/rrna16s-int8 --storage-endpoint http://minio:9000
  ray job submit --working-dir . -- python -m pipelines.batch --task token-classification ...

object storage:
  s3:// and gs:// paths use pyarrow's defaults (credentials from the usual AWS_* / GOOGLE_* variables and
  files) unless --storage-endpoint (an S3-compatible or GCS server), --storage-region or --storage-anonymous
  (public buckets, no credentials) is given, or a YAML `storage:` section (endpoint, region, anonymous). The
  driver and every worker open the paths with them; the workers also get AWS_ENDPOINT_URL / AWS_REGION in
  their runtime env. An s3:// or gs:// --model is copied once per node into ~/.cache/bigbird (BIGBIRD_CACHE),
  keyed by its objects' sizes and times: a new export is fetched again.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bigbird batch", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of these settings (flags override it)")
    p.add_argument("--task", choices=BATCH_TASKS)
    p.add_argument("--model", help="model folder or hub id")
    p.add_argument("--input", help="parquet file or folder (local, s3://, gs://, ...)")
    p.add_argument("--output", help="output folder: the job's own (refused if it holds other parquet files)")
    p.add_argument("--id-column", help="unique, non-null id per record, copied to the output as it is")
    p.add_argument("--text-column")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--question-column", help="question per record (question-answering)")
    q.add_argument("--question", help="one question for the whole corpus (question-answering)")
    p.add_argument("--offset-column", help="genome coordinate of each record's first base (spans are shifted)")
    p.add_argument("--keep-columns", nargs="+", metavar="COLUMN[=NEW]",
                   help="input columns to copy into the output, optionally renamed (label=label_true)")
    p.add_argument("--max-length", type=int, help="tokens per window (default: the model's maximum)")
    p.add_argument("--stride", type=int, help=f"overlap between windows, in tokens (default {DEFAULT_STRIDE})")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default 8)")
    p.add_argument("--max-tokens", type=int, help="cap on tokens per forward pass")
    p.add_argument("--block-records", type=int, help="records per block, one result file each (default 256)")
    p.add_argument("--block-bytes", type=int, help="text bytes per block at most (default 2000000)")
    p.add_argument("--actors", type=int, help="model actors (default: one per GPU, else 1)")
    p.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 when the cluster has GPUs)")
    p.add_argument("--threads", type=int,
                   help="torch threads per CPU actor (default: the CPUs of the actor's node / --actors)")
    p.add_argument("--device", help="where the model actors score: auto (default: CUDA if the actor sees one), "
                   "cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="weight dtype (default: the checkpoint's; float16 on CUDA only)")
    p.add_argument("--quantize", choices=("int8",), help="int8: dynamic int8 linear layers (CPU actors)")
    p.add_argument("--revision", help="hub revision of --model")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--storage-endpoint", metavar="URL", help="S3-compatible or GCS endpoint, e.g. "
                   "http://minio:9000 (default: the provider's)")
    p.add_argument("--storage-region", metavar="REGION", help="bucket region, e.g. eu-west-3 (S3)")
    p.add_argument("--storage-anonymous", action="store_true", default=None,
                   help="access s3:// / gs:// without credentials (public buckets)")
    p.add_argument("--progress-seconds", type=float, help="seconds between progress lines (default 5)")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="score every record again, replacing the job's own earlier results")
    p.add_argument("--limit", type=int, help="only the first N records")
    p.add_argument("--verbose", action="store_true", default=None,
                   help="also Ray Data's progress bars and Ray's own log lines (default: ours only)")
    return p


def settings_from_args(args: argparse.Namespace) -> BatchSettings:
    """The settings of the command line: ``--config``'s YAML file (:func:`bigbird.settings_io.read_yaml`) with
    the flags on top.

    Raises:
        FileNotFoundError: If ``--config`` names no file.
        UsageError: For invalid settings, one clause per bad field (:func:`bigbird.settings_io.format_errors`).
    """
    values = {k: v for k, v in vars(args).items()
              if k != "config" and not k.startswith(STORAGE_FLAG) and v is not None}
    storage = {k[len(STORAGE_FLAG):]: v for k, v in vars(args).items() if k.startswith(STORAGE_FLAG) and v is not None}
    if storage:
        values["storage"] = storage
    try:
        return BatchSettings.from_yaml(args.config, **values) if args.config else BatchSettings(**values)
    except ValidationError as e:
        raise UsageError(f"invalid batch settings: {settings_io.format_errors(e)}") from None


def with_resolved_paths(settings: BatchSettings) -> BatchSettings:
    """``--input``/``--output`` by the one path rule (:func:`bigbird.paths.resolve_path`): URIs and absolute paths
    as given, relative ones against this directory; under ``ray job submit`` a relative output, or an input
    that did not come with the upload, is refused before any work."""
    return settings.model_copy(update={
        "input": resolve_path(settings.input, setting="--input", fix="--input {path}", base_option=None),
        "output": resolve_path(settings.output, setting="--output", output=True, fix="--output {path}",
                               base_option=None)})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bigbird batch`` and ``python -m pipelines.batch``; the exit status follows
    :mod:`bigbird.commands` (1: the job could not run, 2: bad settings; ``BIGBIRD_DEBUG=1`` shows tracebacks)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        stats = run(settings)
    except (Exception, KeyboardInterrupt) as e:
        return fail("bigbird batch", e)
    print(f"bigbird batch: done: {stats.summary()}")
    print(f"bigbird batch: output: {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
