"""Encoding and decoding of a BigBirdTokenizer: the calls, with SentencePiece's whole-text rules and the lock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from bigbird.tokenization.api import clean_up_tokenization, side
from bigbird.tokenization.batch import TENSOR_TYPES, BatchEncoding, collect, to_tensors
from bigbird.tokenization.options import VERY_LARGE_INTEGER, CallPlan, EncodeInput, batch_inputs, plan_call
from bigbird.tokenization.spmtext import SpmText, shift_offsets

if TYPE_CHECKING:
    from tokenizers import Encoding


logger = logging.getLogger(__name__)


def join_words(value: Any) -> Any:
    """Pre-split input (``is_split_into_words``) as text: a list of words, a batch of them, or pairs of them."""
    if value is None or isinstance(value, str):
        return value
    if value and all(isinstance(w, str) for w in value):
        return " ".join(value)
    return [tuple(join_words(part) for part in item) if isinstance(item, tuple) else join_words(item)
            for item in value]


class EncodingMixin:
    """``__call__``, ``encode``, ``tokenize``, ``decode`` over the backend, thread-safe (one lock per tokenizer)."""

    _backend: Tokenizer
    _lock: threading.Lock
    _spm_text: SpmText | None
    model_input_names: list[str]
    model_max_length: int
    add_prefix_space: bool | None
    padding_side: str
    truncation_side: str
    deprecation_warnings: dict[str, bool]
    clean_up_tokenization_spaces: bool


    def use_sentencepiece_rules(self, *, strip: bool, prefix: bool) -> None:
        """Apply SentencePiece's whole-text whitespace rules before the backend (see :mod:`.spmtext`).

        Set for tokenizers built from a ``.model`` file, and by ``from_pretrained`` for a ``tokenizer.json`` we
        saved from one.

        Args:
            strip: Strip the ends of each text (the model's ``remove_extra_whitespaces``).
            prefix: The dummy prefix (``add_prefix_space``).
        """
        self._spm_text = SpmText(self._backend.normalizer, strip=strip, prefix=prefix)
        self.add_prefix_space = prefix

    @property
    def sentencepiece_rules(self) -> dict[str, bool] | None:
        """``{"strip": ..., "prefix": ...}`` when SentencePiece's whole-text rules apply, else None."""
        rules = self._spm_text
        return None if rules is None else {"strip": rules.strip, "prefix": rules.prefix}

    def _text_starts(self) -> tuple[str, ...]:
        """Contents of the added tokens the backend matches in a text."""
        return tuple(tok.content for tok in self._backend.get_added_tokens_decoder().values())

    def _prepare(self, inputs: list[EncodeInput]) -> tuple[list[EncodeInput], list[tuple[list[int], list[int]]]]:
        """Inputs as the backend gets them, and per input the offset shifts and first kept positions."""
        if self._spm_text is None:
            return inputs, []
        starts, out, shifts = self._text_starts(), [], []
        for item in inputs:
            done = [self._spm_text.prepare(text, starts) for text in ((item,) if isinstance(item, str) else item)]
            out.append(done[0][0] if isinstance(item, str) else (done[0][0], done[1][0]))
            shifts.append(([shift for _, shift, _ in done], [first for _, _, first in done]))
        return out, shifts


    # ------------------------------------------------------------------ encoding
    def __call__(self, text: str | Sequence[str] | Sequence[tuple[str, str]] | None = None,
                 text_pair: str | Sequence[str] | None = None, *, text_target: str | Sequence[str] | None = None,
                 text_pair_target: str | Sequence[str] | None = None, max_target_length: int | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, add_special_tokens: bool = True,
                 truncation: bool | str | None = None, max_length: int | None = None, stride: int = 0,
                 return_overflowing_tokens: bool = False, return_offsets_mapping: bool = False,
                 padding: bool | str = False, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, return_token_type_ids: bool | None = None,
                 return_special_tokens_mask: bool = False, return_tensors: str | None = None,
                 padding_side: str | None = None, is_split_into_words: bool = False) -> BatchEncoding:
        """Tokenize one text, one pair, or a batch of texts or pairs.

        Args:
            text: A string, a list of strings, or a list of ``(text, text_pair)`` tuples.
            text_pair: The second sequence(s), matching ``text`` (a str for a str, a list for a list).
            text_target, text_pair_target: Target texts (sequence-to-sequence): their ids become ``labels``
                (alone: the whole output), truncated to ``max_target_length`` (default ``max_length``).
            src_lang, tgt_lang: Accepted and ignored, as by transformers' monolingual tokenizers.
            add_special_tokens: Add ``[CLS]``/``[SEP]`` (the backend's post-processor).
            truncation: ``False``, ``True`` (= ``'longest_first'``), ``'only_first'`` or ``'only_second'``;
                None (default): ``'longest_first'`` when ``max_length`` is given without ``padding='max_length'``
                (transformers' rule), else none.
            max_length: Length limit, special tokens included; defaults to ``model_max_length`` when truncating.
            stride: Tokens repeated between consecutive overflowing windows.
            return_overflowing_tokens: Return every window of a truncated sequence, one row each, and
                ``overflow_to_sample_mapping`` (row -> input index). The output then stays batched.
            return_offsets_mapping: Return ``(start, end)`` character offsets per token ((0, 0) for special tokens).
            padding: ``False``, ``True``/``'longest'`` (longest in the batch) or ``'max_length'``.
            pad_to_multiple_of: With padding, round padded lengths up to a multiple of this (e.g. BigBird's
                ``block_size``); without padding it does nothing, as in transformers.
            return_attention_mask: Return ``attention_mask`` (None: if it is in ``model_input_names``, as it is).
            return_token_type_ids: Return ``token_type_ids`` (0 up to the first ``[SEP]``, 1 after). None: if it
                is in ``model_input_names``, which for BigBird it is not: transformers' BigBird tokenizer returns
                ``input_ids`` and ``attention_mask`` only, so the model sees segment 0 (its default) everywhere.
            return_special_tokens_mask: Return ``special_tokens_mask`` (1 on special and padding tokens).
            return_tensors: None for Python lists, ``'pt'`` for torch tensors, ``'np'`` for numpy arrays.
            padding_side: ``'right'`` or ``'left'`` for this call (default: ``self.padding_side``); truncation
                follows ``self.truncation_side``.
            is_split_into_words: ``text`` (and ``text_pair``) are lists of words (a batch: lists of such lists),
                joined with spaces; offsets then refer to the joined text.

        Returns:
            A BatchEncoding. For a single text without overflowing windows and without tensors the values
            are flat lists; otherwise one row per sequence (window).

        Raises:
            TypeError: If the inputs or an option have the wrong type.
            ValueError: If an option value is unknown or inconsistent (e.g. ``max_length`` without truncation
                or padding, ``stride`` too large, ragged tensors).
        """
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if text_target is not None:
            target = self(text_target, text_pair_target, add_special_tokens=add_special_tokens,
                          truncation=truncation, max_length=max_target_length or max_length, padding=padding,
                          pad_to_multiple_of=pad_to_multiple_of, return_tensors=return_tensors,
                          padding_side=padding_side, is_split_into_words=is_split_into_words)
            if text is None:
                return target
            out = self(text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation,
                       max_length=max_length, stride=stride, return_overflowing_tokens=return_overflowing_tokens,
                       return_offsets_mapping=return_offsets_mapping, padding=padding,
                       pad_to_multiple_of=pad_to_multiple_of, return_attention_mask=return_attention_mask,
                       return_token_type_ids=return_token_type_ids,
                       return_special_tokens_mask=return_special_tokens_mask, return_tensors=return_tensors,
                       padding_side=padding_side, is_split_into_words=is_split_into_words)
            out["labels"] = target["input_ids"]
            return out
        if text is None:
            raise TypeError("pass text (or text_target)")
        if is_split_into_words:
            text, text_pair = join_words(text), join_words(text_pair)
        if truncation is None:
            truncation = "longest_first" if max_length is not None and padding != "max_length" else False
        inputs, batched = batch_inputs(text, text_pair)
        plan = plan_call(truncation=truncation, max_length=max_length, stride=stride, padding=padding,
                         pad_to_multiple_of=pad_to_multiple_of, model_max_length=self.model_max_length,
                         has_pad_token=self.pad_token_id is not None,
                         num_special_tokens=self.num_special_tokens_to_add(isinstance(inputs[0], tuple)))
        if return_tensors not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES}, got {return_tensors!r}")
        inputs, shifts = self._prepare(inputs)
        encodings = self._encode_batch(inputs, plan, add_special_tokens=add_special_tokens,
                                       offsets=return_offsets_mapping,
                                       padding_side=side(padding_side or self.padding_side, "padding_side"))
        columns = collect(encodings, overflowing=return_overflowing_tokens, token_type_ids=return_token_type_ids,
                          attention_mask=return_attention_mask, special_tokens_mask=return_special_tokens_mask,
                          offsets=return_offsets_mapping)
        if plan.truncation is None and self.model_max_length < VERY_LARGE_INTEGER:
            self._warn_if_too_long(max((len(e.ids) for e in encodings), default=0))
        windows = [(i, w) for i, enc in enumerate(encodings)
                   for w in ([enc, *enc.overflowing] if return_overflowing_tokens else [enc])]
        if return_offsets_mapping and any(any(shift) for shift, _ in shifts):
            columns["offset_mapping"] = [shift_offsets(w, *shifts[i]) for i, w in windows]
        if return_tensors is not None:
            out = BatchEncoding(to_tensors(columns, return_tensors))
        elif not batched and not return_overflowing_tokens:
            out = BatchEncoding({key: values[0] for key, values in columns.items()})
        else:
            out = BatchEncoding(columns)
        out._encodings = [w for _, w in windows]
        return out

    def _warn_if_too_long(self, longest: int) -> None:
        """transformers' warning, once per tokenizer, for a sequence longer than ``model_max_length``."""
        if longest > self.model_max_length and not self.deprecation_warnings.get("sequence-length-is-longer"):
            logger.warning("Token indices sequence length is longer than the specified maximum sequence length for "
                           f"this model ({longest} > {self.model_max_length}). Running this sequence through the "
                           "model will result in indexing errors")
            self.deprecation_warnings["sequence-length-is-longer"] = True

    def _encode_batch(self, inputs: list[EncodeInput], plan: CallPlan, *, add_special_tokens: bool,
                      offsets: bool, padding_side: str = "right") -> list[Encoding]:
        """Run the backend on the whole batch with this call's truncation/padding, under the lock."""
        with self._lock:
            try:
                if plan.truncation is not None:
                    self._backend.enable_truncation(plan.length, stride=plan.stride, strategy=plan.truncation,
                                                    direction=self.truncation_side)
                if plan.padding is not None:
                    self._backend.enable_padding(
                        direction=padding_side, pad_id=self.pad_token_id, pad_type_id=0, pad_token=self.pad_token,
                        length=plan.length if plan.padding == "max_length" else None,
                        pad_to_multiple_of=plan.pad_to_multiple_of)
                # encode_batch_fast skips the offset bookkeeping
                encode = self._backend.encode_batch if offsets else self._backend.encode_batch_fast
                return encode(inputs, add_special_tokens=add_special_tokens)
            except Exception as e:  # the Rust backend raises plain Exceptions, e.g. for a pair too short to truncate
                if isinstance(e, (ValueError, TypeError)):
                    raise
                raise ValueError(f"tokenizer backend rejected the call: {e}") from e
            finally:
                self._backend.no_truncation()
                self._backend.no_padding()

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None, max_length: int | None = None,
               stride: int = 0, pad_to_multiple_of: int | None = None, padding_side: str | None = None,
               return_tensors: str | None = None) -> list[int] | Any:
        """Ids of one text (or pair), with special tokens by default.

        Args:
            text: The text.
            text_pair: An optional second text.
            add_special_tokens: Add ``[CLS]``/``[SEP]``.
            padding, truncation, max_length, stride, pad_to_multiple_of, padding_side, return_tensors: As in
                :meth:`__call__`.

        Returns:
            The token ids.

        Raises:
            TypeError: If ``text`` (or ``text_pair``) is not a str.
            ValueError: As :meth:`__call__`.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str (call the tokenizer for batches), got {type(text).__name__}")
        return self(text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation,
                    max_length=max_length, padding=padding, stride=stride, pad_to_multiple_of=pad_to_multiple_of,
                    padding_side=padding_side, return_tensors=return_tensors, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, *, add_special_tokens: bool = False) -> list[str]:
        """Token strings of a text (``▁``-prefixed word starts), without special tokens by default.

        Args:
            text: The text.
            pair: An optional second text.
            add_special_tokens: Include ``[CLS]``/``[SEP]``.

        Returns:
            The token strings.

        Raises:
            TypeError: If ``text`` or ``pair`` is not a str.
        """
        if not isinstance(text, str) or not isinstance(pair, (str, type(None))):
            raise TypeError(f"tokenize takes str inputs, got {type(text).__name__} and {type(pair).__name__}")
        (item,), _ = self._prepare([text if pair is None else (text, pair)])
        text, pair = (item, None) if pair is None else item
        with self._lock:
            return self._backend.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    def backend_snapshot(self) -> Tokenizer:
        """A copy of the backend taken under the lock (no per-call truncation/padding settings), e.g. to save."""
        with self._lock:
            return Tokenizer.from_str(self._backend.to_str())

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids: int | Sequence[int] | Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Text of a sequence of ids (list, tuple, or 1-d tensor/array).

        Args:
            token_ids: The ids.
            skip_special_tokens: Leave out special tokens (``[CLS]``, ``[SEP]``, ``<pad>``...).
            clean_up_tokenization_spaces: Remove spaces before punctuation and in English contractions
                (transformers' clean-up); default: ``self.clean_up_tokenization_spaces`` (False).

        Returns:
            The decoded text.

        Raises:
            TypeError: If ``token_ids`` is not a flat sequence of ints.
            ValueError: If an id is outside the vocabulary.
        """
        text = self._backend.decode(self._kept_ids(token_ids, "token_ids", skip_special_tokens),
                                    skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """:meth:`decode` for a batch.

        Args:
            sequences: A list of id lists, or a 2-d tensor/array.
            skip_special_tokens: Leave out special tokens.
            clean_up_tokenization_spaces: As in :meth:`decode`.

        Returns:
            One text per sequence.

        Raises:
            TypeError: If ``sequences`` is not a sequence of id sequences.
            ValueError: If an id is outside the vocabulary.
        """
        if hasattr(sequences, "tolist") and not isinstance(sequences, (list, tuple)):
            sequences = sequences.tolist()
        if not isinstance(sequences, (list, tuple)):
            raise TypeError(f"sequences must be a list of id lists or a 2-d tensor, got {type(sequences).__name__}")
        ids = [self._kept_ids(seq, f"sequences[{i}]", skip_special_tokens) for i, seq in enumerate(sequences)]
        texts = self._backend.decode_batch(ids, skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return [clean_up_tokenization(t) for t in texts] if clean else texts

