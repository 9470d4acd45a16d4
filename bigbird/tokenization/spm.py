"""Read a SentencePiece ``.model`` file and turn it into a ``tokenizers`` Unigram tokenizer.

The ``.model`` file is a serialized ``sentencepiece.ModelProto``. Only a handful of its fields matter
for encoding, so a ~40-line protobuf wire-format reader replaces the ``sentencepiece``/``protobuf``
dependency. The conversion follows the SentencePiece library (``SentencePieceProcessor.encode``), not
transformers' converter, where the two differ (see :mod:`bigbird.tokenization.spmtext`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import Unigram

SPIECE_UNDERLINE = "▁"

# sentencepiece_model.proto field numbers
_MODEL_PIECES, _MODEL_TRAINER_SPEC, _MODEL_NORMALIZER_SPEC = 1, 2, 3
_PIECE_PIECE, _PIECE_SCORE, _PIECE_TYPE = 1, 2, 3
_TRAINER_MODEL_TYPE, _TRAINER_BYTE_FALLBACK, _TRAINER_UNK_ID = 3, 35, 40
_NORMALIZER_NAME, _NORMALIZER_CHARSMAP, _NORMALIZER_DUMMY_PREFIX, _NORMALIZER_EXTRA_WHITESPACE = 1, 2, 3, 4

# SentencePiece.Type and TrainerSpec.ModelType enums
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER_DEFINED, PIECE_UNUSED, PIECE_BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


@dataclass(frozen=True)
class SpmModel:
    """The parts of a SentencePiece model that the conversion needs."""

    pieces: list[tuple[str, float]]  # (piece, log-probability score), in id order
    types: list[int]  # SentencePiece.Type of each piece
    model_type: int
    unk_id: int
    byte_fallback: bool
    normalizer_name: str
    precompiled_charsmap: bytes
    add_dummy_prefix: bool = True  # NormalizerSpec.add_dummy_prefix: "▁" before the text
    remove_extra_whitespaces: bool = True  # NormalizerSpec: strip the ends, runs of spaces to one


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into ``(field number, value)`` pairs (varints as ints, the rest as bytes)."""
    out: list[tuple[int, int | bytes]] = []
    pos, end = 0, len(buf)

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end:
                raise ValueError("truncated varint in SentencePiece model")
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while pos < end:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire in (1, 5):  # fixed64 / fixed32, kept as raw bytes
            size = 8 if wire == 1 else 4
            out.append((number, buf[pos:pos + size]))
            pos += size
        elif wire == 2:
            size = varint()
            out.append((number, buf[pos:pos + size]))
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number}) in SentencePiece model")
        if pos > end:
            raise ValueError("truncated field in SentencePiece model")
    return out


def _int32(value: int) -> int:
    # negative int32 values are written as 64-bit two's complement varints
    return value - (1 << 64) if value >= 1 << 63 else value


def read_spm_model(path: str | os.PathLike) -> SpmModel:
    """Parse a SentencePiece ``.model`` file.

    Args:
        path: Path of the ``.model`` (``spiece.model``) file.

    Returns:
        The pieces with scores and types, the model type, unk id and normalizer settings.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a valid SentencePiece model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SentencePiece model {str(path)!r} does not exist")
    pieces: list[tuple[str, float]] = []
    types: list[int] = []
    model_type, unk_id, byte_fallback, name, charsmap = 1, 0, False, "", b""
    dummy_prefix = extra_whitespace = True  # the proto defaults
    try:
        for number, value in _fields(path.read_bytes()):
            if number == _MODEL_PIECES:
                piece, score, kind = "", 0.0, PIECE_NORMAL
                for sub, sub_value in _fields(value):
                    if sub == _PIECE_PIECE:
                        piece = sub_value.decode("utf-8")
                    elif sub == _PIECE_SCORE:
                        score = struct.unpack("<f", sub_value)[0]
                    elif sub == _PIECE_TYPE:
                        kind = sub_value
                pieces.append((piece, score))
                types.append(kind)
            elif number == _MODEL_TRAINER_SPEC:
                for sub, sub_value in _fields(value):
                    if sub == _TRAINER_MODEL_TYPE:
                        model_type = sub_value
                    elif sub == _TRAINER_UNK_ID:
                        unk_id = _int32(sub_value)
                    elif sub == _TRAINER_BYTE_FALLBACK:
                        byte_fallback = bool(sub_value)
            elif number == _MODEL_NORMALIZER_SPEC:
                for sub, sub_value in _fields(value):
                    if sub == _NORMALIZER_NAME:
                        name = sub_value.decode("utf-8")
                    elif sub == _NORMALIZER_CHARSMAP:
                        charsmap = bytes(sub_value)
                    elif sub == _NORMALIZER_DUMMY_PREFIX:
                        dummy_prefix = bool(sub_value)
                    elif sub == _NORMALIZER_EXTRA_WHITESPACE:
                        extra_whitespace = bool(sub_value)
    except (ValueError, struct.error, AttributeError, TypeError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{str(path)!r} is not a valid SentencePiece model: {e}") from e
    if not pieces:
        raise ValueError(f"{str(path)!r} is not a valid SentencePiece model: it has no pieces")
    if not 0 <= unk_id < len(pieces):
        raise ValueError(f"SentencePiece model {str(path)!r} has unk_id {unk_id} outside its {len(pieces)} pieces")
    return SpmModel(pieces, types, model_type, unk_id, byte_fallback, name, charsmap, dummy_prefix, extra_whitespace)


def metaspace(add_prefix_space: bool) -> tuple[pre_tokenizers.Metaspace, decoders.Metaspace]:
    """The Metaspace pre-tokenizer and decoder pair.

    Args:
        add_prefix_space: Prepend ``▁`` to every chunk of text between added tokens (else never).

    Returns:
        ``(pre_tokenizer, decoder)``.
    """
    scheme = "always" if add_prefix_space else "never"
    return (pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme, split=True),
            decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme, split=True))


def _onig_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}" else c for c in text)


def control_guard(pieces: Iterable[str]) -> pre_tokenizers.Split | None:
    """A pre-tokenizer split that keeps control pieces (``<s>``, ``</s>``, ``<unk>``) out of reach of the text.

    SentencePiece never matches its control and unknown pieces in the input: ``"<s>"`` in a text is read as
    the characters ``<``, ``s``, ``>``. A ``tokenizers`` Unigram model would pick the piece ``<s>``; a split
    before the piece's last character (only where the rest of the piece precedes it) prevents that.

    Args:
        pieces: The control/unknown piece strings.

    Returns:
        The split, or None when no piece is longer than one character.
    """
    long = sorted({p for p in pieces if len(p) > 1})
    if not long:
        return None
    pattern = "|".join(f"(?<={_onig_escape(p[:-1])}){_onig_escape(p[-1])}" for p in long)
    return pre_tokenizers.Split(Regex(pattern), behavior="merged_with_next")


def spm_to_tokenizer(model: SpmModel, *, add_prefix_space: bool | None = None) -> Tokenizer:
    """Build the ``tokenizers`` equivalent of a SentencePiece Unigram model (no special-token template).

    The backend reproduces ``SentencePieceProcessor.encode`` except for the two whitespace rules that act on the
    whole text, which :class:`bigbird.tokenization.spmtext.SpmText` applies before the backend runs: the ends of
    the text are stripped, and a text that starts with an added token still gets the dummy-prefix ``▁``.
    Inside the backend: the model's precompiled charsmap, runs of spaces to one, a ``▁`` before the first
    chunk (Metaspace ``prepend_scheme="first"``), splits at ``▁``, and a guard that keeps control pieces
    from matching the text (:func:`control_guard`).

    Args:
        model: The parsed SentencePiece model.
        add_prefix_space: Prepend ``▁`` to the text (SentencePiece's dummy prefix); None: the model's setting.

    Returns:
        A Unigram tokenizer with the model's user-defined pieces as (non-special) added tokens matched in the
        normalized text, as SentencePiece matches them. Control pieces stay ordinary vocabulary entries.

    Raises:
        ValueError: If the model is not a Unigram model.
    """
    if model.model_type != 1:
        raise ValueError(f"only SentencePiece Unigram models are supported, this one is "
                         f"{MODEL_TYPES.get(model.model_type, model.model_type)!r}")
    prefix = model.add_dummy_prefix if add_prefix_space is None else add_prefix_space
    # byte_fallback stays off, as in transformers' BigBird conversion
    tokenizer = Tokenizer(Unigram(model.pieces, unk_id=model.unk_id, byte_fallback=False))
    steps = [normalizers.Precompiled(model.precompiled_charsmap)] if model.precompiled_charsmap else []
    if model.remove_extra_whitespaces:
        steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    split = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="first" if prefix else "never",
                                     split=True)
    guard = control_guard(piece for (piece, _), kind in zip(model.pieces, model.types)
                          if kind in (PIECE_UNKNOWN, PIECE_CONTROL))
    tokenizer.pre_tokenizer = split if guard is None else pre_tokenizers.Sequence([split, guard])
    tokenizer.decoder = metaspace(prefix)[1]
    tokenizer.add_tokens([AddedToken(piece, normalized=True, special=False)
                          for (piece, _), kind in zip(model.pieces, model.types) if kind == PIECE_USER_DEFINED])
    return tokenizer


def train_unigram_backend(texts: Iterable[str], *, vocab_size: int, special_tokens: list[AddedToken],
                          unk_token: str, add_prefix_space: bool, max_piece_length: int) -> Tokenizer:
    """Train a Unigram tokenizer on ``texts`` with SentencePiece-like normalization (NFKC, BigBird spaces).

    Args:
        texts: Training texts.
        vocab_size: Vocabulary size, special tokens included.
        special_tokens: Special tokens, given the first ids in this order.
        unk_token: The unknown token (one of ``special_tokens``).
        add_prefix_space: As in :func:`metaspace`.
        max_piece_length: Longest piece, in characters.

    Returns:
        The trained tokenizer (no post-processor).

    Raises:
        ValueError: If the trainer fails (e.g. ``vocab_size`` too small for the alphabet).
    """
    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Strip(left=False, right=True),
        normalizers.Replace(Regex(" {2,}"), SPIECE_UNDERLINE)])
    tokenizer.pre_tokenizer, tokenizer.decoder = metaspace(add_prefix_space)
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_tokens, unk_token=unk_token,
                                      max_piece_length=max_piece_length, show_progress=False)
    try:
        tokenizer.train_from_iterator(texts, trainer)
    except Exception as e:  # the Rust trainer raises plain Exceptions
        raise ValueError(f"Unigram training failed: {e}") from e
    return tokenizer
