"""A character-level DNA tokenizer: one token per base (A, C, G, T, N), case-insensitive, exact offsets."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from bigbird.tokenization.core import BigBirdTokenizer
from bigbird.tokenization.specials import OWN_SPECIAL_TOKENS, TokenArg, bigbird_template, special_token

DNA_ALPHABET = "ACGTN"
_DELETE_VALID = str.maketrans("", "", DNA_ALPHABET + DNA_ALPHABET.lower())
_MAX_REPORTED = 10


def build_dna_backend(extra: Sequence[str] = ()) -> Tokenizer:
    """The ``tokenizers`` backend: ids 0-6 are ``<pad> <s> </s> <unk> [CLS] [SEP] [MASK]``, then A C G T N,
    then ``extra`` vocabulary entries (never produced from text: the k-mers of :mod:`bigbird.tokenization.kmer`).

    Lower-case bases are upper-cased by 1:1 replacements (so offsets stay exact); every other character
    becomes one ``<unk>`` token.

    Returns:
        The backend, with the ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]`` template.
    """
    specials = [special_token(name, token) for name, token in OWN_SPECIAL_TOKENS]
    vocab = {tok.content: i for i, tok in enumerate(specials)}
    vocab.update({base: len(specials) + i for i, base in enumerate(DNA_ALPHABET)})
    vocab.update({entry: len(vocab) + i for i, entry in enumerate(extra)})
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.Replace(b.lower(), b) for b in DNA_ALPHABET])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one piece per character
    backend.decoder = decoders.Fuse()  # bases are joined without spaces
    backend.add_special_tokens(specials)
    backend.post_processor = bigbird_template("[CLS]", vocab["[CLS]"], "[SEP]", vocab["[SEP]"])
    return backend


class DNATokenizer(BigBirdTokenizer):
    """BigBird tokenizer for genomes: one token per base, ``[CLS] A [SEP]`` templates, BigBird special tokens.

    Saved with ``"bigbird_tokenizer": "dna"`` in ``tokenizer_config.json``, so that
    ``BigBirdTokenizer.from_pretrained`` gives back a DNATokenizer.

    Args:
        backend: A saved DNA backend to wrap (default: :func:`build_dna_backend`).
        model_max_length: Length used by ``truncation=True`` / ``padding='max_length'`` without ``max_length``.
        **kwargs: Named special tokens of a saved backend (``unk_token="<unk>"``...) and the other keywords of
            :class:`BigBirdTokenizer`.
    """

    kind = "dna"

    def __init__(self, backend: Tokenizer | None = None, *, model_max_length: int | None = None,
                 **kwargs: TokenArg | object) -> None:
        super().__init__(build_dna_backend() if backend is None else backend, model_max_length=model_max_length,
                         **kwargs)

    @staticmethod
    def validate(text: str) -> None:
        """Check that ``text`` holds only A, C, G, T, N (any case).

        Args:
            text: A DNA sequence.

        Raises:
            TypeError: If ``text`` is not a str.
            ValueError: Naming each bad character and the position of its first occurrence.
        """
        if not isinstance(text, str):
            raise TypeError(f"DNA text must be a str, got {type(text).__name__}")
        bad = set(text.translate(_DELETE_VALID))
        if bad:
            first = sorted((text.index(char), char) for char in bad)
            listed = ", ".join(f"{char!r} at {pos}" for pos, char in first[:_MAX_REPORTED])
            more = f" and {len(first) - _MAX_REPORTED} more" if len(first) > _MAX_REPORTED else ""
            raise ValueError(f"invalid DNA characters (allowed: {DNA_ALPHABET}, any case): {listed}{more}")
