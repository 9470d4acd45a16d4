"""The random blocks and the sparse layout are data: the original BigBird's draws, and transformers' on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

import bigbird
from bigbird.layout import random_blocks, sparse_layout
from tests.helpers import random_batch, save_reference

# The original's own draws (google-research/bigbird, seed = layer index); see fixtures/reference/README.md.
REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "reference" / "original_random_blocks.json")
                       .read_text())["cases"]
SETTINGS = sorted({(c["seq_len"], c["block_size"], c["num_random_blocks"], c["num_heads"]) for c in REFERENCE})


def _case_id(case: dict) -> str:
    return f"L{case['seq_len']}-bs{case['block_size']}-r{case['num_random_blocks']}-layer{case['layer']}"


def _reference_draw(seed: int, seq_len: int, block_size: int, r: int, heads: int, max_len: int) -> np.ndarray:
    """transformers' training-mode draw, through its own methods (they read numpy's global state)."""
    config = transformers.BigBirdConfig(hidden_size=heads * 4, num_attention_heads=heads, block_size=block_size,
                                        num_random_blocks=r, max_position_embeddings=max_len)
    attn = BigBirdBlockSparseAttention(config, seed=seed).train()
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        if seq_len in (1024, 3072, 4096):
            draw = [attn._bigbird_block_rand_mask(max_len, max_len, block_size, block_size, r, last_idx=1024)
                    [: seq_len // block_size - 2] for _ in range(heads)]
        else:
            plan_len, plan_num = attn._get_rand_attn_plan(seq_len, block_size, r)
            draw = attn._bigbird_block_rand_mask_with_head(seq_len, seq_len, block_size, block_size, heads,
                                                           plan_len, plan_num)
    finally:
        np.random.set_state(state)
    return np.stack(draw)


@pytest.mark.parametrize("case", REFERENCE, ids=_case_id)
def test_random_blocks_equal_the_original_draw(case):
    expected = np.array(case["random_blocks"])
    for max_seq_len in (None, case["seq_len"], 4096, 8192):  # the original ignores max_position_embeddings
        ours = random_blocks(seed=case["layer"], seq_len=case["seq_len"], block_size=case["block_size"],
                             num_random_blocks=case["num_random_blocks"], num_heads=case["num_heads"],
                             max_seq_len=max_seq_len)
        assert ours.shape == expected.shape
        assert np.array_equal(ours, expected), max_seq_len
        layout = sparse_layout(seed=case["layer"], seq_len=case["seq_len"], block_size=case["block_size"],
                               num_random_blocks=case["num_random_blocks"], num_heads=case["num_heads"],
                               max_seq_len=max_seq_len)
        assert torch.equal(layout.blocks[:, :, 5:], torch.from_numpy(expected))


def _block_mass_hook(bs: int):
    """A layer's forward hook that shrinks its (B, H, L, L) probabilities to (B, H, n, n) mean block mass as
    soon as the layer returns, so twelve layers at 4,096 tokens do not hold 10 GB at once."""

    def hook(module, inputs, output):
        x, probs, cross, present = output
        if probs is None:
            return output
        B, H, L, _ = probs.shape
        return x, probs.reshape(B, H, L // bs, bs, L // bs, bs).sum(dim=(3, 5)) / bs, cross, present

    return hook


@pytest.mark.parametrize("seq_len,block_size,r,heads", SETTINGS)
def test_output_attentions_show_the_original_random_blocks(seq_len, block_size, r, heads):
    """With the queries zeroed every attended key gets the same score, so each middle query block puts
    ``count(b) / slots`` of its mass on key block ``b``: the multiset of its random blocks is visible."""
    layers = 1 + max(c["layer"] for c in REFERENCE)
    config = bigbird.BigBirdConfig(vocab_size=32, hidden_size=2 * heads, num_attention_heads=heads,
                                   intermediate_size=8, num_hidden_layers=layers, max_position_embeddings=4096,
                                   block_size=block_size, num_random_blocks=r, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)
    model = bigbird.BigBirdModel(config).eval()
    assert config.random_attention_eval == "seeded" and model.attention_kind(seq_len) == "block_sparse"
    with torch.no_grad():
        for layer in model.layers:
            layer.attn.query.weight.zero_()
            layer.attn.query.bias.zero_()
            layer.register_forward_hook(_block_mass_hook(block_size))
        ids = torch.arange(seq_len).remainder(30).add(2)[None]
        out = model(input_ids=ids, output_attentions=True)
    cases = [c for c in REFERENCE if (c["seq_len"], c["block_size"], c["num_random_blocks"]) == (seq_len,
                                                                                                  block_size, r)]
    assert len(cases) == layers
    for case in cases:
        mass = out.attentions[case["layer"]][0, :, 1:-1].double().numpy()  # (H, n-2, n), middle query blocks
        expected = _expected_mass(np.array(case["random_blocks"]), seq_len // block_size)
        worst = np.unravel_index(np.abs(mass - expected).argmax(), mass.shape)
        assert np.abs(mass - expected).max() < 1e-4, (_case_id(case), "head, query block - 1, key block", worst)


def _expected_mass(rand: np.ndarray, n: int) -> np.ndarray:
    """``(H, n-2, n)``: the share of each key block among a middle query block's slots (global 0 and
    ``n-1``, the window without the structural duplicates of blocks 1 and ``n-2``, then ``rand``)."""
    H, M, _ = rand.shape
    q = np.arange(1, n - 1)
    fixed = np.stack([np.zeros_like(q), q - 1, q, q + 1, np.full_like(q, n - 1)], axis=-1)  # (M, 5)
    valid = np.ones_like(fixed, dtype=bool)
    valid[0, 1] = valid[-1, 3] = False
    counts = np.zeros((H, M, n))
    rows = np.broadcast_to(np.arange(M)[:, None], fixed.shape)
    for h in range(H):
        np.add.at(counts[h], (rows[valid], fixed[valid]), 1)
        np.add.at(counts[h], (np.broadcast_to(np.arange(M)[:, None], rand.shape[1:]), rand[h]), 1)
    return counts / counts.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("block_size,r", [(64, 3), (16, 2), (8, 1)])
def test_transformers_plan_is_its_training_draw_and_differs_from_the_original_only_at_2048(block_size, r):
    max_len = 4096
    lengths = sorted({block_size * n for n in range(5 + 2 * r + 1, max_len // block_size + 1, 3)}
                     | {1024, 2048, 3072, 4096})
    for seq_len in lengths:
        for seed in (0, 5):
            ref = _reference_draw(seed, seq_len, block_size, r, 3, max_len)
            kwargs = dict(seed=seed, seq_len=seq_len, block_size=block_size, num_random_blocks=r, num_heads=3)
            assert np.array_equal(random_blocks(**kwargs, max_seq_len=max_len, plan="transformers"), ref)
            original = random_blocks(**kwargs, max_seq_len=max_len)
            # transformers' port leaves 2048 out of the paper lengths and draws the per-head plan there.
            assert np.array_equal(original, ref) == (seq_len != 2048), (seq_len, seed)


def test_transformers_plan_draws_over_max_position_embeddings_the_original_over_4096():
    kwargs = dict(seed=2, seq_len=1024, block_size=16, num_random_blocks=3, num_heads=2)
    ref = _reference_draw(2, 1024, 16, 3, 2, max_len=1024)
    assert np.array_equal(random_blocks(**kwargs, max_seq_len=1024, plan="transformers"), ref)
    assert not np.array_equal(random_blocks(**kwargs, max_seq_len=1024), ref)
    assert np.array_equal(random_blocks(**kwargs, max_seq_len=1024), random_blocks(**kwargs, max_seq_len=4096))
    with pytest.raises(ValueError, match="max_seq_len"):
        random_blocks(**kwargs, plan="transformers")
    with pytest.raises(ValueError, match="'paper'"):
        sparse_layout(**kwargs, plan="paper")


@pytest.mark.parametrize("length,max_len", [(2048, 4096), (1024, 1024)])
def test_model_in_training_follows_transformers_only_in_transformers_mode(tmp_path, length, max_len):
    ref = save_reference("BigBirdModel", tmp_path, max_position_embeddings=max_len, block_size=16).train()
    seeded = bigbird.BigBirdModel.from_pretrained(tmp_path).train()
    compat = bigbird.BigBirdModel.from_pretrained(tmp_path, random_attention_eval="transformers").train()
    ids, mask = random_batch(1, length)
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (compat(input_ids=ids, attention_mask=mask).last_hidden_state - expected).abs().max() <= 1e-5
        # the default keeps the original's blocks, which transformers' training draw does not have here
        assert (seeded(input_ids=ids, attention_mask=mask).last_hidden_state - expected).abs().max() > 1e-3


def test_random_blocks_leave_global_numpy_and_torch_state_alone():
    np.random.seed(7)
    torch.manual_seed(7)
    expected = np.random.rand(), torch.rand(1).item()
    np.random.seed(7)
    torch.manual_seed(7)
    random_blocks.cache_clear()
    for seq_len, plan in ((768, "original"), (2048, "original"), (2048, "transformers"), (1024, "transformers")):
        random_blocks(seed=3, seq_len=seq_len, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096,
                      plan=plan)
    assert (np.random.rand(), torch.rand(1).item()) == expected


def test_layout_is_cached_read_only_and_excludes_structural_duplicates():
    a = sparse_layout(seed=1, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)
    b = sparse_layout(seed=1, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)
    assert a is b
    assert a.blocks.shape == (2, 10, 8)
    dense = a.dense_mask()
    assert dense.shape == (2, 768, 768)
    assert dense[:, :64].all() and dense[:, -64:].all() and dense[:, :, :64].all() and dense[:, :, -64:].all()
    # A middle query block sees 2 global + 3 window + 3 random blocks, all different.
    for h in range(2):
        for i in range(1, 11):
            seen = set(a.blocks[h, i - 1][a.slot_valid[i - 1]].tolist())
            assert len(seen) == a.slot_valid[i - 1].sum().item() == (7 if i in (1, 10) else 8)
            assert {0, i - 1, i, i + 1, 11} <= seen
    with pytest.raises(ValueError, match="not a multiple"):
        sparse_layout(seed=0, seq_len=650, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)


def test_zero_random_points_at_block_zero_like_transformers_eval():
    z = sparse_layout(seed=0, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096,
                      zero_random=True)
    assert (z.blocks[:, :, 5:] == 0).all()
