"""Base class of every BigBird model: weight init and tying, embeddings, gradient checkpointing, state dicts.

Loading and saving (``from_pretrained`` / ``save_pretrained``) live in ``bigbird.pretrained_io``.
Our module names are shorter than transformers' (``bert.layers.0.attn.query`` for
``bert.encoder.layer.0.attention.self.query``); ``load_state_dict`` accepts either naming, and
``hf_state_dict()`` gives the weights under transformers' names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bigbird.checkpoint import BASE_PREFIX, IGNORED_HF, hf_to_ours, ours_to_hf
from bigbird.config import BigBirdConfig
from bigbird.pretrained_io import PretrainedIO
from bigbird.resizing import EmbeddingResizing
from bigbird.tied_weights import register as register_tied_hooks
from bigbird.tied_weights import tied_aliases

logger = logging.getLogger("bigbird")


class CheckpointMismatchError(ValueError, RuntimeError):
    """The checkpoint does not fit the model (names or shapes). A ``ValueError`` here, a ``RuntimeError`` as in
    transformers."""


@dataclass
class LoadReport:
    """What loading did with the checkpoint's keys: HF names (``newly_initialized``, ``unused``) and, as
    transformers' ``output_loading_info`` reports them, this model's own names."""

    newly_initialized: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)


class BigBirdPreTrainedModel(PretrainedIO, EmbeddingResizing, nn.Module):
    """Shared behaviour of ``BigBirdModel`` and the task heads (the surface of transformers'
    ``PreTrainedModel`` that BigBird users call)."""

    config_class = BigBirdConfig
    base_model_prefix = "bert"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Trainer passes num_items_in_batch to models that take **kwargs unless this says no.
    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_missing: list[str] | None = None
    _keys_to_ignore_on_load_unexpected: list[str] | None = None
    _keys_to_ignore_on_save: list[str] | None = None
    _keep_in_fp32_modules: list[str] = []
    _keep_in_fp32_modules_strict: list[str] = []
    # Parameter -> the parameter it is tied to (transformers' format); set by the LM heads.
    _tied_weights_keys: dict[str, str] | None = None
    tp_plan: dict[str, str] = {}
    # Attention is chosen per call (full or block-sparse); there is no transformers-style dispatch to set.
    _supports_sdpa = False
    _supports_flash_attn = False
    _supports_flex_attn = False
    _no_split_modules = ["Layer"]
    # Parameters a checkpoint may lack: the task heads (and the pooler) are new when fine-tuning.
    _optional_prefixes: tuple[str, ...] = ("bert.pooler.",)

    def __init__(self, config: BigBirdConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if not isinstance(config, BigBirdConfig):
            raise TypeError(f"config must be a BigBirdConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.load_report = LoadReport()
        self.warnings_issued: dict[str, bool] = {}
        self._input_grad_hook: Any = None
        # state_dict() lists a tied output embedding once (see bigbird.tied_weights: Trainer can save it).
        register_tied_hooks(self)

    @classmethod
    def _from_config(cls, config: BigBirdConfig, *, dtype: torch.dtype | str | None = None,
                     torch_dtype: torch.dtype | str | None = None, **kwargs: Any):
        """A freshly initialised model of ``config`` (transformers' ``_from_config``)."""
        from bigbird.config import _as_dtype

        kwargs.pop("attn_implementation", None)  # attention is chosen per call
        model = cls(config, **kwargs)
        dtype = _as_dtype(dtype if dtype is not None else torch_dtype)
        return model.to(dtype) if isinstance(dtype, torch.dtype) else model

    from_config = _from_config

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """transformers' attention switch: ours is chosen per call, there is nothing to set."""
        return False

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        return False

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate`` works for this class (only the causal LM)."""
        return False

    # ----------------------------------------------------------------------------------- weights
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def post_init(self) -> None:
        """Initialise the weights of modules not initialised yet (a head's encoder was, by its own
        ``post_init``; resized embeddings keep their values) and tie the output embeddings."""
        if not any(p.is_meta for p in self.parameters()):
            for module in self.modules():
                if not getattr(module, "_is_hf_initialized", False):
                    self._init_weights(module)
                    module._is_hf_initialized = True
        self.tie_weights()
        if getattr(self.config, "gradient_checkpointing", False) and self.base_model is not self:
            self.activation_checkpointing_enable()  # the legacy config switch

    def init_weights(self) -> None:
        """Re-initialise every weight (as at construction) and tie the output embeddings."""
        self.apply(self._init_weights)
        self.tie_weights()

    @property
    def vocab_size(self) -> int:
        return self.get_input_embeddings().num_embeddings

    def get_input_embeddings(self) -> nn.Embedding:
        base = self.base_model
        if base is self:
            raise NotImplementedError(f"{type(self).__name__} must define get_input_embeddings")
        return base.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        base = self.base_model
        if base is self:
            raise NotImplementedError(f"{type(self).__name__} must define set_input_embeddings")
        base.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear | None:
        return None

    def set_output_embeddings(self, value: nn.Linear) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no output embeddings")

    def tie_weights(self) -> None:
        out = self.get_output_embeddings()
        if out is not None and self.config.tie_word_embeddings:
            out.weight = self.get_input_embeddings().weight

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of (distinct) parameters, optionally only trainable ones and without embedding matrices."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters()
                   if id(p) not in skip and (p.requires_grad or not only_trainable))

    # ---------------------------------------------------------------------- gradient checkpointing
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """Recompute layers in the backward pass (less memory, more compute).

        Args:
            activation_checkpointing_kwargs: Passed to ``torch.utils.checkpoint.checkpoint`` (default
                ``use_reentrant=False``; reentrant checkpointing also turns on ``enable_input_require_grads``).
            every_n_layers: Checkpoint layers 0, n, 2n, ... only.
            offload: Keep the saved activations in (pinned) host memory.
        """
        if not isinstance(every_n_layers, int) or every_n_layers < 1:
            raise ValueError(f"every_n_layers must be a positive integer, got {every_n_layers!r}")
        kwargs = {"use_reentrant": False, **(activation_checkpointing_kwargs or {})}
        base = self.base_model
        base.gradient_checkpointing = True
        base.gradient_checkpointing_kwargs = kwargs
        base.checkpoint_every_n_layers = every_n_layers
        base.checkpoint_offload = offload
        if kwargs["use_reentrant"]:
            # Reentrant checkpointing only back-propagates into layers whose inputs require grad.
            self.enable_input_require_grads()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None,
                                      every_n_layers: int = 1, offload: bool = False) -> None:
        """transformers' older name of ``activation_checkpointing_enable``."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing = False

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_activation_checkpointing(self) -> bool:
        return bool(getattr(self.base_model, "gradient_checkpointing", False))

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require grad (what PEFT and reentrant checkpointing need when
        the embeddings are frozen)."""
        if self._input_grad_hook is None:
            def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
                output.requires_grad_(True)
            self._input_grad_hook = self.get_input_embeddings().register_forward_hook(hook)

    def disable_input_require_grads(self) -> None:
        if self._input_grad_hook is not None:
            self._input_grad_hook.remove()
            self._input_grad_hook = None

    # ------------------------------------------------------------------------------ state dicts
    def _canonical(self, name: str) -> str:
        """Our parameter name with the base prefix, whatever this class is."""
        return name if self.base_model is not self else BASE_PREFIX + name

    def _local(self, canonical: str) -> str:
        return canonical if self.base_model is not self else canonical[len(BASE_PREFIX):]

    def _tied_output(self) -> bool:
        return self.get_output_embeddings() is not None and bool(self.config.tie_word_embeddings)

    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        """``state_dict()`` with the tied aliases it leaves out (every parameter name this model has)."""
        state = self.state_dict()
        for alias in tied_aliases(self):
            state[alias] = self.get_parameter(alias).detach()
        return state

    def hf_state_dict(self, state: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Weights under transformers' names (tied output weights left out): this model's, or ``state``
        (named as ours or as transformers', e.g. from ``state_dict()``)."""
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        names = {self._canonical(n) for n in self._full_state_dict()}
        own = self.state_dict() if state is None else state
        for name, tensor in own.items():
            canonical = self._to_canonical(name, names)
            if canonical is None:
                raise CheckpointMismatchError(f"state dict key {name!r} belongs to no BigBird module")
            if self._tied_output() and canonical == "lm_head.decoder.weight":
                continue
            key = id(tensor)
            if key in seen and tensor.data_ptr() != 0:
                continue
            seen.add(key)
            out[ours_to_hf(canonical)] = tensor
        return out

    def _to_canonical(self, name: str, own: set[str] | dict[str, str]) -> str | None:
        """Our canonical name of a key named as ours (with or without ``bert.``) or as transformers'."""
        for candidate in (name, self._canonical(name)):
            if candidate in own:
                return candidate
        return hf_to_ours(name)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` that also accepts transformers' key names (and base-model keys with or
        without the ``bert.`` prefix)."""
        local = set(self._full_state_dict())
        own = {self._canonical(n) for n in local}
        translated: dict[str, Any] = {}
        for name, tensor in state_dict.items():
            if name in local or IGNORED_HF.match(name):
                if name in local:
                    translated[name] = tensor
                continue
            canonical = self._to_canonical(name, own)
            key = self._local(canonical) if canonical is not None else None
            translated[key if key in local else name] = tensor
        return super().load_state_dict(translated, strict=strict, assign=assign)

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], *, strict: bool = False, assign: bool = False,
                           ignore_mismatched_sizes: bool = False, report_only: bool = False) -> LoadReport:
        """Load weights named as in transformers (or as ours).

        Args:
            state: The tensors (a base-model or a head-model checkpoint).
            strict: Also fail on missing head weights and on weights of other heads.
            assign: Assign the tensors as parameters (used with meta-device construction).
            ignore_mismatched_sizes: Skip (and report) tensors whose shape differs instead of failing.
            report_only: Report missing and unknown keys instead of failing on them.

        Returns:
            Which weights were newly initialised and which checkpoint weights went unused.

        Raises:
            CheckpointMismatchError: On keys that belong to no BigBird module, missing encoder weights or shape
                mismatches (a ``ValueError`` and a ``RuntimeError``).
        """
        full = self._full_state_dict()
        own = {self._canonical(n): n for n in full}
        own_shapes = {n: t.shape for n, t in full.items()}
        mapped: dict[str, torch.Tensor] = {}
        unknown, unused, mismatched = [], [], []
        for name, tensor in state.items():
            if IGNORED_HF.match(name):
                continue
            canonical = self._to_canonical(name, own)
            if canonical is None:
                unknown.append(name)
            elif canonical not in own:
                unused.append(name)
            elif tuple(tensor.shape) != tuple(own_shapes[own[canonical]]):
                mismatched.append((own[canonical], tuple(tensor.shape), tuple(own_shapes[own[canonical]])))
            else:
                mapped[own[canonical]] = tensor
        tied = self._tied_output()
        if mismatched and not ignore_mismatched_sizes:
            bad = [f"{ours_to_hf(self._canonical(n))}: checkpoint {a} vs model {b}" for n, a, b in mismatched]
            raise CheckpointMismatchError(f"checkpoint shapes do not match the config: {bad} "
                                          "(pass ignore_mismatched_sizes=True to re-initialise them)")
        skipped = {n for n, _, _ in mismatched}
        missing_all = [c for c, n in own.items() if n not in mapped and n not in skipped
                       and not (tied and c == "lm_head.decoder.weight")]
        missing_base = [c for c in missing_all if c.startswith(BASE_PREFIX)
                        and not c.startswith(self._optional_prefixes)]
        if not report_only:
            if unknown:
                raise CheckpointMismatchError(f"checkpoint has keys that belong to no BigBird module: {sorted(unknown)}")
            if missing_base:
                raise CheckpointMismatchError(
                    f"checkpoint lacks encoder weights: {sorted(ours_to_hf(c) for c in missing_base)}")
            if strict and (missing_all or unused):
                raise CheckpointMismatchError(f"strict load: missing {sorted(ours_to_hf(c) for c in missing_all)}, "
                                              f"unused {sorted(unused)}")
        nn.Module.load_state_dict(self, mapped, strict=False, assign=assign)
        report = LoadReport(
            newly_initialized=sorted(ours_to_hf(c) for c in missing_all + [self._canonical(n) for n in skipped]),
            unused=sorted(unused), missing_keys=sorted(own[c] for c in missing_all),
            unexpected_keys=sorted(unknown + unused), mismatched_keys=mismatched)
        if mismatched:
            logger.warning("Reinit due to size mismatch (checkpoint vs model): %s", mismatched)
        if report.newly_initialized:
            logger.warning("newly initialised weights (train them before use): %s", report.newly_initialized)
        if report.unused:
            logger.info("checkpoint weights not used by %s: %s", type(self).__name__, report.unused)
        return report
