"""BigBirdTokenizer: a thin, typed front end over a ``tokenizers.Tokenizer`` (the Rust backend does the work).

The default vocabulary is BigBird's SentencePiece Unigram model; the same class also wraps any other
``tokenizer.json`` (e.g. a BERT WordPiece), keeping its own special tokens and post-processor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken, Tokenizer, pre_tokenizers

from bigbird.tokenization.batch import TENSOR_TYPES, BatchEncoding, collect, to_tensors
from bigbird.tokenization.files import resolve_tokenizer_files
from bigbird.tokenization.options import (
    VERY_LARGE_INTEGER,
    CallPlan,
    EncodeInput,
    batch_inputs,
    plan_call,
    positive_int,
)
from bigbird.tokenization.specials import (
    OWN_SPECIAL_TOKENS,
    SPECIAL_TOKEN_NAMES,
    TokenArg,
    VocabularyMixin,
    bigbird_template,
    special_token,
)
from bigbird.tokenization.spm import (
    PIECE_CONTROL,
    PIECE_UNKNOWN,
    metaspace,
    read_spm_model,
    spm_to_tokenizer,
    train_unigram_backend,
)
from bigbird.tokenization.spmtext import SpmText, shift_offsets
from bigbird.tokenization.storage import (
    copy_spm_model,
    load_tokenizer,
    output_folder,
    save_backend,
    save_tokenizer,
)

if TYPE_CHECKING:
    from tokenizers import Encoding

    from bigbird.tokenization.dna import DNATokenizer


class BigBirdTokenizer(VocabularyMixin):
    """BigBird's SentencePiece Unigram tokenizer (or any ``tokenizers`` backend) with a transformers-like API.

    Build it from a SentencePiece model (``BigBirdTokenizer(vocab_file="spiece.model")``), around a
    ``tokenizers.Tokenizer`` (``BigBirdTokenizer(backend, unk_token="[UNK]", ...)``), or with
    :meth:`from_pretrained`. Calls are thread-safe: the per-call truncation/padding settings of the
    shared backend are guarded by a lock.

    Args:
        backend: A ``tokenizers.Tokenizer`` to wrap (copied; its post-processor is kept). Every named
            special token that is not None must be in its vocabulary.
        vocab_file: A SentencePiece ``.model`` file to convert instead (exactly one of the two); missing
            special tokens are appended to the vocabulary as transformers does, and the
            ``[CLS] A [SEP] B [SEP]`` template is installed.
        add_prefix_space: Prepend ``▁`` to the text (default True for ``vocab_file``; for a backend with a
            Metaspace pre-tokenizer, None keeps its setting).
        model_max_length: Length used by ``truncation=True`` / ``padding='max_length'`` without ``max_length``.
        unk_token, bos_token, eos_token, pad_token, sep_token, cls_token, mask_token: The named special
            tokens (None: the vocabulary has none).

    Raises:
        ValueError: If neither or both of ``backend``/``vocab_file`` are given, or a special token is missing.
        TypeError: If an argument has the wrong type.
        FileNotFoundError: If ``vocab_file`` does not exist.
    """

    kind = "bigbird"
    model_input_names: list[str] = ["input_ids", "attention_mask"]  # as transformers' BigBirdTokenizer

    def __init__(self, backend: Tokenizer | None = None, *, vocab_file: str | os.PathLike | None = None,
                 add_prefix_space: bool | None = None, model_max_length: int | None = None,
                 unk_token: TokenArg = "<unk>", bos_token: TokenArg = "<s>", eos_token: TokenArg = "</s>",
                 pad_token: TokenArg = "<pad>", sep_token: TokenArg = "[SEP]", cls_token: TokenArg = "[CLS]",
                 mask_token: TokenArg = "[MASK]") -> None:
        if (backend is None) == (vocab_file is None):
            raise ValueError("pass exactly one of backend (a tokenizers.Tokenizer) and vocab_file (a .model file)")
        if add_prefix_space is not None and not isinstance(add_prefix_space, bool):
            raise TypeError(f"add_prefix_space must be a bool, got {add_prefix_space!r}")
        given = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                     pad_token=pad_token, cls_token=cls_token, mask_token=mask_token)
        tokens = {name: special_token(name, given[name]) for name in SPECIAL_TOKEN_NAMES}
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else positive_int(
            model_max_length, "model_max_length")
        self.vocab_file: Path | None = None
        self.tokenizer_class = "PreTrainedTokenizerFast"  # what transformers should load a saved copy with
        self._spm_text: SpmText | None = None
        if vocab_file is not None:
            self.vocab_file = Path(vocab_file)
            self.tokenizer_class = "BigBirdTokenizer"
            backend, strip, add_prefix_space = self._from_spm(self.vocab_file, given, tokens, add_prefix_space)
        elif not isinstance(backend, Tokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        else:
            backend = Tokenizer.from_str(backend.to_str())  # our calls change its truncation/padding settings
            missing = {name: tok.content for name, tok in tokens.items()
                       if tok is not None and backend.token_to_id(tok.content) is None}
            if missing:
                raise ValueError(f"special tokens {missing} are not in the vocabulary; pass the backend's own "
                                 "tokens (or None) as unk_token=..., pad_token=..., etc.")
            if isinstance(backend.pre_tokenizer, pre_tokenizers.Metaspace) and add_prefix_space is not None:
                backend.pre_tokenizer, backend.decoder = metaspace(add_prefix_space)
            elif add_prefix_space is not None:
                raise ValueError("add_prefix_space only applies to a backend with a Metaspace pre-tokenizer")
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._tokens = tokens
        self._ids = {name: None if tok is None else backend.token_to_id(tok.content) for name, tok in tokens.items()}
        pre = backend.pre_tokenizer
        self.add_prefix_space = pre.prepend_scheme != "never" if isinstance(pre, pre_tokenizers.Metaspace) else None
        self._lock = threading.Lock()
        self._templates: dict[bool, list[int | str]] = {}
        if vocab_file is not None:
            self.use_sentencepiece_rules(strip=strip, prefix=add_prefix_space)

    @staticmethod
    def _from_spm(path: Path, given: dict[str, Any], tokens: dict[str, AddedToken | None],
                  add_prefix_space: bool | None) -> tuple[Tokenizer, bool, bool]:
        model = read_spm_model(path)
        backend = spm_to_tokenizer(model, add_prefix_space=add_prefix_space)
        if tokens["cls_token"] is None or tokens["sep_token"] is None:
            raise ValueError("a BigBird tokenizer needs a cls_token and a sep_token")
        # SentencePiece reads its control pieces (<s>, </s>, <unk>) in a text as characters: they stay plain
        # vocabulary entries. The other named tokens are matched like SentencePiece's user-defined pieces: in the
        # normalized text, the whitespace around them kept; [MASK] stands for a whole piece, its "▁" included
        # (BigBird was pretrained on pieces masked after SentencePiece), so it takes the space before it, with
        # transformers' flags. A token passed as an AddedToken keeps its own flags.
        control = {piece for (piece, _), kind in zip(model.pieces, model.types) if kind in (PIECE_CONTROL, PIECE_UNKNOWN)}
        added = [tok if isinstance(given[name], AddedToken)
                 else AddedToken(tok.content, lstrip=name == "mask_token", rstrip=False,
                                 normalized=name != "mask_token", special=True)
                 for name, tok in tokens.items() if tok is not None and tok.content not in control]
        backend.add_special_tokens(added)
        cls, sep = tokens["cls_token"].content, tokens["sep_token"].content
        backend.post_processor = bigbird_template(cls, backend.token_to_id(cls), sep, backend.token_to_id(sep))
        prefix = model.add_dummy_prefix if add_prefix_space is None else add_prefix_space
        return backend, model.remove_extra_whitespaces, prefix

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

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        tokens = {name: tok.content for name, tok in self._tokens.items() if tok is not None}
        return f"{type(self).__name__}(size={len(self)}, model_max_length={self.model_max_length}, {tokens})"

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._backend

    # ------------------------------------------------------------------ encoding
    def __call__(self, text: str | Sequence[str] | Sequence[tuple[str, str]],
                 text_pair: str | Sequence[str] | None = None, *, add_special_tokens: bool = True,
                 truncation: bool | str = False, max_length: int | None = None, stride: int = 0,
                 return_overflowing_tokens: bool = False, return_offsets_mapping: bool = False,
                 padding: bool | str = False, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, return_token_type_ids: bool | None = None,
                 return_special_tokens_mask: bool = False, return_tensors: str | None = None) -> BatchEncoding:
        """Tokenize one text, one pair, or a batch of texts or pairs.

        Args:
            text: A string, a list of strings, or a list of ``(text, text_pair)`` tuples.
            text_pair: The second sequence(s), matching ``text`` (a str for a str, a list for a list).
            add_special_tokens: Add ``[CLS]``/``[SEP]`` (the backend's post-processor).
            truncation: ``False``, ``True`` (= ``'longest_first'``), ``'only_first'`` or ``'only_second'``.
            max_length: Length limit, special tokens included; defaults to ``model_max_length`` when truncating.
            stride: Tokens repeated between consecutive overflowing windows.
            return_overflowing_tokens: Return every window of a truncated sequence, one row each, and
                ``overflow_to_sample_mapping`` (row -> input index). The output then stays batched.
            return_offsets_mapping: Return ``(start, end)`` character offsets per token ((0, 0) for special tokens).
            padding: ``False``, ``True``/``'longest'`` (longest in the batch) or ``'max_length'``; on the right.
            pad_to_multiple_of: Round padded lengths up to a multiple of this (e.g. BigBird's ``block_size``);
                it implies ``padding='longest'`` when ``padding`` is False.
            return_attention_mask: Return ``attention_mask`` (None: if it is in ``model_input_names``, as it is).
            return_token_type_ids: Return ``token_type_ids`` (0 up to the first ``[SEP]``, 1 after). None: if it
                is in ``model_input_names``, which for BigBird it is not: transformers' BigBird tokenizer returns
                ``input_ids`` and ``attention_mask`` only, so the model sees segment 0 (its default) everywhere.
            return_special_tokens_mask: Return ``special_tokens_mask`` (1 on special and padding tokens).
            return_tensors: None for Python lists, ``'pt'`` for torch tensors, ``'np'`` for numpy arrays.

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
        inputs, batched = batch_inputs(text, text_pair)
        plan = plan_call(truncation=truncation, max_length=max_length, stride=stride, padding=padding,
                         pad_to_multiple_of=pad_to_multiple_of, model_max_length=self.model_max_length,
                         has_pad_token=self.pad_token_id is not None,
                         num_special_tokens=self.num_special_tokens_to_add(isinstance(inputs[0], tuple)))
        if return_tensors not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES}, got {return_tensors!r}")
        inputs, shifts = self._prepare(inputs)
        encodings = self._encode_batch(inputs, plan, add_special_tokens=add_special_tokens,
                                       offsets=return_offsets_mapping)
        columns = collect(encodings, overflowing=return_overflowing_tokens, token_type_ids=return_token_type_ids,
                          attention_mask=return_attention_mask, special_tokens_mask=return_special_tokens_mask,
                          offsets=return_offsets_mapping)
        if return_offsets_mapping and any(any(shift) for shift, _ in shifts):
            windows = [(i, w) for i, enc in enumerate(encodings)
                       for w in ([enc, *enc.overflowing] if return_overflowing_tokens else [enc])]
            columns["offset_mapping"] = [shift_offsets(w, *shifts[i]) for i, w in windows]
        if return_tensors is not None:
            return BatchEncoding(to_tensors(columns, return_tensors))
        if not batched and not return_overflowing_tokens:
            return BatchEncoding({key: values[0] for key, values in columns.items()})
        return BatchEncoding(columns)

    def _encode_batch(self, inputs: list[EncodeInput], plan: CallPlan, *, add_special_tokens: bool,
                      offsets: bool) -> list[Encoding]:
        """Run the backend on the whole batch with this call's truncation/padding, under the lock."""
        with self._lock:
            try:
                if plan.truncation is not None:
                    self._backend.enable_truncation(plan.length, stride=plan.stride, strategy=plan.truncation,
                                                    direction="right")
                if plan.padding is not None:
                    self._backend.enable_padding(
                        direction="right", pad_id=self.pad_token_id, pad_type_id=0, pad_token=self.pad_token,
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

    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               truncation: bool | str = False, max_length: int | None = None) -> list[int]:
        """Ids of one text (or pair), with special tokens by default.

        Args:
            text: The text.
            text_pair: An optional second text.
            add_special_tokens: Add ``[CLS]``/``[SEP]``.
            truncation: As in :meth:`__call__`.
            max_length: As in :meth:`__call__`.

        Returns:
            The token ids.

        Raises:
            TypeError: If ``text`` (or ``text_pair``) is not a str.
            ValueError: As :meth:`__call__`.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str (call the tokenizer for batches), got {type(text).__name__}")
        return self(text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation,
                    max_length=max_length, return_attention_mask=False, return_token_type_ids=False)["input_ids"]

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

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids: int | Sequence[int] | Any, skip_special_tokens: bool = False) -> str:
        """Text of a sequence of ids (list, tuple, or 1-d tensor/array).

        Args:
            token_ids: The ids.
            skip_special_tokens: Leave out special tokens (``[CLS]``, ``[SEP]``, ``<pad>``...).

        Returns:
            The decoded text.

        Raises:
            TypeError: If ``token_ids`` is not a flat sequence of ints.
            ValueError: If an id is outside the vocabulary.
        """
        return self._backend.decode(self._kept_ids(token_ids, "token_ids", skip_special_tokens),
                                    skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, skip_special_tokens: bool = False) -> list[str]:
        """:meth:`decode` for a batch.

        Args:
            sequences: A list of id lists, or a 2-d tensor/array.
            skip_special_tokens: Leave out special tokens.

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
        return self._backend.decode_batch(ids, skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ building, loading, saving
    @classmethod
    def for_dna(cls, *, model_max_length: int | None = None) -> DNATokenizer:
        """A character-level tokenizer over A/C/G/T/N (see :class:`DNATokenizer`).

        Args:
            model_max_length: As in the constructor.

        Returns:
            A new DNATokenizer.
        """
        from bigbird.tokenization.dna import DNATokenizer

        return DNATokenizer(model_max_length=model_max_length)

    @classmethod
    def train_unigram(cls, texts: Iterable[str], vocab_size: int, *, add_prefix_space: bool = True,
                      model_max_length: int | None = None, max_piece_length: int = 16) -> BigBirdTokenizer:
        """Train a SentencePiece-style Unigram vocabulary with the ``tokenizers`` trainer.

        The special tokens take ids 0-6: ``<pad> <s> </s> <unk> [CLS] [SEP] [MASK]``; the normalizer is
        NFKC (SentencePiece's default) plus BigBird's whitespace handling.

        Args:
            texts: The training texts (an iterable of str: lines, documents, k-mer strings...).
            vocab_size: Size of the vocabulary, special tokens included.
            add_prefix_space: As in the constructor.
            model_max_length: As in the constructor.
            max_piece_length: Longest piece, in characters.

        Returns:
            The trained tokenizer, with the ``[CLS] A [SEP]`` template.

        Raises:
            TypeError: If ``texts`` is a single str or a size is not an int.
            ValueError: If a size is not positive or training fails.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str, not a single str")
        specials = [special_token(name, token) for name, token in OWN_SPECIAL_TOKENS]
        backend = train_unigram_backend(
            texts, vocab_size=positive_int(vocab_size, "vocab_size"), special_tokens=specials, unk_token="<unk>",
            add_prefix_space=add_prefix_space, max_piece_length=positive_int(max_piece_length, "max_piece_length"))
        backend.post_processor = bigbird_template("[CLS]", backend.token_to_id("[CLS]"),
                                                  "[SEP]", backend.token_to_id("[SEP]"))
        return BigBirdTokenizer(backend, model_max_length=model_max_length)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        add_prefix_space: bool | None = None,
                        model_max_length: int | None = None) -> BigBirdTokenizer:
        """Load a tokenizer from a folder, a single file, or a hub repository.

        ``tokenizer.json`` is used as it is when present, else ``spiece.model`` is converted.
        ``tokenizer_config.json`` / ``special_tokens_map.json`` give the special tokens and
        ``model_max_length``; without them the special tokens are recognised by name. A
        ``tokenizer_config.json`` with ``"bigbird_tokenizer": "dna"`` gives a :class:`DNATokenizer`.

        Args:
            path_or_hub_id: Local folder, ``tokenizer.json`` / ``.model`` file, or hub id (``org/name``).
            revision: Hub branch, tag or commit.
            cache_dir: Hub cache folder (default: ``HF_HUB_CACHE`` or the hub default).
            local_files_only: Only use local files / the hub cache (also with ``HF_HUB_OFFLINE=1``).
            add_prefix_space: Override the prefix-space setting (SentencePiece tokenizers only).
            model_max_length: Override the config's ``model_max_length``.

        Returns:
            A BigBirdTokenizer, or a DNATokenizer for a saved DNA tokenizer.

        Raises:
            ValueError: If the path is empty, a config is invalid, or the folder's tokenizer kind does not
                fit ``cls`` (e.g. ``DNATokenizer.from_pretrained`` on a text tokenizer).
            TypeError: If ``path_or_hub_id`` is not a str or path.
            FileNotFoundError: If the folder, repository or its tokenizer files do not exist.
        """
        files = resolve_tokenizer_files(path_or_hub_id, revision=revision, cache_dir=cache_dir,
                                        local_files_only=local_files_only)
        tokenizer = load_tokenizer(files, add_prefix_space=add_prefix_space, model_max_length=model_max_length)
        if not isinstance(tokenizer, cls):
            raise ValueError(f"{files.source!r} holds a {type(tokenizer).__name__}, not a {cls.__name__}")
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (plus
        ``spiece.model`` when loaded from one), loadable by :meth:`from_pretrained` and by transformers.

        Args:
            save_directory: Folder to write into (created if needed).

        Returns:
            The paths written.

        Raises:
            ValueError: If ``save_directory`` is empty.
            FileExistsError: If ``save_directory`` is an existing file.
        """
        return tuple(str(p) for p in save_tokenizer(self, output_folder(save_directory)))

    def save_vocabulary(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write the vocabulary: a copy of ``spiece.model`` if the tokenizer came from one, else ``tokenizer.json``.

        Args:
            save_directory: Folder to write into (created if needed).

        Returns:
            The path written, in a 1-tuple.

        Raises:
            ValueError: If ``save_directory`` is empty.
            FileExistsError: If ``save_directory`` is an existing file.
            FileNotFoundError: If the original ``spiece.model`` has disappeared since loading.
        """
        folder = output_folder(save_directory)
        path = save_backend(self, folder) if self.vocab_file is None else copy_spm_model(self.vocab_file, folder)
        return (str(path),)
