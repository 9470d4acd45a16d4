"""``generate`` for the causal LM: greedy or sampled decoding with the key/value cache, as transformers'
``generate`` with its common arguments (beam search is not implemented)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set logits outside the top ``k`` and outside the smallest set of probability ``>= top_p`` to -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class GenerationMixin:
    """``generate`` and ``can_generate`` of ``BigBirdForCausalLM``."""

    @classmethod
    def can_generate(cls) -> bool:
        return True

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 max_new_tokens: int | None = None, max_length: int | None = None, min_new_tokens: int = 0,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = 50,
                 top_p: float = 1.0, num_beams: int = 1, num_return_sequences: int = 1,
                 eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """Continue ``input_ids`` token by token.

        Args:
            input_ids: ``(B, L)`` prompts (left-pad batched prompts of different lengths and pass the mask).
            attention_mask: ``(B, L)`` 1 for prompt tokens, 0 for padding.
            max_new_tokens: Tokens to add (takes precedence over ``max_length``).
            max_length: Total length, prompt included (default 20 when neither is given, as transformers).
            min_new_tokens: EOS is not chosen before this many new tokens.
            do_sample: Sample from the (temperature, top-k, top-p filtered) distribution instead of argmax.
            temperature, top_k, top_p: The sampling filters (used only with ``do_sample``).
            num_beams: Must be 1 (beam search is not implemented).
            num_return_sequences: Continuations per prompt (needs ``do_sample`` when above 1).
            eos_token_id: Stop a row at this token (or any of these; default ``config.eos_token_id``, None for
                none); later positions hold ``pad_token_id``.
            pad_token_id: Filler after EOS (default ``config.pad_token_id``).
            generator: Random generator for sampling.

        Returns:
            ``(B * num_return_sequences, L + new)`` token ids, the prompt first.

        Raises:
            NotImplementedError: For ``num_beams > 1``.
            TypeError: For generation arguments not listed here.
            ValueError: For bad lengths, temperature or top-p.
        """
        if kwargs:
            raise TypeError(f"generate() got unsupported arguments {sorted(kwargs)}")
        if num_beams != 1:
            raise NotImplementedError(f"beam search (num_beams={num_beams}) is not implemented; use num_beams=1")
        if not do_sample and num_return_sequences != 1:
            raise ValueError("num_return_sequences > 1 needs do_sample=True (greedy decoding gives one answer)")
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        L = input_ids.shape[1]
        if max_new_tokens is None:
            max_new_tokens = (20 if max_length is None else max_length) - L
            if max_length is None:
                max_new_tokens = max(max_new_tokens, 0)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens} (max_length {max_length}, "
                             f"prompt length {L})")
        max_new_tokens = min(max_new_tokens, self.config.max_position_embeddings - L)
        eos_token_id = self.config.eos_token_id if eos_token_id is None else eos_token_id
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        pad = self.config.pad_token_id if pad_token_id is None else pad_token_id
        if num_return_sequences > 1:
            input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.dtype)
        B = input_ids.shape[0]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self(input_ids, attention_mask=mask, position_ids=position_ids, use_cache=use_cache,
                   logits_to_keep=1)
        tokens, done = input_ids, torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if step < min_new_tokens and eos:
                logits[:, eos] = float("-inf")
            if do_sample:
                logits = _filter_logits(logits / temperature, top_k, top_p)
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            if eos:
                done = done | torch.isin(nxt, torch.tensor(eos, device=nxt.device))
                if bool(done.all()):
                    break
            if step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position_ids = position_ids[:, -1:] + 1
            if use_cache:
                out = self(nxt[:, None], attention_mask=mask, position_ids=position_ids,
                           past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
            else:
                out = self(tokens, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                           use_cache=False, logits_to_keep=1)
        return tokens
