"""Checks of a ``config.json`` as read from disk, before any field is used (BigBirdConfig.from_json_file)."""

from __future__ import annotations

from typing import Any

from bigbird.config import _DEFAULTS

# The JSON types of the fields a config.json may hold.
_NUMBER = (int, float)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    name: (_NUMBER if isinstance(default, float) else (type(default),))
    for name, default in _DEFAULTS.items() if default is not None
}
_JSON_TYPES.update({"classifier_dropout": _NUMBER, "problem_type": (str,), "id2label": (dict,),
                    "label2id": (dict,), "model_type": (str,)})
# Fields that shape the model: null is not allowed (other fields may be null, as some hub configs have it).
_NOT_NULL = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "block_size", "num_random_blocks", "attention_type",
             "hidden_act", "layer_norm_eps", "random_attention_eval"}


def _type_names(types: tuple[type, ...]) -> str:
    return "a number" if types == _NUMBER else "a JSON " + {int: "integer", str: "string", bool: "boolean",
                                                            dict: "object"}.get(types[0], types[0].__name__)


def check_json_fields(data: Any, source: str) -> None:
    """Check the types of a ``config.json``'s known fields before any of them is used.

    Raises:
        ValueError: Naming ``source`` and the first bad field (the top level must be an object; integers
            must not be booleans; ``id2label`` maps integer strings to strings, ``label2id`` the reverse).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source!r} must hold a JSON object, got {type(data).__name__}")
    for name, types in _JSON_TYPES.items():
        if name not in data or data[name] is None and name not in _NOT_NULL:
            continue
        value = data[name]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            raise ValueError(f"{source!r}: field {name!r} must be {_type_names(types)}, got {value!r}")
    for key, value in (data.get("id2label") or {}).items():
        if not (isinstance(key, str) and key.lstrip("-").isdigit() and isinstance(value, str)):
            raise ValueError(f"{source!r}: field 'id2label' must map integer ids to label strings, got "
                             f"{key!r}: {value!r}")
    for key, value in (data.get("label2id") or {}).items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{source!r}: field 'label2id' must map labels to integer ids, got {key!r}: {value!r}")
