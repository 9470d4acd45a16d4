"""``bigbird finetune``: run a fine-tuning or pre-training job on a Ray cluster and export the best model.

    bigbird finetune --config jobs/configs/rrna16s_phylum.yaml [--address RAY_ADDRESS] [--override k=v ...]
    python -m jobs.finetune --config ...
    ray job submit --working-dir . -- python -m jobs.finetune --config ... --base-dir "$PWD"

Paths follow :func:`bigbird.paths.resolve_path`: URIs and absolute paths as given; relative ones against
``--base-dir`` or the current directory, except that under ``ray job submit`` a relative path that did not come
with the uploaded working dir (``data/``, every output) is refused before any work.

Re-running the same command (same ``run.name`` and ``run.storage_path``) resumes from the run's latest
checkpoint. At the end the best checkpoint (or the last, ``run.export: last``) is copied, without optimizer
state, to ``run.export_dir``: a HuggingFace-format folder that ``bigbird.tasks.pipeline(task, folder)`` and
``BigBirdFor...from_pretrained(folder)`` load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bigbird.hub import is_local
from bigbird.paths import RelativePathError, is_uri, resolve_path
from jobs.settings import (
    KMER_TOKENIZER,
    PIPELINE_TASK,
    JobSettings,
    builtin_tokenizer,
    check_sources,
    load_settings,
)

EPILOG = """examples:
  bigbird finetune --config jobs/configs/rrna16s_phylum.yaml
  bigbird finetune --config jobs/configs/rrna16s_phylum.yaml --override train.max_steps=20 \\
      --override data.limit=200 --override run.name=short --override run.export_dir=outputs/models/short
                                            # a short run: 20 steps on 200 records, its own run and export
  bigbird finetune --config jobs/configs/squad_qa.yaml --override train.epochs=1 --override scaling.num_workers=2
  ray job submit --working-dir . -- python -m jobs.finetune --config jobs/configs/rrna16s_phylum.yaml \\
      --base-dir "$PWD"      # relative paths (data/, outputs/) against the submitting directory

Under `ray job submit` the driver runs in a temporary copy of the working dir without its .gitignore'd files:
pass --base-dir "$PWD" (a local cluster, or a filesystem every node shares), absolute paths or URIs
(s3://, gs://; endpoint and region in the storage section). A relative path it cannot honour is refused.

Overrides use dotted keys and YAML values: train.lr=3e-4, data.eval_fraction=0.1, model.unigram.vocab_size=512.
Re-running a command with the same run.name resumes from its latest checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bigbird finetune", description="Fine-tune or pre-train a BigBird with Ray Train, then export it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="YAML", help="job file (see jobs/configs/)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a "
                                                        "new local cluster)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting, e.g. train.lr=1e-4 (repeatable)")
    parser.add_argument("--base-dir", default=None, metavar="DIR",
                        help="resolve relative paths of the job file against DIR (absolute; e.g. \"$PWD\" "
                             "under ray job submit)")
    parser.add_argument("--check", action="store_true", help="validate the settings and inputs, then exit")
    return parser


# ------------------------------------------------------------------------------------------- the pieces
def _model_path(value: str | None, setting: str, base_dir: str | None) -> str | None:
    """A model / tokenizer setting: a path by :func:`resolve_path` when it names one, else kept (a hub id,
    ``dna``, ``unigram``)."""
    if value is None or builtin_tokenizer(value):
        return value
    under_base = base_dir is not None and (Path(base_dir).expanduser() / value).exists()
    return resolve_path(value, setting=setting, base_dir=base_dir) if is_uri(value) or is_local(value) \
        or under_base else value


def resolve_paths(settings: JobSettings, base_dir: str | None = None) -> JobSettings:
    """Every path setting by :func:`bigbird.paths.resolve_path` (absolute, so Ray workers, which do not share
    the driver's working directory, find them; ``file://`` made local); idempotent.

    Raises:
        bigbird.paths.RelativePathError: A relative path under ``ray job submit`` that cannot work there.
    """
    refused: list[RelativePathError] = []

    def rule(value: str | None, setting: str, output: bool = False) -> str | None:
        try:
            if setting.startswith("model."):
                return _model_path(value, setting, base_dir)
            return None if value is None else resolve_path(value, setting=setting, output=output, base_dir=base_dir)
        except RelativePathError as e:
            refused.append(e)
            return value

    d, m = settings.data, settings.model
    data = d.model_copy(update={"train": rule(d.train, "data.train"), "eval": rule(d.eval, "data.eval")})
    model = m.model_copy(update={"from_pretrained": rule(m.from_pretrained, "model.from_pretrained"),
                                 "tokenizer": rule(m.tokenizer, "model.tokenizer")})
    run = settings.run.model_copy(update={
        "storage_path": rule(settings.run.storage_path, "run.storage_path", output=True),
        "export_dir": rule(settings.export_path(), "run.export_dir", output=True)})
    if refused:  # the first in full, the others by name: one line
        others = [str(e).split(" ", 1)[0] for e in refused[1:]]
        raise RelativePathError(str(refused[0]) + (f" (the same for {', '.join(others)})" if others else ""))
    return settings.model_copy(update={"run": run, "model": model, "data": data})


def train_texts(settings: JobSettings, sample: int | None = None) -> list[str]:
    """Whole texts of the training split (hold-out removed, ``limit`` applied; ``max_chars`` is not, so a
    truncation baseline gets the same vocabulary); with ``sample``, that many spread evenly over the split
    (corpora are often sorted, e.g. by taxon)."""
    import pyarrow.dataset as pads

    from bigbird.splits import in_holdout
    from jobs.storage import filesystem

    d = settings.data
    fs, inner = filesystem(d.train, settings.storage)
    table = pads.dataset(inner, filesystem=fs, format="parquet").to_table(columns=[d.columns.id, d.columns.text])
    ids, texts = table.column(0).to_pylist(), table.column(1).to_pylist()
    if d.eval_fraction is not None:
        held = in_holdout(ids, d.eval_fraction, d.split_seed)
        texts = [t for t, h in zip(texts, held) if not h]
    texts = [t for t in texts[: d.limit] if isinstance(t, str) and t]
    if sample is not None and len(texts) > sample:
        texts = texts[:: len(texts) // sample][:sample]
    return texts


def resolve_tokenizer(settings: JobSettings) -> Any:
    """``dna`` -> DNATokenizer; ``unigram`` -> learnt from the train split (kept in the run folder, so a
    resumed run gets the same vocabulary); otherwise a folder or hub id (default: the model's)."""
    from bigbird.tokenization import BigBirdTokenizer, DNATokenizer, KmerDNATokenizer

    spec = settings.model.tokenizer or settings.model.from_pretrained
    if spec == "dna":
        return DNATokenizer()
    kmer = KMER_TOKENIZER.fullmatch(spec or "")
    if kmer is not None:
        return KmerDNATokenizer(k=int(kmer.group(1)))
    if spec == "unigram":
        u = settings.model.unigram
        cache = None if is_uri(settings.run.storage_path) else (
            Path(settings.run.storage_path) / settings.run.name / "tokenizer")
        if cache is not None and (cache / "tokenizer.json").is_file():
            return BigBirdTokenizer.from_pretrained(cache)
        tokenizer = BigBirdTokenizer.train_unigram(train_texts(settings, u.sample), u.vocab_size,
                                                   add_prefix_space=u.add_prefix_space,
                                                   max_piece_length=u.max_piece_length)
        if cache is not None:
            tokenizer.save_pretrained(cache)
        return tokenizer
    return BigBirdTokenizer.from_pretrained(spec)


def check_model_fits(settings: JobSettings) -> None:
    """A pretrained model must have room for ``data.max_length`` positions."""
    from bigbird import BigBirdConfig

    if settings.model.from_pretrained is None:
        return
    config = BigBirdConfig.from_pretrained(settings.model.from_pretrained, **settings.model.config_overrides)
    if settings.data.max_length > config.max_position_embeddings:
        raise ValueError(f"data.max_length {settings.data.max_length} exceeds the model's "
                         f"max_position_embeddings {config.max_position_embeddings}")


def choose_checkpoint(result: Any, settings: JobSettings) -> tuple[Any, dict[str, Any]]:
    """The checkpoint to export: the best by the selection metric (``run.export: best``) or the last."""
    from jobs.train_loop import SCORE, UNSCORED

    if settings.run.export == "best" and settings.has_eval:
        scored = [(c, m) for c, m in result.best_checkpoints or [] if m.get(SCORE, UNSCORED) > UNSCORED]
        if scored:  # ties go to the later checkpoint
            return max(scored, key=lambda cm: (cm[1][SCORE], cm[1].get("step", 0)))
    if result.checkpoint is None:
        raise RuntimeError("the run reported no checkpoint")
    latest = [m for c, m in result.best_checkpoints or [] if c.path == result.checkpoint.path]
    return result.checkpoint, latest[0] if latest else dict(result.metrics or {})


def export_checkpoint(checkpoint: Any, export_dir: str, storage: Any = None) -> str:
    """Copy a checkpoint (minus optimizer state) to ``export_dir`` (a folder, or a URI written with the
    ``storage`` options), replacing an earlier export there.

    Raises:
        FileExistsError: If ``export_dir`` is a non-empty local folder that is not a model folder.
    """
    import tempfile

    from jobs.settings import StorageSettings
    from jobs.storage import upload_folder
    from jobs.train_loop import OPTIMIZER_FILE

    if is_uri(export_dir):
        with checkpoint.as_directory() as src, tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(src, Path(tmp) / "model", ignore=shutil.ignore_patterns(OPTIMIZER_FILE))
            upload_folder(str(Path(tmp) / "model"), export_dir, storage or StorageSettings())
        return export_dir
    dst = Path(export_dir)
    if dst.exists() and (not dst.is_dir() or (any(dst.iterdir()) and not (dst / "config.json").exists())):
        raise FileExistsError(f"run.export_dir {str(dst)!r} exists and is not a model folder; choose another")
    staging = dst.with_name(dst.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with checkpoint.as_directory() as src:
        shutil.copytree(src, staging, ignore=shutil.ignore_patterns(OPTIMIZER_FILE))
    if dst.exists():
        shutil.rmtree(dst)
    staging.rename(dst)
    return str(dst)


def run(settings: JobSettings, *, address: str | None = None, base_dir: str | None = None) -> dict[str, Any]:
    """Prepare the data, train on the cluster, export; returns a summary (export folder, metrics, ...).

    Raises:
        ValueError / FileNotFoundError: Bad inputs found while preparing.
        ray.train.TrainingFailedError: Training failed more often than ``run.max_failures``.
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from jobs.data import prepare
    from jobs.storage import filesystem, runtime_env
    from jobs.train_loop import FAIL_MARKER, SCORE, train_loop

    started = time.perf_counter()
    settings = resolve_paths(settings, base_dir)
    if not ray.is_initialized():  # the storage options reach every worker of the job through its runtime env
        ray.init(address=address, runtime_env=runtime_env(settings.storage) or None)
    check_model_fits(settings)
    tokenizer = resolve_tokenizer(settings)
    prepared = prepare(settings, tokenizer)
    s = settings.scaling
    use_gpu = s.use_gpu if s.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) >= s.num_workers
    storage = settings.run.storage_path
    storage_fs, storage_inner = filesystem(storage, settings.storage)
    marker = None if is_uri(storage) else str(Path(storage) / settings.run.name / FAIL_MARKER)
    for ds in (prepared.train, prepared.eval):
        if ds is not None:  # no progress bars from every worker's reads (they interleave with its log lines)
            ds.context.enable_progress_bars = False
    print(f"[finetune] {settings.task}: {prepared.counts}; {s.num_workers} workers, gpu={use_gpu}", flush=True)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"settings": settings.model_dump(), "tokenizer": tokenizer, "labels": prepared.labels,
                           "fail_marker": marker, "train_windows": prepared.counts["train_windows"]},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": s.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(
            name=settings.run.name, storage_path=storage_inner, storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=settings.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.run.num_to_keep, checkpoint_score_attribute=SCORE,
                                               checkpoint_score_order="max")),
        datasets={"train": prepared.train, **({"eval": prepared.eval} if prepared.eval is not None else {})},
        # the deterministic plan needs every window on every worker; streaming splits them
        dataset_config=DataConfig(datasets_to_split=["train"] if settings.data.streaming else []),
    )
    result = trainer.fit()
    checkpoint, chosen = choose_checkpoint(result, settings)
    export = export_checkpoint(checkpoint, settings.export_path(), settings.storage)
    return {"export_dir": str(export), "task": PIPELINE_TASK[settings.task], "checkpoint": checkpoint.path,
            "metrics": {k: v for k, v in chosen.items() if isinstance(v, (int, float, str))},
            "run_dir": str(result.path), "counts": prepared.counts,
            "wall_time_s": round(time.perf_counter() - started, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 done, 1 failed, 2 bad settings or inputs)."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, args.override)
        settings = resolve_paths(settings, args.base_dir)  # before any work: refuses paths that cannot work
        check_sources(settings)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(settings.model_dump(), indent=1))
        return 0
    from ray.train import TrainingFailedError

    try:
        summary = run(settings, address=args.address, base_dir=args.base_dir)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingFailedError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        print(f"error: training failed: {first}", file=sys.stderr)
        return 1
    m = summary["metrics"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k.startswith("eval_") and isinstance(v, float))
    print(f"[finetune] exported {summary['export_dir']} (step {m.get('step')}, epoch {m.get('epoch')})"
          + (f": {shown}" if shown else ""))
    print(f"[finetune] load it with bigbird.tasks.pipeline({summary['task']!r}, {summary['export_dir']!r}); "
          f"wall time {summary['wall_time_s']} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
