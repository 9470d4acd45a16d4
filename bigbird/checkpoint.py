"""HuggingFace checkpoint names <-> our module names: one declarative key map.

HF names are those of transformers' BigBird (``bert.encoder.layer.0.attention.self.query.weight``);
ours are shorter (``bert.layers.0.attn.query.weight``). The base model's keys carry the ``bert.``
prefix in head models and none in ``BigBirdModel``.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

# (HF module path, our module path); "{i}" is a layer index. Order matters: more specific first.
BASE_MAP: list[tuple[str, str]] = [
    ("embeddings.word_embeddings", "embeddings.word"),
    ("embeddings.position_embeddings", "embeddings.position"),
    ("embeddings.token_type_embeddings", "embeddings.token_type"),
    ("embeddings.LayerNorm", "embeddings.norm"),
    ("encoder.layer.{i}.attention.self.query", "layers.{i}.attn.query"),
    ("encoder.layer.{i}.attention.self.key", "layers.{i}.attn.key"),
    ("encoder.layer.{i}.attention.self.value", "layers.{i}.attn.value"),
    ("encoder.layer.{i}.attention.output.dense", "layers.{i}.attn_out"),
    ("encoder.layer.{i}.attention.output.LayerNorm", "layers.{i}.attn_norm"),
    ("encoder.layer.{i}.crossattention.self.query", "layers.{i}.cross_attn.query"),
    ("encoder.layer.{i}.crossattention.self.key", "layers.{i}.cross_attn.key"),
    ("encoder.layer.{i}.crossattention.self.value", "layers.{i}.cross_attn.value"),
    ("encoder.layer.{i}.crossattention.output.dense", "layers.{i}.cross_out"),
    ("encoder.layer.{i}.crossattention.output.LayerNorm", "layers.{i}.cross_norm"),
    ("encoder.layer.{i}.intermediate.dense", "layers.{i}.mlp_in"),
    ("encoder.layer.{i}.output.dense", "layers.{i}.mlp_out"),
    ("encoder.layer.{i}.output.LayerNorm", "layers.{i}.mlp_norm"),
    ("pooler", "pooler"),
]
HEAD_MAP: list[tuple[str, str]] = [
    ("cls.predictions.transform.dense", "lm_head.dense"),
    ("cls.predictions.transform.LayerNorm", "lm_head.norm"),
    ("cls.predictions.decoder", "lm_head.decoder"),
    ("cls.seq_relationship", "nsp_head"),
    ("classifier.dense", "classifier.dense"),
    ("classifier.out_proj", "classifier.out_proj"),
    ("classifier", "classifier"),
    ("qa_classifier.intermediate.dense", "qa_head.dense_in"),
    ("qa_classifier.output.dense", "qa_head.dense_out"),
    ("qa_classifier.output.LayerNorm", "qa_head.norm"),
    ("qa_classifier.qa_outputs", "qa_head.out"),
]
# HF keys that carry no parameters of ours.
IGNORED_HF = re.compile(r"^(bert\.)?embeddings\.(position_ids|token_type_ids)$")
# transformers stores the tied LM bias as ``cls.predictions.bias``; it is ``lm_head.decoder.bias`` here.
HF_ALIASES = {"cls.predictions.bias": "cls.predictions.decoder.bias"}
BASE_PREFIX = "bert."


def _compile(pairs: list[tuple[str, str]], reverse: bool) -> list[tuple[re.Pattern, str]]:
    rules = []
    for hf, ours in pairs:
        src, dst = (ours, hf) if reverse else (hf, ours)
        pattern = re.escape(src).replace(r"\{i\}", r"(\d+)")
        rules.append((re.compile(f"^{pattern}\\.(weight|bias)$"), dst.replace("{i}", r"\1")))
    return rules


_HF_TO_OURS = {"base": _compile(BASE_MAP, False), "head": _compile(HEAD_MAP, False)}
_OURS_TO_HF = {"base": _compile(BASE_MAP, True), "head": _compile(HEAD_MAP, True)}


def _apply(rules: list[tuple[re.Pattern, str]], name: str) -> str | None:
    for pattern, template in rules:
        m = pattern.match(name)
        if m:
            groups = m.groups()
            out = template
            if "\\1" in template:
                out = out.replace("\\1", groups[0])
            return f"{out}.{groups[-1]}"
    return None


def _normalise_hf(name: str) -> str:
    name = HF_ALIASES.get(name, name)
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


def hf_to_ours(name: str) -> str | None:
    """Our canonical name (base keys always with ``bert.``) of an HF key, or None if unknown."""
    name = _normalise_hf(name)
    body = name[len(BASE_PREFIX):] if name.startswith(BASE_PREFIX) else name
    ours = _apply(_HF_TO_OURS["base"], body)
    if ours is not None:
        return BASE_PREFIX + ours
    return _apply(_HF_TO_OURS["head"], name)


def ours_to_hf(name: str) -> str:
    """The HF key of one of our canonical names."""
    if name.startswith(BASE_PREFIX):
        hf = _apply(_OURS_TO_HF["base"], name[len(BASE_PREFIX):])
        if hf is not None:
            return BASE_PREFIX + hf
    hf = _apply(_OURS_TO_HF["head"], name)
    if hf is None:
        raise KeyError(f"no HuggingFace name for parameter {name!r}")
    if hf == "cls.predictions.decoder.bias":
        return "cls.predictions.bias"
    return hf


def read_state_dict(files: Iterable[Path]) -> dict[str, torch.Tensor]:
    """Read safetensors files (memory-mapped) or ``.bin`` files with ``weights_only=True``.

    A ``.bin`` in torch's zip format is memory-mapped; a legacy (pre-1.6, non-zip) one cannot be and is read
    into memory, still with ``weights_only=True``.
    """
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in files:
        path = Path(path)
        if path.suffix == ".safetensors":
            state.update(load_file(str(path)))
        elif path.suffix == ".bin":
            mmap = zipfile.is_zipfile(path)
            state.update(torch.load(path, map_location="cpu", weights_only=True, mmap=mmap))
        else:
            raise ValueError(f"unsupported weight file {str(path)!r}: expected .safetensors or .bin")
    return state


def weight_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of weight files without reading the tensors of a safetensors file (its header only).

    ``.bin`` files have no header: they are read (with ``weights_only=True``).
    """
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        path = Path(path)
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        else:
            shapes.update({k: tuple(v.shape) for k, v in read_state_dict([path]).items()})
    return shapes


_LAYER = re.compile(r"^(?:bert\.)?encoder\.layer\.(\d+)\.")
# config field -> (HF key without "bert.", dimension) that holds it.
_SIZE_FIELDS = {
    "vocab_size": ("embeddings.word_embeddings.weight", 0),
    "hidden_size": ("embeddings.word_embeddings.weight", 1),
    "max_position_embeddings": ("embeddings.position_embeddings.weight", 0),
    "type_vocab_size": ("embeddings.token_type_embeddings.weight", 0),
    "intermediate_size": ("encoder.layer.0.intermediate.dense.weight", 0),
}


def check_config_fits_weights(config: Any, shapes: Mapping[str, Sequence[int] | torch.Tensor],
                              source: str = "the checkpoint", *, check_sizes: bool = True) -> None:
    """Fail fast, before a model is built, when the config's sizes cannot fit the weights.

    ``num_hidden_layers`` may not exceed the encoder layers the weights hold (fewer is allowed: the
    extra layers are reported unused at load time); the embedding and feed-forward sizes must equal the
    weights' dimensions. Keys that are absent (a partial checkpoint) are not checked here.

    Args:
        config: The :class:`~bigbird.config.BigBirdConfig` about to be built.
        shapes: HF key -> shape (or tensor), from :func:`weight_shapes` or :func:`read_state_dict`.
        source: Where the weights come from, for the message.
        check_sizes: Also check the embedding and feed-forward sizes (pass False with
            ``ignore_mismatched_sizes``, where such weights are re-initialised instead).

    Raises:
        ValueError: Naming the config field, its value and what the weights hold.
    """
    dims = {}
    for key, shape in shapes.items():
        dims[key.removeprefix(BASE_PREFIX)] = tuple(shape.shape if isinstance(shape, torch.Tensor) else shape)
    layers = {int(m.group(1)) for m in map(_LAYER.match, shapes) if m}
    if layers and config.num_hidden_layers > max(layers) + 1:
        raise ValueError(f"config field num_hidden_layers={config.num_hidden_layers!r} does not fit {source}: "
                         f"its weights hold {max(layers) + 1} encoder layers")
    for field, (key, axis) in _SIZE_FIELDS.items() if check_sizes else ():
        shape = dims.get(key)
        if shape is None or len(shape) <= axis:
            continue
        value = getattr(config, field)
        if value != shape[axis]:
            raise ValueError(f"config field {field}={value!r} does not fit {source}: {key} has shape "
                             f"{shape} (dimension {axis} is {shape[axis]})")
