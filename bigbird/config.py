"""BigBird configuration: the fields and defaults of transformers' ``BigBirdConfig``."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

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
    # Common PreTrainedConfig fields the heads use.
    "problem_type": None,
    "id2label": None,
    "label2id": None,
}


class BigBirdConfig:
    """Configuration of a BigBird model, field for field the one of transformers' ``BigBirdConfig``.

    Unknown keys (for example ``architectures`` or ``torch_dtype`` from a ``config.json``) are kept and
    written back on save, so a round trip through us loses nothing.

    Args:
        num_labels: Shortcut for ``id2label = {i: f"LABEL_{i}"}`` (default 2 labels).
        **kwargs: Any field of ``_DEFAULTS``; anything else is stored as an extra attribute.

    Raises:
        ValueError: On an unknown ``attention_type``, a hidden size not divisible by the number of heads,
            a non-positive ``block_size`` or a negative ``num_random_blocks``.
    """

    model_type = "big_bird"

    def __init__(self, num_labels: int | None = None, **kwargs: Any) -> None:
        for name, default in _DEFAULTS.items():
            setattr(self, name, copy.deepcopy(kwargs.pop(name, default)))
        self._extra: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in ("model_type", "transformers_version"):
                continue
            self._extra[name] = value
            setattr(self, name, value)
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
        if num_labels is not None and (self.id2label is None or len(self.id2label) != num_labels):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        if self.id2label is None:
            self.id2label = {0: "LABEL_0", 1: "LABEL_1"}
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.validate()

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def min_sparse_length(self) -> int:
        """Sequences of at most this many tokens use full attention (as in the reference)."""
        return (5 + 2 * self.num_random_blocks) * self.block_size

    def validate(self) -> None:
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {self.attention_type!r}")
        if self.random_attention_eval not in RANDOM_ATTENTION_EVAL:
            raise ValueError(
                f"random_attention_eval must be one of {RANDOM_ATTENTION_EVAL}, got {self.random_attention_eval!r}"
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ValueError(f"block_size must be a positive integer, got {self.block_size!r}")
        if self.block_size > self.max_position_embeddings:
            raise ValueError(f"block_size {self.block_size} does not fit in max_position_embeddings "
                             f"{self.max_position_embeddings}")
        if not isinstance(self.num_random_blocks, int) or self.num_random_blocks < 0:
            raise ValueError(f"num_random_blocks must be a non-negative integer, got {self.num_random_blocks!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": self.model_type}
        for name in _DEFAULTS:
            out[name] = copy.deepcopy(getattr(self, name))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out.update(copy.deepcopy(self._extra))
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``config.json`` into ``save_directory`` (created if missing)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(self.to_json_string())

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
                        **overrides: Any) -> BigBirdConfig:
        """Read ``config.json`` from a folder or a hub repository id."""
        from bigbird.hub import resolve_file

        path = resolve_file(name_or_path, "config.json", revision=revision, cache_dir=cache_dir,
                            local_files_only=local_files_only)
        return cls.from_json_file(path, **overrides)

    def copy(self, **overrides: Any) -> BigBirdConfig:
        return BigBirdConfig.from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigBirdConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"BigBirdConfig {self.to_json_string()}"
