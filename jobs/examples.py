"""Records -> training windows with labels, per task (pure functions over pyarrow tables; no Ray here).

The windows are cut by :func:`bigbird.windows.windows_for_record`, the same chunking the inference pipelines
use, so a model is trained on exactly the inputs it will see. Labels per task:

* question-answering: ``start``/``end`` token positions of the answer in the window, or 0 (``[CLS]``) when
  the answer is not inside the window;
* text-classification: the record's label id (``label``), or the list of its label ids (multi-label);
* token-classification: one tag id per token (``tags``), -100 on ``[CLS]``/``[SEP]``;
* masked-lm: no labels; masking happens per batch in the training loop (:func:`mask_tokens`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bigbird.splits import stable_hash
from bigbird.windows import RecordError, windows_for_record

IGNORE = -100
OUTSIDE = "O"


@dataclass
class EncodeSpec:
    """What :func:`encode_records` needs: the task, tokenizer, windowing and label vocabulary."""

    task: str
    tokenizer: Any
    max_length: int
    stride: int
    columns: dict[str, str]
    first_window_only: bool = False
    max_chars: int | None = None  # cut texts to their first N characters
    label2id: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False
    label_separator: str | None = None
    span_labels: list[str] | None = None  # tagging: labels to keep, first listed wins on overlap
    scheme: str = "BIO"
    period: int | None = None  # BIO: also a B every ``period`` tokens inside a span


# ------------------------------------------------------------------------------------------ label helpers
def record_labels(value: Any, *, multi_label: bool, separator: str | None) -> list[str]:
    """A record's label(s) as a list of strings (a list column, or a string split on ``separator``)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    if multi_label and separator is not None:
        return [p.strip() for p in str(value).split(separator) if p.strip()]
    return [str(value)]


def tag_names(span_labels: Sequence[str], scheme: str) -> list[str]:
    """Tag vocabulary: ``O`` then ``B-x, I-x`` per label (BIO) or ``x`` per label (IO)."""
    if scheme == "BIO":
        return [OUTSIDE] + [f"{p}-{label}" for label in span_labels for p in ("B", "I")]
    return [OUTSIDE, *span_labels]


def merge_spans(spans: Sequence[dict], keep: Sequence[str] | None) -> list[tuple[int, int, str]]:
    """Spans of the kept labels with overlapping same-label spans merged, sorted by start."""
    by_label: dict[str, list[tuple[int, int]]] = {}
    for s in spans or ():
        if keep is None or s["label"] in keep:
            by_label.setdefault(s["label"], []).append((int(s["start"]), int(s["end"])))
    out = []
    for label, items in by_label.items():
        items.sort()
        cur_s, cur_e = items[0]
        for s, e in items[1:]:
            if s < cur_e:
                cur_e = max(cur_e, e)
            else:
                out.append((cur_s, cur_e, label))
                cur_s, cur_e = s, e
        out.append((cur_s, cur_e, label))
    return sorted(out)


def token_tags(offsets: np.ndarray, spans: Sequence[dict], label2id: dict[str, int], *, scheme: str,
               keep: Sequence[str] | None, period: int | None = None) -> np.ndarray:
    """``(n,)`` tag id of each token: the span the token overlaps (``O`` if none).

    Overlapping spans of different labels: the label listed first in ``keep`` wins (sorted order otherwise).
    ``period`` (BIO only): a token also gets ``B`` when it lies a multiple of ``period`` tokens after its
    span's first token (with one token per base and ``period=3``: ``B`` on the first base of every codon).
    """
    merged = merge_spans(spans, keep)
    n = len(offsets)
    tags = np.full(n, label2id[OUTSIDE], dtype=np.int64)
    if not merged or n == 0:
        return tags
    order = list(keep) if keep is not None else sorted({label for _, _, label in merged})
    starts, ends = offsets[:, 0], offsets[:, 1]
    span_of = np.full(n, -1, dtype=np.int64)
    first_token = np.zeros(len(merged), dtype=np.int64)
    # paint the lowest priority first so that the first listed label ends on top
    for k, (s, e, _) in sorted(enumerate(merged), key=lambda item: -order.index(item[1][2])):
        lo, hi = np.searchsorted(ends, s, "right"), np.searchsorted(starts, e, "left")
        span_of[lo:hi] = k
        first_token[k] = lo
    inside = span_of >= 0
    labels = np.array([merged[k][2] for k in span_of[inside]], dtype=object)
    if scheme == "BIO":
        prev = np.concatenate([[-1], span_of[:-1]])
        begin = span_of != prev
        if period is not None:  # counted from the span's own first token, even where another label covers it
            begin = begin | (inside & ((np.arange(n) - first_token[np.maximum(span_of, 0)]) % period == 0))
        begin = begin[inside]
        tags[inside] = [label2id[f"{'B' if b else 'I'}-{lab}"] for b, lab in zip(begin, labels)]
    else:
        tags[inside] = [label2id[lab] for lab in labels]
    return tags


def find_answer(text: str, answers: Sequence[str], starts: Sequence[int] | None) -> tuple[int, int] | None:
    """Character span ``[start, end)`` of the first answer: at its given offset (SQuAD), else the first
    occurrence of any answer text (TriviaQA aliases; case-insensitive as a fallback)."""
    answers = [a for a in (answers or []) if isinstance(a, str) and a.strip()]
    if starts is not None:
        for a, s in zip(answers, starts):
            if s is not None and text[int(s) : int(s) + len(a)] == a:
                return int(s), int(s) + len(a)
    lower = text.lower()
    for haystack, needle in ((text, lambda a: a), (lower, str.lower)):
        for a in answers:
            pos = haystack.find(needle(a))
            if pos >= 0:
                return pos, pos + len(a)
    return None


def char_span_to_tokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """First and last token (inclusive) overlapping characters ``[start, end)``, or None."""
    hit = np.flatnonzero((offsets[:, 1] > start) & (offsets[:, 0] < end))
    return (int(hit[0]), int(hit[-1])) if len(hit) else None


# ---------------------------------------------------------------------------------------------- encoding
def tokenize_with_offsets(tokenizer: Any, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                    return_token_type_ids=False)
    ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
    offsets = [np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in enc["offset_mapping"]]
    return ids, offsets


def encode_records(table: pa.Table, spec: EncodeSpec) -> pa.Table:
    """Tokenize a batch of records and cut them into labelled windows (one output row per window).

    Records with an empty text (or question) are skipped.

    Returns:
        Columns ``uid`` (uint64, stable per record id and window), ``input_ids`` (list<int32>), ``length``,
        plus ``token_type_ids`` and ``start``/``end`` (QA), ``label`` or ``label_ids`` (classification),
        ``tags`` (tagging).

    Raises:
        ValueError: A label that is not in ``spec.label2id`` (names it and the record).
    """
    cols, tok = spec.columns, spec.tokenizer
    rows = table.to_pylist()
    if spec.max_chars is not None:
        for r in rows:
            if isinstance(r.get(cols["text"]), str):
                r[cols["text"]] = r[cols["text"]][: spec.max_chars]
    keep = [r for r in rows if isinstance(r.get(cols["text"]), str) and r[cols["text"]].strip()]
    if spec.task == "question-answering":
        keep = [r for r in keep if isinstance(r.get(cols["question"]), str) and r[cols["question"]].strip()]
    out: dict[str, list] = {"uid": [], "input_ids": [], "length": []}
    extra = {"question-answering": ("token_type_ids", "start", "end"), "token-classification": ("tags",),
             "text-classification": ("label_ids",) if spec.multi_label else ("label",)}.get(spec.task, ())
    out.update({name: [] for name in extra})
    if not keep:
        return _to_table(out)
    ids, offsets = tokenize_with_offsets(tok, [r[cols["text"]] for r in keep])
    questions = tokenize_with_offsets(tok, [r[cols["question"]] for r in keep])[0] if spec.task == "question-answering" \
        else [None] * len(keep)
    for r, ctx, offs, q in zip(keep, ids, offsets, questions):
        try:
            windows = windows_for_record(0, ctx, max_length=spec.max_length, stride=spec.stride,
                                         cls_id=tok.cls_token_id, sep_id=tok.sep_token_id, question_ids=q)
        except RecordError:
            continue  # no tokens, or a question that leaves no room
        if spec.first_window_only:
            windows = windows[:1]
        rid = str(r[cols["id"]])
        uids = stable_hash([f"{rid}\x00{w.index}" for w in windows])
        tags = answer = label = None
        if spec.task == "token-classification":
            tags = token_tags(offs, r.get(cols["spans"]) or [], spec.label2id, scheme=spec.scheme,
                              keep=spec.span_labels, period=spec.period)
        elif spec.task == "question-answering":
            chars = find_answer(r[cols["text"]], r.get(cols["answers"]) or [], r.get(cols["answer_start"]))
            answer = char_span_to_tokens(offs, *chars) if chars else None
        elif spec.task == "text-classification":
            names = record_labels(r.get(cols["label"]), multi_label=spec.multi_label,
                                  separator=spec.label_separator)
            unknown = [n for n in names if n not in spec.label2id]
            if unknown or (not names and not spec.multi_label):
                raise ValueError(f"record {rid!r}: label {unknown or names} is not one of the training labels "
                                 f"{sorted(spec.label2id)}")
            label = [spec.label2id[n] for n in names]
        for w, uid in zip(windows, uids):
            n = len(w.input_ids)
            out["uid"].append(int(uid))
            out["input_ids"].append(w.input_ids.astype(np.int32))
            out["length"].append(n)
            if spec.task == "question-answering":
                out["token_type_ids"].append(w.token_type_ids.astype(np.int8))
                s = e = 0
                lo, hi = w.token_start, w.token_start + w.n_context
                if answer is not None and lo <= answer[0] and answer[1] < hi:
                    s, e = w.context_start + answer[0] - lo, w.context_start + answer[1] - lo
                out["start"].append(s)
                out["end"].append(e)
            elif spec.task == "token-classification":
                t = np.full(n, IGNORE, dtype=np.int16)
                t[w.context_start : n - 1] = tags[w.token_start : w.token_start + w.n_context]
                out["tags"].append(t)
            elif spec.task == "text-classification":
                if spec.multi_label:
                    out["label_ids"].append(np.asarray(label, dtype=np.int32))
                else:
                    out["label"].append(label[0])
    return _to_table(out)


WINDOW_TYPES = {"uid": pa.uint64(), "input_ids": pa.list_(pa.int32()), "length": pa.int32(),
          "token_type_ids": pa.list_(pa.int8()), "start": pa.int32(), "end": pa.int32(),
          "tags": pa.list_(pa.int16()), "label": pa.int64(), "label_ids": pa.list_(pa.int32())}


def _to_table(columns: dict[str, list]) -> pa.Table:
    return pa.table({k: pa.array(v, type=WINDOW_TYPES[k]) for k, v in columns.items()})


def truncate_to_first_window(text: str, tokenizer: Any, capacity: int) -> str:
    """The prefix of ``text`` covered by its first ``capacity`` tokens (the ``first_window_only`` view)."""
    ids, offsets = tokenize_with_offsets(tokenizer, [text])
    if len(ids[0]) <= capacity:
        return text
    return text[: int(offsets[0][capacity - 1, 1])]


# -------------------------------------------------------------------------------------------- masking
def mask_tokens(input_ids: torch.Tensor, lengths: Sequence[int], uids: Sequence[int], *, seed: int, epoch: int,
                mask_id: int, special_ids: Sequence[int], vocab_size: int, probability: float = 0.15
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick ``probability`` of the non-special tokens; 80% become ``[MASK]``, 10% a random
    token, 10% stay. Each window draws from its own generator seeded by ``(seed, epoch, uid)``, so the mask
    does not depend on batching, padding, worker count or resumption. At least one token per window is picked.

    Args:
        input_ids: ``(B, L)`` right-padded ids (not modified).
        lengths: Real length of each row.
        uids: The window ids (``uid`` column).

    Returns:
        ``(masked_ids, labels)``: labels hold the original id where picked, -100 elsewhere.
    """
    ids = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE)
    special = np.asarray(sorted(set(special_ids)), dtype=np.int64)
    replacements = np.setdiff1d(np.arange(vocab_size), special)
    src = input_ids.cpu().numpy()
    for row, (n, uid) in enumerate(zip(lengths, uids)):
        rng = np.random.default_rng([seed, epoch, int(uid) & 0xFFFF_FFFF_FFFF_FFFF])
        toks = src[row, :n]
        eligible = ~np.isin(toks, special)
        picked = (rng.random(n) < probability) & eligible
        if not picked.any() and eligible.any():
            picked[rng.choice(np.flatnonzero(eligible))] = True
        roll = rng.random(n)
        random_tok = rng.choice(replacements, size=n)
        new = np.where(picked & (roll < 0.8), mask_id, np.where(picked & (roll < 0.9), random_tok, toks))
        ids[row, :n] = torch.from_numpy(new)
        labels[row, :n] = torch.from_numpy(np.where(picked, toks, IGNORE))
    return ids, labels


# -------------------------------------------------------------------------------------- answer metrics
def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_scores(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, token F1) of a predicted answer against the best gold answer (SQuAD v1.1 script)."""
    pred = normalize_answer(prediction)
    best_em = best_f1 = 0.0
    for gold in answers or []:
        g = normalize_answer(gold)
        best_em = max(best_em, float(pred == g))
        p_tok, g_tok = pred.split(), g.split()
        common = sum(min(p_tok.count(t), g_tok.count(t)) for t in set(p_tok))
        if common:
            precision, recall = common / len(p_tok), common / len(g_tok)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
        elif not p_tok and not g_tok:
            best_f1 = max(best_f1, 1.0)
    return best_em, best_f1
