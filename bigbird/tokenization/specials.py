"""Vocabulary, named special tokens and the special-token layout (``[CLS] A [SEP] B [SEP]``) of a tokenizer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer, processors

from bigbird.tokenization.options import as_id_list

# transformers' order of the named special tokens: missing ones are added to the vocabulary in this order
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# ids of the special tokens in vocabularies we build ourselves (train_unigram, DNA): pad 0, bos 1, eos 2
OWN_SPECIAL_TOKENS = (("pad_token", "<pad>"), ("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"),
                      ("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("mask_token", "[MASK]"))
TokenArg = str | AddedToken | None


def special_token(name: str, token: TokenArg | dict) -> AddedToken | None:
    """A named special token as an AddedToken: matched on the raw text; only ``[MASK]`` eats a space before it.

    Args:
        name: The attribute name (``"mask_token"``...).
        token: A str, an AddedToken (kept as is), a transformers config dict (``{"content": ..., "lstrip": ...}``)
            or None.

    Returns:
        The AddedToken, or None.

    Raises:
        TypeError: If ``token`` is not a str, AddedToken, transformers-style dict or None.
    """
    if token is None or isinstance(token, AddedToken):
        return token
    if isinstance(token, str):
        return AddedToken(token, lstrip=name == "mask_token", rstrip=False, normalized=False, special=True)
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        flags = {k: bool(token[k]) for k in ("lstrip", "rstrip", "single_word", "normalized") if k in token}
        return AddedToken(token["content"], **{"normalized": False, **flags}, special=True)
    raise TypeError(f"{name} must be a str, an AddedToken or None, got {type(token).__name__} {token!r}")


def bigbird_template(cls_token: str, cls_id: int, sep_token: str, sep_id: int) -> processors.TemplateProcessing:
    """BigBird's post-processor: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]``.

    Args:
        cls_token, cls_id, sep_token, sep_id: The two special tokens and their ids.

    Returns:
        The template; token type 0 up to the first ``[SEP]``, 1 after (as in transformers).
    """
    return processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0", pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)])


SPECIAL_TOKEN_DOCS = {"cls_token": "``[CLS]``", "sep_token": "``[SEP]``", "mask_token": "``[MASK]``",
                      "pad_token": "the padding token", "unk_token": "the unknown token", "bos_token": "``<s>``",
                      "eos_token": "``</s>``"}


def _token_property(name: str, doc: str) -> property:
    return property(lambda self: self._content(name), lambda self, v: self._set_token(name, v),
                    doc=f"{doc[0].upper()}{doc[1:]}, or None.")


def _id_property(name: str, doc: str) -> property:
    return property(lambda self: self._ids[name], lambda self, v: self._set_token_id(name, v),
                    doc=f"Id of {doc}, or None.")


class VocabularyMixin:
    """Vocabulary, special-token attributes and id/token conversions of a tokenizer over a ``tokenizers`` backend."""

    _backend: Tokenizer
    _tokens: dict[str, AddedToken | None]  # name -> token, in SPECIAL_TOKEN_NAMES order
    _ids: dict[str, int | None]
    _lock: threading.Lock
    _templates: dict[bool, list[int | str]]

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as in transformers)."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id for the whole vocabulary, added tokens included."""
        return self._backend.get_vocab(with_added_tokens=True)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens (``cls_token`` -> ``"[CLS]"``...) that are set."""
        return {name: tok.content for name, tok in self._tokens.items() if tok is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens, then any other special added token of the backend (no duplicates)."""
        named = [tok.content for tok in self._tokens.values() if tok is not None] + list(getattr(self, "_extra", []))
        extra = [tok.content for _, tok in sorted(self._backend.get_added_tokens_decoder().items()) if tok.special]
        return list(dict.fromkeys(named + extra))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`, in the same order."""
        return [self._backend.token_to_id(tok) for tok in self.all_special_tokens]

    def _set_token(self, name: str, token: Any) -> None:  # overridden by the transformers API mixin
        raise AttributeError(f"{name} cannot be changed on this tokenizer")

    def _set_token_id(self, name: str, token_id: int | None) -> None:
        raise AttributeError(f"{name}_id cannot be changed on this tokenizer")

    # cls_token, cls_token_id, ... (one property pair per SPECIAL_TOKEN_DOCS entry) are set below the class.

    def _content(self, name: str) -> str | None:
        tok = self._tokens[name]
        return None if tok is None else tok.content

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Token strings of ids.

        Args:
            ids: One id, or a sequence (or 1-d tensor) of ids.
            skip_special_tokens: Leave out special tokens.

        Returns:
            One token string for an int, else a list.

        Raises:
            ValueError: If an id is outside the vocabulary.
            TypeError: If ``ids`` is not an int or a sequence of ints.
        """
        single = isinstance(ids, int) and not isinstance(ids, bool)
        ids = self._kept_ids(ids, "ids", skip_special_tokens and not single)
        tokens = [self._backend.id_to_token(i) for i in ids]
        return tokens[0] if single else tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Ids of token strings; a token outside the vocabulary maps to the unknown token's id.

        Args:
            tokens: One token string or a sequence of them.

        Returns:
            One id for a str, else a list.

        Raises:
            TypeError: If ``tokens`` is not a str or a sequence of str.
            ValueError: If a token is unknown and the tokenizer has no unk_token.
        """
        single = isinstance(tokens, str)
        items = [tokens] if single else tokens
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise TypeError(f"tokens must be a str or a sequence of str, got {type(tokens).__name__}")
        ids = [self._backend.token_to_id(t) for t in items]
        if None in ids:
            if self.unk_token_id is None:
                raise ValueError(f"token {items[ids.index(None)]!r} is not in the vocabulary and there is no unk_token")
            ids = [self.unk_token_id if i is None else i for i in ids]
        return ids[0] if single else ids

    def _checked_ids(self, ids: Any, name: str = "ids") -> list[int]:
        ids = as_id_list(ids, name)
        if ids:
            low, high, size = min(ids), max(ids), len(self)
            if low < 0 or high >= size:
                raise ValueError(f"{name} holds id {low if low < 0 else high}, outside the vocabulary of size {size}")
        return ids

    def _kept_ids(self, ids: Any, name: str, skip_special_tokens: bool) -> list[int]:
        """Checked ids, without the special ones when skipping (the backend only knows its added tokens)."""
        ids = self._checked_ids(ids, name)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        return ids

    # ------------------------------------------------------------------ special-token templates
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens the post-processor adds.

        Args:
            pair: Count for a pair of sequences instead of one.

        Returns:
            2 for BigBird's ``[CLS] A [SEP]``, 3 for a pair.
        """
        return self._backend.num_special_tokens_to_add(pair)

    def _template(self, pair: bool) -> list[int | str]:
        """The post-processor's layout, e.g. ``[cls_id, "A", sep_id, "B", sep_id]``, found by running it once."""
        if pair not in self._templates:
            with self._lock:
                a = self._backend.encode("a", add_special_tokens=False)
                b = self._backend.encode("b", add_special_tokens=False) if pair else None
                out = self._backend.post_process(a, b, add_special_tokens=True)
            assert len(a.ids) > 0, "probe text encodes to no token"
            layout: list[int | str] = []
            seen = 0  # sequence (non-special) positions passed so far
            for token_id, special in zip(out.ids, out.special_tokens_mask):  # a handful of positions
                if special:
                    layout.append(token_id)
                    continue
                if seen in (0, len(a.ids)):
                    layout.append("A" if seen == 0 else "B")
                seen += 1
            self._templates[pair] = layout
        return self._templates[pair]

    def build_inputs_with_special_tokens(self, token_ids_0: list[int],
                                         token_ids_1: list[int] | None = None) -> list[int]:
        """Add the special tokens around one sequence of ids (``[CLS] A [SEP]``) or a pair.

        Args:
            token_ids_0: Ids of the first sequence.
            token_ids_1: Ids of the optional second sequence.

        Returns:
            The ids with special tokens, laid out by the post-processor.

        Raises:
            TypeError: If the ids are not sequences of ints.
        """
        parts = {"A": as_id_list(token_ids_0, "token_ids_0")}
        if token_ids_1 is not None:
            parts["B"] = as_id_list(token_ids_1, "token_ids_1")
        out: list[int] = []
        for item in self._template(token_ids_1 is not None):
            out.extend(parts[item] if isinstance(item, str) else [item])
        return out

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for a special token, 0 for a sequence token.

        Args:
            token_ids_0: Ids of the first sequence (or of a whole formatted sequence).
            token_ids_1: Ids of the optional second sequence; must be None with ``already_has_special_tokens``.
            already_has_special_tokens: ``token_ids_0`` already holds special tokens: mark every id that is one.

        Returns:
            The mask, as long as the sequence with special tokens.

        Raises:
            ValueError: If ``token_ids_1`` is given with ``already_has_special_tokens=True``.
            TypeError: If the ids are not sequences of ints.
        """
        ids0 = as_id_list(token_ids_0, "token_ids_0")
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
            special = set(self.all_special_ids)
            return [int(i in special) for i in ids0]
        parts = {"A": ids0, "B": [] if token_ids_1 is None else as_id_list(token_ids_1, "token_ids_1")}
        mask: list[int] = []
        for item in self._template(token_ids_1 is not None):
            mask.extend([0] * len(parts[item]) if isinstance(item, str) else [1])
        return mask


for _name, _doc in SPECIAL_TOKEN_DOCS.items():
    setattr(VocabularyMixin, _name, _token_property(_name, _doc))
    setattr(VocabularyMixin, f"{_name}_id", _id_property(_name, _doc))
del _name, _doc
