"""A k-mer DNA tokenizer that keeps one token per base: token ``i`` is the k-mer that starts at base ``i``.

A gene caller reads codons: start and stop codons, codon usage, the 3-periodic composition of coding DNA.
One token per base makes a small model learn those from single letters. Overlapping k-mers give each base a
token that *is* its codon (``k=3``) or codon pair (``k=6``, as DNABERT) while tokens stay bases: a tag is
still a base's label, offsets are exact, and windows are cut as for :class:`DNATokenizer`.

The ids of a sequence are its :class:`DNATokenizer` ids mapped afterwards: base ``i`` gets the id of the
k-mer ``b[i] .. b[i+k-1]`` of the bases that follow it in the same encoded sequence; a position past the end
of the bases (or a special token) counts as ``N``. So the last ``k - 1`` bases of a text end in ``N``; texts
cut into windows after encoding (the inference pipelines and the training job do this) keep the true k-mers
across window boundaries.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from bigbird.tokenization.dna import DNA_ALPHABET, DNATokenizer, build_dna_backend
from bigbird.tokenization.specials import OWN_SPECIAL_TOKENS, TokenArg

MAX_K = 6  # 5**6 = 15,625 k-mers: a 2 M-parameter embedding at hidden size 128


def kmer_strings(k: int) -> list[str]:
    """Every k-mer over ``ACGTN`` in id order (``AAA``, ``AAC``, ..., ``NNN``: base-5 numbers, A=0 ... N=4)."""
    return ["".join(p) for p in itertools.product(DNA_ALPHABET, repeat=k)]


def build_kmer_backend(k: int) -> Tokenizer:
    """The DNA backend (ids 0-6 special tokens, 7-11 ``A C G T N``) with the ``5**k`` k-mers appended as ids
    ``12 ..``: the encoder never emits them (it splits text into bases), :class:`KmerDNATokenizer` maps to them."""
    check_k(k)
    return build_dna_backend(kmer_strings(k))


def check_k(k: object) -> int:
    """``k`` if it is an int in ``[2, MAX_K]``; raises ValueError naming it otherwise."""
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= MAX_K:
        raise ValueError(f"k-mer length k must be an int in [2, {MAX_K}] (k=1 is DNATokenizer), got {k!r}")
    return k


class _KmerEncoding:
    """A backend Encoding whose ``ids`` are k-mer ids (everything else, offsets included, is the base one's)."""

    __slots__ = ("_enc", "_ids", "_windows")

    def __init__(self, enc: Encoding, ids: list[int], windows: list[_KmerEncoding]) -> None:
        self._enc, self._ids, self._windows = enc, ids, windows

    @property
    def ids(self) -> list[int]:
        return self._ids

    @property
    def overflowing(self) -> list[_KmerEncoding]:
        return self._windows

    def __len__(self) -> int:
        return len(self._enc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._enc, name)


class KmerDNATokenizer(DNATokenizer):
    """DNA tokenizer with one token per base whose id is the k-mer starting at that base.

    Saved as a DNA backend with the k-mers appended (``"bigbird_tokenizer": "dna_kmer"`` in
    ``tokenizer_config.json``); ``from_pretrained`` reads ``k`` back from the vocabulary.

    Args:
        k: k-mer length, 2 to :data:`MAX_K` (None: from ``backend``; default 3 without one).
        backend: A saved k-mer backend (default: :func:`build_kmer_backend`).
        model_max_length, **kwargs: As :class:`DNATokenizer`.

    Raises:
        ValueError: ``k`` out of range, or a backend whose vocabulary is not the DNA one plus ``5**k`` k-mers
            (or disagrees with ``k``).
    """

    kind = "dna_kmer"

    def __init__(self, backend: Tokenizer | None = None, *, k: int | None = None,
                 model_max_length: int | None = None, **kwargs: TokenArg | object) -> None:
        if backend is None:
            backend = build_kmer_backend(3 if k is None else check_k(k))
        found = self._k_of(backend)
        if k is not None and check_k(k) != found:
            raise ValueError(f"k={k} but the backend's vocabulary holds {found}-mers")
        super().__init__(backend, model_max_length=model_max_length, **kwargs)
        # transformers' PreTrainedTokenizerFast would read the saved tokenizer.json as one *base* per id: a class
        # it does not know makes AutoTokenizer refuse the folder instead of giving the model the wrong ids
        self.tokenizer_class = "KmerDNATokenizer"
        self.k = found
        self._first = backend.token_to_id(DNA_ALPHABET[0])  # id of A; A C G T N are consecutive
        self._kmer0 = backend.token_to_id(DNA_ALPHABET[0] * found)
        self._weights = 5 ** np.arange(found - 1, -1, -1, dtype=np.int64)

    @staticmethod
    def _k_of(backend: Tokenizer) -> int:
        base = len(OWN_SPECIAL_TOKENS) + len(DNA_ALPHABET)  # the DNA backend's vocabulary
        extra = backend.get_vocab_size(with_added_tokens=True) - base
        for k in range(2, MAX_K + 1):
            if extra == 5 ** k and backend.token_to_id(DNA_ALPHABET[0] * k) == base:
                return k
        raise ValueError(f"not a k-mer DNA vocabulary: {extra} tokens after the {base} DNA ones, not 5**k "
                         f"(k <= {MAX_K}) k-mers from id {base}")

    def kmer_ids(self, ids: list[int] | np.ndarray) -> list[int]:
        """Base ids (:class:`DNATokenizer`'s) -> k-mer ids; special tokens keep their id."""
        arr = np.asarray(ids, dtype=np.int64)
        digit = arr - self._first
        is_base = (digit >= 0) & (digit < len(DNA_ALPHABET))
        padded = np.concatenate([np.where(is_base, digit, 4), np.full(self.k - 1, 4, dtype=np.int64)])
        n = len(arr)
        code = sum(padded[j:j + n] * w for j, w in enumerate(self._weights)) if n else arr
        return np.where(is_base, self._kmer0 + code, arr).tolist()

    def _encode_batch(self, inputs: list, plan: Any, *, add_special_tokens: bool, offsets: bool,
                      padding_side: str = "right") -> list[Any]:
        encodings = super()._encode_batch(inputs, plan, add_special_tokens=add_special_tokens, offsets=offsets,
                                          padding_side=padding_side)
        return [self._mapped(e) for e in encodings]

    def _mapped(self, enc: Encoding) -> _KmerEncoding:
        return _KmerEncoding(enc, self.kmer_ids(enc.ids), [self._mapped(w) for w in enc.overflowing])

    def tokenize(self, text: str, pair: str | None = None, *, add_special_tokens: bool = False) -> list[str]:
        """The k-mer token of each base (``tokens`` of the mapped ids)."""
        enc = self(text, pair, add_special_tokens=add_special_tokens, return_attention_mask=False)
        return self.convert_ids_to_tokens(enc["input_ids"])

    def decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs: Any) -> str:
        """The bases of k-mer ids (each k-mer stands for its first base)."""
        return super().decode(self._first_bases(token_ids), skip_special_tokens=skip_special_tokens, **kwargs)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """:meth:`decode` of each sequence."""
        return [self.decode(s, skip_special_tokens=skip_special_tokens, **kwargs) for s in sequences]

    def _first_bases(self, token_ids: Any) -> Any:
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            return self._first_bases([token_ids])[0]
        ids = np.asarray(token_ids, dtype=np.int64)
        is_kmer = ids >= self._kmer0
        first = (ids - self._kmer0) // 5 ** (self.k - 1)
        return np.where(is_kmer, self._first + first, ids).tolist()

