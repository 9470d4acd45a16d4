"""Parity of every BigBird class with transformers on the same random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import bigbird
from tests.helpers import random_batch, save_reference, tiny

ATOL = 1e-4
HEADS = ["BigBirdModel", "BigBirdForPreTraining", "BigBirdForMaskedLM", "BigBirdForSequenceClassification",
         "BigBirdForTokenClassification", "BigBirdForQuestionAnswering"]


def _main_output(out):
    for key in ("last_hidden_state", "prediction_logits", "start_logits", "logits"):
        value = getattr(out, key, None)
        if value is not None:
            return key, value
    raise AssertionError("no output")


def _pair(tmp_path, cls_name, **overrides):
    ref = save_reference(cls_name, tmp_path, **overrides)
    ours = getattr(bigbird, cls_name).from_pretrained(tmp_path)
    return ref, ours


@pytest.mark.parametrize("cls_name", HEADS)
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
@pytest.mark.parametrize("length", [128, 203])
def test_heads_match_transformers(tmp_path, cls_name, attention_type, length):
    ref, ours = _pair(tmp_path, cls_name, attention_type=attention_type)
    ids, mask = random_batch(2, length, pad_from=length - 37)
    ids[:, 30] = 5  # a [SEP] for the QA head's question length
    ref.train()  # transformers draws the seeded random blocks only in training mode
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        o = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    key, a = _main_output(r)
    b = getattr(o, key)
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= ATOL
    assert len(o.hidden_states) == len(r.hidden_states) == 3
    for h_ref, h_ours in zip(r.hidden_states, o.hidden_states):
        h_ref = h_ref[:, :length]
        assert (h_ref - h_ours)[mask.bool()].abs().max().item() <= ATOL
    assert ours.config.attention_type == attention_type  # forward never rewrites the config


@pytest.mark.parametrize("block_size,num_random_blocks,length", [(4, 1, 100), (8, 3, 200), (16, 2, 330), (16, 3, 1024)])
def test_block_settings_match_transformers(tmp_path, block_size, num_random_blocks, length):
    # 4096 positions: transformers' paper plan then draws over the original's 4,096 (bigbird.layout)
    ref, ours = _pair(tmp_path, "BigBirdModel", block_size=block_size, num_random_blocks=num_random_blocks,
                      max_position_embeddings=4096)
    assert ours.attention_kind(length) == "block_sparse"
    ids, mask = random_batch(2, length, pad_from=length // 2)
    ref.train()
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        b = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (a - b).abs().max().item() <= ATOL


def test_transformers_eval_mode_is_reproduced_on_request(tmp_path):
    ref = save_reference("BigBirdModel", tmp_path)
    seeded = bigbird.BigBirdModel.from_pretrained(tmp_path)
    compat = bigbird.BigBirdModel.from_pretrained(tmp_path, random_attention_eval="transformers")
    ids, mask = random_batch(2, 200, pad_from=150)
    ref.eval()
    with torch.no_grad():
        a_eval = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        ref.train()
        a_train = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        b_compat = compat(input_ids=ids, attention_mask=mask).last_hidden_state
        b_seeded = seeded(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (a_eval - b_compat).abs().max().item() <= ATOL
    assert (a_train - b_seeded).abs().max().item() <= ATOL
    # transformers' eval mode really is a different function: the option matters.
    assert (a_eval - a_train).abs().max().item() > 1e-3


def test_losses_and_gradients_match(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdForMaskedLM")
    ids, mask = random_batch(2, 150, pad_from=120)
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.2, ids, -100)
    ref.train()
    ours.train()
    r = ref(input_ids=ids, attention_mask=mask, labels=labels)
    o = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert abs(r.loss.item() - o.loss.item()) <= ATOL
    r.loss.backward()
    o.loss.backward()
    ref_grads = {n: p.grad for n, p in ref.named_parameters()}
    checked = 0
    for name, p in ours.named_parameters():
        hf_name = bigbird.checkpoint.ours_to_hf(name)
        if hf_name in ref_grads and ref_grads[hf_name] is not None:
            assert (ref_grads[hf_name] - p.grad).abs().max().item() <= ATOL, name
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("problem_type,labels", [
    ("single_label_classification", torch.tensor([0, 2])),
    ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
    ("regression", torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]])),
])
def test_sequence_classification_losses(tmp_path, problem_type, labels):
    ref, ours = _pair(tmp_path, "BigBirdForSequenceClassification", num_labels=3, problem_type=problem_type)
    ids, mask = random_batch(2, 90)
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, labels=labels)
        o = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert abs(r.loss.item() - o.loss.item()) <= ATOL


def test_problem_type_inferred_per_call_without_touching_config(tmp_path):
    _, ours = _pair(tmp_path, "BigBirdForSequenceClassification", num_labels=3)
    ids, mask = random_batch(2, 40)
    ours(input_ids=ids, labels=torch.tensor([1, 2]))
    assert ours.config.problem_type is None
    loss = ours(input_ids=ids, labels=torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])).loss
    assert ours.config.problem_type is None and torch.isfinite(loss)


def test_pretraining_loss_with_next_sentence(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdForPreTraining")
    ids, mask = random_batch(2, 100)
    labels = ids.clone()
    nsp = torch.tensor([0, 1])
    with torch.no_grad():
        r = ref(input_ids=ids, labels=labels, next_sentence_label=nsp)
        o = ours(input_ids=ids, labels=labels, next_sentence_label=nsp)
    assert abs(r.loss.item() - o.loss.item()) <= ATOL
    assert (r.seq_relationship_logits - o.seq_relationship_logits).abs().max() <= ATOL


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_multiple_choice(tmp_path, attention_type):
    ref, ours = _pair(tmp_path, "BigBirdForMultipleChoice", attention_type=attention_type)
    ids, mask = random_batch(6, 130, pad_from=100)
    ids, mask = ids.view(2, 3, 130), mask.view(2, 3, 130)
    labels = torch.tensor([2, 0])
    ref.train()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, labels=labels)
        o = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert o.logits.shape == (2, 3)
    assert (r.logits - o.logits).abs().max() <= ATOL
    assert abs(r.loss.item() - o.loss.item()) <= ATOL


def test_question_answering_masks_the_question(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdForQuestionAnswering")
    ids, mask = random_batch(2, 120)
    ids[0, 10] = 5
    ids[1, 25] = 5
    with torch.no_grad():
        o = ours(input_ids=ids, attention_mask=mask, start_positions=torch.tensor([40, 50]),
                 end_positions=torch.tensor([45, 52]))
        r = ref(input_ids=ids, attention_mask=mask, start_positions=torch.tensor([40, 50]),
                end_positions=torch.tensor([45, 52]))
    assert (o.start_logits[0, 1:11] < -1e5).all() and (o.start_logits[0, 11:] > -1e5).all()
    assert (o.end_logits[1, 1:26] < -1e5).all()
    assert o.start_logits[0, 0] > -1e5  # [CLS] stays available
    assert abs(r.loss.item() - o.loss.item()) <= ATOL
    explicit = ours(input_ids=ids, question_lengths=torch.tensor([[11], [26]]))
    assert torch.allclose(explicit.start_logits, o.start_logits)


def test_causal_lm_with_cache_matches_transformers_and_full_forward(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdForCausalLM", is_decoder=True, attention_type="original_full")
    ids, _ = random_batch(2, 24)
    labels = ids.clone()
    with torch.no_grad():
        r = ref(input_ids=ids, labels=labels)
        full = ours(input_ids=ids, labels=labels)
        assert (r.logits - full.logits).abs().max() <= ATOL
        assert abs(r.loss.item() - full.loss.item()) <= ATOL
        first = ours(input_ids=ids[:, :20], use_cache=True)
        step = ours(input_ids=ids[:, 20:], past_key_values=first.past_key_values, use_cache=True)
        assert (step.logits - full.logits[:, 20:]).abs().max() <= ATOL
        last = ours(input_ids=ids, logits_to_keep=1)
        assert last.logits.shape == (2, 1, 120)
        assert torch.allclose(last.logits[:, 0], full.logits[:, -1], atol=1e-5)
    generated = ours.generate(ids[:, :5], max_new_tokens=4)
    assert generated.shape == (2, 9)
    with torch.no_grad():
        greedy = ref.generate(ids[:, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(generated, greedy)


def test_causal_decoder_is_causal_even_when_block_sparse_is_configured(tmp_path):
    _, ours = _pair(tmp_path, "BigBirdForCausalLM", is_decoder=True)
    ids, _ = random_batch(1, 200)
    changed = ids.clone()
    changed[0, 150:] = 7
    with torch.no_grad():
        a = ours(input_ids=ids).logits
        b = ours(input_ids=changed).logits
    assert torch.allclose(a[:, :150], b[:, :150], atol=1e-5)


def test_short_input_fallback_is_per_call(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdModel")
    short, _ = random_batch(1, 40)
    long, _ = random_batch(1, 200)
    assert ours.attention_kind(40) == "original_full" and ours.attention_kind(200) == "block_sparse"
    with torch.no_grad():
        before = ours(input_ids=long).last_hidden_state
        ours(input_ids=short)
        after = ours(input_ids=long).last_hidden_state
    assert torch.equal(before, after)
    assert ours.config.attention_type == "block_sparse"


def test_num_random_blocks_zero_works(tmp_path):
    model = bigbird.BigBirdModel(bigbird.BigBirdConfig(**tiny(num_random_blocks=0)))
    ids, mask = random_batch(2, 104, pad_from=70)
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert model.attention_kind(104) == "block_sparse"
    assert torch.isfinite(out.last_hidden_state).all()
    # Every query of the middle blocks sees exactly its window and the two global blocks.
    probs = out.attentions[0][0, 0]
    assert ((probs[20] > 0).sum().item()) == 5 * 8


def test_sparse_attention_probabilities_match_transformers(tmp_path):
    ref, ours = _pair(tmp_path, "BigBirdModel")
    ids, mask = random_batch(1, 160)
    ref.train()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, output_attentions=True)
        o = ours(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert len(o.attentions) == 2 and o.attentions[0].shape == (1, 4, 160, 160)
    assert (r.attentions[0] - o.attentions[0]).abs().max() <= ATOL


def test_global_numpy_and_torch_random_state_untouched(tmp_path):
    _, ours = _pair(tmp_path, "BigBirdModel")
    np.random.seed(123)
    torch.manual_seed(123)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    ids, _ = random_batch(1, 256)
    with torch.no_grad():
        ours(input_ids=ids)
    assert np.random.rand() == expected_np
    assert torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs(tmp_path, dtype):
    _, ours = _pair(tmp_path, "BigBirdModel")
    low = bigbird.BigBirdModel.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    ids, mask = random_batch(2, 200, pad_from=150)
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        b = low(input_ids=ids, attention_mask=mask).last_hidden_state
    assert b.dtype == dtype
    assert (a - b.float())[mask.bool()].abs().max() < 0.1


def test_inputs_embeds_equal_input_ids(tmp_path):
    _, ours = _pair(tmp_path, "BigBirdModel")
    ids, mask = random_batch(2, 203, pad_from=160)
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        b = ours(inputs_embeds=ours.embeddings.word(ids), attention_mask=mask).last_hidden_state
    assert torch.allclose(a, b, atol=1e-6)


def test_tuple_style_access(tmp_path):
    _, ours = _pair(tmp_path, "BigBirdModel")
    ids, _ = random_batch(1, 50)
    out = ours(input_ids=ids)
    assert out[0] is out.last_hidden_state and out["pooler_output"] is out.pooler_output


def test_reference_switches_state_but_we_do_not(tmp_path):
    """The reference permanently switches to full attention after one short input; we keep sparse."""
    ref, ours = _pair(tmp_path, "BigBirdModel")
    short, _ = random_batch(1, 40)
    with torch.no_grad():
        ref(input_ids=short)
        ours(input_ids=short)
    assert ref.attention_type == "original_full"
    assert ours.attention_kind(200) == "block_sparse"
    assert isinstance(ref, transformers.BigBirdModel)


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_torch_compile_full_graph(tmp_path, attention_type):
    """One graph, no breaks: no host-side numpy or data-dependent Python in forward."""
    _, ours = _pair(tmp_path, "BigBirdForMaskedLM", attention_type=attention_type)
    ids, mask = random_batch(2, 200, pad_from=150)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask).logits
        got = compiled(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(expected, got, atol=1e-5)
