"""Bad input gets a clear error naming the value."""

from __future__ import annotations

import pytest
import torch

import bigbird
from tests.helpers import tiny


@pytest.fixture(scope="module")
def model():
    return bigbird.BigBirdForQuestionAnswering(bigbird.BigBirdConfig(**tiny())).eval()


def test_ids_beyond_vocabulary(model):
    with pytest.raises(ValueError, match="input id 500"):
        model(input_ids=torch.tensor([[1, 2, 500]]))
    with pytest.raises(ValueError, match="input id -3"):
        model(input_ids=torch.tensor([[1, -3, 4]]))


def test_too_long(model):
    with pytest.raises(ValueError, match="600 exceeds max_position_embeddings 512"):
        model(input_ids=torch.ones(1, 600, dtype=torch.long))


def test_wrong_shapes(model):
    with pytest.raises(ValueError, match=r"\(batch, sequence\)"):
        model(input_ids=torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(input_ids=torch.ones(2, 10, dtype=torch.long), attention_mask=torch.ones(2, 9))
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long), inputs_embeds=torch.ones(1, 4, 32))
    with pytest.raises(ValueError, match="inputs_embeds must be"):
        model(inputs_embeds=torch.ones(1, 4, 31))
    with pytest.raises(ValueError, match="empty"):
        model(input_ids=torch.ones(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        model(input_ids=torch.ones(1, 4))
    with pytest.raises(ValueError, match="token_type_ids must lie"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long), token_type_ids=torch.full((1, 4), 5))


def test_multiple_choice_needs_three_dims():
    mc = bigbird.BigBirdForMultipleChoice(bigbird.BigBirdConfig(**tiny()))
    with pytest.raises(ValueError, match=r"num_choices.*\(2, 10\)"):
        mc(input_ids=torch.ones(2, 10, dtype=torch.long))


def test_unknown_activation_and_config_type():
    with pytest.raises(ValueError, match="'gelu_weird'"):
        bigbird.BigBirdModel(bigbird.BigBirdConfig(**tiny(hidden_act="gelu_weird")))
    with pytest.raises(TypeError, match="BigBirdConfig"):
        bigbird.BigBirdModel({"hidden_size": 32})
