"""Request and response bodies of the HTTP API (HuggingFace Inference API conventions).

Each task takes ``{"inputs": <one input or a list>, "parameters": {...}}``; the parameter models forbid
unknown keys, so a typo is a 422 that names it. Responses are what the task pipeline returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Texts = Annotated[list[str], Field(min_length=1)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FillMaskParams(Params):
    top_k: int = Field(5, ge=1, le=1000, description="Candidates per mask")


class QuestionAnsweringParams(Params):
    top_k: int = Field(1, ge=1, le=100, description="Answers per question")
    max_answer_len: int = Field(15, ge=1, le=10000, description="Most tokens in an answer")
    handle_impossible_answer: bool = Field(False, description="Allow the empty answer")


class TextClassificationParams(Params):
    top_k: int | None = Field(1, ge=1, description="Labels per text; null for all. Leave it out for "
                                                    "transformers' legacy output (one dict per text)")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None


class TokenClassificationParams(Params):
    aggregation_strategy: Literal["none", "simple"] = "simple"
    ignore_labels: list[str] = Field(default_factory=lambda: ["O"])


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    context: str


class FillMaskRequest(BaseModel):
    inputs: str | Texts = Field(description="Text(s) with a [MASK] token", examples=["Paris is the [MASK]."])
    parameters: FillMaskParams = Field(default_factory=FillMaskParams)


class QuestionAnsweringRequest(BaseModel):
    inputs: QAInput | Annotated[list[QAInput], Field(min_length=1)]
    parameters: QuestionAnsweringParams = Field(default_factory=QuestionAnsweringParams)


class TextClassificationRequest(BaseModel):
    inputs: str | Texts = Field(examples=["A long document..."])
    parameters: TextClassificationParams = Field(default_factory=TextClassificationParams)


class TokenClassificationRequest(BaseModel):
    inputs: str | Texts = Field(examples=["Alice flew from Paris to Tokyo."])
    parameters: TokenClassificationParams = Field(default_factory=TokenClassificationParams)


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


TASK_API: dict[str, Task] = {
    "fill-mask": Task(name="fill-mask", request=FillMaskRequest, response=FillMaskText | list[FillMaskText],
                      summary="Most likely tokens for each [MASK]"),
    "question-answering": Task(name="question-answering", request=QuestionAnsweringRequest,
                               response=Answer | list[Answer] | list[list[Answer]],
                               summary="Extractive answer span in a long context"),
    "text-classification": Task(name="text-classification", request=TextClassificationRequest,
                                response=list[Label] | list[list[Label]],
                                summary="Labels of long documents"),
    "token-classification": Task(name="token-classification", request=TokenClassificationRequest,
                                 response=Entities | list[Entities], summary="Entities with character offsets"),
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
