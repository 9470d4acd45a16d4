"""The task pipeline skeleton: tokenize -> windows -> batched scoring -> merge per record.

Each stage is a method with plain inputs and outputs (lists, numpy arrays, dicts), so the Ray layers can run
the stages in different processes: tokenization on CPU workers, scoring in model actors, merging afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bigbird.config import BigBirdConfig
from bigbird.tasks.loading import resolve_device
from bigbird.tasks.spec import DEFAULT_STRIDE
from bigbird.windows import RecordError, Window, collate, group_by_length, windows_for_record


@dataclass
class Encoded:
    """A record's tokens without special tokens, with character offsets into its text."""

    ids: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n, 2) int64, [start, end) characters
    question_ids: np.ndarray | None = None


@dataclass
class Prepared:
    """Records made ready for scoring by :meth:`TaskPipeline.prepare`, validated once.

    Attributes:
        records: The normalised records ``{"text": ..., ["question": ...]}``.
        encoded: Per record its :class:`Encoded` tokens, or the :class:`RecordError` that keeps it from scoring.
        windows: The windows of every usable record (``Window.record`` is the record's position).
        errors: The unusable records' errors, by position.
        tokens: Per record its token count (text and question, no special tokens; 0 if it cannot be tokenized).
        params: The call parameters, defaults filled in.
        single: True if the call gave one input rather than a list.
    """

    records: list[dict[str, Any]]
    encoded: list[Encoded | RecordError]
    windows: list[Window]
    errors: dict[int, RecordError]
    tokens: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    single: bool = False

    @property
    def num_tokens(self) -> int:
        """Tokens of all records together."""
        return sum(self.tokens)

    def windows_of(self) -> dict[int, list[int]]:
        """Record position -> the indices of its windows in :attr:`windows`."""
        per_record: dict[int, list[int]] = {}
        for k, w in enumerate(self.windows):
            per_record.setdefault(w.record, []).append(k)
        return per_record


class TaskPipeline:
    """Base of the task pipelines. Subclasses set ``task``, ``model_class`` and the per-task hooks.

    Args:
        model: A loaded model of the task's class.
        tokenizer: Its tokenizer.
        device: Where to run (:func:`bigbird.tasks.loading.resolve_device`: ``"auto"``, ``None``/``-1``/``"cpu"``,
            ``"cuda[:N]"``, a CUDA index or a ``torch.device``).
        batch_size: Windows per forward pass.
        max_length: Tokens per window (default: the model's ``max_position_embeddings``).
        stride: Overlap between windows of a long input, in tokens.
        max_tokens: Optional cap on tokens per forward pass (``windows x padded length``).
    """

    task: str = ""
    model_class: type = torch.nn.Module
    default_params: dict[str, Any] = {}  # derived from the task's TaskSpec.params (read-only)
    spec: Any = None  # its TaskSpec (set by the registry, bigbird.tasks)

    def __init__(self, model: torch.nn.Module | None, tokenizer: Any, *,
                 device: int | str | torch.device | None = None, batch_size: int = 8, max_length: int | None = None,
                 stride: int = DEFAULT_STRIDE, max_tokens: int | None = None,
                 config: BigBirdConfig | None = None) -> None:
        self.device = resolve_device(device)
        # Without a model (config given instead) the pipeline can tokenize, window and merge but not score:
        # the Ray layers run those stages on CPU workers and scoring in model actors.
        self.model = model.to(self.device).eval() if model is not None else None
        self.tokenizer = tokenizer
        self.config = model.config if model is not None else config
        if self.config is None:
            raise ValueError("pass a model or, for a pipeline that does not score, its config")
        limit = self.config.max_position_embeddings
        self.max_length = limit if max_length is None else max_length
        if not 8 <= self.max_length <= limit:
            raise ValueError(f"max_length {self.max_length} must lie in [8, {limit}] (max_position_embeddings)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if stride < 0 or stride >= self.max_length:
            raise ValueError(f"stride {stride} must be >= 0 and smaller than max_length {self.max_length}")
        self.batch_size, self.stride, self.max_tokens = batch_size, stride, max_tokens

    @classmethod
    def preparer(cls, tokenizer: Any, config: BigBirdConfig, *, max_length: int | None = None,
                 stride: int = DEFAULT_STRIDE) -> TaskPipeline:
        """A pipeline that prepares and finishes but does not score (no model): the Ray layers run
        :meth:`prepare` on CPU workers, :meth:`score` in model actors and :meth:`finish` afterwards."""
        return cls(None, tokenizer, config=config, max_length=max_length, stride=stride)

    # ------------------------------------------------------------------------- prepare / finish
    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The call parameters with defaults filled in.

        Raises:
            ValueError: For an unknown parameter or a bad value, naming it.
        """
        unknown = set(params) - set(self.default_params)
        if unknown:
            raise ValueError(f"unknown parameters for {self.task}: {sorted(unknown)}; "
                             f"known: {sorted(self.default_params)}")
        return {**self.default_params, **params}

    def prepare(self, inputs: Any, params: Mapping[str, Any] | None = None) -> Prepared:
        """Check the parameters, normalise the inputs to records, tokenize (with the vocabulary's validation,
        e.g. DNA bases) and window them. A record that cannot be scored gets a :class:`RecordError` in its
        place; it never fails the others.

        Raises:
            ValueError, TypeError: For a bad parameter or inputs of the wrong shape (the whole call).
        """
        params = self.check_params(dict(params or {}))
        records, single = self.records(inputs, **params)
        prepared = self.prepare_records(records, params)
        prepared.single = single
        return prepared

    def prepare_records(self, records: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None
                        ) -> Prepared:
        """:meth:`prepare` for already normalised records (``{"text": ..., ["question": ...]}``); parameters
        are merged with the defaults but not checked (callers may pass their own, e.g. the batch job's)."""
        records = [dict(r) for r in records]
        questions = [r.get("question") for r in records] if records and "question" in records[0] else None
        encoded = self.encode([r.get("text") for r in records], questions)
        tokens = [0 if isinstance(e, RecordError) else
                  len(e.ids) + (0 if e.question_ids is None else len(e.question_ids)) for e in encoded]
        windows, errors = self.windows(encoded)
        return Prepared(records, encoded, windows, errors, tokens, {**self.default_params, **(params or {})})

    def finish(self, prepared: Prepared, outputs: Sequence[dict[str, np.ndarray]],
               params: Mapping[str, Any] | None = None) -> list[Any]:
        """Per record its result (merged from its windows' ``outputs``, in :attr:`Prepared.windows` order) or
        its :class:`RecordError`."""
        params = {**prepared.params, **(params or {})}
        results: list[Any] = []
        windows_of = prepared.windows_of()
        for i, record in enumerate(prepared.records):
            if i in prepared.errors:
                results.append(prepared.errors[i])
                continue
            idx = windows_of[i]
            results.append(self.merge(record, prepared.encoded[i], [prepared.windows[k] for k in idx],
                                      [outputs[k] for k in idx], **params))
        return results

    # ------------------------------------------------------------------------------------- stages
    def encode(self, texts: Sequence[str], questions: Sequence[str] | None = None) -> list[Encoded | RecordError]:
        """Tokenize records (batched); a record that cannot be used becomes a RecordError in its place."""
        out: list[Encoded | RecordError] = []
        bad = {i: e for i, t in enumerate(texts) if isinstance(t, str) and t.strip()
               for e in [self.check_text(t, questions[i] if questions is not None else None)] if e is not None}
        valid = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip() and i not in bad]
        enc = self.tokenizer([texts[i] for i in valid], add_special_tokens=False, return_offsets_mapping=True,
                             return_attention_mask=False, return_token_type_ids=False) if valid else None
        q_enc = None
        if questions is not None and valid:
            q_enc = self.tokenizer([questions[i] if isinstance(questions[i], str) else "" for i in valid],
                                   add_special_tokens=False, return_attention_mask=False,
                                   return_token_type_ids=False)
        slot = {i: k for k, i in enumerate(valid)}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                out.append(RecordError(f"text must be a string, got {type(text).__name__}"))
                continue
            if i in bad:
                out.append(bad[i])
                continue
            if i not in slot:
                out.append(RecordError("empty text: nothing to score"))
                continue
            k = slot[i]
            ids = np.asarray(enc["input_ids"][k], dtype=np.int64)
            offsets = np.asarray(enc["offset_mapping"][k], dtype=np.int64).reshape(-1, 2)
            if len(ids) == 0:
                out.append(RecordError("text has no tokens"))
                continue
            q = None
            if q_enc is not None:
                q = np.asarray(q_enc["input_ids"][k], dtype=np.int64)
                if not (isinstance(questions[i], str) and questions[i].strip()):
                    out.append(RecordError("empty question"))
                    continue
            out.append(Encoded(ids, offsets, q))
        return out

    def check_text(self, text: str, question: Any = None) -> RecordError | None:
        """Why a record's text (or question) cannot be tokenized, or None: text that is not valid Unicode
        (a lone surrogate cannot be encoded), or characters the vocabulary rejects (DNA bases)."""
        for name, value in (("text", text), ("question", question)):
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    return RecordError(f"{name} is not valid Unicode: {e.reason} "
                                       f"(U+{ord(value[e.start]):04X} at character {e.start})")
        validate = getattr(self.tokenizer, "validate", None)
        if validate is not None:  # DNA vocabularies reject characters they cannot encode
            try:
                validate(text)
            except ValueError as e:
                return RecordError(str(e))
        return None

    def windows(self, encoded: Sequence[Encoded | RecordError]) -> tuple[list[Window], dict[int, RecordError]]:
        """Windows of every usable record, and the errors of the others (by record position)."""
        windows: list[Window] = []
        errors: dict[int, RecordError] = {}
        for i, enc in enumerate(encoded):
            if isinstance(enc, RecordError):
                errors[i] = enc
                continue
            try:
                windows.extend(windows_for_record(
                    i, enc.ids, max_length=self.max_length, stride=self.stride, cls_id=self.tokenizer.cls_token_id,
                    sep_id=self.tokenizer.sep_token_id, question_ids=enc.question_ids))
            except RecordError as e:
                errors[i] = e
        return windows, errors

    @torch.inference_mode()
    def score(self, windows: Sequence[Window], **params: Any) -> list[dict[str, np.ndarray]]:
        """Run the model over windows batched by length; one small output dict per window, in order."""
        if self.model is None:
            raise RuntimeError("this pipeline was built without a model: it cannot score")
        results: list[dict[str, np.ndarray] | None] = [None] * len(windows)
        lengths = [len(w.input_ids) for w in windows]
        for batch in group_by_length(lengths, batch_size=self.batch_size, block_size=self.config.block_size,
                                     max_tokens=self.max_tokens):
            items = [windows[i] for i in batch]
            inputs = {k: v.to(self.device) for k, v in collate(items, pad_id=self.tokenizer.pad_token_id).items()}
            outputs = self.forward(inputs)
            for i, res in zip(batch, self.extract(items, inputs, outputs, **params)):
                results[i] = res
        return results  # type: ignore[return-value]

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        return self.model(**inputs)

    # ------------------------------------------------------------------------------ task hooks
    def records(self, inputs: Any, **params: Any) -> tuple[list[dict[str, Any]], bool]:
        """Normalise the call's inputs to a list of records ``{"text": ..., ...}``; True if a single input."""
        if isinstance(inputs, str):
            return [{"text": inputs}], True
        if isinstance(inputs, (list, tuple)) and all(isinstance(x, str) for x in inputs):
            if not inputs:
                raise ValueError("no inputs given")
            return [{"text": x} for x in inputs], False
        raise TypeError(f"{self.task} expects a string or a list of strings, got {type(inputs).__name__}")

    def extract(self, windows: Sequence[Window], inputs: dict[str, torch.Tensor], outputs: Any,
                **params: Any) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError

    def merge(self, record: dict[str, Any], encoded: Encoded, windows: Sequence[Window],
              outputs: Sequence[dict[str, np.ndarray]], **params: Any) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- call
    def run(self, records: list[dict[str, Any]], **params: Any) -> list[Any]:
        """All stages for a list of records; a bad record's result is its RecordError."""
        prepared = self.prepare_records(records, params)
        return self.finish(prepared, self.score(prepared.windows, **prepared.params))

    def __call__(self, inputs: Any, **params: Any) -> Any:
        """Score one input or a list; raises ValueError naming the first input that cannot be scored."""
        prepared = self.prepare(inputs, params)
        return self.shape(self.finish(prepared, self.score(prepared.windows, **prepared.params)), prepared.single,
                          params)

    def shape(self, results: list[Any], single: bool, params: dict[str, Any]) -> Any:
        """Per-record results of :meth:`run` -> what ``__call__`` returns (one result for a single input).

        Raises:
            ValueError: Naming the first input that cannot be scored.
        """
        for i, res in enumerate(results):
            if isinstance(res, RecordError):
                raise ValueError(f"input {i}: {res}")
        return results[0] if single else results


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
