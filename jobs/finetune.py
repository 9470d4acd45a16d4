"""``bigbird finetune``: run a fine-tuning or pre-training job on a Ray cluster and export the best model.

    bigbird finetune --config jobs/configs/rrna16s_phylum.yaml [--address RAY_ADDRESS] [--override k=v ...]
    python -m jobs.finetune --config ...
    ray job submit --working-dir . -- python -m jobs.finetune --config ...

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

from jobs.settings import PIPELINE_TASK, JobSettings, check_sources, is_uri, load_settings

EPILOG = """examples:
  bigbird finetune --config jobs/configs/rrna16s_phylum.yaml
  bigbird finetune --config jobs/configs/squad_qa.yaml --override train.epochs=1 --override scaling.num_workers=2
  ray job submit --working-dir . -- python -m jobs.finetune --config jobs/configs/wiki_mlm.yaml

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
    parser.add_argument("--check", action="store_true", help="validate the settings and inputs, then exit")
    return parser


# ------------------------------------------------------------------------------------------- the pieces
def _absolute(path: str) -> str:
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def _absolute_if_local(path: str | None) -> str | None:
    return _absolute(path) if path is not None and not is_uri(path) and Path(path).expanduser().exists() else path


def resolve_paths(settings: JobSettings) -> JobSettings:
    """Local paths made absolute: Ray workers do not share the driver's working directory."""
    run = settings.run.model_copy(update={"storage_path": _absolute(settings.run.storage_path),
                                          "export_dir": _absolute(settings.export_path())})
    m = settings.model
    model = m.model_copy(update={"from_pretrained": _absolute_if_local(m.from_pretrained),
                                 "tokenizer": _absolute_if_local(m.tokenizer) if m.tokenizer not in ("dna", "unigram")
                                 else m.tokenizer})
    data = settings.data.model_copy(update={"train": _absolute_if_local(settings.data.train),
                                            "eval": _absolute_if_local(settings.data.eval)})
    return settings.model_copy(update={"run": run, "model": model, "data": data})


def train_texts(settings: JobSettings, sample: int | None = None) -> list[str]:
    """Whole texts of the training split (hold-out removed, ``limit`` applied; ``max_chars`` is not, so a
    truncation baseline gets the same vocabulary); with ``sample``, that many spread evenly over the split
    (corpora are often sorted, e.g. by taxon)."""
    import pyarrow.dataset as pads

    from bigbird.splits import in_holdout

    d = settings.data
    table = pads.dataset(d.train, format="parquet").to_table(columns=[d.columns.id, d.columns.text])
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
    from bigbird.tokenizer import BigBirdTokenizer

    spec = settings.model.tokenizer or settings.model.from_pretrained
    if spec == "dna":
        return BigBirdTokenizer.for_dna()
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


def export_checkpoint(checkpoint: Any, export_dir: str) -> Path:
    """Copy a checkpoint (minus optimizer state) to ``export_dir``, replacing an earlier export there.

    Raises:
        FileExistsError: If ``export_dir`` is a non-empty folder that is not a model folder.
    """
    from jobs.train_loop import OPTIMIZER_FILE

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
    return dst


def run(settings: JobSettings, *, address: str | None = None) -> dict[str, Any]:
    """Prepare the data, train on the cluster, export; returns a summary (export folder, metrics, ...).

    Raises:
        ValueError / FileNotFoundError: Bad inputs found while preparing.
        ray.train.TrainingFailedError: Training failed more often than ``run.max_failures``.
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from jobs.data import prepare
    from jobs.train_loop import FAIL_MARKER, SCORE, train_loop

    started = time.perf_counter()
    settings = resolve_paths(settings)
    if not ray.is_initialized():
        ray.init(address=address)
    check_model_fits(settings)
    tokenizer = resolve_tokenizer(settings)
    prepared = prepare(settings, tokenizer)
    s = settings.scaling
    use_gpu = s.use_gpu if s.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) >= s.num_workers
    storage = settings.run.storage_path
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
            name=settings.run.name, storage_path=storage,
            failure_config=FailureConfig(max_failures=settings.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.run.num_to_keep, checkpoint_score_attribute=SCORE,
                                               checkpoint_score_order="max")),
        datasets={"train": prepared.train, **({"eval": prepared.eval} if prepared.eval is not None else {})},
        # the deterministic plan needs every window on every worker; streaming splits them
        dataset_config=DataConfig(datasets_to_split=["train"] if settings.data.streaming else []),
    )
    result = trainer.fit()
    checkpoint, chosen = choose_checkpoint(result, settings)
    export = export_checkpoint(checkpoint, settings.export_path())
    return {"export_dir": str(export), "task": PIPELINE_TASK[settings.task], "checkpoint": checkpoint.path,
            "metrics": {k: v for k, v in chosen.items() if isinstance(v, (int, float, str))},
            "run_dir": str(result.path), "counts": prepared.counts,
            "wall_time_s": round(time.perf_counter() - started, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 done, 1 failed, 2 bad settings or inputs)."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, args.override)
        check_sources(settings)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(settings.model_dump(), indent=1))
        return 0
    from ray.train import TrainingFailedError

    try:
        summary = run(settings, address=args.address)
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
