"""Token classification (tagging) of long documents and genomes, stitched across windows.

Each window predicts only the tokens it owns (overlaps split in the middle), so a chromosome of millions of
bases comes back as one label per token, merged into entity spans with character offsets.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch

from bigbird.heads import BigBirdForTokenClassification
from bigbird.tasks.base import Encoded, TaskPipeline
from bigbird.tasks.spec import TaskSpec, param
from bigbird.windows import Window

Strategy = Literal["simple", "none", "first", "average", "max"]
WORD_STRATEGIES = ("first", "average", "max")  # one label per word, then merged like "simple"
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


@dataclass
class TokenClassificationParams:
    aggregation_strategy: Strategy = param(
        "simple", help="Merge tokens into entity spans (simple), list every token (none), or label each word "
        "by its first token, its tokens' mean probabilities or its best token (first, average, max) and merge "
        "the words into spans", cli="merge tokens into entities (simple, default), list every token (none), "
        "or label whole words first (first, average, max)")
    ignore_labels: tuple[str, ...] = param(("O",), help="Labels (entity groups) left out of the result")


def split_tag(label: str) -> tuple[str, str]:
    """``B-PER`` -> (``B``, ``PER``); ``I-PER`` -> (``I``, ``PER``); a plain label is an ``I`` of itself."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def group_tokens(labels: np.ndarray, id2label: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """Runs of tokens forming one entity: (start index, end index exclusive) of each run, vectorised."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ids = sorted(id2label)
    tags = {t: i for i, t in enumerate(sorted({split_tag(id2label[k])[1] for k in ids}))}
    tag_of = np.zeros(max(ids) + 1, dtype=np.int64)
    begins = np.zeros(max(ids) + 1, dtype=bool)
    for k in ids:
        bi, tag = split_tag(id2label[k])
        tag_of[k], begins[k] = tags[tag], bi == "B"
    t = tag_of[labels]
    new = np.ones(len(labels), dtype=bool)
    new[1:] = (t[1:] != t[:-1]) | begins[labels[1:]]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(labels))
    return starts, ends


class TokenClassificationPipeline(TaskPipeline):
    """``pipe(text)`` -> entities. ``aggregation_strategy="simple"`` (default) merges tokens into spans
    ``{"entity_group", "score", "word", "start", "end"}``; ``"none"`` gives one dict per token."""

    task = "token-classification"
    model_class = BigBirdForTokenClassification
    default_params = asdict(TokenClassificationParams())

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        if params.get("aggregation_strategy") not in STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {STRATEGIES}, "
                             f"got {params.get('aggregation_strategy')!r}")
        return params

    def extract(self, windows: Sequence[Window], inputs: dict[str, torch.Tensor], outputs: Any,
                **params: Any) -> list[dict[str, np.ndarray]]:
        probs = torch.softmax(outputs.logits.float(), dim=-1)
        scores, labels = probs.max(dim=-1)
        scores, labels = scores.cpu().numpy(), labels.cpu().numpy()
        full = probs.cpu().numpy() if params.get("aggregation_strategy") == "average" else None
        out = []
        for i, w in enumerate(windows):
            lo = w.context_start + (w.own_start - w.token_start)
            hi = w.context_start + (w.own_end - w.token_start)
            out.append({"labels": labels[i, lo:hi].astype(np.int32), "scores": scores[i, lo:hi].astype(np.float32)})
            if full is not None:  # "average" needs every label's probability
                out[-1]["probs"] = full[i, lo:hi].astype(np.float32)
        return out

    def merge(self, record: dict[str, Any], encoded: Encoded, windows: Sequence[Window],
              outputs: Sequence[dict[str, np.ndarray]], **params: Any) -> list[dict[str, Any]]:
        labels = np.concatenate([o["labels"] for o in outputs]).astype(np.int64)
        scores = np.concatenate([o["scores"] for o in outputs]).astype(np.float64)
        assert len(labels) == len(encoded.ids), "windows must own every token exactly once"
        probs = np.concatenate([o["probs"] for o in outputs]) if outputs and "probs" in outputs[0] else None
        return self.entities(record["text"], encoded, labels, scores, probs=probs, **params)

    def word_starts(self, encoded: Encoded) -> np.ndarray:
        """Index of the first token of each word: a token that starts with the SentencePiece word marker
        or follows a gap in the text (whitespace) starts a word; the others continue the previous one."""
        tokens = self.tokenizer.convert_ids_to_tokens([int(i) for i in encoded.ids])
        new = np.array([t.startswith("\u2581") for t in tokens], dtype=bool)
        offsets = encoded.offsets
        new[1:] |= offsets[1:, 0] > offsets[:-1, 1]
        new[0] = True
        return np.flatnonzero(new)

    def words(self, encoded: Encoded, labels: np.ndarray, scores: np.ndarray, probs: np.ndarray | None,
              strategy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-word labels, scores and character offsets (transformers' word aggregation): ``first`` takes
        the first token's label, ``max`` the best-scoring token's, ``average`` the argmax of the tokens' mean
        probabilities."""
        starts = self.word_starts(encoded)
        ends = np.append(starts[1:], len(labels))
        if strategy == "first":
            w_labels, w_scores = labels[starts], scores[starts]
        elif strategy == "max":
            best = np.array([s + int(np.argmax(scores[s:e])) for s, e in zip(starts, ends)], dtype=np.int64)
            w_labels, w_scores = labels[best], scores[best]
        else:
            if probs is None:
                raise ValueError("aggregation_strategy 'average' needs the probabilities of every label")
            mean = np.add.reduceat(probs.astype(np.float64), starts, axis=0) / (ends - starts)[:, None]
            w_labels = mean.argmax(-1)
            w_scores = mean[np.arange(len(starts)), w_labels]
        offsets = np.stack([encoded.offsets[starts, 0], encoded.offsets[ends - 1, 1]], axis=1)
        return w_labels.astype(np.int64), w_scores.astype(np.float64), offsets

    def entities(self, text: str, encoded: Encoded, labels: np.ndarray, scores: np.ndarray,
                 probs: np.ndarray | None = None, **params: Any) -> list[dict[str, Any]]:
        """Per-token labels and scores -> entity dicts with character offsets into ``text``."""
        strategy = params.get("aggregation_strategy", "simple")
        if strategy not in STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {STRATEGIES}, got {strategy!r}")
        ignore = set(params.get("ignore_labels") or ())
        id2label = self.config.id2label
        offsets = encoded.offsets
        if strategy == "none":
            keep = [i for i in range(len(labels)) if id2label[int(labels[i])] not in ignore]
            tokens = self.tokenizer.convert_ids_to_tokens([int(encoded.ids[i]) for i in keep])
            return [{"entity": id2label[int(labels[i])], "score": float(scores[i]), "index": i + 1, "word": tok,
                     "start": int(offsets[i, 0]), "end": int(offsets[i, 1])} for i, tok in zip(keep, tokens)]
        if strategy in WORD_STRATEGIES:
            labels, scores, offsets = self.words(encoded, labels, scores, probs, strategy)
        starts, ends = group_tokens(labels, id2label)
        means = np.add.reduceat(scores, starts) / (ends - starts) if len(starts) else scores[:0]
        out = []
        for s, e, score in zip(starts, ends, means):
            tag = split_tag(id2label[int(labels[s])])[1]
            if tag in ignore:
                continue
            start, end = int(offsets[s, 0]), int(offsets[e - 1, 1])
            out.append({"entity_group": tag, "score": float(score), "word": text[start:end].strip(),
                        "start": start, "end": end})
        return out


ENTITY = pa.struct([("label", pa.string()), ("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()),
                    ("word", pa.string())])


def to_row(result: Any, params: Mapping[str, Any], offset: int | None = None) -> dict[str, Any]:
    """Entities as batch columns, their offsets shifted by the record's ``offset`` (a genome coordinate)."""
    shift = offset or 0
    entities = [{"label": e.get("entity_group", e.get("entity")), "score": e["score"], "start": e["start"] + shift,
                 "end": e["end"] + shift, "word": e["word"]} for e in result]
    return {"entities": entities, "offset": offset}


SPEC = TaskSpec(
    name="token-classification", summary="tag the tokens of (long) documents and merge them into entities",
    model_class=BigBirdForTokenClassification, pipeline_class=TokenClassificationPipeline,
    params=TokenClassificationParams, aliases=("ner",),
    columns=(("entities", pa.list_(ENTITY)), ("offset", pa.int64())), to_row=to_row, examples="""\
examples:
  bigbird token-classification --model ./bigbird-genes --file chromosome.txt
  bigbird token-classification --model ./bigbird-ner "Alice flew to Paris." --aggregation-strategy none""")
