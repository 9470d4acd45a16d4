"""BigBirdTokenizer: a thin, typed front end over a ``tokenizers.Tokenizer`` (the Rust backend does the work).

The default vocabulary is BigBird's SentencePiece Unigram model; the same class also wraps any other
``tokenizer.json`` (e.g. a BERT WordPiece), keeping its own special tokens and post-processor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import AddedToken, Tokenizer, pre_tokenizers

from bigbird.tokenization.api import TransformersApiMixin, check_init_keywords
from bigbird.tokenization.chat import ChatTemplateMixin
from bigbird.tokenization.encoding import EncodingMixin
from bigbird.tokenization.files import resolve_tokenizer_files
from bigbird.tokenization.options import (
    VERY_LARGE_INTEGER,
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
from bigbird.tokenization.spmtext import SpmText
from bigbird.tokenization.storage import (
    copy_spm_model,
    load_tokenizer,
    output_folder,
    save_backend,
    save_tokenizer,
)


class BigBirdTokenizer(TransformersApiMixin, ChatTemplateMixin, EncodingMixin, VocabularyMixin):
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
        **kwargs: transformers' tokenizer keywords (:data:`bigbird.tokenization.api.INIT_KEYWORDS`):
            ``padding_side``, ``truncation_side``, ``model_input_names``, ``clean_up_tokenization_spaces``,
            ``extra_special_tokens``, ``chat_template``...; all arguments are kept in ``init_kwargs``.

    Raises:
        ValueError: If neither or both of ``backend``/``vocab_file`` are given, a special token is missing, or a
            side is not ``'right'``/``'left'``.
        TypeError: If an argument has the wrong type, or a keyword is unknown (named in the message).
        AttributeError: For a keyword that shadows a method (``add_special_tokens=...``), as in transformers.
        FileNotFoundError: If ``vocab_file`` does not exist.
    """

    kind = "bigbird"  # saved as "bigbird_tokenizer" in tokenizer_config.json; from_pretrained picks the class by it
    _kinds: ClassVar[dict[str, type[BigBirdTokenizer]]] = {}
    model_input_names: list[str] = ["input_ids", "attention_mask"]  # as transformers' BigBirdTokenizer

    def __init__(self, backend: Tokenizer | None = None, *, vocab_file: str | os.PathLike | None = None,
                 add_prefix_space: bool | None = None, model_max_length: int | None = None,
                 unk_token: TokenArg = "<unk>", bos_token: TokenArg = "<s>", eos_token: TokenArg = "</s>",
                 pad_token: TokenArg = "<pad>", sep_token: TokenArg = "[SEP]", cls_token: TokenArg = "[CLS]",
                 mask_token: TokenArg = "[MASK]", **kwargs: Any) -> None:
        check_init_keywords(kwargs)
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
        self.init_kwargs = {"backend": backend, "vocab_file": vocab_file, "add_prefix_space": add_prefix_space,
                            "model_max_length": model_max_length, **given, **kwargs}
        self._extra: list[str] = []
        self.deprecation_warnings: dict[str, bool] = {}  # warnings given once (transformers' attribute)
        self.padding_side = kwargs.get("padding_side", "right")
        self.truncation_side = kwargs.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(kwargs.get("clean_up_tokenization_spaces", False))
        self.chat_template = kwargs.get("chat_template")
        if "model_input_names" in kwargs:
            self.model_input_names = list(kwargs["model_input_names"])
        extra = kwargs.get("extra_special_tokens", kwargs.get("additional_special_tokens"))
        if extra:
            self.add_tokens(list(extra.values()) if isinstance(extra, dict) else list(extra), special_tokens=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        BigBirdTokenizer._kinds[cls.kind] = cls  # e.g. DNATokenizer under "dna"

    @classmethod
    def tokenizer_kinds(cls) -> dict[str, type[BigBirdTokenizer]]:
        """``kind -> class`` of the tokenizer classes ``from_pretrained`` can build (this one and its subclasses)."""
        return {"bigbird": BigBirdTokenizer, **BigBirdTokenizer._kinds}

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

    # ------------------------------------------------------------------ building, loading, saving
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
                        model_max_length: int | None = None, **kwargs: Any) -> BigBirdTokenizer:
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
            **kwargs: Constructor keywords overriding the config (special tokens, ``padding_side``...); a
                special token missing from the vocabulary is added, as in transformers.

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
        check_init_keywords({k: v for k, v in kwargs.items() if k not in SPECIAL_TOKEN_NAMES})
        tokenizer = load_tokenizer(files, cls.tokenizer_kinds(), add_prefix_space=add_prefix_space,
                                   model_max_length=model_max_length, overrides=kwargs)
        if not isinstance(tokenizer, cls):
            raise ValueError(f"{files.source!r} holds a {type(tokenizer).__name__}, not a {cls.__name__}")
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, save_jinja_files: bool = True) -> tuple[str, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (plus
        ``spiece.model`` when loaded from one, and the chat templates), loadable by :meth:`from_pretrained`
        and by transformers.

        Args:
            save_directory: Folder to write into (created if needed).
            save_jinja_files: Chat templates as ``chat_template.jinja`` files (else in the config).

        Returns:
            The paths written.

        Raises:
            ValueError: If ``save_directory`` is empty.
            FileExistsError: If ``save_directory`` is an existing file.
        """
        return tuple(str(p) for p in save_tokenizer(self, output_folder(save_directory),
                                                    jinja_files=save_jinja_files))

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
