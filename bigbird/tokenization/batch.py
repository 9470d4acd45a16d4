"""The dict-like result of a tokenizer call, and its conversion to tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Encoding

TENSOR_TYPES = (None, "pt", "np")


class BatchEncoding(dict):
    """Tokenizer output: a ``dict`` of lists (or tensors) that also allows attribute access.

    Keys are the usual model inputs (``input_ids``, ``token_type_ids``, ``attention_mask``) plus the
    optional ``special_tokens_mask``, ``offset_mapping`` and ``overflow_to_sample_mapping``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key {name!r} (keys: {sorted(self)})") from None

    _encodings: list | None = None

    @property
    def encodings(self) -> list | None:
        """The backend's ``tokenizers.Encoding`` of each row (None after pickling or tensor conversion)."""
        return self._encodings

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token of row ``batch_index``: 0 (first text), 1 (second text) or None (special token).

        Raises:
            ValueError: If the encodings are not available (pickled or rebuilt outputs).
        """
        if self._encodings is None:
            raise ValueError("sequence_ids() needs the output of a tokenizer call (it was pickled or rebuilt)")
        return self._encodings[batch_index].sequence_ids

    def char_to_token(self, batch_index: int, char_index: int | None = None) -> int | None:
        """Index of the token of row ``batch_index`` that holds character ``char_index`` (transformers' form:
        ``char_to_token(char_index)`` for row 0).

        Raises:
            ValueError: If the encodings are not available.
        """
        if char_index is None:
            batch_index, char_index = 0, batch_index
        if self._encodings is None:
            raise ValueError("char_to_token() needs the output of a tokenizer call (it was pickled or rebuilt)")
        return self._encodings[batch_index].char_to_token(char_index)

    def __getstate__(self) -> dict:
        return dict(self)

    def __setstate__(self, state: dict) -> None:
        self.update(state)

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor value to ``device`` (in place) and return ``self``.

        Args:
            device: Anything ``torch.Tensor.to`` accepts, e.g. ``"cuda"`` or a ``torch.device``.

        Returns:
            This BatchEncoding, for chaining.

        Raises:
            TypeError: If the values are not torch tensors (call the tokenizer with ``return_tensors="pt"``).
        """
        import torch

        for key, value in self.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"BatchEncoding.to() needs torch tensors, but {key!r} is a {type(value).__name__};"
                                " call the tokenizer with return_tensors='pt'")
            self[key] = value.to(device)
        return self


def to_tensors(columns: dict[str, list], return_tensors: str) -> dict[str, Any]:
    """Stack per-sequence lists into ``(batch, length)`` tensors (offsets: ``(batch, length, 2)``).

    Args:
        columns: Column name -> one list per row (``overflow_to_sample_mapping``: one int per row).
        return_tensors: ``"pt"`` (torch) or ``"np"`` (numpy).

    Returns:
        Column name -> int64 tensor or array.

    Raises:
        ValueError: If the sequences have different lengths (no padding was asked for).
    """
    lengths = {len(row) for key, rows in columns.items() if key != "overflow_to_sample_mapping" for row in rows}
    if len(lengths) > 1:
        raise ValueError(f"cannot stack sequences of different lengths {sorted(lengths)} into tensors; "
                         "pass padding=True (or 'max_length') together with return_tensors")
    if return_tensors == "pt":
        import torch

        return {key: torch.tensor(rows, dtype=torch.long) for key, rows in columns.items()}
    import numpy as np

    return {key: np.asarray(rows, dtype=np.int64) for key, rows in columns.items()}


def collect(encodings: list[Encoding], *, overflowing: bool, token_type_ids: bool, attention_mask: bool,
            special_tokens_mask: bool, offsets: bool) -> dict[str, list]:
    """Gather backend encodings into columns of per-sequence lists (one loop step per sequence).

    Args:
        encodings: One backend Encoding per input.
        overflowing: Also emit the overflowing windows of each input as rows, plus
            ``overflow_to_sample_mapping`` (row -> input index).
        token_type_ids, attention_mask, special_tokens_mask, offsets: Which optional columns to emit.

    Returns:
        Column name -> one list per row.
    """
    mapping: list[int] = []
    if overflowing:
        rows: list[Encoding] = []
        for i, enc in enumerate(encodings):
            windows = [enc, *enc.overflowing]
            rows += windows
            mapping += [i] * len(windows)
        encodings = rows
    columns: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
    if token_type_ids:
        columns["token_type_ids"] = [e.type_ids for e in encodings]
    if attention_mask:
        columns["attention_mask"] = [e.attention_mask for e in encodings]
    if special_tokens_mask:
        columns["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
    if offsets:
        columns["offset_mapping"] = [e.offsets for e in encodings]
    if overflowing:
        columns["overflow_to_sample_mapping"] = mapping
    return columns
