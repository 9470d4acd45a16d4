"""``from_pretrained`` and ``save_pretrained`` with transformers' keyword arguments, in transformers' format.

Files are transformers' (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, sharded with an
index past ``max_shard_size``), with transformers' parameter names, so either library reads what the other
writes.

``transformers.Trainer.save_model`` calls ``save_pretrained`` only on transformers' own ``PreTrainedModel``
(an ``isinstance`` check in ``Trainer._save``); for our models it writes ``model.state_dict()`` alone: a
``model.safetensors`` under *our* parameter names and no ``config.json``. That folder loads back::

    trainer.save_model(out)
    model.config.save_pretrained(out)          # the config.json Trainer does not write
    ours = bigbird.BigBirdForSequenceClassification.from_pretrained(out)   # either naming is read
    theirs = transformers.BigBirdForSequenceClassification.from_pretrained(
        out, key_mapping=bigbird.BigBirdForSequenceClassification.transformers_key_mapping)

(``from_pretrained(out, config=model.config)`` also works without the config file; nothing Trainer writes there
carries the model's config: the weights file's metadata is fixed by Trainer, ``training_args.bin`` holds the
training arguments.) Heads whose output embeddings are tied to the input ones (masked/causal LM, pre-training)
go the same way: their ``state_dict()`` lists the shared weight once, under ``bert.embeddings.word.weight``, so
that ``safetensors.save_file`` inside ``Trainer._save`` accepts it (``bigbird.tied_weights``), and loading
ties the head again.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import torch

from bigbird.checkpoint import BASE_MAP, HEAD_MAP, check_config_fits_weights, read_state_dict
from bigbird.config import _DEFAULTS, BigBirdConfig, _as_dtype

M = TypeVar("M")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*$", re.IGNORECASE)
_WEIGHT_FILE = re.compile(r"^(model(-\d{5}-of-\d{5})?\.safetensors|pytorch_model(-\d{5}-of-\d{5})?\.bin)"
                          r"(\.index\.json)?$")


def _transformers_key_mapping() -> dict[str, str]:
    """transformers' ``from_pretrained(key_mapping=...)`` that renames our parameter names to its own (regex ->
    replacement, applied to each checkpoint key), built from the one declarative name map."""
    pairs = [("cls.predictions.bias", "lm_head.decoder.bias"), *HEAD_MAP, *BASE_MAP]
    return {re.escape(ours).replace(r"\{i\}", r"(\d+)"): hf.replace("{i}", r"\1") for hf, ours in pairs if hf != ours}


TRANSFORMERS_KEY_MAPPING: dict[str, str] = _transformers_key_mapping()


def parse_size(size: int | str) -> int:
    """Bytes of ``size``: an int, or a string such as ``"10KB"`` (10**4... decimal) or ``"5GiB"`` (binary)."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    m = _SIZE.match(str(size))
    if not m:
        raise ValueError(f"max_shard_size must be an int or a size such as '10KB' or '5GiB', got {size!r}")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def _shards(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


class PretrainedIO:
    """``save_pretrained`` / ``from_pretrained`` of ``BigBirdPreTrainedModel``."""

    #: ``key_mapping=`` for transformers' ``from_pretrained`` on weights saved under our names (what
    #: ``transformers.Trainer.save_model`` writes for our models; see the module docstring).
    transformers_key_mapping: dict[str, str] = TRANSFORMERS_KEY_MAPPING

    def save_pretrained(self, save_directory: str | os.PathLike, *, is_main_process: bool = True,
                        state_dict: dict[str, torch.Tensor] | None = None, push_to_hub: bool = False,
                        max_shard_size: int | str = "50GB", safe_serialization: bool = True,
                        variant: str | None = None, save_original_format: bool = True,
                        save_peft_format: bool = True, token: str | bool | None = None) -> None:
        """Write ``config.json`` and the weights in transformers' format.

        Args:
            save_directory: Folder to write (created if missing); weight files of an earlier save are replaced.
            is_main_process: Write only when True (distributed training calls this on every rank).
            state_dict: Weights to write instead of the model's own (named as ours or as transformers').
            max_shard_size: Split the weights into shards of at most this size (bytes or e.g. ``"10KB"``).
            safe_serialization: safetensors (default) or ``pytorch_model.bin`` via ``torch.save``.
            save_original_format, save_peft_format, token: Accepted for compatibility (the names written are
                always transformers' own).

        Raises:
            NotImplementedError: For ``push_to_hub`` or ``variant``.
            ValueError: For a bad ``max_shard_size``.
        """
        if push_to_hub:
            raise NotImplementedError("push_to_hub is not supported; upload the folder with huggingface_hub")
        if variant is not None:
            raise NotImplementedError(f"weight variants are not supported, got variant={variant!r}")
        limit = parse_size(max_shard_size)
        if not is_main_process:
            return
        path = Path(save_directory)
        if path.is_file():
            raise FileExistsError(f"save_directory {str(path)!r} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        config = self.config.to_file_dict()
        config["architectures"] = [type(self).__name__]
        config["dtype"] = str(self.dtype).removeprefix("torch.")
        (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if self.can_generate():
            c = self.config
            generation = {"_from_model_config": True, "bos_token_id": c.bos_token_id,
                          "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id}
            (path / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.hf_state_dict(state_dict).items()}
        for old in path.iterdir():
            if _WEIGHT_FILE.match(old.name):
                old.unlink()
        prefix, ext = ("model", "safetensors") if safe_serialization else ("pytorch_model", "bin")

        def write(tensors: dict[str, torch.Tensor], target: Path) -> None:
            if safe_serialization:
                from safetensors.torch import save_file

                save_file(tensors, str(target), metadata={"format": "pt"})
            else:
                torch.save(tensors, target)

        total = sum(t.numel() * t.element_size() for t in state.values())
        if total <= limit:
            write(state, path / f"{prefix}.{ext}")
            return
        shards = _shards(state, limit)
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.{ext}"
            write(shard, path / fname)
            weight_map.update({k: fname for k in shard})
        (path / f"{prefix}.{ext}.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: str | os.PathLike | None = None,
                        *model_args: Any,
                        config: BigBirdConfig | None = None, cache_dir: str | None = None,
                        ignore_mismatched_sizes: bool = False, force_download: bool = False,
                        local_files_only: bool = False, token: str | bool | None = None,
                        revision: str | None = None, use_safetensors: bool | None = None,
                        weights_only: bool = True, state_dict: dict[str, torch.Tensor] | None = None,
                        output_loading_info: bool = False, dtype: torch.dtype | str | None = None,
                        torch_dtype: torch.dtype | str | None = None, device: torch.device | str | None = None,
                        device_map: torch.device | str | None = None, subfolder: str = "",
                        strict: bool = False, attn_implementation: str | None = None,
                        low_cpu_mem_usage: bool | None = None, trust_remote_code: bool | None = None,
                        **kwargs: Any) -> M | tuple[M, dict[str, list]]:
        """Load a model from a folder or hub repository in transformers' format.

        Args:
            pretrained_model_name_or_path: A local folder or a hub id such as ``google/bigbird-roberta-base``;
                None with both ``config`` and ``state_dict``.
            *model_args: Passed to the model's constructor (e.g. ``add_pooling_layer``).
            config: Use this config instead of the checkpoint's ``config.json``.
            ignore_mismatched_sizes: Re-initialise weights whose shape differs from the config's (e.g. a new
                ``num_labels``) instead of failing.
            revision, cache_dir, local_files_only: Passed to ``huggingface_hub`` (``HF_HUB_OFFLINE`` works).
            state_dict: Use these weights (named as ours or as transformers') instead of the files.
            output_loading_info: Also return ``{"missing_keys", "unexpected_keys", "mismatched_keys",
                "error_msgs"}`` (sets, in this model's parameter names); missing and unknown keys are then reported
                instead of raising.
            dtype (or ``torch_dtype``): Cast the weights (``torch.bfloat16``, ``"float16"``, ``"auto"`` for the
                checkpoint's).
            device (or ``device_map`` naming one device): Where to put the model.
            subfolder: Read the files from this folder inside ``name_or_path`` (local folders).
            strict: Fail on missing head weights or unused checkpoint weights as well.
            weights_only: Must stay True (pickled code is never run).
            force_download, token, use_safetensors, attn_implementation, low_cpu_mem_usage, trust_remote_code:
                Accepted for compatibility; ``attn_implementation`` must be None, "eager" or "sdpa".
            **kwargs: Config fields to change (``attention_type="original_full"``, ``num_labels=3``) or
                keyword arguments of the model's constructor.

        Returns:
            The model in eval mode, with ``load_report`` saying which weights are new (and the loading info
            with ``output_loading_info``).

        Raises:
            TypeError: On keyword arguments that are neither config fields nor constructor arguments.
            FileNotFoundError: If the folder, config or weights do not exist (an ``OSError``).
            CheckpointMismatchError: If the weights do not fit the model (a ``ValueError``/``RuntimeError``).
        """
        from bigbird.hub import is_local, resolve_file, resolve_weights

        name_or_path = pretrained_model_name_or_path
        if torch.get_default_device().type == "meta":
            raise RuntimeError("You are using `from_pretrained` with a meta device context manager: the weights "
                               "would never be loaded. Leave the `with torch.device('meta')` block first.")
        if name_or_path is None and (config is None or state_dict is None):
            raise ValueError("pretrained_model_name_or_path may be None only with both config= and state_dict=")
        if not weights_only:
            raise ValueError("weights_only=False is not supported: weights load without running pickled code")
        if attn_implementation not in (None, "eager", "sdpa"):
            raise ValueError(f"attn_implementation must be None, 'eager' or 'sdpa', got {attn_implementation!r}")
        if dtype is not None and torch_dtype is not None and _as_dtype(dtype) != _as_dtype(torch_dtype):
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree")
        dtype = _as_dtype(dtype if dtype is not None else torch_dtype)
        if device_map is not None and device is None and device_map != "auto":
            if isinstance(device_map, dict):
                raise NotImplementedError("device_map dicts are not supported; pass one device")
            device = device_map
        init_params = set(list(inspect.signature(cls.__init__).parameters)[2:]) - {"args", "kwargs"}
        model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in init_params}
        field_names = set(_DEFAULTS) | {"num_labels", "torch_dtype"}
        if config is not None:
            field_names |= set(config.to_dict())
        unknown = sorted(k for k in kwargs if k not in field_names)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected keyword arguments {unknown}: "
                            "they are neither BigBirdConfig fields nor arguments of the model")
        if subfolder:
            if not is_local(name_or_path):
                raise NotImplementedError(f"subfolder={subfolder!r} is supported for local folders only")
            name_or_path = Path(name_or_path) / subfolder
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
        if config is None:
            try:
                config_file = resolve_file(name_or_path, "config.json", **hub)
            except FileNotFoundError as e:
                if not is_local(name_or_path) or not Path(name_or_path).is_dir():
                    raise
                raise FileNotFoundError(
                    f"config.json not found in {str(name_or_path)!r}: pass config= (e.g. the trained model's config) or "
                    "write it with model.config.save_pretrained(folder). transformers.Trainer.save_model writes only "
                    "the weights for models that are not transformers' own PreTrainedModel") from e
            config = BigBirdConfig.from_json_file(config_file, **kwargs)
        elif kwargs:
            config = config.copy(**kwargs)
        if state_dict is None:
            state_dict = read_state_dict(resolve_weights(name_or_path, **hub))
        # Sizes the weights cannot hold fail here, before a huge model is built.
        check_config_fits_weights(config, state_dict, str(name_or_path), check_sizes=not ignore_mismatched_sizes)
        with torch.device("meta"):
            model = cls(config, *model_args, **model_kwargs)
        model.load_report = model.load_hf_state_dict(state_dict, strict=strict, assign=True,
                                                     ignore_mismatched_sizes=ignore_mismatched_sizes,
                                                     report_only=output_loading_info)
        model.tie_weights()
        model._materialize_missing()
        if dtype == "auto":
            dtype = config.dtype if isinstance(config.dtype, torch.dtype) else next(
                (t.dtype for t in state_dict.values() if t.is_floating_point()), torch.float32)
        model.to(device=device, dtype=dtype)
        model.config.dtype = model.dtype
        model.eval()
        if output_loading_info:
            r = model.load_report
            return model, {"missing_keys": set(r.missing_keys), "unexpected_keys": set(r.unexpected_keys),
                           "mismatched_keys": set(r.mismatched_keys), "error_msgs": []}
        return model

    def _materialize_missing(self) -> None:
        """Give parameters the checkpoint lacked (new heads) real storage and their initial values."""
        from torch import nn

        std = self.config.initializer_range
        for module in self.modules():
            own = list(module.named_parameters(recurse=False))
            fresh = [(n, p) for n, p in own if p.is_meta]
            for name, param in fresh:
                setattr(module, name, nn.Parameter(torch.empty(param.shape, dtype=param.dtype),
                                                   requires_grad=param.requires_grad))
            if fresh and len(fresh) == len(own):
                self._init_weights(module)  # a wholly new module starts as at construction
                continue
            with torch.no_grad():
                for name, _ in fresh:
                    value = getattr(module, name)
                    if name == "bias":
                        value.zero_()
                    elif isinstance(module, nn.LayerNorm):
                        value.fill_(1.0)
                    else:
                        value.normal_(0.0, std)
        self.tie_weights()
        for name, t in list(self.named_parameters()) + list(self.named_buffers()):
            if t.is_meta:
                raise RuntimeError(f"parameter {name} was left uninitialised")
