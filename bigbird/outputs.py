"""Output containers that behave like transformers' ``ModelOutput``: a dataclass that is also an ordered dict.

Fields that are None are absent from the dict view: ``keys()``, ``items()``, iteration (which yields keys, as
for any dict), ``len()``, integer indexing and ``to_tuple()`` see only the fields that were set.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch


class ModelOutput(OrderedDict):
    """Base of every output: attribute access (``out.logits``), key access (``out["logits"]``) and tuple
    access (``out[0]``, ``out.to_tuple()``) of the fields that are not None."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return OrderedDict.__getitem__(self, key)
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() or value is not None and name in {f.name for f in fields(self)}:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"cannot delete {key!r} from a {type(self).__name__}")

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"cannot pop from a {type(self).__name__}")

    def setdefault(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"cannot use setdefault on a {type(self).__name__}")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"cannot update a {type(self).__name__}; set its attributes instead")

    def __reduce__(self):
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    def to_tuple(self) -> tuple[Any, ...]:
        """The values of the fields that are set, in field order (what ``return_dict=False`` returns)."""
        return tuple(self[k] for k in self.keys())


Tensors = tuple[torch.Tensor, ...]
Cache = tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], ...]


@dataclass
class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    past_key_values: Cache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class BigBirdForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Cache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class BigBirdForQuestionAnsweringModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


def tuple_on_request(forward: Callable[..., ModelOutput]) -> Callable[..., ModelOutput | tuple[Any, ...]]:
    """Give ``forward`` transformers' ``return_dict`` keyword: False (or ``config.return_dict`` False when it
    is not passed) returns ``output.to_tuple()``, a real tuple."""

    @functools.wraps(forward)
    def wrapper(self, *args: Any, return_dict: bool | None = None, **kwargs: Any) -> ModelOutput | tuple[Any, ...]:
        out = forward(self, *args, **kwargs)
        wanted = return_dict if return_dict is not None else self.config.use_return_dict
        return out if wanted else out.to_tuple()

    return wrapper
