"""The BigBird encoder: embeddings, layers and the bare ``BigBirdModel``."""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bigbird.attention import block_sparse_attention, full_attention
from bigbird.config import BigBirdConfig
from bigbird.layout import SparseLayout, sparse_layout
from bigbird.modeling_utils import BigBirdPreTrainedModel
from bigbird.outputs import BaseModelOutputWithPoolingAndCrossAttentions, tuple_on_request

KV = tuple[torch.Tensor, torch.Tensor]

# functools.partial, not lambdas: a model must pickle (torch.save(model), copies sent to worker processes).
_GELU_TANH = functools.partial(F.gelu, approximate="tanh")
_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": _GELU_TANH,
    "gelu_pytorch_tanh": _GELU_TANH,
    "gelu_fast": _GELU_TANH,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str):
    """The activation function called ``name`` in a HuggingFace config."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class Embeddings(nn.Module):
    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.scale = math.sqrt(config.hidden_size) if config.rescale_embeddings else 1.0

    def forward(self, inputs_embeds: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        x = inputs_embeds * self.scale if self.scale != 1.0 else inputs_embeds
        x = x + self.token_type(token_type_ids) + self.position(position_ids)
        return self.norm(self.dropout(x))


class SelfAttention(nn.Module):
    """Query/key/value projections around the attention kernels (``attention.self`` in HF)."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.dropout_p = config.attention_probs_dropout_prob

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], self.num_heads, self.head_size).transpose(1, 2)  # (B, H, L, D)

    def forward(self, x: torch.Tensor, *, ctx: _Context, layout: SparseLayout | None = None,
                past: KV | None = None, memory: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, KV]:
        q = self._heads(self.query(x))
        src = x if memory is None else memory
        if memory is not None and past is not None:
            k, v = past  # cross-attention keys/values of the encoder never change
        else:
            k, v = self._heads(self.key(src)), self._heads(self.value(src))
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if layout is not None and memory is None:
            out, probs = block_sparse_attention(q, k, v, layout=layout, key_mask=ctx.key_mask,
                                                need_weights=ctx.need_weights)
        else:
            bias = ctx.cross_bias if memory is not None else ctx.bias
            out, probs = full_attention(q, k, v, bias=bias, need_weights=ctx.need_weights,
                                        dropout_p=self.dropout_p if self.training else 0.0)
        B, H, L, D = out.shape
        return out.transpose(1, 2).reshape(B, L, H * D), probs, (k, v)


class _Context:
    """Per-call attention inputs shared by all layers (masks, layouts)."""

    def __init__(self, *, bias=None, cross_bias=None, key_mask=None, layouts=None, need_weights=False):
        self.bias = bias
        self.cross_bias = cross_bias
        self.key_mask = key_mask
        self.layouts = layouts
        self.need_weights = need_weights


class Layer(nn.Module):
    """Post-norm transformer layer: attention, residual + LayerNorm, MLP, residual + LayerNorm."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(config)
        self.attn_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.add_cross_attention:
            self.cross_attn = SelfAttention(config)
            self.cross_out = nn.Linear(config.hidden_size, config.hidden_size)
            self.cross_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.mlp_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, ctx: _Context, layout: SparseLayout | None = None,
                past: tuple[KV, ...] | None = None, memory: torch.Tensor | None = None):
        a, probs, kv = self.attn(x, ctx=ctx, layout=layout, past=past[0] if past else None)
        x = self.attn_norm(self.dropout(self.attn_out(a)) + x)
        present: tuple[KV, ...] = (kv,)
        cross_probs = None
        if memory is not None:
            c, cross_probs, ckv = self.cross_attn(x, ctx=ctx, past=past[1] if past and len(past) > 1 else None,
                                                  memory=memory)
            x = self.cross_norm(self.dropout(self.cross_out(c)) + x)
            present = (kv, ckv)
        x = self.mlp_norm(self.dropout(self.mlp_out(self.act(self.mlp_in(x)))) + x)
        return x, probs, cross_probs, present


def _bias_from_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1/0 (or bool) mask -> additive bias with the dtype's minimum for masked positions."""
    return torch.where(mask.bool(), 0.0, torch.finfo(dtype).min).to(dtype)


class BigBirdModel(BigBirdPreTrainedModel):
    """The bare BigBird encoder (or decoder with ``config.is_decoder``), with an optional pooler.

    Args:
        config: The model configuration.
        add_pooling_layer: Whether to build the tanh pooler over the first token.
    """

    def __init__(self, config: BigBirdConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.gradient_checkpointing = False
        self.gradient_checkpointing_kwargs: dict = {"use_reentrant": False}
        self.checkpoint_every_n_layers = 1
        self.checkpoint_offload = False
        self.post_init()
        if getattr(config, "gradient_checkpointing", False):
            self.gradient_checkpointing = True  # the legacy config switch

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word = value

    def attention_kind(self, seq_len: int, past_len: int = 0) -> str:
        """The attention a call of ``seq_len`` tokens uses: a per-call choice, never stored.

        Block-sparse needs more than ``(5 + 2 r) * block_size`` tokens (the reference's rule); decoders
        and cached or cross-attending calls use full attention.
        """
        c = self.config
        if (c.attention_type == "block_sparse" and not c.is_decoder and not c.add_cross_attention
                and past_len == 0 and seq_len > c.min_sparse_length):
            return "block_sparse"
        return "original_full"

    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, token_type_ids, past_len) -> tuple[int, int]:
        c = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, sequence), got shape {tuple(input_ids.shape)}")
            if input_ids.dtype.is_floating_point:
                raise TypeError(f"input_ids must be integers, got {input_ids.dtype}")
            B, L = input_ids.shape
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != c.hidden_size:
                raise ValueError(f"inputs_embeds must be (batch, sequence, {c.hidden_size}), "
                                 f"got shape {tuple(inputs_embeds.shape)}")
            B, L = inputs_embeds.shape[:2]
        if L == 0:
            raise ValueError("the input sequence is empty")
        if L + past_len > c.max_position_embeddings:
            raise ValueError(f"sequence length {L + past_len} exceeds max_position_embeddings "
                             f"{c.max_position_embeddings}; split the input into windows")
        if attention_mask is not None and tuple(attention_mask.shape) != (B, L + past_len):
            raise ValueError(f"attention_mask must have shape {(B, L + past_len)}, got {tuple(attention_mask.shape)}")
        if token_type_ids is not None and tuple(token_type_ids.shape) != (B, L):
            raise ValueError(f"token_type_ids must have shape {(B, L)}, got {tuple(token_type_ids.shape)}")
        if not torch.compiler.is_compiling():
            if input_ids is not None and (int(input_ids.max()) >= c.vocab_size or int(input_ids.min()) < 0):
                bad = int(input_ids.max()) if int(input_ids.max()) >= c.vocab_size else int(input_ids.min())
                raise ValueError(f"input id {bad} is outside the vocabulary [0, {c.vocab_size})")
            if token_type_ids is not None and (int(token_type_ids.max()) >= c.type_vocab_size
                                               or int(token_type_ids.min()) < 0):
                raise ValueError(f"token_type_ids must lie in [0, {c.type_vocab_size}), got max "
                                 f"{int(token_type_ids.max())}")
        return B, L

    @tuple_on_request
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple[tuple[KV, ...], ...] | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """Encode a batch.

        Args:
            input_ids: ``(B, L)`` token ids; or pass ``inputs_embeds`` ``(B, L, hidden)``.
            attention_mask: ``(B, L)`` 1 for tokens, 0 for padding (``(B, past + L)`` with a cache).
            token_type_ids: ``(B, L)`` segment ids (default 0).
            position_ids: ``(B, L)`` positions (default ``past .. past + L - 1``).
            encoder_hidden_states, encoder_attention_mask: Memory for cross-attention (decoders only).
            past_key_values: The cache returned by a previous call (decoders only).
            use_cache: Return ``past_key_values`` (default ``config.use_cache`` for decoders).
            output_attentions: Return each layer's attention probabilities (dense ``L x L``; default
                ``config.output_attentions``).
            output_hidden_states: Return the embeddings and each layer's output (default
                ``config.output_hidden_states``).
            return_dict: False returns a tuple of the set fields (default ``config.return_dict``).

        Returns:
            ``last_hidden_state`` ``(B, L, hidden)``, ``pooler_output`` ``(B, hidden)`` and the optional fields.

        Raises:
            ValueError: On inputs of the wrong shape, ids outside the vocabulary or too long a sequence.
        """
        c = self.config
        output_attentions = c.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = c.output_hidden_states if output_hidden_states is None else output_hidden_states
        past_len = past_key_values[0][0][0].shape[2] if past_key_values else 0
        B, L = self._check_inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, past_len)
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        use_cache = (c.use_cache if use_cache is None else use_cache) and c.is_decoder
        kind = self.attention_kind(L, past_len)
        if attention_mask is None:
            attention_mask = torch.ones(B, L + past_len, device=device, dtype=torch.long)
        if token_type_ids is None:
            token_type_ids = torch.zeros(B, L, dtype=torch.long, device=device)
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + L, device=device).expand(B, L)
        if inputs_embeds is None:
            inputs_embeds = self.embeddings.word(input_ids)

        pad = (-L) % c.block_size if kind == "block_sparse" else 0
        if pad:
            # Pad right to a whole number of blocks; the padding is masked out and trimmed afterwards.
            pad_ids = torch.full((B, pad), c.pad_token_id, dtype=torch.long, device=device)
            inputs_embeds = torch.cat([inputs_embeds, self.embeddings.word(pad_ids)], dim=1)
            attention_mask = F.pad(attention_mask, (0, pad), value=0)
            token_type_ids = F.pad(token_type_ids, (0, pad), value=0)
            pad_pos = torch.arange(L, L + pad, device=device).clamp(max=c.max_position_embeddings - 1)
            position_ids = torch.cat([position_ids, pad_pos.expand(B, pad)], dim=1)

        x = self.embeddings(inputs_embeds, token_type_ids, position_ids)
        dtype = x.dtype
        ctx = _Context(need_weights=output_attentions)
        if kind == "block_sparse":
            ctx.key_mask = attention_mask
            # "seeded": the original's draw, training and eval; "transformers": its training draw / zeros.
            compat = c.random_attention_eval == "transformers"
            ctx.layouts = [
                sparse_layout(seed=i, seq_len=L + pad, block_size=c.block_size,
                              num_random_blocks=c.num_random_blocks, num_heads=c.num_attention_heads,
                              max_seq_len=c.max_position_embeddings, zero_random=compat and not self.training,
                              plan="transformers" if compat else "original", device=device)
                for i in range(c.num_hidden_layers)
            ]
        else:
            keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, past + L)
            if c.is_decoder:
                causal = torch.ones(L, L + past_len, dtype=torch.bool, device=device).tril(past_len)
                keep = keep & causal
            ctx.bias = _bias_from_mask(keep, dtype)
        if encoder_hidden_states is not None:
            if not c.add_cross_attention:
                raise ValueError("encoder_hidden_states needs a model built with config.add_cross_attention=True")
            mem_mask = encoder_attention_mask
            if mem_mask is None:
                mem_mask = torch.ones(encoder_hidden_states.shape[:2], device=device)
            ctx.cross_bias = _bias_from_mask(mem_mask[:, None, None, :], dtype)

        all_hidden = [x] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        all_cross = [] if output_attentions and encoder_hidden_states is not None else None
        presents = [] if use_cache else None
        for i, layer in enumerate(self.layers):
            layout = ctx.layouts[i] if ctx.layouts is not None else None
            past = past_key_values[i] if past_key_values else None
            if self.gradient_checkpointing and self.training and i % self.checkpoint_every_n_layers == 0:
                offload = torch.autograd.graph.save_on_cpu(pin_memory=x.is_cuda) if self.checkpoint_offload \
                    else contextlib.nullcontext()
                with offload:
                    x, probs, cprobs, present = checkpoint(layer, x, ctx, layout, past, encoder_hidden_states,
                                                           **self.gradient_checkpointing_kwargs)
            else:
                x, probs, cprobs, present = layer(x, ctx, layout, past, encoder_hidden_states)
            if all_hidden is not None:
                all_hidden.append(x)
            if all_attn is not None:
                all_attn.append(probs)
            if all_cross is not None:
                all_cross.append(cprobs)
            if presents is not None:
                presents.append(present)

        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        if pad:
            x = x[:, :L]
            if all_hidden is not None:
                all_hidden = [h[:, :L] for h in all_hidden]
            if all_attn is not None:
                all_attn = [a[:, :, :L, :L] for a in all_attn]
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=x,
            pooler_output=pooled,
            past_key_values=tuple(presents) if presents is not None else None,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(all_attn) if all_attn is not None else None,
            cross_attentions=tuple(all_cross) if all_cross is not None else None,
        )
