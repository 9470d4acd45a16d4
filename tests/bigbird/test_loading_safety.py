"""Loading refuses what it should not read, fails fast on configs that cannot fit, and names the bad value."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import bigbird
from bigbird.checkpoint import check_config_fits_weights, read_state_dict, weight_shapes
from tests.helpers import save_reference


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny transformers BigBirdModel saved in ``tmp_path / "model"``."""
    save_reference("BigBirdModel", tmp_path / "model")
    return tmp_path / "model"


def _index(folder, weight_map) -> None:
    (folder / "model.safetensors").unlink(missing_ok=True)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("where", ["parent", "absolute", "nested"])
def test_shard_outside_the_model_folder_is_not_loaded(checkpoint, where):
    outside = checkpoint.parent / "outside.safetensors"
    shutil.copy(checkpoint / "model.safetensors", outside)
    keys = list(load_file(str(outside)))
    shard = {"parent": "../outside.safetensors", "absolute": str(outside),
             "nested": "sub/../../outside.safetensors"}[where]
    _index(checkpoint, {**{k: "model-1.safetensors" for k in keys[1:]}, keys[0]: shard})
    shutil.copy(outside, checkpoint / "model-1.safetensors")
    with pytest.raises(ValueError, match=f"{keys[0]}.*outside the model folder"):
        bigbird.BigBirdModel.from_pretrained(checkpoint)


def test_shards_inside_the_folder_still_load(checkpoint):
    keys = list(load_file(str(checkpoint / "model.safetensors")))
    shutil.copy(checkpoint / "model.safetensors", checkpoint / "model-1.safetensors")
    _index(checkpoint, {k: "./model-1.safetensors" for k in keys})
    model = bigbird.BigBirdModel.from_pretrained(checkpoint)
    assert torch.equal(model.embeddings.word.weight, load_file(str(checkpoint / "model-1.safetensors"))
                       ["embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("text,match", [("{not json", "not valid JSON"), ('{"weight_map": []}', "weight_map"),
                                        ('{"weight_map": {"a": 3}}', "'a' names 3"),
                                        ('{"weight_map": {"a": "model.py"}}', "'a' names 'model.py'")])
def test_malformed_shard_index_is_named(checkpoint, text, match):
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "model.safetensors.index.json").write_text(text)
    with pytest.raises(ValueError, match=f"model.safetensors.index.json.*{match}"):
        bigbird.BigBirdModel.from_pretrained(checkpoint)


def _edit_config(folder, **fields) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_weight_shapes_come_from_the_header(checkpoint):
    state = load_file(str(checkpoint / "model.safetensors"))
    assert weight_shapes([checkpoint / "model.safetensors"]) == {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("field,value,match", [
    ("num_hidden_layers", 100000, "num_hidden_layers=100000.*2 encoder layers"),
    ("hidden_size", 64, "hidden_size=64"), ("vocab_size", 99, "vocab_size=99"),
    ("max_position_embeddings", 1024, "max_position_embeddings=1024"), ("intermediate_size", 48, "intermediate_size=48"),
    ("type_vocab_size", 3, "type_vocab_size=3"),
])
def test_config_that_cannot_fit_the_weights_fails_on_the_header(checkpoint, field, value, match):
    _edit_config(checkpoint, **{field: value})
    config = bigbird.BigBirdConfig.from_pretrained(checkpoint)
    shapes = weight_shapes([checkpoint / "model.safetensors"])
    with pytest.raises(ValueError, match=f"config field {match}"):
        check_config_fits_weights(config, shapes, source=str(checkpoint))
    # The same check on a head model's keys ("bert." prefix), read from tensors.
    head_keys = {f"bert.{k}": v for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    with pytest.raises(ValueError, match=f"config field {match}"):
        check_config_fits_weights(config, head_keys)
    if field != "num_hidden_layers":  # ignore_mismatched_sizes: only the layer count is checked
        check_config_fits_weights(config, shapes, check_sizes=False)


def test_fewer_layers_than_the_weights_pass_the_check(checkpoint):
    _edit_config(checkpoint, num_hidden_layers=1)
    config = bigbird.BigBirdConfig.from_pretrained(checkpoint)
    check_config_fits_weights(config, weight_shapes([checkpoint / "model.safetensors"]))
    assert bigbird.BigBirdModel.from_pretrained(checkpoint).load_report.unused  # layer 1's weights


def test_from_pretrained_fails_before_building_a_model_that_cannot_fit(checkpoint, monkeypatch):
    _edit_config(checkpoint, num_hidden_layers=100000)

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the config was checked against the weights")

    monkeypatch.setattr(bigbird.BigBirdModel, "__init__", never)
    with pytest.raises(ValueError, match="num_hidden_layers=100000"):
        bigbird.BigBirdModel.from_pretrained(checkpoint)


@pytest.mark.parametrize("fields,match", [
    ({"id2label": ["a", "b"]}, "'id2label' must be a JSON object"),
    ({"hidden_size": None}, "'hidden_size' must be a JSON integer, got None"),
    ({"hidden_size": "768"}, "'hidden_size' must be a JSON integer, got '768'"),
    ({"num_hidden_layers": True}, "'num_hidden_layers' must be a JSON integer, got True"),
    ({"id2label": {"x": "y"}}, "'id2label' must map integer ids"),
    ({"label2id": 3}, "'label2id' must be a JSON object"),
    ({"label2id": {"a": "0"}}, "'label2id' must map labels to integer ids"),
    ({"layer_norm_eps": "1e-12"}, "'layer_norm_eps' must be a number"),
    ({"attention_type": 1}, "'attention_type' must be a JSON string"),
    ({"attention_type": "sparse"}, "attention_type must be one of"),  # the config's own check, with the file
])
def test_malformed_config_json_names_the_file_and_field(checkpoint, fields, match):
    _edit_config(checkpoint, **fields)
    with pytest.raises(ValueError, match=f"config.json'?: .*{match}"):
        bigbird.BigBirdConfig.from_json_file(checkpoint / "config.json")
    with pytest.raises(ValueError, match=match):
        bigbird.BigBirdModel.from_pretrained(checkpoint)


@pytest.mark.parametrize("text,match", [("[1, 2]", "must hold a JSON object, got list"),
                                        ('"x"', "must hold a JSON object, got str"),
                                        ("{bad", "not a valid JSON config"), (b"\xff\xfe{}", "not a valid JSON")])
def test_config_json_that_is_no_object_names_the_file(tmp_path, text, match):
    path = tmp_path / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=f"config.json'? .*{match}"):
        bigbird.BigBirdConfig.from_json_file(path)


def test_null_in_optional_fields_is_still_accepted(checkpoint):
    _edit_config(checkpoint, pad_token_id=None, classifier_dropout=None, problem_type=None)
    assert bigbird.BigBirdConfig.from_json_file(checkpoint / "config.json").pad_token_id is None


def test_legacy_non_zip_bin_loads_with_weights_only(checkpoint):
    state = load_file(str(checkpoint / "model.safetensors"))
    (checkpoint / "model.safetensors").unlink()
    torch.save(state, checkpoint / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    model = bigbird.BigBirdModel.from_pretrained(checkpoint)
    assert torch.equal(model.embeddings.word.weight, state["embeddings.word_embeddings.weight"])


def test_legacy_bin_with_code_is_still_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    with pytest.raises(Exception, match="(?i)weights only|unsupported|not allowed|global"):
        read_state_dict([tmp_path / "pytorch_model.bin"])
