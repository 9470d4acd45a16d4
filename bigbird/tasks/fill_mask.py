"""Fill-mask: the most likely tokens for each ``[MASK]``, in texts of any length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from bigbird.heads import BigBirdForMaskedLM
from bigbird.tasks.base import Encoded, TaskPipeline
from bigbird.tasks.spec import TaskSpec, param
from bigbird.windows import RecordError, Window


@dataclass
class FillMaskParams:
    top_k: int = param(5, help="Candidates per mask", ge=1, le=1000, cli="candidates per mask (default 5)")
    targets: tuple[str, ...] | None = param(
        None, help="Score only these words (a word outside the vocabulary counts as its first token); "
        "null for the whole vocabulary")


class FillMaskPipeline(TaskPipeline):
    """``pipe("Paris is the [MASK] of France.")`` -> ``[{"score", "token", "token_str", "sequence"}, ...]``;
    a list of such lists when the text has several masks (transformers' convention)."""

    task = "fill-mask"
    model_class = BigBirdForMaskedLM
    default_params = asdict(FillMaskParams())

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        if int(params["top_k"]) < 1:
            raise ValueError(f"top_k must be positive, got {params['top_k']}")
        targets = params.get("targets")
        if isinstance(targets, str):
            targets = [targets]
        if targets is not None:
            params["targets"] = tuple(targets)
            self.target_ids(params["targets"])
        return params

    def target_ids(self, targets: Sequence[str]) -> np.ndarray:
        """Vocabulary ids of the target words (transformers' rule): the word itself if it is a token
        (tried with the SentencePiece word marker first), else the first token of its tokenization.

        Raises:
            ValueError: For no targets, or a target that has no tokens.
        """
        if not targets:
            raise ValueError("targets must name at least one word")
        tok = self.tokenizer
        ids = []
        for t in targets:
            if not isinstance(t, str):
                raise ValueError(f"targets must be strings, got {t!r}")
            found = None
            for candidate in ("\u2581" + t.strip(), t):
                try:
                    i = tok.convert_tokens_to_ids(candidate)
                except ValueError:  # not a token, and the vocabulary has no unknown token
                    continue
                if i != tok.unk_token_id:
                    found = i
                    break
            if found is None:
                pieces = tok(t, add_special_tokens=False)["input_ids"]
                if not pieces:
                    raise ValueError(f"target {t!r} has no tokens")
                found = pieces[0]
            ids.append(int(found))
        return np.asarray(sorted(set(ids)), dtype=np.int64)

    def windows(self, encoded):
        mask_id = self.tokenizer.mask_token_id
        for i, enc in enumerate(encoded):
            if not isinstance(enc, RecordError) and not (enc.ids == mask_id).any():
                encoded[i] = RecordError(f"no {self.tokenizer.mask_token} token in the text")
        return super().windows(encoded)

    def extract(self, windows: Sequence[Window], inputs: dict[str, torch.Tensor], outputs: Any,
                **params: Any) -> list[dict[str, np.ndarray]]:
        top_k = int(params["top_k"])
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        mask_id = self.tokenizer.mask_token_id
        targets = self.target_ids(params["targets"]) if params.get("targets") is not None else None
        out = []
        for i, w in enumerate(windows):
            lo = w.context_start + (w.own_start - w.token_start)
            hi = w.context_start + (w.own_end - w.token_start)
            pos = lo + np.flatnonzero(w.input_ids[lo:hi] == mask_id)
            probs = torch.softmax(outputs.logits[i, torch.as_tensor(pos, device=outputs.logits.device)].float(), -1)
            if targets is not None:  # the targets' probabilities, ranked among themselves
                probs = probs[:, torch.as_tensor(targets, device=probs.device)]
            scores, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
            if targets is not None:
                ids = torch.as_tensor(targets, device=ids.device)[ids]
            out.append({"positions": pos - w.context_start + w.token_start, "ids": ids.cpu().numpy(),
                        "scores": scores.cpu().numpy()})
        return out

    def merge(self, record: dict[str, Any], encoded: Encoded, windows: Sequence[Window],
              outputs: Sequence[dict[str, np.ndarray]], **params: Any) -> Any:
        positions = np.concatenate([o["positions"] for o in outputs])
        ids = np.concatenate([o["ids"] for o in outputs])
        scores = np.concatenate([o["scores"] for o in outputs])
        single = len(positions) == 1
        tok = self.tokenizer
        results = []
        for p, cand_ids, cand_scores in zip(positions, ids, scores):
            per_mask = []
            for token_id, score in zip(cand_ids.tolist(), cand_scores.tolist()):
                seq = encoded.ids.copy()
                seq[p] = token_id
                full = [tok.cls_token_id, *seq.tolist(), tok.sep_token_id]
                per_mask.append({"score": float(score), "token": int(token_id), "token_str": tok.decode([token_id]),
                                 "sequence": tok.decode(full, skip_special_tokens=single)})
            results.append(per_mask)
        return results[0] if single else results


SPEC = TaskSpec(
    name="fill-mask", summary="predict the tokens behind each mask token", model_class=BigBirdForMaskedLM,
    pipeline_class=FillMaskPipeline, params=FillMaskParams, aliases=("masked-lm", "mlm"), train_name="masked-lm",
    examples="""\
examples:
  bigbird fill-mask --model ./my-bigbird "Paris is the [MASK] of France." --top-k 3
  bigbird fill-mask --model google/bigbird-roberta-base --file report.txt""")
