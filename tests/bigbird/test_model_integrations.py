"""Our models inside the tools transformers users train with: ``transformers.Trainer`` and PEFT LoRA."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file

import bigbird
from tests.helpers import spm_tokenizer, tiny

peft = pytest.importorskip("peft")


class _Pairs(torch.utils.data.Dataset):
    """Label 1 when token 7 occurs in the sequence: learnable in a few steps."""

    def __init__(self, n: int = 32, length: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(8, 120, (n, length), generator=g)
        self.labels = torch.arange(n) % 2
        self.ids[self.labels == 1, 3] = 7

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def _classifier(seed: int = 0) -> bigbird.BigBirdForSequenceClassification:
    torch.manual_seed(seed)
    config = bigbird.BigBirdConfig(**tiny(attention_type="original_full", hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0, num_labels=2))
    return bigbird.BigBirdForSequenceClassification(config)


def _loss(model, data: _Pairs) -> float:
    model.eval()
    with torch.no_grad():
        return model(input_ids=data.ids, labels=data.labels).loss.item()


def test_trainer_fine_tunes_and_saves(tmp_path):
    data = _Pairs()
    model = _classifier()
    before = _loss(model, data)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, num_train_epochs=4, learning_rate=3e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False})
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    result = trainer.train()
    assert result.global_step == 16
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    after = _loss(model, data)
    assert after < before

    out = tmp_path / "saved"
    trainer.save_model(str(out))
    # Trainer calls save_pretrained only on transformers' own PreTrainedModel; ours it saves as the bare state
    # dict (our names, no config.json).
    saved = load_file(str(out / "model.safetensors"))
    assert "bert.layers.0.attn.query.weight" in saved and not (out / "config.json").exists()
    ours = bigbird.BigBirdForSequenceClassification.from_pretrained(out, config=model.config)
    assert _loss(ours, data) == pytest.approx(after, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="config.json.*config="):
        bigbird.BigBirdForSequenceClassification.from_pretrained(out)
    # With the config written beside it, both libraries load the folder by path (transformers renames our keys
    # with the documented key_mapping).
    model.config.save_pretrained(out)
    ours = bigbird.BigBirdForSequenceClassification.from_pretrained(out)
    assert _loss(ours, data) == pytest.approx(after, abs=1e-6)
    hf, info = transformers.BigBirdForSequenceClassification.from_pretrained(
        out, key_mapping=bigbird.BigBirdForSequenceClassification.transformers_key_mapping,
        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf.eval()
    with torch.no_grad():
        assert hf(input_ids=data.ids, labels=data.labels).loss.item() == pytest.approx(after, abs=1e-5)
    # save_pretrained writes the folder both libraries load by path, under transformers' names.
    model.save_pretrained(out)
    hf = transformers.BigBirdForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert hf(input_ids=data.ids, labels=data.labels).loss.item() == pytest.approx(after, abs=1e-5)
    assert _loss(bigbird.BigBirdForSequenceClassification.from_pretrained(out), data) == pytest.approx(after, abs=1e-6)


class _Tokens(torch.utils.data.Dataset):
    """Language-model rows: a few fixed sequences to memorise; masked-LM labels on every third token (the input
    there is the mask id), causal-LM labels on every token."""

    def __init__(self, causal: bool, n: int = 16, length: int = 16, mask_id: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(8, 120, (n, length), generator=g)
        self.labels = self.ids.clone()
        if not causal:
            masked = torch.zeros_like(self.ids, dtype=torch.bool)
            masked[:, 1::3] = True
            self.labels[~masked] = -100
            self.ids = self.ids.masked_fill(masked, mask_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _lm_loss(model, data: _Tokens) -> float:
    model.eval()
    with torch.no_grad():
        return model(input_ids=data.ids, labels=data.labels).loss.item()


@pytest.mark.parametrize("name", ["BigBirdForMaskedLM", "BigBirdForCausalLM", "BigBirdForPreTraining"])
def test_trainer_saves_and_checkpoints_tied_heads(tmp_path, name):
    # The output embedding is the input embedding's Parameter; state_dict() lists it once (bigbird.tied_weights),
    # so Trainer's safetensors.save_file of state_dict() works for save_model and the periodic checkpoints.
    causal = name == "BigBirdForCausalLM"
    data = _Tokens(causal)
    torch.manual_seed(0)
    model = getattr(bigbird, name)(bigbird.BigBirdConfig(**tiny(attention_type="original_full", is_decoder=causal)))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    before = _lm_loss(model, data)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, num_train_epochs=3, learning_rate=3e-3,
        logging_steps=1, save_strategy="steps", save_steps=6, report_to=[], use_cpu=True, seed=0)
    tokenizer = spm_tokenizer()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    assert trainer.train().global_step == 12
    after = _lm_loss(model, data)
    assert after < before
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied

    out = tmp_path / "saved"
    trainer.save_model(str(out))
    for folder in (out, tmp_path / "run" / "checkpoint-6", tmp_path / "run" / "checkpoint-12"):
        saved = load_file(str(folder / "model.safetensors"))
        assert "bert.embeddings.word.weight" in saved and "lm_head.decoder.weight" not in saved
    # Trainer saves the processing class beside the weights (our tokenizer's save_pretrained).
    assert bigbird.BigBirdTokenizer.from_pretrained(out)("a b c")["input_ids"] == tokenizer("a b c")["input_ids"]
    ours = getattr(bigbird, name).from_pretrained(out, config=model.config)
    assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight
    assert _lm_loss(ours, data) == pytest.approx(after, abs=1e-6)
    # A plain load_state_dict (Trainer's resume path) with strict=True: the tied alias is filled, not missing.
    fresh = getattr(bigbird, name)(model.config)
    result = fresh.load_state_dict(load_file(str(tmp_path / "run" / "checkpoint-12" / "model.safetensors")))
    assert not result.missing_keys and not result.unexpected_keys
    assert fresh.get_output_embeddings().weight is fresh.get_input_embeddings().weight
    assert _lm_loss(fresh, data) == pytest.approx(after, abs=1e-6)
    # Trainer resumes from the periodic checkpoint (model weights, optimizer and schedule) to the same end.
    resumed = transformers.Trainer(model=getattr(bigbird, name)(model.config), args=args, train_dataset=data)
    assert resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-6")).global_step == 12
    assert _lm_loss(resumed.model, data) == pytest.approx(after, abs=1e-4)
    # transformers loads the folder with the key mapping once the config is beside it, and ties the head itself.
    model.config.save_pretrained(out)
    hf, info = getattr(transformers, name).from_pretrained(
        out, key_mapping=model.transformers_key_mapping, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert _lm_loss(hf, data) == pytest.approx(after, abs=1e-5)


@pytest.mark.parametrize("name", ["BigBirdModel", "BigBirdForQuestionAnswering", "BigBirdForTokenClassification",
                                  "BigBirdForMultipleChoice"])
def test_state_dict_under_our_names_loads_into_transformers_with_key_mapping(tmp_path, name):
    # What Trainer.save_model writes for our models: state_dict() as model.safetensors, plus the config.
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = bigbird.BigBirdConfig(**tiny(attention_type="original_full", num_labels=3))
    model = getattr(bigbird, name)(config).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(tmp_path)
    hf, info = getattr(transformers, name).from_pretrained(
        tmp_path, key_mapping=model.transformers_key_mapping, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(6, 120, (2, 2, 16) if name == "BigBirdForMultipleChoice" else (2, 16),
                        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(input_ids=ids)[0], model(input_ids=ids)[0], atol=1e-5, rtol=1e-5)


def test_peft_lora_trains_saves_and_reloads(tmp_path):
    data = _Pairs()
    model = _classifier()
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    wrapped = peft.get_peft_model(model, lora)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("attn.query.lora_A" in n for n in trainable) and any("attn.value.lora_B" in n for n in trainable)
    assert not any("word" in n or "attn.key" in n for n in trainable)
    frozen_before = wrapped.base_model.model.bert.embeddings.word.weight.clone()
    opt = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-2)
    wrapped.train()
    first = None
    for step in range(20):
        batch = data[slice(8 * (step % 4), 8 * (step % 4) + 8)]
        loss = wrapped(**batch).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned = _loss(wrapped, data)
    assert tuned < first
    assert torch.equal(wrapped.base_model.model.bert.embeddings.word.weight, frozen_before)

    wrapped.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    reloaded = peft.PeftModel.from_pretrained(_classifier(), tmp_path / "adapter")
    assert _loss(reloaded, data) == pytest.approx(tuned, abs=1e-5)
    assert _loss(_classifier(), data) != pytest.approx(tuned, abs=1e-3)  # the adapter, not the base, did it
