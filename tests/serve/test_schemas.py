"""The HTTP request models are generated from the task specs: same parameters and defaults, nothing else."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bigbird.tasks import SPECS
from serve.schemas import PARAMS, REQUESTS, TASK_API, WINDOW_PARAMS


@pytest.mark.parametrize("task", sorted(SPECS))
def test_parameters_follow_the_spec(task):
    spec, model = SPECS[task], PARAMS[task]
    # the spec's parameters, then the Inference API's window parameters the service takes per request
    window = list(WINDOW_PARAMS.get(task, {}))
    assert list(model.model_fields) == [f.name for f in spec.fields()] + window
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in model().model_dump().items()}
    assert defaults == {**spec.defaults(), **dict.fromkeys(window)}
    assert TASK_API[task].request is REQUESTS[task]
    with pytest.raises(ValidationError, match="bogus"):
        model(bogus=1)


def test_bounds_and_choices_come_from_the_metadata():
    assert PARAMS["fill-mask"](top_k=1000).top_k == 1000
    for bad in (0, 1001):
        with pytest.raises(ValidationError, match="top_k"):
            PARAMS["fill-mask"](top_k=bad)
    with pytest.raises(ValidationError, match="aggregation_strategy"):
        PARAMS["token-classification"](aggregation_strategy="maximum")
    assert PARAMS["text-classification"](top_k=None).top_k is None
    schema = PARAMS["question-answering"].model_json_schema()["properties"]
    assert schema["max_answer_len"]["maximum"] == 10000 and schema["top_k"]["description"] == "Answers per question"


def test_request_rejects_unknown_top_level_fields():
    body = REQUESTS["text-classification"].model_validate({"inputs": "x", "parameters": {"top_k": 2}})
    assert body.parameters.model_dump(exclude_unset=True) == {"top_k": 2}
    with pytest.raises(ValidationError, match="parameter\n.*Extra inputs"):
        REQUESTS["text-classification"].model_validate({"inputs": "x", "parameter": {"top_k": 2}})
