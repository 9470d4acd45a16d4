"""BigBird configuration: the fields and defaults of transformers' ``BigBirdConfig``."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ATTENTION_TYPES = ("original_full", "block_sparse")
RANDOM_ATTENTION_EVAL = ("seeded", "transformers")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# Field name -> default, in the order of transformers' BigBirdConfig.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50358,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu_new",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 4096,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "use_cache": True,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "sep_token_id": 66,
    "attention_type": "block_sparse",
    "use_bias": True,
    "rescale_embeddings": False,
    "block_size": 64,
    "num_random_blocks": 3,
    "classifier_dropout": None,
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    # Ours: how random blocks behave in eval mode (see bigbird.layout).
    "random_attention_eval": "seeded",
    # Common PreTrainedConfig fields.
    "problem_type": None,
    "id2label": None,
    "label2id": None,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
    "architectures": None,
    "dtype": None,
}
# Keys of a config.json that are about the file, not the model.
_FILE_KEYS = ("model_type", "transformers_version")


class BigBirdConfig:
    """Configuration of a BigBird model, field for field the one of transformers' ``BigBirdConfig``.

    The config is mutable, as in transformers: set any field (``config.num_labels = 3`` rebuilds the labels)
    and call ``validate()``, which every model runs when it is built. Unknown keys (for example
    ``architectures`` or custom fields from a ``config.json``) are kept and written back on save.

    Args:
        num_labels: Shortcut for ``id2label = {i: f"LABEL_{i}"}`` (default 2 labels).
        torch_dtype: Old name of ``dtype``.
        **kwargs: Any field of ``_DEFAULTS``; anything else is stored as an extra attribute.

    Raises:
        ValueError: On an unknown ``attention_type`` or ``problem_type``, a non-positive ``block_size`` or a
            negative ``num_random_blocks``. Shape constraints between fields (hidden size divisible by the
            number of heads) are checked by ``validate()`` when a model is built, as transformers does.
    """

    model_type = "big_bird"
    sub_configs: dict[str, type] = {}
    # transformers' class-level hooks for tensor/pipeline parallel plans: none for BigBird.
    base_model_tp_plan = None
    base_model_pp_plan = None

    def __init__(self, num_labels: int | None = None, **kwargs: Any) -> None:
        # Which attention code transformers would pick; ours picks per call (see BigBirdModel.attention_kind).
        self._attn_implementation = kwargs.pop("attn_implementation", None) or "eager"
        if "torch_dtype" in kwargs:
            torch_dtype = kwargs.pop("torch_dtype")
            kwargs.setdefault("dtype", torch_dtype)
        for name, default in _DEFAULTS.items():
            setattr(self, name, copy.deepcopy(kwargs.pop(name, default)))
        for name, value in kwargs.items():
            if name not in _FILE_KEYS:
                setattr(self, name, value)
        self.dtype = _as_dtype(self.dtype)
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
        if num_labels is not None and (self.id2label is None or len(self.id2label) != num_labels):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        if self.id2label is None:
            self.id2label = {0: "LABEL_0", 1: "LABEL_1"}
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.validate(between_fields=False)

    # ------------------------------------------------------------------------------ derived fields
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"num_labels must be a positive integer, got {value!r}")
        if len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def torch_dtype(self) -> torch.dtype | None:
        """Old name of ``dtype``."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value: torch.dtype | str | None) -> None:
        self.dtype = _as_dtype(value)

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def min_sparse_length(self) -> int:
        """Sequences of at most this many tokens use full attention (as in the reference)."""
        return (5 + 2 * self.num_random_blocks) * self.block_size

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> BigBirdConfig:
        """The config of the text part: this config itself (BigBird is text only)."""
        return self

    def validate(self, between_fields: bool = True) -> None:
        """Check the fields; ``between_fields`` also checks constraints that relate two fields."""
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {self.attention_type!r}")
        if self.random_attention_eval not in RANDOM_ATTENTION_EVAL:
            raise ValueError(
                f"random_attention_eval must be one of {RANDOM_ATTENTION_EVAL}, got {self.random_attention_eval!r}"
            )
        if not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ValueError(f"block_size must be a positive integer, got {self.block_size!r}")
        if not isinstance(self.num_random_blocks, int) or self.num_random_blocks < 0:
            raise ValueError(f"num_random_blocks must be a non-negative integer, got {self.num_random_blocks!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.block_size > self.max_position_embeddings:
            raise ValueError(f"block_size {self.block_size} does not fit in max_position_embeddings "
                             f"{self.max_position_embeddings}")
        if not between_fields:
            return
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}"
            )

    # ------------------------------------------------------------------------------ dicts and files
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": self.model_type}
        for name, value in vars(self).items():
            if not name.startswith("_"):
                out[name] = copy.deepcopy(value)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["dtype"] = None if self.dtype is None else str(self.dtype).removeprefix("torch.")
        return out

    def to_file_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: ``to_dict()`` without the default two-label maps, which transformers
        leaves out too (so that ``from_pretrained(..., num_labels=n)`` in either library sets the labels)."""
        out = self.to_dict()
        if self.id2label == {0: "LABEL_0", 1: "LABEL_1"} and self.label2id == {"LABEL_0": 0, "LABEL_1": 1}:
            del out["id2label"], out["label2id"]
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that differ from a default ``BigBirdConfig()`` (and ``model_type``)."""
        default = BigBirdConfig().to_dict()
        return {k: v for k, v in self.to_dict().items()
                if k == "model_type" or k not in default or default[k] != v}

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set every field of ``config_dict`` (as transformers' ``PretrainedConfig.update``)."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(k for k in vars(self) if not k.startswith("_"))

    def to_json_string(self, use_diff: bool = False) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = False) -> None:
        Path(json_file_path).write_text(self.to_json_string(use_diff=use_diff), encoding="utf-8")

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False) -> None:
        """Write ``config.json`` into ``save_directory`` (created if missing)."""
        if push_to_hub:
            raise NotImplementedError("push_to_hub is not supported; upload the folder with huggingface_hub")
        path = Path(save_directory)
        if path.is_file():
            raise FileExistsError(f"save_directory {str(path)!r} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.to_file_dict(), indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> BigBirdConfig:
        model_type = data.get("model_type", cls.model_type)
        if model_type not in (cls.model_type, "bert", "roberta"):
            raise ValueError(f"config model_type {model_type!r} is not a BigBird config")
        merged = {**data, **overrides}
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> BigBirdConfig:
        """Read a ``config.json``.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: Naming the file (and the field): on a file that is not UTF-8 JSON holding an
                object, a field of the wrong type, or a value the config rejects.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{os.fspath(path)!r} is not a valid JSON config: {e}") from e
        from bigbird.config_json import check_json_fields

        check_json_fields(data, os.fspath(path))
        try:
            return cls.from_dict(data, **overrides)
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{os.fspath(path)!r}: {e}") from e

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | None = None, local_files_only: bool = False,
                        subfolder: str = "", **overrides: Any) -> BigBirdConfig:
        """Read ``config.json`` from a folder (or its ``subfolder``) or a hub repository id; ``overrides``
        set fields."""
        from bigbird.hub import resolve_file

        filename = f"{subfolder.strip('/')}/config.json" if subfolder else "config.json"
        path = resolve_file(name_or_path, filename, revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only)
        return cls.from_json_file(path, **overrides)

    def copy(self, **overrides: Any) -> BigBirdConfig:
        return BigBirdConfig.from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigBirdConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"BigBirdConfig {self.to_json_string()}"


def _as_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float16``, ``"float16"`` or ``"torch.float16"`` -> ``torch.float16``; None and "auto" stay."""
    if value is None or isinstance(value, torch.dtype) or value == "auto":
        return value
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch dtype or its name, got {value!r}")
    return dtype
