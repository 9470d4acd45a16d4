"""Base class of every BigBird model: weight init, tying, ``from_pretrained`` and ``save_pretrained``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from bigbird.checkpoint import BASE_PREFIX, IGNORED_HF, hf_to_ours, ours_to_hf, read_state_dict
from bigbird.config import BigBirdConfig

logger = logging.getLogger("bigbird")
M = TypeVar("M", bound="BigBirdPreTrainedModel")


@dataclass
class LoadReport:
    """What ``from_pretrained`` did with the checkpoint's keys (HF names)."""

    newly_initialized: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


class BigBirdPreTrainedModel(nn.Module):
    """Shared behaviour of ``BigBirdModel`` and the task heads."""

    base_model_prefix = "bert"
    # Parameters a checkpoint may lack: the task heads (and the pooler) are new when fine-tuning.
    _optional_prefixes: tuple[str, ...] = ("bert.pooler.",)

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        if not isinstance(config, BigBirdConfig):
            raise TypeError(f"config must be a BigBirdConfig, got {type(config).__name__}")
        self.config = config
        self.load_report = LoadReport()

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
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Linear | None:
        return None

    def tie_weights(self) -> None:
        out = self.get_output_embeddings()
        if out is not None and self.config.tie_word_embeddings:
            out.weight = self.base_model.embeddings.word.weight

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def gradient_checkpointing_enable(self) -> None:
        self.base_model.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing = False

    # ------------------------------------------------------------------------------ state dicts
    def _canonical(self, name: str) -> str:
        """Our parameter name with the base prefix, whatever this class is."""
        return name if self.base_model is not self else BASE_PREFIX + name

    def _local(self, canonical: str) -> str:
        return canonical if self.base_model is not self else canonical[len(BASE_PREFIX):]

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under transformers' names (tied output weights left out)."""
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        tied = self.get_output_embeddings() is not None and self.config.tie_word_embeddings
        for name, tensor in self.state_dict().items():
            canonical = self._canonical(name)
            if tied and canonical == "lm_head.decoder.weight":
                continue
            key = id(tensor)
            if key in seen and tensor.data_ptr() != 0:
                continue
            seen.add(key)
            out[ours_to_hf(canonical)] = tensor
        return out

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], *, strict: bool = False,
                           assign: bool = False) -> LoadReport:
        """Load weights named as in transformers.

        Args:
            state: HF-named tensors (a base-model or a head-model checkpoint).
            strict: Also fail on missing head weights and on weights of other heads.
            assign: Assign the tensors as parameters (used with meta-device construction).

        Returns:
            Which head weights were newly initialised and which checkpoint weights went unused.

        Raises:
            ValueError: On keys that belong to no BigBird module, missing encoder weights or shape mismatches.
        """
        own = {self._canonical(n): n for n in self.state_dict()}
        mapped: dict[str, torch.Tensor] = {}
        unknown, unused = [], []
        for hf_name, tensor in state.items():
            if IGNORED_HF.match(hf_name):
                continue
            canonical = hf_to_ours(hf_name)
            if canonical is None:
                unknown.append(hf_name)
            elif canonical not in own:
                unused.append(hf_name)
            else:
                mapped[own[canonical]] = tensor
        tied = self.get_output_embeddings() is not None and self.config.tie_word_embeddings
        missing_all = [c for c, n in own.items() if n not in mapped and not (tied and c == "lm_head.decoder.weight")]
        missing_base = [c for c in missing_all if c.startswith(BASE_PREFIX)
                        and not c.startswith(self._optional_prefixes)]
        if unknown:
            raise ValueError(f"checkpoint has keys that belong to no BigBird module: {sorted(unknown)}")
        if missing_base:
            raise ValueError(f"checkpoint lacks encoder weights: {sorted(ours_to_hf(c) for c in missing_base)}")
        if strict and (missing_all or unused):
            raise ValueError(f"strict load: missing {sorted(ours_to_hf(c) for c in missing_all)}, "
                             f"unused {sorted(unused)}")
        own_shapes = {n: t.shape for n, t in self.state_dict().items()}
        bad = [f"{ours_to_hf(self._canonical(n))}: checkpoint {tuple(t.shape)} vs model {tuple(own_shapes[n])}"
               for n, t in mapped.items() if t.shape != own_shapes[n]]
        if bad:
            raise ValueError(f"checkpoint shapes do not match the config: {bad}")
        self.load_state_dict(mapped, strict=False, assign=assign)
        report = LoadReport(newly_initialized=sorted(ours_to_hf(c) for c in missing_all), unused=sorted(unused))
        if report.newly_initialized:
            logger.warning("newly initialised weights (train them before use): %s", report.newly_initialized)
        if report.unused:
            logger.info("checkpoint weights not used by %s: %s", type(self).__name__, report.unused)
        return report

    # ------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (sharded with an index past ``max_shard_size``
        bytes) in transformers' format."""
        from safetensors.torch import save_file

        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__]
        config["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.hf_state_dict().items()}
        meta = {"format": "pt"}
        if max_shard_size is None or sum(t.numel() * t.element_size() for t in state.values()) <= max_shard_size:
            save_file(state, str(path / "model.safetensors"), metadata=meta)
            return
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for name, tensor in state.items():
            nbytes = tensor.numel() * tensor.element_size()
            if shards[-1] and size + nbytes > max_shard_size:
                shards.append({})
                size = 0
            shards[-1][name] = tensor
            size += nbytes
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / fname), metadata=meta)
            weight_map.update({k: fname for k in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | os.PathLike, *, config: BigBirdConfig | None = None,
                        revision: str | None = None, cache_dir: str | None = None,
                        local_files_only: bool = False, dtype: torch.dtype | str | None = None,
                        device: torch.device | str | None = None, strict: bool = False,
                        **config_overrides: Any) -> M:
        """Load a model from a folder or hub repository in transformers' format.

        Args:
            name_or_path: A local folder or a hub id such as ``google/bigbird-roberta-base``.
            config: Use this config instead of the checkpoint's ``config.json``.
            revision, cache_dir, local_files_only: Passed to ``huggingface_hub`` (``HF_HUB_OFFLINE`` works).
            dtype: Cast the weights (``torch.bfloat16``, ``"float16"``, ``"auto"`` for the checkpoint's).
            device: Where to put the model.
            strict: Fail on missing head weights or unused checkpoint weights as well.
            **config_overrides: Config fields to change, e.g. ``attention_type="original_full"``, ``num_labels=3``.

        Returns:
            The model in eval mode, with ``load_report`` saying which weights are new.

        Raises:
            FileNotFoundError: If the folder, config or weights do not exist.
            ValueError: If the weights do not fit the model (names or shapes).
        """
        from bigbird.hub import resolve_file, resolve_weights

        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
        if config is None:
            config = BigBirdConfig.from_json_file(resolve_file(name_or_path, "config.json", **hub),
                                                  **config_overrides)
        elif config_overrides:
            config = config.copy(**config_overrides)
        state = read_state_dict(resolve_weights(name_or_path, **hub))
        with torch.device("meta"):
            model = cls(config)
        model.load_report = model.load_hf_state_dict(state, strict=strict, assign=True)
        model.tie_weights()
        model._materialize_missing()
        if dtype == "auto":
            dtype = getattr(config, "torch_dtype", None) or "float32"
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.removeprefix("torch."), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {dtype!r}")
        model.to(device=device, dtype=dtype)
        return model.eval()

    def _materialize_missing(self) -> None:
        """Give parameters the checkpoint lacked (new heads) real storage and their initial values."""
        std = self.config.initializer_range
        for module in self.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if not param.is_meta:
                    continue
                fresh = torch.empty(param.shape, dtype=param.dtype)
                if name == "bias":
                    nn.init.zeros_(fresh)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(fresh)
                else:
                    nn.init.normal_(fresh, mean=0.0, std=std)
                setattr(module, name, nn.Parameter(fresh, requires_grad=param.requires_grad))
        for name, t in list(self.named_parameters()) + list(self.named_buffers()):
            if t.is_meta:
                raise RuntimeError(f"parameter {name} was left uninitialised")
