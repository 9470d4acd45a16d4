"""The transformers tokenizer surface that BigBird users call: constructor keywords, added tokens, sides, pad.

transformers' ``PreTrainedTokenizerBase`` keeps every constructor keyword in ``init_kwargs``; we accept the
keywords it documents for a fast tokenizer (:data:`INIT_KEYWORDS`), keep them in ``init_kwargs``, and raise a
``TypeError`` naming any other one (transformers silently stores a typo).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer

from bigbird.tokenization.batch import BatchEncoding, to_tensors
from bigbird.tokenization.options import positive_int
from bigbird.tokenization.specials import SPECIAL_TOKEN_NAMES

SIDES = ("right", "left")
# keywords of transformers' tokenizers that we accept (and keep in init_kwargs) beyond our own parameters
INIT_KEYWORDS = frozenset({
    "padding_side", "truncation_side", "model_input_names", "clean_up_tokenization_spaces", "do_lower_case",
    "split_special_tokens", "extra_special_tokens", "additional_special_tokens", "chat_template", "name_or_path",
    "tokenizer_file", "legacy", "use_fast", "trust_remote_code", "token", "subfolder", "sp_model_kwargs",
    "added_tokens_decoder", "tokenizer_class", "_commit_hash", "from_slow", "processor_class", "auto_map",
    "add_bos_token", "add_eos_token",
})
# keywords accepted only at the value that describes BigBird's template ([CLS] A [SEP] [B [SEP]]): transformers
# takes add_bos_token=True too but leaves BigBird's template unchanged; we refuse what we would not do
ONLY_FALSE = frozenset({"add_bos_token", "add_eos_token"})
# transformers refuses these: they would shadow a method
METHOD_NAMES = frozenset({"add_special_tokens", "get_vocab", "encode", "decode", "tokenize", "pad"})
CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def side(value: Any, name: str) -> str:
    """``"right"`` or ``"left"``; anything else raises a ValueError naming ``name``."""
    if value not in SIDES:
        raise ValueError(f"{name} must be 'right' or 'left', got {value!r}")
    return value


def check_init_keywords(kwargs: Mapping[str, Any]) -> None:
    """Reject constructor keywords that transformers does not know either, or that shadow a method."""
    shadowing = sorted(set(kwargs) & METHOD_NAMES)
    if shadowing:
        raise AttributeError(f"keyword argument(s) {shadowing} conflict with the tokenizer's methods of that name")
    unknown = sorted(set(kwargs) - INIT_KEYWORDS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; accepted besides the named parameters: "
                        f"{sorted(INIT_KEYWORDS)}")
    unsupported = sorted(k for k in ONLY_FALSE & set(kwargs) if kwargs[k])
    if unsupported:
        raise TypeError(f"{', '.join(f'{k}={kwargs[k]!r}' for k in unsupported)} is not supported: BigBird's "
                        "template is [CLS] A [SEP] (B [SEP]); pass cls_token=/sep_token= to change its tokens")


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for old, new in CLEANUPS:
        text = text.replace(old, new)
    return text


class TransformersApiMixin:
    """Added tokens, special-token setters, padding/truncation sides and ``pad`` (transformers' names)."""

    _backend: Tokenizer
    _tokens: dict[str, AddedToken | None]
    _ids: dict[str, int | None]
    _extra: list[str]
    _lock: threading.Lock
    init_kwargs: dict[str, Any]
    init_inputs: tuple = ()
    backend = "tokenizers"  # transformers' name for the fast (tokenizers) backend
    is_fast = True
    pad_token_type_id = 0
    _padding_side = "right"
    _truncation_side = "right"
    clean_up_tokenization_spaces = False

    padding_side = property(lambda self: self._padding_side,
                            lambda self, value: setattr(self, "_padding_side", side(value, "padding_side")),
                            doc="Where ``padding`` adds pad tokens: ``'right'`` (default) or ``'left'``.")
    truncation_side = property(lambda self: self._truncation_side,
                               lambda self, value: setattr(self, "_truncation_side", side(value, "truncation_side")),
                               doc="Where truncation removes tokens: ``'right'`` (default) or ``'left'``.")

    # ------------------------------------------------------------------ special tokens
    def _set_token(self, name: str, token: str | AddedToken | None) -> None:
        if token is None:
            self._tokens[name], self._ids[name] = None, None
            return
        content = str(token)
        if self._backend.token_to_id(content) is None:
            self._backend.add_special_tokens([token if isinstance(token, AddedToken)
                                              else AddedToken(content, normalized=False, special=True)])
        self._tokens[name] = token if isinstance(token, AddedToken) else AddedToken(content, normalized=False,
                                                                                   special=True)
        self._ids[name] = self._backend.token_to_id(content)

    def _set_token_id(self, name: str, token_id: int | None) -> None:
        self._set_token(name, None if token_id is None else self._backend.id_to_token(token_id))

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens beyond the named ones (transformers 5's ``extra_special_tokens``)."""
        return list(self._extra)

    @extra_special_tokens.setter
    def extra_special_tokens(self, tokens: Sequence[str | AddedToken]) -> None:
        self._extra = []
        self.add_special_tokens({"extra_special_tokens": list(tokens)})

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return [self._backend.token_to_id(t) for t in self._extra]

    @extra_special_tokens_ids.setter
    def extra_special_tokens_ids(self, ids: Sequence[int]) -> None:
        self._extra = [self._backend.id_to_token(i) for i in ids]

    additional_special_tokens = extra_special_tokens

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """Id -> AddedToken of every added token of the backend."""
        return dict(sorted(self._backend.get_added_tokens_decoder().items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {tok.content: i for i, tok in self.added_tokens_decoder.items()}

    @property
    def _special_tokens_map(self) -> dict[str, AddedToken | None]:
        return dict(self._tokens)

    def add_tokens(self, new_tokens: str | AddedToken | Iterable[str | AddedToken],
                   special_tokens: bool = False) -> int:
        """Add tokens to the vocabulary (matched whole in any text).

        Args:
            new_tokens: A token or a list of them (str or ``tokenizers.AddedToken``).
            special_tokens: Add them as special tokens (skipped by ``decode(skip_special_tokens=True)``).

        Returns:
            How many tokens were new to the vocabulary.

        Raises:
            TypeError: If a token is not a str or an AddedToken.
        """
        items = [new_tokens] if isinstance(new_tokens, (str, AddedToken)) else list(new_tokens)
        tokens = []
        for item in items:
            if not isinstance(item, (str, AddedToken)):
                raise TypeError(f"tokens must be str or AddedToken, got {type(item).__name__} {item!r}")
            tokens.append(item if isinstance(item, AddedToken)
                          else AddedToken(item, normalized=not special_tokens, special=special_tokens))
        before = len(self._backend.get_vocab(with_added_tokens=True))
        with self._lock:
            (self._backend.add_special_tokens if special_tokens else self._backend.add_tokens)(tokens)
        if special_tokens:
            self._extra += [str(t) for t in tokens if str(t) not in self._extra]
        return len(self._backend.get_vocab(with_added_tokens=True)) - before

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any],
                           replace_extra_special_tokens: bool = True) -> int:
        """Set named special tokens and add extra ones (``{"pad_token": "[PAD]", "extra_special_tokens": [...]}``).

        Args:
            special_tokens_dict: Named tokens (``bos_token`` ... ``mask_token``) and/or ``extra_special_tokens``
                (or ``additional_special_tokens``), a list.
            replace_extra_special_tokens: Replace the current extra special tokens instead of adding to them.

        Returns:
            How many tokens were new to the vocabulary.

        Raises:
            ValueError: For a key that is not a special-token name.
        """
        before = len(self._backend.get_vocab(with_added_tokens=True))
        for key, value in special_tokens_dict.items():
            if key in SPECIAL_TOKEN_NAMES:
                self._set_token(key, value)
            elif key in ("extra_special_tokens", "additional_special_tokens"):
                if replace_extra_special_tokens:
                    self._extra = []
                self.add_tokens(list(value), special_tokens=True)
            else:
                raise ValueError(f"{key!r} is not a special token name ({SPECIAL_TOKEN_NAMES} or "
                                 "'extra_special_tokens')")
        return len(self._backend.get_vocab(with_added_tokens=True)) - before

    # ------------------------------------------------------------------ padding already encoded inputs
    def pad(self, encoded_inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]], padding: bool | str = True,
            max_length: int | None = None, pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None) -> BatchEncoding:
        """Pad encoded inputs (a dict of lists, or a list of dicts) to one length, as transformers' ``pad``.

        Args:
            encoded_inputs: ``{"input_ids": [[...], ...], ...}`` or ``[{"input_ids": [...]}, ...]``.
            padding: True/``'longest'``, ``'max_length'`` or False.
            max_length: Length for ``'max_length'``.
            pad_to_multiple_of: Round the length up to a multiple of this.
            padding_side: ``'right'`` or ``'left'`` (default: :attr:`padding_side`).
            return_attention_mask: Add/pad ``attention_mask`` (default: when in ``model_input_names``).
            return_tensors: None, ``'pt'`` or ``'np'``.

        Returns:
            The padded BatchEncoding.

        Raises:
            ValueError: Without a pad token, or for ``'max_length'`` without ``max_length``.
        """
        if not isinstance(encoded_inputs, Mapping):
            rows = list(encoded_inputs)
            encoded_inputs = {key: [row[key] for row in rows] for key in rows[0]} if rows else {"input_ids": []}
        columns = {key: [list(v) for v in value] for key, value in encoded_inputs.items()}
        single = bool(columns["input_ids"]) and isinstance(columns["input_ids"][0], int)
        if single:
            columns = {key: [value] for key, value in encoded_inputs.items()}
        ids = columns["input_ids"]
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if return_attention_mask and "attention_mask" not in columns:
            columns["attention_mask"] = [[1] * len(row) for row in ids]
        longest = max((len(row) for row in ids), default=0)
        length = longest if padding in (True, "longest") else max_length if padding == "max_length" else None
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if length is not None and pad_to_multiple_of is not None:
            length = -(-length // positive_int(pad_to_multiple_of, "pad_to_multiple_of")) * pad_to_multiple_of
        if length is not None:
            if self.pad_token_id is None:
                raise ValueError("padding needs a pad_token, and this tokenizer has none")
            left = side(padding_side or self.padding_side, "padding_side") == "left"
            fill = {"input_ids": self.pad_token_id, "special_tokens_mask": 1}
            for key, rows in columns.items():
                for i, row in enumerate(rows):
                    pad = [fill.get(key, 0)] * max(length - len(row), 0)
                    rows[i] = pad + row if left else row + pad
        out = {key: rows[0] for key, rows in columns.items()} if single and return_tensors is None else columns
        return BatchEncoding(to_tensors(out, return_tensors) if return_tensors else out)

    model_input_names: list[str]
    pad_token_id: int | None
