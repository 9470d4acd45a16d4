"""Request and response bodies of the HTTP API (HuggingFace Inference API conventions).

Each task takes ``{"inputs": <one input or a list>, "parameters": {...}}``; the parameter models forbid
unknown keys, so a typo is a 422 that names it. Responses are what the task pipeline returns.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from bigbird.tasks import SPECS
from bigbird.tasks.spec import ParamField, TaskSpec

Texts = Annotated[list[str], Field(min_length=1)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """A request body: unknown top-level fields (``"parameter"`` for ``"parameters"``) are a 422 naming them."""

    model_config = ConfigDict(extra="forbid")


def _api_type(f: ParamField) -> Any:
    """A parameter's type as the JSON API takes it (a tuple default is a JSON list)."""
    if typing.get_origin(f.type) is tuple:
        return list[typing.get_args(f.type)[0]]
    return f.type


# Window parameters of the Inference API (transformers' names), taken per request by the service rather than
# the pipeline: they change how inputs are cut into windows, not how windows are scored.
WINDOW_PARAMS: dict[str, dict[str, tuple[Any, Any]]] = {
    "question-answering": {
        "doc_stride": (int | None, Field(None, ge=0, description="Tokens shared by consecutive windows "
                                                                    "(default: the service's stride)")),
        "max_seq_len": (int | None, Field(None, ge=8, description="Tokens per window, question and special "
                                                                     "tokens included (at most the service's "
                                                                     "max_length)")),
        "max_question_len": (int | None, Field(None, ge=1, description="Questions are cut to this many tokens")),
        "align_to_words": (bool | None, Field(None, description="Only false is served: answers are token "
                                                                  "spans")),
    },
    "token-classification": {
        "stride": (int | None, Field(None, ge=0, description="Tokens shared by consecutive windows "
                                                               "(default: the service's stride)")),
    },
}


def params_model(spec: TaskSpec) -> type[BaseModel]:
    """The ``parameters`` model of a task, generated from its spec: same names, defaults and choices; the
    ``ge`` / ``le`` bounds and descriptions of its fields' metadata; plus the task's :data:`WINDOW_PARAMS`."""
    fields: dict[str, Any] = {}
    for f in spec.fields():
        limits = {k: f.metadata[k] for k in ("ge", "le") if k in f.metadata}
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        fields[f.name] = (_api_type(f), Field(default, description=f.metadata.get("help"), **limits))
    fields.update(WINDOW_PARAMS.get(spec.name, {}))
    name = "".join(part.title() for part in spec.name.split("-")) + "Params"
    return create_model(name, __base__=Params, **fields)


PARAMS: dict[str, type[BaseModel]] = {name: params_model(spec) for name, spec in SPECS.items()}
FillMaskParams = PARAMS["fill-mask"]
QuestionAnsweringParams = PARAMS["question-answering"]
TextClassificationParams = PARAMS["text-classification"]
TokenClassificationParams = PARAMS["token-classification"]


class Options(BaseModel):
    """The Inference API's ``options``: accepted; the model is always loaded and nothing is cached."""

    model_config = ConfigDict(extra="forbid")

    wait_for_model: bool | None = None
    use_cache: bool | None = None


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    context: str


# What each task's ``inputs`` is (the HTTP shape of the pipeline's inputs), with the API docs' example.
INPUTS: dict[str, tuple[Any, Any]] = {
    "fill-mask": (str | Texts, Field(description="Text(s) with a [MASK] token", examples=["Paris is the [MASK]."])),
    "question-answering": (QAInput | Annotated[list[QAInput], Field(min_length=1)], Field()),
    "text-classification": (str | Texts, Field(examples=["A long document..."])),
    "token-classification": (str | Texts, Field(examples=["Alice flew from Paris to Tokyo."])),
}


def request_model(spec: TaskSpec) -> type[BaseModel]:
    """``{"inputs": ..., "parameters": {...}}`` of a task; nothing else is accepted."""
    params = PARAMS[spec.name]
    name = "".join(part.title() for part in spec.name.split("-")) + "Request"
    return create_model(name, __base__=Body, inputs=INPUTS[spec.name],
                        parameters=(params, Field(default_factory=params)), options=(Options | None, None))


REQUESTS: dict[str, type[BaseModel]] = {name: request_model(spec) for name, spec in SPECS.items()}
FillMaskRequest = REQUESTS["fill-mask"]
QuestionAnsweringRequest = REQUESTS["question-answering"]
TextClassificationRequest = REQUESTS["text-classification"]
TokenClassificationRequest = REQUESTS["token-classification"]
assert set(INPUTS) == set(SPECS), "every task needs its HTTP input shape"
assert all(dataclasses.is_dataclass(s.params) for s in SPECS.values())


class Candidate(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


class Answer(BaseModel):
    score: float
    start: int
    end: int
    answer: str


class Label(BaseModel):
    label: str
    score: float


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity_group: str
    score: float
    word: str
    start: int
    end: int


class TokenLabel(BaseModel):
    """One token, with ``aggregation_strategy="none"``."""

    model_config = ConfigDict(extra="forbid")

    entity: str
    score: float
    index: int
    word: str
    start: int
    end: int


FillMaskText = list[Candidate] | list[list[Candidate]]  # one mask | several masks
Entities = list[Entity] | list[TokenLabel]


class Task(BaseModel):
    """How one task is exposed: its path, bodies and the pipeline parameters it accepts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    request: type[BaseModel]
    response: Any
    summary: str


def _summary(task: str) -> str:
    text = SPECS[task].summary
    return text[0].upper() + text[1:]


TASK_API: dict[str, Task] = {
    "fill-mask": Task(name="fill-mask", request=FillMaskRequest, response=FillMaskText | list[FillMaskText],
                      summary=_summary("fill-mask")),
    "question-answering": Task(name="question-answering", request=QuestionAnsweringRequest,
                               response=Answer | list[Answer] | list[list[Answer]],
                               summary=_summary("question-answering")),
    "text-classification": Task(name="text-classification", request=TextClassificationRequest,
                                response=list[list[Label]],  # per input its labels, a single input too
                                summary=_summary("text-classification")),
    "token-classification": Task(name="token-classification", request=TokenClassificationRequest,
                                 response=Entities | list[Entities], summary=_summary("token-classification")),
}


class ErrorBody(BaseModel):
    error: str
    status: int
    request_id: str
    detail: list[dict[str, Any]] | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    task: str
    max_length: int
    max_position_embeddings: int
    attention_type: str
    block_size: int
    labels: list[str] | None = None


class ModelList(BaseModel):
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    task: str
