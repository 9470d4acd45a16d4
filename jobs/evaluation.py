"""Held-out evaluation, computed the way the model will be used: through the task pipelines.

Each worker scores its share of the held-out records and returns *counts* (sums), which the training loop
all-reduces before turning them into metrics, so the numbers do not depend on the worker count:

* question-answering: exact match and F1 of the pipeline's best answer against the gold answers;
* text-classification: accuracy and macro-F1 of the record-level prediction (window logits pooled);
* token-classification: span-level precision / recall / F1 of the pipeline's entities against the gold spans
  (as tokens can express them), exact start, end and label;
* masked-lm: loss and perplexity on windows masked with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bigbird.tasks import task_class
from bigbird.tasks.token_classification import group_tokens
from bigbird.windows import RecordError
from jobs.data import WindowStore
from jobs.examples import (
    OUTSIDE,
    answer_scores,
    mask_tokens,
    record_labels,
    token_tags,
    tokenize_with_offsets,
    truncate_to_first_window,
)
from jobs.settings import PIPELINE_TASK, JobSettings

EVAL_EPOCH = 2**32  # masking stream of the held-out windows (training epochs are small numbers)


def _pipeline(model: torch.nn.Module, tokenizer: Any, settings: JobSettings, device: torch.device) -> Any:
    cls = task_class(PIPELINE_TASK[settings.task])
    d = settings.data
    return cls(model, tokenizer, device=device, batch_size=max(8, settings.train.batch_size),
               max_length=d.max_length, stride=d.stride)


def _texts(records: list[dict], settings: JobSettings, tokenizer: Any) -> list[dict]:
    """Pipeline inputs ``{"text", ["question"]}``; ``max_chars`` and ``first_window_only`` cut the text as in
    training."""
    cols, d = settings.data.columns, settings.data
    out = []
    for r in records:
        item = {"text": r[cols.text]}
        if d.max_chars is not None and isinstance(item["text"], str):
            item["text"] = item["text"][: d.max_chars]
        if settings.task == "question-answering":
            item["question"] = r[cols.question]
        if d.first_window_only and isinstance(item["text"], str):
            q = len(tokenize_with_offsets(tokenizer, [item["question"]])[0][0]) + 1 if "question" in item else 0
            item["text"] = truncate_to_first_window(item["text"], tokenizer, d.max_length - 2 - q)
        out.append(item)
    return out


def count(model: torch.nn.Module, tokenizer: Any, settings: JobSettings, labels: list[str] | None,
          data: list[dict] | WindowStore, device: torch.device) -> np.ndarray:
    """This worker's evaluation counts (float64 vector; sum across workers, then :func:`metrics`).

    Args:
        model: The bare (not DDP-wrapped) model; left in eval mode.
        data: Held-out records (dicts with the parquet columns), or a WindowStore for masked-lm.
    """
    if settings.task == "masked-lm":
        return _mlm_counts(model, tokenizer, settings, data, device)
    pipe = _pipeline(model, tokenizer, settings, device)
    inputs = _texts(data, settings, tokenizer)
    if not inputs:
        return np.zeros(_width(settings.task, labels))
    cols = settings.data.columns
    if settings.task == "question-answering":
        results = pipe.run(inputs, max_answer_len=settings.data.qa_max_answer_tokens)
        n = em = f1 = 0.0
        for r, res in zip(data, results):
            pred = "" if isinstance(res, RecordError) else res["answer"]
            e, f = answer_scores(pred, r.get(cols.answers) or [])
            n, em, f1 = n + 1, em + e, f1 + f
        return np.array([n, em, f1])
    if settings.task == "text-classification":
        return _classification_counts(pipe, inputs, data, labels, settings)
    return _tagging_counts(pipe, inputs, data, labels, settings, tokenizer)


def _width(task: str, labels: list[str] | None) -> int:
    k = len(labels or [])
    return {"question-answering": 3, "text-classification": 2 + 3 * k, "token-classification": 3,
            "masked-lm": 2}[task]


def _classification_counts(pipe: Any, inputs: list[dict], data: list[dict], labels: list[str],
                           settings: JobSettings) -> np.ndarray:
    d = settings.data
    k = len(labels)
    index = {name: i for i, name in enumerate(labels)}
    results = pipe.run(inputs, top_k=None, function_to_apply="sigmoid" if d.multi_label else "softmax")
    n = correct = 0.0
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    for r, res in zip(data, results):
        gold = {index[g] for g in record_labels(r.get(d.columns.label), multi_label=d.multi_label,
                                                separator=d.label_separator) if g in index}
        if isinstance(res, RecordError):
            pred: set[int] = set()
        elif d.multi_label:
            pred = {index[x["label"]] for x in res if x["score"] > 0.5}
        else:
            pred = {index[res[0]["label"]]}
        n += 1
        correct += float(pred == gold)
        for i in pred & gold:
            tp[i] += 1
        for i in pred - gold:
            fp[i] += 1
        for i in gold - pred:
            fn[i] += 1
    return np.concatenate([[n, correct], tp, fp, fn])


def gold_entities(text: str, spans: Sequence[dict], tokenizer: Any, id2label: dict[int, str],
                  settings: JobSettings) -> set[tuple[int, int, str]]:
    """Gold spans as the tagger can express them: tag the tokens, then group them as the pipeline does."""
    ids, offsets = tokenize_with_offsets(tokenizer, [text])
    offs = offsets[0]
    label2id = {v: k for k, v in id2label.items()}
    keep = settings.data.span_labels or sorted({name.split("-", 1)[-1] for name in label2id if name != OUTSIDE})
    tags = token_tags(offs, spans, label2id, scheme=settings.data.tagging_scheme, keep=keep,
                      period=settings.data.tag_period)
    starts, ends = group_tokens(tags, id2label)
    out = set()
    for s, e in zip(starts, ends):
        tag = id2label[int(tags[s])].split("-", 1)[-1] if id2label[int(tags[s])] != OUTSIDE else OUTSIDE
        if tag != OUTSIDE:
            out.add((int(offs[s, 0]), int(offs[e - 1, 1]), tag))
    return out


def _tagging_counts(pipe: Any, inputs: list[dict], data: list[dict], labels: list[str], settings: JobSettings,
                    tokenizer: Any) -> np.ndarray:
    id2label = dict(enumerate(labels))
    results = pipe.run(inputs, aggregation_strategy="simple", ignore_labels=(OUTSIDE,))
    tp = fp = fn = 0.0
    for item, r, res in zip(inputs, data, results):
        text = item["text"]
        spans = [{**s, "end": min(s["end"], len(text))} for s in (r.get(settings.data.columns.spans) or [])
                 if s["start"] < len(text)]  # cut to the text (first_window_only)
        gold = gold_entities(text, spans, tokenizer, id2label, settings) if text else set()
        pred = set() if isinstance(res, RecordError) else {(e["start"], e["end"], e["entity_group"]) for e in res}
        tp, fp, fn = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred)
    return np.array([tp, fp, fn])


@torch.inference_mode()
def _mlm_counts(model: torch.nn.Module, tokenizer: Any, settings: JobSettings, store: WindowStore,
                device: torch.device) -> np.ndarray:
    model.eval()
    total = tokens = 0.0
    b = max(8, settings.train.batch_size)
    for start in range(0, len(store), b):
        batch = store.collate(np.arange(start, min(start + b, len(store))), pad_id=tokenizer.pad_token_id)
        ids, labels = mask_tokens(batch["input_ids"], batch["length"].tolist(), batch["uid"].tolist(),
                                  seed=settings.train.seed, epoch=EVAL_EPOCH, mask_id=tokenizer.mask_token_id,
                                  special_ids=tokenizer.all_special_ids, vocab_size=model.config.vocab_size,
                                  probability=settings.data.mlm_probability)
        logits = model(input_ids=ids.to(device), attention_mask=batch["attention_mask"].to(device),
                       token_type_ids=batch["token_type_ids"].to(device)).logits
        labels = labels.to(device)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100, reduction="sum"))
        tokens += float((labels != -100).sum())
    return np.array([total, tokens])


def metrics(task: str, counts: np.ndarray, labels: list[str] | None) -> dict[str, float]:
    """Summed counts -> ``eval_*`` metrics."""
    if task == "question-answering":
        n = max(counts[0], 1.0)
        return {"eval_exact_match": 100.0 * counts[1] / n, "eval_f1": 100.0 * counts[2] / n,
                "eval_records": float(counts[0])}
    if task == "text-classification":
        k = len(labels or [])
        n, correct = counts[0], counts[1]
        tp, fp, fn = counts[2 : 2 + k], counts[2 + k : 2 + 2 * k], counts[2 + 2 * k :]
        seen = (tp + fp + fn) > 0
        f1 = np.where(seen, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        return {"eval_accuracy": float(correct / max(n, 1.0)),
                "eval_macro_f1": float(f1[seen].mean()) if seen.any() else 0.0, "eval_records": float(n)}
    if task == "token-classification":
        tp, fp, fn = counts
        p = tp / max(tp + fp, 1.0)
        r = tp / max(tp + fn, 1.0)
        return {"eval_precision": float(p), "eval_recall": float(r),
                "eval_f1": float(2 * p * r / (p + r)) if p + r else 0.0, "eval_gold_spans": float(tp + fn)}
    loss = float(counts[0] / max(counts[1], 1.0))
    return {"eval_loss": loss, "eval_perplexity": float(np.exp(min(loss, 50.0))), "eval_tokens": float(counts[1])}
