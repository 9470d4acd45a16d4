"""Loading and saving tokenizers: which class and backend a folder's files make, and what to write back."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from bigbird.tokenization.chat import load_templates, save_templates
from bigbird.tokenization.files import (
    CONFIG_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    SPM_FILE,
    TOKENIZER_FILE,
    TokenizerFiles,
)
from bigbird.tokenization.specials import SPECIAL_TOKEN_NAMES, special_token

if TYPE_CHECKING:
    from bigbird.tokenization.core import BigBirdTokenizer

KIND_KEY = "bigbird_tokenizer"  # our marker in tokenizer_config.json: "bigbird" or "dna"
SPM_RULES_KEY = "bigbird_sentencepiece_rules"  # our marker: SentencePiece's whole-text rules apply (spmtext.py)
BIGBIRD_CLASSES = ("BigBirdTokenizer", "BigBirdTokenizerFast")
# spellings recognised when a tokenizer.json comes without a config naming its special tokens
_KNOWN_SPECIAL = {"bos_token": ("<s>",), "eos_token": ("</s>",), "unk_token": ("<unk>", "[UNK]"),
                  "sep_token": ("[SEP]",), "pad_token": ("<pad>", "[PAD]"), "cls_token": ("[CLS]",),
                  "mask_token": ("[MASK]", "<mask>")}


# tokenizer_config.json keys (written by transformers or us) passed on to the constructor
CONFIG_KEYWORDS = ("padding_side", "truncation_side", "clean_up_tokenization_spaces", "extra_special_tokens",
                   "additional_special_tokens", "chat_template", "model_input_names")


def load_tokenizer(files: TokenizerFiles, classes: Mapping[str, type[BigBirdTokenizer]], *,
                   add_prefix_space: bool | None, model_max_length: int | None,
                   overrides: dict | None = None) -> BigBirdTokenizer:
    """Build the tokenizer described by a folder's files (see ``BigBirdTokenizer.from_pretrained``).

    Args:
        files: The located files and parsed configs.
        classes: Tokenizer class per kind (``"bigbird"``, ``"dna"``): ``BigBirdTokenizer.tokenizer_kinds()``.
        add_prefix_space: Override for SentencePiece tokenizers (None: from the files).
        model_max_length: Override of the config's value (None: from the config, else unlimited).
        overrides: Constructor keywords given to ``from_pretrained`` (they win over the config).

    Returns:
        A DNATokenizer when the config says so, else a BigBirdTokenizer.

    Raises:
        ValueError: If the config names an unknown tokenizer kind.
        FileNotFoundError: If a DNA tokenizer has no tokenizer.json.
    """
    overrides = dict(overrides or {})
    config = {**files.config, **files.special_tokens_map}
    kind = config.get(KIND_KEY, "bigbird")
    if model_max_length is None:
        model_max_length = config.get("model_max_length")
    raw = {name: config[name] for name in SPECIAL_TOKEN_NAMES if name in config}
    raw.update({name: overrides.pop(name) for name in SPECIAL_TOKEN_NAMES if name in overrides})
    tokens = {name: special_token(name, value) for name, value in raw.items()}
    extra = {k: config[k] for k in CONFIG_KEYWORDS if k in config and k != "model_input_names"}
    extra.update(overrides)
    if kind not in classes:
        raise ValueError(f"unknown {KIND_KEY}={kind!r} in the tokenizer config of {files.source!r} "
                         f"(known: {sorted(classes)})")
    if kind != "bigbird":  # our other kinds (DNA) are saved backends with their own tokens
        if files.tokenizer_json is None:
            raise FileNotFoundError(f"{kind} tokenizer {files.source!r} has no {TOKENIZER_FILE}")
        return classes[kind](read_backend(files.tokenizer_json), model_max_length=model_max_length, **tokens,
                             **extra)
    base = classes["bigbird"]
    if files.tokenizer_json is None:
        if add_prefix_space is None:
            add_prefix_space = bool(config.get("add_prefix_space", True))
        tokenizer = base(vocab_file=files.spm_model, add_prefix_space=add_prefix_space,
                                     model_max_length=model_max_length, **extra,
                                     **{n: v if isinstance(v, str) or v is None else tokens[n] for n, v in raw.items()})
        _input_names(tokenizer, config, files)
        _templates(tokenizer, config, files)
        return tokenizer
    backend = read_backend(files.tokenizer_json)
    backend.add_special_tokens([tok for tok in tokens.values()  # named tokens new to the vocabulary
                                if tok is not None and backend.token_to_id(tok.content) is None])
    for name in SPECIAL_TOKEN_NAMES:
        if name not in tokens:  # no config: recognise the usual spellings in the vocabulary
            found = [t for t in _KNOWN_SPECIAL[name] if backend.token_to_id(t) is not None]
            tokens[name] = special_token(name, found[0]) if found else None
    tokenizer = base(backend, add_prefix_space=add_prefix_space, model_max_length=model_max_length,
                                 **tokens, **extra)
    tokenizer.vocab_file = files.spm_model
    if config.get("tokenizer_class") in BIGBIRD_CLASSES:
        tokenizer.tokenizer_class = "BigBirdTokenizer"
    else:  # another tokenizer.json (BERT WordPiece...): transformers' generic fast tokenizer's inputs
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    _input_names(tokenizer, config, files)
    _templates(tokenizer, config, files)
    rules = config.get(SPM_RULES_KEY)
    if rules is not None:
        if not (isinstance(rules, dict) and {type(rules.get(k)) for k in ("strip", "prefix")} == {bool}):
            raise ValueError(f"{SPM_RULES_KEY} in the tokenizer config of {files.source!r} must be "
                             f'{{"strip": bool, "prefix": bool}}, got {rules!r}')
        tokenizer.use_sentencepiece_rules(strip=rules["strip"], prefix=rules["prefix"])
    return tokenizer


def _input_names(tokenizer: BigBirdTokenizer, config: dict, files: TokenizerFiles) -> None:
    names = config.get("model_input_names")
    if names is not None:
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ValueError(f"model_input_names in the tokenizer config of {files.source!r} must be a list of "
                             f"str, got {names!r}")
        tokenizer.model_input_names = list(names)


def _templates(tokenizer: BigBirdTokenizer, config: dict, files: TokenizerFiles) -> None:
    if "chat_template" not in tokenizer.init_kwargs or tokenizer.init_kwargs["chat_template"] == config.get(
            "chat_template"):  # a template given to from_pretrained wins
        folder = Path(files.source) if Path(files.source).is_dir() else None
        tokenizer.chat_template = load_templates(folder, config)


def read_backend(path: Path) -> Tokenizer:
    """A ``tokenizer.json`` as a ``tokenizers.Tokenizer``.

    Raises:
        ValueError: Naming the file and, where the JSON says, the field that is malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object (a tokenizers Tokenizer), not {type(data).__name__}")
    for name in ("model", "added_tokens"):
        if name not in data:
            raise ValueError(f"{str(path)!r} is not a tokenizer.json: field {name!r} is missing")
    if not isinstance(data["model"], dict) or "type" not in data["model"]:
        raise ValueError(f"{str(path)!r}: field 'model' must be an object with a 'type', got {data['model']!r:.80}")
    if not isinstance(data["added_tokens"], list):
        raise ValueError(f"{str(path)!r}: field 'added_tokens' must be a list, got {data['added_tokens']!r:.80}")
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # the Rust parser raises plain Exceptions naming the field and position
        raise ValueError(f"{str(path)!r} is not a valid tokenizer.json: {e}") from e


def output_folder(save_directory: str | os.PathLike) -> Path:
    """``save_directory`` as a Path, created if needed.

    Args:
        save_directory: The folder.

    Returns:
        The folder as a Path.

    Raises:
        ValueError: If it is empty or not a path.
        FileExistsError: If it is an existing file.
    """
    if not isinstance(save_directory, (str, os.PathLike)) or not os.fspath(save_directory).strip():
        raise ValueError(f"save_directory must be a non-empty path, got {save_directory!r}")
    folder = Path(save_directory)
    if folder.is_file():
        raise FileExistsError(f"save_directory {str(folder)!r} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_tokenizer(tokenizer: BigBirdTokenizer, folder: Path, *, jinja_files: bool = True) -> list[Path]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (+ spiece.model).

    Args:
        tokenizer: The tokenizer to save.
        folder: An existing folder.
        jinja_files: Chat templates as ``.jinja`` files (else in tokenizer_config.json).

    Returns:
        The paths written.

    Raises:
        FileNotFoundError: If the tokenizer's spiece.model has disappeared since loading.
        ValueError: For a chat template name that is not a plain file name.
    """
    tokens = tokenizer.special_tokens_map
    # transformers reads tokenizer_class, the special tokens and model_max_length; we also read KIND_KEY
    config = {"tokenizer_class": tokenizer.tokenizer_class, KIND_KEY: tokenizer.kind,
              "model_max_length": tokenizer.model_max_length, **tokens}
    if tokenizer.add_prefix_space is not None:
        config["add_prefix_space"] = tokenizer.add_prefix_space
    if tokenizer.sentencepiece_rules is not None:
        config[SPM_RULES_KEY] = tokenizer.sentencepiece_rules
    config.update(model_input_names=tokenizer.model_input_names, padding_side=tokenizer.padding_side,
                  truncation_side=tokenizer.truncation_side)
    if tokenizer.extra_special_tokens:
        config["extra_special_tokens"] = tokenizer.extra_special_tokens
    templates = save_templates(tokenizer.chat_template, folder, config, jinja_files=jinja_files)
    paths = [save_backend(tokenizer, folder), folder / CONFIG_FILE, folder / SPECIAL_TOKENS_MAP_FILE, *templates]
    paths[1].write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[2].write_text(json.dumps(tokens, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if tokenizer.vocab_file is not None:
        paths.append(copy_spm_model(tokenizer.vocab_file, folder))
    return paths


def save_backend(tokenizer: BigBirdTokenizer, folder: Path) -> Path:
    """Write the backend's tokenizer.json (without per-call truncation/padding settings).

    Args:
        tokenizer: The tokenizer whose backend to save.
        folder: An existing folder.

    Returns:
        The path written.
    """
    path = folder / TOKENIZER_FILE
    tokenizer.backend_snapshot().save(str(path))
    return path


def copy_spm_model(vocab_file: Path, folder: Path) -> Path:
    """Copy a SentencePiece model into ``folder`` as spiece.model.

    Args:
        vocab_file: The model file the tokenizer was loaded from.
        folder: An existing folder.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: If ``vocab_file`` has disappeared since loading.
    """
    path = folder / SPM_FILE
    if not vocab_file.is_file():
        raise FileNotFoundError(f"SentencePiece model {str(vocab_file)!r} no longer exists")
    if path.resolve() != vocab_file.resolve():
        shutil.copyfile(vocab_file, path)
    return path
