"""A tied output embedding is listed once in state_dict() and loads back tied (bigbird/tied_weights.py)."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import bigbird
from tests.helpers import tiny

TIED = ["BigBirdForMaskedLM", "BigBirdForCausalLM", "BigBirdForPreTraining"]


def _model(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(bigbird, name)(bigbird.BigBirdConfig(**tiny(attention_type="original_full", **overrides)))


def _tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


@pytest.mark.parametrize("name", TIED)
def test_state_dict_lists_the_tied_weight_once_and_safetensors_saves_it(tmp_path, name):
    model = _model(name)
    state = model.state_dict()
    assert "bert.embeddings.word.weight" in state and "lm_head.decoder.bias" in state
    assert "lm_head.decoder.weight" not in state
    named = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    assert set(state) == named - {"lm_head.decoder.weight"}
    save_file(state, str(tmp_path / "w.safetensors"))  # raises on one storage under two names
    other = _model(name)
    torch.nn.init.zeros_(other.bert.embeddings.word.weight)
    result = other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))  # strict
    assert not result.missing_keys and not result.unexpected_keys
    assert _tied(other) and torch.equal(other.lm_head.decoder.weight, model.lm_head.decoder.weight)


def test_untied_weights_keep_both_keys():
    model = _model("BigBirdForMaskedLM", tie_word_embeddings=False)
    assert not _tied(model)
    assert {"lm_head.decoder.weight", "bert.embeddings.word.weight"} <= set(model.state_dict())
    result = _model("BigBirdForMaskedLM", tie_word_embeddings=False).load_state_dict(
        {k: v for k, v in model.state_dict().items() if k != "lm_head.decoder.weight"}, strict=False)
    assert result.missing_keys == ["lm_head.decoder.weight"]  # a separate weight is really missing


def test_nested_assign_and_full_state_dicts_load_tied():
    model = _model("BigBirdForMaskedLM")
    wrapped = torch.nn.ModuleDict({"inner": model})
    state = wrapped.state_dict()
    assert "inner.lm_head.decoder.weight" not in state and "inner.bert.embeddings.word.weight" in state
    target = torch.nn.ModuleDict({"inner": _model("BigBirdForMaskedLM")})
    torch.nn.init.zeros_(target["inner"].bert.embeddings.word.weight)
    assert not target.load_state_dict(state).missing_keys
    assert _tied(target["inner"]) and torch.equal(target["inner"].lm_head.decoder.weight, model.lm_head.decoder.weight)
    # assign=True gives every key a new Parameter: the head is tied again afterwards.
    assigned = _model("BigBirdForMaskedLM")
    assigned.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    assert _tied(assigned) and torch.equal(assigned.lm_head.decoder.weight, model.lm_head.decoder.weight)
    # A state dict that still lists the alias (written before, or by hand) loads too, under either naming.
    full = {**model.state_dict(), "lm_head.decoder.weight": model.lm_head.decoder.weight.detach()}
    assert not _model("BigBirdForMaskedLM").load_state_dict(full).missing_keys
    assert "cls.predictions.decoder.weight" not in model.hf_state_dict(full)  # tied: left out as on save


def test_caller_state_dict_is_not_changed():
    model = _model("BigBirdForCausalLM", is_decoder=True)
    state = model.state_dict()
    keys = list(state)
    _model("BigBirdForCausalLM", is_decoder=True).load_state_dict(state)
    assert list(state) == keys


def test_whole_model_pickles_with_its_hooks_and_tie():
    # What torch.save(model) and process pools do: pickle the module, its hooks (module-level functions) and its
    # activation (gelu_new by default, once a lambda that did not pickle).
    model = _model("BigBirdForMaskedLM").eval()
    copy = pickle.loads(pickle.dumps(model)).eval()
    assert _tied(copy) and "lm_head.decoder.weight" not in copy.state_dict()
    ids = torch.randint(6, 120, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(copy(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
