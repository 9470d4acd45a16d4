"""Loading and saving HuggingFace-format checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import bigbird
from tests.helpers import random_batch, save_reference, tiny


def _same_outputs(ref, ours, length=150):
    ids, mask = random_batch(2, length, pad_from=length - 20)
    ref.train()
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask)
        b = ours(input_ids=ids, attention_mask=mask)
    key = next(k for k in ("logits", "start_logits", "last_hidden_state") if hasattr(a, k))
    return (getattr(a, key) - getattr(b, key)).abs().max().item()


@pytest.mark.parametrize("cls_name", ["BigBirdForMaskedLM", "BigBirdForQuestionAnswering",
                                      "BigBirdForSequenceClassification", "BigBirdModel"])
def test_we_save_transformers_loads(tmp_path, cls_name):
    ref = save_reference(cls_name, tmp_path / "hf")
    ours = getattr(bigbird, cls_name).from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "model.safetensors").is_file()
    back = getattr(transformers, cls_name).from_pretrained(tmp_path / "ours")
    assert _same_outputs(back, ours) <= 1e-5
    assert _same_outputs(ref, ours) <= 1e-5
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == "big_bird" and config["architectures"] == [cls_name]


def test_tied_word_embeddings(tmp_path):
    save_reference("BigBirdForMaskedLM", tmp_path / "hf")
    ours = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "hf")
    assert ours.lm_head.decoder.weight is ours.bert.embeddings.word.weight
    ours.save_pretrained(tmp_path / "ours")
    saved = load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert "cls.predictions.decoder.weight" not in saved and "cls.predictions.bias" in saved
    untied = bigbird.BigBirdForMaskedLM(bigbird.BigBirdConfig(**tiny(tie_word_embeddings=False)))
    assert untied.lm_head.decoder.weight is not untied.bert.embeddings.word.weight
    untied.save_pretrained(tmp_path / "untied")
    again = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "untied")
    assert torch.equal(again.lm_head.decoder.weight, untied.lm_head.decoder.weight)


def test_sharded_safetensors_and_bin(tmp_path):
    save_reference("BigBirdForMaskedLM", tmp_path / "hf")
    ours = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "sharded", max_shard_size=20_000)
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    sharded = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "sharded")
    for (n, a), b in zip(ours.state_dict().items(), sharded.state_dict().values()):
        assert torch.equal(a, b), n
    # A legacy pytorch_model.bin, read with weights_only=True.
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "hf" / "config.json", tmp_path / "bin")
    torch.save(load_file(str(tmp_path / "hf" / "model.safetensors")), tmp_path / "bin" / "pytorch_model.bin")
    from_bin = bigbird.BigBirdForMaskedLM.from_pretrained(tmp_path / "bin")
    assert torch.equal(from_bin.bert.embeddings.word.weight, ours.bert.embeddings.word.weight)


def test_bin_with_code_is_refused(tmp_path):
    save_reference("BigBirdModel", tmp_path)
    (tmp_path / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception, match="(?i)weights only|unsupported|not allowed|global"):
        bigbird.BigBirdModel.from_pretrained(tmp_path)


def test_new_head_is_reported_not_fatal(tmp_path):
    save_reference("BigBirdForMaskedLM", tmp_path)
    clf = bigbird.BigBirdForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert clf.config.num_labels == 4
    assert "classifier.out_proj.weight" in clf.load_report.newly_initialized
    assert "cls.predictions.transform.dense.weight" in clf.load_report.unused
    assert torch.isfinite(clf.classifier.out_proj.weight).all() and clf.classifier.out_proj.weight.std() > 0
    with pytest.raises(ValueError, match="strict"):
        bigbird.BigBirdForSequenceClassification.from_pretrained(tmp_path, strict=True)
    base = bigbird.BigBirdModel.from_pretrained(tmp_path)  # a head checkpoint into the bare model
    assert base.load_report.newly_initialized == []


def test_missing_and_unknown_keys_are_named(tmp_path):
    save_reference("BigBirdModel", tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    broken = dict(state)
    del broken["encoder.layer.1.output.dense.weight"]
    save_file(broken, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        bigbird.BigBirdModel.from_pretrained(tmp_path)
    state["encoder.layer.0.mystery.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"mystery"):
        bigbird.BigBirdModel.from_pretrained(tmp_path)


def test_shape_mismatch_is_named(tmp_path):
    save_reference("BigBirdModel", tmp_path)
    with pytest.raises(ValueError, match="intermediate"):
        bigbird.BigBirdModel.from_pretrained(tmp_path, intermediate_size=48)


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bigbird.BigBirdModel.from_pretrained(tmp_path / "nope")
    bigbird.BigBirdConfig(**tiny()).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        bigbird.BigBirdModel.from_pretrained(tmp_path)


def test_offline_hub_cache_with_revision(tmp_path, monkeypatch):
    """Load by repo id from a HuggingFace cache laid out as huggingface_hub writes it, offline."""
    src = tmp_path / "src"
    ref = save_reference("BigBirdForMaskedLM", src)
    cache = tmp_path / "hub"
    repo = cache / "models--google--bigbird-tiny"
    for sha, ref_name in (("a" * 40, "main"), ("b" * 40, "v1")):
        snap = repo / "snapshots" / sha
        snap.mkdir(parents=True)
        for f in src.iterdir():
            shutil.copy(f, snap / f.name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref_name).write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    ours = bigbird.BigBirdForMaskedLM.from_pretrained("google/bigbird-tiny", cache_dir=str(cache))
    assert _same_outputs(ref, ours) <= 1e-5
    pinned = bigbird.BigBirdForMaskedLM.from_pretrained("google/bigbird-tiny", revision="v1", cache_dir=str(cache))
    assert torch.equal(pinned.bert.embeddings.word.weight, ours.bert.embeddings.word.weight)
    with pytest.raises(FileNotFoundError):
        bigbird.BigBirdForMaskedLM.from_pretrained("google/not-cached", cache_dir=str(cache))


def test_config_round_trip_and_validation(tmp_path):
    config = bigbird.BigBirdConfig(**tiny(num_labels=3, custom_field="kept"))
    config.save_pretrained(tmp_path)
    again = bigbird.BigBirdConfig.from_pretrained(tmp_path)
    assert again == config and again.custom_field == "kept" and again.num_labels == 3
    hf = transformers.BigBirdConfig.from_pretrained(tmp_path)
    assert hf.block_size == 8 and hf.num_labels == 3
    defaults = bigbird.BigBirdConfig()
    reference = transformers.BigBirdConfig()
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "max_position_embeddings", "block_size", "num_random_blocks", "attention_type",
                 "sep_token_id", "layer_norm_eps", "rescale_embeddings", "use_bias", "tie_word_embeddings"):
        assert getattr(defaults, name) == getattr(reference, name), name
    with pytest.raises(ValueError, match="'sparse'"):
        bigbird.BigBirdConfig(attention_type="sparse")
    with pytest.raises(ValueError, match="hidden_size 30"):
        bigbird.BigBirdModel(bigbird.BigBirdConfig(hidden_size=30, num_attention_heads=4))
    with pytest.raises(ValueError, match="block_size"):
        bigbird.BigBirdConfig(block_size=0)
    with pytest.raises(ValueError, match="block_size 1024"):
        bigbird.BigBirdConfig(block_size=1024, max_position_embeddings=512)
    with pytest.raises(ValueError, match="num_random_blocks"):
        bigbird.BigBirdConfig(num_random_blocks=-1)
