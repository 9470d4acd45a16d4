"""Checking and normalising the arguments of a tokenizer call (inputs, truncation, padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
PADDING_STRATEGIES = ("longest", "max_length")

EncodeInput = str | tuple[str, str]


def batch_inputs(text: Any, text_pair: Any) -> tuple[list[EncodeInput], bool]:
    """Turn the ``text``/``text_pair`` arguments into a list of strings or pairs.

    Args:
        text: A str, a list of str, or a list of (str, str) pairs.
        text_pair: None, or second sequences matching ``text``.

    Returns:
        The inputs and whether the call was batched (a list was given).

    Raises:
        TypeError: If an input is not a string (or a pair of strings).
        ValueError: If the batch is empty or ``text_pair`` does not match ``text`` in length.
    """
    if isinstance(text, str):
        if text_pair is None:
            return [text], False
        if isinstance(text_pair, str):
            return [(text, text_pair)], False
        raise TypeError(f"text_pair must be a str when text is a str, not {type(text_pair).__name__}")
    if not isinstance(text, (list, tuple)):
        raise TypeError(f"text must be a str, a list of str or a list of (str, str) pairs, not {type(text).__name__}")
    if not text:
        raise ValueError("text is an empty batch")
    if text_pair is not None:
        if not isinstance(text_pair, (list, tuple)):
            raise TypeError(f"text_pair must be a list of str when text is a list, not {type(text_pair).__name__}")
        if len(text_pair) != len(text):
            raise ValueError(f"text has {len(text)} sequences but text_pair has {len(text_pair)}")
        _check_strings(text, "text")
        _check_strings(text_pair, "text_pair")
        return list(zip(text, text_pair)), True
    if isinstance(text[0], str):
        _check_strings(text, "text")
        return list(text), True
    for i, item in enumerate(text):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(s, str) for s in item)):
            raise TypeError(f"text[{i}] must be a (str, str) pair like text[0], got {_describe(item)}")
    return [(a, b) for a, b in text], True


def _check_strings(items: Sequence[Any], name: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {_describe(item)}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """Check that ``value`` is an int > 0 (or >= 0 with ``allow_zero``).

    Args:
        value: The value to check.
        name: Its argument name, for the error message.
        allow_zero: Accept 0.

    Returns:
        ``value``.

    Raises:
        TypeError: If it is not an int.
        ValueError: If it is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    if value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def truncation_strategy(truncation: Any) -> str | None:
    """Resolve the ``truncation`` argument.

    Args:
        truncation: ``False``/``None``/``'do_not_truncate'``, ``True``, or a strategy name.

    Returns:
        None (no truncation), ``'longest_first'`` for True, or the strategy name.

    Raises:
        ValueError: For any other value.
    """
    if truncation is None or truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True:
        return "longest_first"
    if isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
        return truncation
    raise ValueError(f"truncation must be a bool or one of {TRUNCATION_STRATEGIES}, got {truncation!r}")


def padding_strategy(padding: Any) -> str | None:
    """Resolve the ``padding`` argument.

    Args:
        padding: ``False``/``None``/``'do_not_pad'``, ``True``, ``'longest'`` or ``'max_length'``.

    Returns:
        None (no padding), ``'longest'`` for True, or the strategy name.

    Raises:
        ValueError: For any other value.
    """
    if padding is None or padding is False or padding == "do_not_pad":
        return None
    if padding is True:
        return "longest"
    if isinstance(padding, str) and padding in PADDING_STRATEGIES:
        return padding
    raise ValueError(f"padding must be a bool or one of {PADDING_STRATEGIES}, got {padding!r}")


def as_id_list(ids: Any, name: str = "ids") -> list[int]:
    """Token ids given as an int, a sequence of ints, or a 0-d/1-d tensor or array, as a list of ints.

    Args:
        ids: The ids.
        name: Argument name for the error message.

    Returns:
        The ids as a list.

    Raises:
        TypeError: If ``ids`` is none of those.
    """
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):  # torch.Tensor, numpy array
        ids = ids.tolist()
    if isinstance(ids, int) and not isinstance(ids, bool):
        return [ids]
    if not isinstance(ids, (list, tuple)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {_describe(ids)}")
    if ids and not isinstance(ids[0], int):
        raise TypeError(f"{name} must be a flat sequence of ints, got {_describe(ids)}"
                        + ("; use batch_decode for a batch" if isinstance(ids[0], (list, tuple)) else ""))
    return list(ids)


@dataclass(frozen=True)
class CallPlan:
    """Truncation and padding settings of one tokenizer call, checked and resolved."""

    truncation: str | None  # backend strategy, or None
    padding: str | None  # "longest", "max_length", or None
    length: int  # truncation length and 'max_length' padding length
    stride: int
    pad_to_multiple_of: int | None


def plan_call(*, truncation: Any, max_length: Any, stride: Any, padding: Any, pad_to_multiple_of: Any,
              model_max_length: int, has_pad_token: bool, num_special_tokens: int) -> CallPlan:
    """Check the truncation/padding arguments of a call and resolve their defaults.

    Args:
        truncation, max_length, stride, padding, pad_to_multiple_of: As given to the tokenizer call.
        model_max_length: The tokenizer's default length (``VERY_LARGE_INTEGER``: none).
        has_pad_token: Whether the tokenizer has a padding token.
        num_special_tokens: Special tokens the template adds to each input (or pair).

    Returns:
        The resolved settings.

    Raises:
        TypeError: If a length is not an int.
        ValueError: If a value is unknown or the settings contradict each other.
    """
    strategy, pad = truncation_strategy(truncation), padding_strategy(padding)
    positive_int(stride, "stride", allow_zero=True)
    if max_length is not None:
        positive_int(max_length, "max_length")
        if strategy is None and pad != "max_length":
            raise ValueError(f"max_length={max_length} needs truncation=True (or a strategy) or padding='max_length'")
    length = model_max_length if max_length is None else max_length
    if pad_to_multiple_of is not None:  # as in transformers, it only acts together with padding
        positive_int(pad_to_multiple_of, "pad_to_multiple_of")
    if pad is not None and not has_pad_token:
        raise ValueError("padding needs a pad_token, and this tokenizer has none")
    if pad == "max_length" and length >= VERY_LARGE_INTEGER:
        raise ValueError("padding='max_length' needs max_length (model_max_length is not set)")
    if length >= VERY_LARGE_INTEGER:
        strategy = None  # no limit to truncate to, as in transformers
    if strategy is not None and stride >= length - num_special_tokens:
        raise ValueError(f"stride={stride} must be smaller than max_length={length} minus the "
                         f"{num_special_tokens} special tokens")
    if strategy is not None and pad is not None and pad_to_multiple_of is not None and length % pad_to_multiple_of:
        # padding a full window up to the next multiple would exceed the truncation length
        raise ValueError(f"truncation length {length} is not a multiple of pad_to_multiple_of={pad_to_multiple_of}")
    return CallPlan(strategy, pad, length, stride, pad_to_multiple_of)
