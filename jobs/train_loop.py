"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one copy per worker).

DDP through ``ray.train.torch.prepare_model`` (gloo on CPU, NCCL on GPU), AdamW with linear warm-up and
decay, gradient accumulation, clipping, optional bf16 autocast and gradient checkpointing, held-out
evaluation every ``eval_every_epochs`` epochs, and checkpoints in HuggingFace format reported with
``ray.train.report``. A restarted worker group (or a re-run of the same job) resumes from
``ray.train.get_checkpoint()``: weights, optimizer, scheduler and step, skipping the steps already done.

Checkpoint folder: ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files,
``optimizer.pt`` (optimizer and scheduler state, loaded with ``weights_only=True``) and
``trainer_state.json`` (step, epoch, metrics, the step ranges each attempt ran, the loss log).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bigbird
from bigbird.tasks import SPECS
from jobs.data import PlannedBatches, StreamedBatches, WindowStore
from jobs.evaluation import count, metrics
from jobs.examples import mask_tokens
from jobs.settings import JobSettings

MODEL_CLASSES = {spec.train_name: spec.model_class for spec in SPECS.values()}  # training task -> model class
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
FAIL_MARKER = ".fail_injected"
# Ray Train rewrites this file in the run folder each time its controller registers a checkpoint; its
# "latest_checkpoint_result" holds that checkpoint's reported metrics.
RAY_CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"
SCORE = "checkpoint_score"  # what Ray ranks checkpoints by (higher is better)
UNSCORED = -1e30  # checkpoints taken without evaluation (finite: Ray's run snapshot is JSON)


def selection_score(settings: JobSettings, eval_metrics: dict[str, float] | None) -> float:
    """The selection metric oriented so that higher is better; UNSCORED without evaluation."""
    name, mode = settings.metric
    if not eval_metrics or name not in eval_metrics or not math.isfinite(eval_metrics[name]):
        return UNSCORED
    return eval_metrics[name] if mode == "max" else -eval_metrics[name]


def build_model(settings: JobSettings, tokenizer: Any, labels: list[str] | None) -> torch.nn.Module:
    """A new model (``from_scratch``) or a saved one (``from_pretrained``) with the task's head and labels.

    Seeded with ``train.seed``, so every worker builds the same initial weights.
    """
    cls = MODEL_CLASSES[settings.task]
    fields: dict[str, Any] = {}
    if labels:
        fields = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    if settings.task == "text-classification":
        multi = settings.data.multi_label
        fields["problem_type"] = "multi_label_classification" if multi else "single_label_classification"
    torch.manual_seed(settings.train.seed)
    m = settings.model
    if m.from_scratch is not None:
        config = bigbird.BigBirdConfig(**m.from_scratch, **fields, vocab_size=len(tokenizer),
                                       pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id)
        return cls(config)
    return cls.from_pretrained(m.from_pretrained, **m.config_overrides, **fields)


def linear_schedule(step: int, *, warmup: int, total: int) -> float:
    """LR factor: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(model: torch.nn.Module, settings: JobSettings, total: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on biases and LayerNorm weights) and the warm-up + linear-decay schedule."""
    t = settings.train
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=t.lr)
    warmup = t.warmup_steps if t.warmup_steps is not None else int(t.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(linear_schedule, warmup=warmup, total=total))
    return opt, sched


def say(line: str) -> None:
    """One progress line on stdout (not ``print``: Ray Train's patched print would show it twice)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(setting)


def save_checkpoint(folder: Path, model: torch.nn.Module, tokenizer: Any, opt: torch.optim.Optimizer,
                    sched: Any, state: dict[str, Any]) -> None:
    """HF-format model + tokenizer, ``optimizer.pt`` and ``trainer_state.json`` into ``folder``."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, folder / OPTIMIZER_FILE)
    (folder / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


class _Reducer:
    """Sums across workers (identity on a single worker)."""

    def __init__(self, world: int) -> None:
        self.active = world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if not self.active:
            return np.asarray(values, dtype=np.float64)
        t = torch.as_tensor(np.asarray(values, dtype=np.float64))
        torch.distributed.all_reduce(t)
        return t.numpy()


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker entry point.

    Args:
        config: ``settings`` (a JobSettings dict), ``tokenizer``, ``labels`` (or None), ``fail_marker``
            (a path used only by the ``train.fail_at_step`` test hook).
    """
    import ray.train
    import ray.train.torch

    settings = JobSettings.model_validate(config["settings"])
    tokenizer, labels = config["tokenizer"], config["labels"]
    t, task = settings.train, settings.task
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    reduce = _Reducer(world)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "history": [], "log_history": [], "metrics": {}}
    saved_opt = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model = MODEL_CLASSES[task].from_pretrained(folder)
            state = json.loads((Path(folder) / STATE_FILE).read_text())
            saved_opt = torch.load(Path(folder) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    else:
        model = build_model(settings, tokenizer, labels)
    if getattr(model.base_model, "pooler", None) is not None:
        # No head here reads the pooler; frozen, DDP needs no find_unused_parameters.
        model.base_model.pooler.requires_grad_(False)
    if settings.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    ddp = ray.train.torch.prepare_model(model)
    bare = ddp.module if hasattr(ddp, "module") else ddp

    held_out: Any = None
    if settings.has_eval:
        batches = ray.train.get_dataset_shard("eval").iter_batches(batch_format="pyarrow")
        if task == "masked-lm":
            held_out = WindowStore.from_batches(batches, keep=slice(rank, None, world))
        else:
            held_out = [r for b in batches for r in b.to_pylist()][rank::world]

    per_worker, accum = t.batch_size, t.grad_accumulation
    global_batch = per_worker * world * accum
    num_labels = len(labels) if labels else None
    shard = ray.train.get_dataset_shard("train")
    if settings.data.streaming:
        train: PlannedBatches | StreamedBatches = StreamedBatches(
            shard, windows=config["train_windows"], world=world, per_worker=per_worker, accum=accum, seed=t.seed,
            shuffle_buffer=settings.data.shuffle_buffer, pad_id=tokenizer.pad_token_id, num_labels=num_labels)
    else:
        train = PlannedBatches(shard, rank=rank, world=world, per_worker=per_worker, accum=accum, seed=t.seed,
                               block_size=bare.config.block_size, pad_id=tokenizer.pad_token_id,
                               num_labels=num_labels)
    per_epoch = train.steps_per_epoch
    total = min(t.max_steps or per_epoch * t.epochs, per_epoch * t.epochs)
    opt, sched = make_optimizer(bare, settings, total)
    if saved_opt is not None:
        opt.load_state_dict(saved_opt["optimizer"])
        sched.load_state_dict(saved_opt["scheduler"])
    autocast = use_bf16(t.bf16, device)
    special = tokenizer.all_special_ids
    step = int(state["step"])
    state["history"].append([step + 1, step])  # steps this attempt runs: [first, last]
    if rank == 0:
        say(f"[train] {task}: {train.windows} windows{' (streamed)' if settings.data.streaming else ''}, {per_epoch} steps/epoch x {t.epochs} epochs -> {total} "
              f"steps; global batch {global_batch} ({world} workers x {per_worker} x {accum} accumulation); "
            f"starting at step {step}; bf16={autocast}")

    reported = 0  # the step of this attempt's last report

    def report(eval_metrics: dict[str, float] | None, epoch: int) -> None:
        nonlocal reported
        reported = step
        values = {"step": step, "epoch": epoch, "first_step": state["history"][-1][0],
                  SCORE: selection_score(settings, eval_metrics), **(eval_metrics or {})}
        if state["log_history"]:
            values["train_loss"] = state["log_history"][-1]["loss"]
        state.update(step=step, epoch=epoch, metrics=values)
        if rank != 0:
            ray.train.report(values, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), bare, tokenizer, opt, sched, state)
            ray.train.report(values, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    window_loss = window_n = window_tokens = window_time = 0.0  # since the last progress line
    epoch = step // per_epoch
    while step < total:
        start = step - epoch * per_epoch
        clock = time.perf_counter()
        for s, micro_batches in enumerate(train.epoch(epoch, start), start=start):
            _maybe_fail(t, step + 1, rank, config.get("fail_marker"), reported)
            torch.manual_seed(t.seed * 1_000_003 + step * 101 + rank)  # dropout: a function of the step
            for m, batch in enumerate(micro_batches):
                uids, lengths = batch.pop("uid"), batch.pop("length")
                if task == "masked-lm":
                    batch["input_ids"], batch["labels"] = mask_tokens(
                        batch["input_ids"], lengths.tolist(), uids.tolist(), seed=t.seed, epoch=epoch,
                        mask_id=tokenizer.mask_token_id, special_ids=special, vocab_size=bare.config.vocab_size,
                        probability=settings.data.mlm_probability)
                batch = {k: v.to(device) for k, v in batch.items()}
                sync = ddp.no_sync() if m < accum - 1 and hasattr(ddp, "no_sync") else contextlib.nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        loss = ddp(**batch).loss
                    (loss / accum).backward()
                window_loss += float(loss.detach()) / accum
                window_tokens += float(lengths.sum())
            window_n += 1
            if t.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(ddp.parameters(), t.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            state["history"][-1][1] = step
            window_time += time.perf_counter() - clock  # batching, forward, backward, update: not eval/checkpoints
            clock = time.perf_counter()
            if step % t.log_every == 0 or step == total:
                loss_sum, n, tokens, elapsed = reduce(np.array([window_loss, window_n, window_tokens, window_time]))
                entry = {"step": step, "loss": loss_sum / max(n, 1), "tokens_per_s": tokens / elapsed * world,
                         "lr": sched.get_last_lr()[0]}
                state["log_history"].append(entry)
                if rank == 0:
                    say(f"[train] step {step}/{total} epoch {epoch + 1} loss {entry['loss']:.4f} "
                        f"lr {entry['lr']:.2e} {entry['tokens_per_s']:,.0f} tokens/s")
                window_loss = window_n = window_tokens = window_time = 0.0
            if step == total or s == per_epoch - 1:
                break
            if t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0:
                report(None, epoch)
                clock = time.perf_counter()
        finished_epoch = step % per_epoch == 0
        due = finished_epoch and (epoch + 1) % t.eval_every_epochs == 0
        eval_metrics = None
        if held_out is not None and (due or step == total):
            eval_metrics = metrics(task, reduce(count(bare, tokenizer, settings, labels, held_out, device)), labels)
            bare.train()
            if rank == 0:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items())
                say(f"[eval] step {step} epoch {epoch + 1}: {shown}")
        epoch += int(finished_epoch)
        report(eval_metrics, epoch)


def _maybe_fail(t: Any, next_step: int, rank: int, marker: str | None, reported: int) -> None:
    """Test hook: fail once (recorded in ``marker``) on ``fail_rank`` just before ``fail_at_step``: raise, or
    (``fail_mode: kill``) SIGKILL this worker process, as a crashed or preempted machine would.

    It first waits (up to 60 s) until Ray Train has registered the checkpoint of the last report (step
    ``reported``): the controller collects one report per worker each time it polls them (every 2 s), and a
    report not yet collected dies with its worker, so without the wait a failure soon after a checkpoint restarts
    from an older one, or from scratch (seen once in CI: steps 1-5 took less than one poll)."""
    if t.fail_at_step is None or next_step != t.fail_at_step or rank != t.fail_rank or marker is None:
        return
    path = Path(marker)
    if path.exists():
        return
    deadline = time.monotonic() + 60
    while reported and _registered_step(path.parent / RAY_CHECKPOINT_SNAPSHOT) < reported:
        if time.monotonic() > deadline:
            print(f"[train] rank {rank}: the step-{reported} checkpoint is not registered after 60 s; failing "
                  "anyway", flush=True)
            break
        time.sleep(0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"failed ({t.fail_mode}) before step {next_step} on rank {rank}\n")
    if t.fail_mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure before step {next_step} on rank {rank} (train.fail_at_step)")


def _registered_step(snapshot: Path) -> int:
    """The step of the latest checkpoint Ray Train registered for the run (its snapshot file); 0 if none yet or
    the file is being rewritten."""
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        return int(latest.get("metrics", {}).get("step", 0))
    except (OSError, ValueError):
        return 0
