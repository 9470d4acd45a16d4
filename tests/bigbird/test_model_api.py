"""The transformers API surface around our models: outputs, config, loading and saving keywords, embeddings,
checkpointing and generate, each checked against transformers where it has an answer."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import bigbird
from tests.helpers import random_batch, save_reference, tiny


def _model(cls=bigbird.BigBirdForMaskedLM, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(bigbird.BigBirdConfig(**tiny(attention_type="original_full", **overrides))).eval()


def test_outputs_behave_like_ordered_dicts_and_tuples():
    model = _model(bigbird.BigBirdForSequenceClassification)
    ids, _ = random_batch(2, 16)
    labels = torch.tensor([0, 1])
    out = model(ids, labels=labels, output_hidden_states=True)
    assert list(out) == list(out.keys()) == ["loss", "logits", "hidden_states"]
    assert [k for k, _ in out.items()] == ["loss", "logits", "hidden_states"]
    assert out[1] is out["logits"] is out.logits and len(out) == 3
    as_tuple = model(ids, labels=labels, output_hidden_states=True, return_dict=False)
    assert type(as_tuple) is tuple and len(as_tuple) == 3
    assert torch.equal(as_tuple[1], out.logits) and all(torch.equal(a, b) for a, b in zip(as_tuple[2], out[2]))
    loss, logits = model(ids, labels=labels, return_dict=False)
    assert torch.equal(loss, out.loss)
    model.config.return_dict = False
    assert type(model(ids)) is tuple
    with pytest.raises(TypeError, match="delete"):
        del out["loss"]


def test_config_is_mutable_with_transformers_fields(tmp_path):
    config = bigbird.BigBirdConfig(**tiny(), num_labels=5)
    config.num_labels = 3
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"} and len(config.label2id) == 3
    config.update({"block_size": 4, "custom": 1})
    assert config.block_size == 4 and config.to_dict()["custom"] == 1
    diff = config.to_diff_dict()
    assert diff["block_size"] == 4 and diff["hidden_size"] == 32 and "layer_norm_eps" not in diff
    reference = transformers.BigBirdConfig(**tiny())
    assert set(diff) - {"custom", "model_type", "id2label", "label2id"} <= set(reference.to_dict())
    assert config.use_return_dict and config.get_text_config() is config
    config.to_json_file(tmp_path / "c.json")
    assert bigbird.BigBirdConfig.from_json_file(tmp_path / "c.json") == config
    assert bigbird.BigBirdConfig(torch_dtype="bfloat16").dtype is torch.bfloat16
    bigbird.BigBirdConfig(hidden_size=37, num_attention_heads=4)  # checked when a model is built
    with pytest.raises(ValueError, match="hidden_size 37"):
        bigbird.BigBirdModel(bigbird.BigBirdConfig(**tiny(hidden_size=37)))
    model = _model(bigbird.BigBirdModel)
    model.config.output_hidden_states = True
    assert len(model(random_batch(1, 8)[0]).hidden_states) == 3


def test_from_pretrained_keywords(tmp_path):
    save_reference("BigBirdForSequenceClassification", tmp_path)
    with pytest.raises(TypeError, match="hiden_size"):
        bigbird.BigBirdModel.from_pretrained(tmp_path, hiden_size=8)
    model = bigbird.BigBirdModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16, add_pooling_layer=False)
    assert model.dtype is torch.bfloat16 and model.pooler is None
    assert bigbird.BigBirdModel.from_pretrained(tmp_path, dtype="float16").dtype is torch.float16
    clf, info = bigbird.BigBirdForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert clf.config.num_labels == 5 and clf.classifier.out_proj.out_features == 5
    assert {k for k, _, _ in info["mismatched_keys"]} == {"classifier.out_proj.weight", "classifier.out_proj.bias"}
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        bigbird.BigBirdForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    # state_dict= with transformers' names (and no folder at all).
    ref = transformers.BigBirdModel.from_pretrained(tmp_path).eval()
    ours = bigbird.BigBirdModel.from_pretrained(None, config=bigbird.BigBirdConfig.from_pretrained(tmp_path),
                                                state_dict=ref.state_dict())
    ids, mask = random_batch(2, 16)
    with torch.no_grad():
        assert (ours(ids, mask).last_hidden_state - ref(ids, mask).last_hidden_state).abs().max() < 1e-5


def test_save_pretrained_keywords_round_trip_through_transformers(tmp_path):
    model = _model(bigbird.BigBirdForMaskedLM)
    model.save_pretrained(tmp_path / "sub" / "m", max_shard_size="10KB")
    index = json.loads((tmp_path / "sub" / "m" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    again = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "sub", subfolder="m")
    ref = transformers.BigBirdForMaskedLM.from_pretrained(tmp_path / "sub" / "m").eval()
    ids, mask = random_batch(2, 16)
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, model(ids, mask).logits)
        assert (ref(ids, attention_mask=mask).logits - model(ids, mask).logits).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "bin", safe_serialization=False, state_dict=model.state_dict())
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    assert not list((tmp_path / "bin").glob("*.safetensors"))
    with torch.no_grad():
        assert torch.equal(bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "bin")(ids, mask).logits,
                           model(ids, mask).logits)
    with pytest.raises(ValueError, match="10 apples"):
        model.save_pretrained(tmp_path / "x", max_shard_size="10 apples")


def test_load_state_dict_accepts_transformers_names(tmp_path):
    ref = save_reference("BigBirdForMaskedLM", tmp_path, attention_type="original_full").eval()
    ours = _model(bigbird.BigBirdForMaskedLM, seed=3)
    ours.load_state_dict(ref.state_dict())
    ids, mask = random_batch(2, 16)
    with torch.no_grad():
        assert (ours(ids, mask).logits - ref(ids, attention_mask=mask).logits).abs().max() < 1e-4
    assert set(ours.hf_state_dict()) <= set(ref.state_dict())


def test_embeddings_resize_keeps_tying_and_rows():
    model = _model(bigbird.BigBirdForMaskedLM)
    old = model.get_input_embeddings().weight.detach().clone()
    emb = model.resize_token_embeddings(130, pad_to_multiple_of=8)
    assert emb.num_embeddings == 136 == model.config.vocab_size
    assert model.get_output_embeddings().weight is emb.weight
    assert model.get_output_embeddings().bias.shape == (136,)
    assert torch.equal(emb.weight[:120], old)
    assert torch.allclose(emb.weight[120:], old.mean(0).expand(16, -1))
    assert model(torch.tensor([[135, 3]])).logits.shape == (1, 2, 136)
    assert model.num_parameters() - model.num_parameters(exclude_embeddings=True) == sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    for p in model.bert.parameters():
        p.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith("bert."))


def test_checkpointing_and_input_grads_give_the_same_gradients():
    ids, _ = random_batch(2, 16)
    grads = []
    for enable in (False, True):
        model = _model(bigbird.BigBirdForMaskedLM, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        if enable:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            assert model.is_gradient_checkpointing
        model(ids, labels=ids).loss.backward()
        grads.append(model.bert.layers[0].mlp_in.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.enable_input_require_grads()
    hidden = model.get_input_embeddings()(ids)
    assert hidden.requires_grad
    model.disable_input_require_grads()
    assert not model.get_input_embeddings()(ids).requires_grad


def test_generate_matches_transformers_and_samples(tmp_path):
    ref = save_reference("BigBirdForCausalLM", tmp_path, is_decoder=True, attention_type="original_full").eval()
    ours = bigbird.BigBirdForCausalLM.from_pretrained(tmp_path)
    assert ours.can_generate() and not bigbird.BigBirdModel.can_generate()
    ids, _ = random_batch(2, 5)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    expected = ref.generate(ids, attention_mask=mask, max_length=9, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_length=9), expected)
    g = torch.Generator().manual_seed(0)
    sampled = ours.generate(ids, max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.9, top_k=0,
                            eos_token_id=None, generator=g, num_return_sequences=2)
    assert sampled.shape == (4, 11) and torch.equal(sampled[::2, :5], ids)
    greedy = ours.generate(ids, max_new_tokens=6, eos_token_id=None)
    assert torch.equal(ours.generate(ids, max_new_tokens=6, do_sample=True, top_k=1, eos_token_id=None), greedy)
    with pytest.raises(NotImplementedError, match="num_beams=3"):
        ours.generate(ids, num_beams=3)
    with pytest.raises(TypeError, match="penalty_alpha"):
        ours.generate(ids, penalty_alpha=0.6)


def test_causal_lm_shift_labels_equal_labels():
    model = _model(bigbird.BigBirdForCausalLM, is_decoder=True)
    ids, _ = random_batch(2, 12)
    shifted = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    assert torch.allclose(model(ids, labels=ids).loss, model(ids, shift_labels=shifted).loss)
