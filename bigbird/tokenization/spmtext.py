"""SentencePiece's whole-text whitespace rules, applied before the ``tokenizers`` backend runs.

Ids from a ``spiece.model`` follow the SentencePiece library: ``BigBirdTokenizer(vocab_file=...)(text)`` is
``[CLS] + SentencePieceProcessor.encode(text) + [SEP]`` (``[CLS] A [SEP] B [SEP]`` for pairs), the input
the original BigBird was trained on. SentencePiece normalizes the whole text before it looks for pieces:
the model's charsmap (NFKC), then only the space character ``" "`` counts as whitespace: leading and
trailing spaces go, runs of spaces become one, and a ``▁`` (the dummy prefix) starts the text. Newlines,
tabs, NUL and other characters are kept and become pieces (``<unk>`` where the model has none).
User-defined pieces (and the special tokens BigBird adds to the vocabulary, ``[CLS] [SEP] [MASK] <pad>``
when the model lacks them) are matched in the normalized text with the whitespace around them kept as
``▁`` pieces; control pieces (``<s>``, ``</s>``, ``<unk>``) written in a text are read as characters.
One exception, shared with transformers: ``[MASK]`` takes the space before it (``lstrip``), since it stands
for a whole masked piece, ``▁`` included, as in BigBird's pretraining (pieces masked after SentencePiece).

The backend (:func:`bigbird.tokenization.spm.spm_to_tokenizer`) runs its normalizer on each stretch of text
between added tokens, so the two rules about the ends of the *whole* text live here: strip its ends, and
give a text that starts with an added token its dummy prefix. Offsets are mapped back to the caller's text.

Where transformers 5 differs from SentencePiece (we follow SentencePiece):
- ``transformers.BigBirdTokenizer.from_pretrained`` on a folder with only ``spiece.model`` (transformers 5)
  applies no charsmap (``ｆｕｌｌ`` and ``ﬁ`` are not NFKC-folded), keeps leading and trailing spaces as
  ``▁`` pieces, and matches ``<s>``/``</s>``/``<unk>`` written in the text;
- transformers' converted ``tokenizer.json`` files (``BigBirdConverter``, the hub files, transformers 4's
  fast tokenizer) strip *all* trailing whitespace, so a text ending in ``\\n`` or ``\\t`` loses its last piece;
- both match special tokens before normalization and strip the text around them, so ``"x [SEP] y"`` has no
  ``▁`` before ``[SEP]`` and a full-width ``［SEP］`` is not matched.
- transformers 5's ``BigBirdTokenizer`` rebuilds its pre-tokenizer with ``prepend_scheme="always"``, also when
  it loads a saved ``tokenizer.json``: the text after a special token gets a ``▁`` (``"[MASK],"`` becomes
  ``[MASK] ▁ ,``) where SentencePiece (and we) give ``[MASK] ,``.
A ``tokenizer.json`` loaded as it is (``from_pretrained`` on a folder that has one, without our marker in
``tokenizer_config.json``) keeps transformers' behaviour on that file.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Encoding
from tokenizers.normalizers import Normalizer

Offsets = list[tuple[int, int]]


class SpmText:
    """Strip a text's ends and decide its dummy prefix as SentencePiece does.

    Args:
        normalizer: The backend's normalizer (None: none).
        strip: The model's ``remove_extra_whitespaces``.
        prefix: The dummy prefix (``add_prefix_space``).
    """

    def __init__(self, normalizer: Normalizer | None, *, strip: bool, prefix: bool) -> None:
        self.normalizer, self.strip, self.prefix = normalizer, strip, prefix

    def _normalize(self, text: str) -> str:
        return text if self.normalizer is None else self.normalizer.normalize_str(text)

    def _blank(self, char: str) -> bool:
        """Whether ``char`` normalizes to nothing but spaces (what SentencePiece strips at the ends)."""
        if char == " ":
            return True
        if char.isalnum() or char in "\n\t\r":
            return False
        return self._normalize(char).strip(" ") == ""

    def prepare(self, text: str, starts: tuple[str, ...]) -> tuple[str, int, int]:
        """The text the backend gets, and the shift from its character positions to ``text``'s.

        Args:
            text: The caller's text.
            starts: Contents of the added tokens matched in the text (a text starting with one of them gets a
                leading space, which the backend turns into the dummy-prefix ``▁``).

        Returns:
            ``(backend_text, shift, first)``: position ``k`` of ``backend_text`` is position ``k + shift`` of
            ``text``; ``first`` is the first character of ``text`` that was kept.
        """
        start, end = 0, len(text)
        if self.strip:
            while start < end and self._blank(text[start]):
                start += 1
            while end > start and self._blank(text[end - 1]):
                end -= 1
        body = text[start:end] if start or end < len(text) else text
        if self.prefix and body and starts:
            longest = max(len(s) for s in starts)
            if self._normalize(body[:2 * longest + 4]).startswith(starts):
                return " " + body, start - 1, start
        return body, start, start


def shift_offsets(encoding: Encoding, shifts: Sequence[int], starts: Sequence[int]) -> Offsets:
    """The offsets of ``encoding`` in the caller's texts.

    Args:
        encoding: A backend encoding of prepared texts (one window of one input).
        shifts: Per sequence (0, and 1 for a pair), the shift returned by :meth:`SpmText.prepare`.
        starts: Per sequence, the first kept character (offsets never point before it).

    Returns:
        The offsets; special tokens added by the template keep ``(0, 0)``.
    """
    out: Offsets = []
    for (a, b), seq in zip(encoding.offsets, encoding.sequence_ids):
        if seq is None:
            out.append((a, b))
        else:
            shift, low = shifts[seq], starts[seq]
            out.append((max(a + shift, low), max(b + shift, low)))
    return out
