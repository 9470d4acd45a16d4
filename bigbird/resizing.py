"""``resize_token_embeddings``: grow or shrink the vocabulary of a model, its output projection with it."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingResizing:
    """``resize_token_embeddings`` of ``BigBirdPreTrainedModel`` (which supplies the embedding accessors)."""

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grow or shrink the vocabulary to ``new_num_tokens`` (rounded up to ``pad_to_multiple_of``).

        Kept rows are copied; new rows start at the mean of the old embeddings (``mean_resizing``) or are drawn
        like fresh weights. The output projection (and its bias) follows, and stays tied when it was tied.

        Returns:
            The new input embedding module.
        """
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        n = old.num_embeddings if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0:
                raise ValueError(f"Asking to pad the embedding matrix to a multiple of `{pad_to_multiple_of}`, which is "
                                 "not and integer. Please make sure to pass an integer")
            n = -(-n // pad_to_multiple_of) * pad_to_multiple_of
        if n <= 0:
            raise ValueError(f"new_num_tokens must be positive, got {new_num_tokens!r}")
        if n != old.num_embeddings:
            keep = min(n, old.num_embeddings)
            w = old.weight
            new = nn.Embedding(n, old.embedding_dim, padding_idx=old.padding_idx if (old.padding_idx or 0) < n else None,
                               device=w.device, dtype=w.dtype)
            with torch.no_grad():
                if mean_resizing:
                    new.weight[:] = w.float().mean(0).to(w.dtype)
                else:
                    self._init_weights(new)
                new.weight[:keep] = w[:keep]
            new._is_hf_initialized = True
            self.set_input_embeddings(new)
            out = self.get_output_embeddings()
            if out is not None:
                self._resize_output(out, n, keep)
        self.config.vocab_size = n
        self.tie_weights()
        return self.get_input_embeddings()

    def _resize_output(self, out: nn.Linear, n: int, keep: int) -> None:
        new = nn.Linear(out.in_features, n, bias=out.bias is not None, device=out.weight.device,
                        dtype=out.weight.dtype)
        with torch.no_grad():
            new.weight[:] = out.weight.float().mean(0).to(out.weight.dtype)
            new.weight[:keep] = out.weight[:keep]
            if out.bias is not None:
                new.bias.zero_()
                new.bias[:keep] = out.bias[:keep]
        new._is_hf_initialized = True
        self.set_output_embeddings(new)
