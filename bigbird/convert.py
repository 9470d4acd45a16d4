"""Warm-start a BigBird from a BERT or RoBERTa checkpoint, as the BigBird paper did from RoBERTa.

The encoder modules of BERT and BigBird share their names, so the conversion is a key map plus two
changes to the position table: RoBERTa's first ``padding_idx + 1`` rows (never used for real tokens) are
dropped, and the learned table (512 rows) is repeated up to the new length. The result is a folder in
transformers' BigBird format with the source's tokenizer files, loadable by ``bigbird`` and transformers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from bigbird.checkpoint import hf_to_ours, read_state_dict
from bigbird.config import ATTENTION_TYPES, BigBirdConfig

logger = logging.getLogger("bigbird")

SOURCE_TYPES = ("bert", "roberta")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model")
# Config fields that mean the same in BERT, RoBERTa and BigBird.
SHARED_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "type_vocab_size",
                 "initializer_range", "layer_norm_eps", "classifier_dropout", "tie_word_embeddings")
# Source key (model prefix stripped) -> BigBird HF key; first match wins. The encoder keeps its names.
KEY_MAP: list[tuple[str, str]] = [
    (r"^(embeddings|encoder)\.(.*)$", r"bert.\1.\2"),
    (r"^pooler\.dense\.(weight|bias)$", r"bert.pooler.\1"),  # BigBird's pooler is a bare Linear
    (r"^cls\.predictions\.decoder\.bias$", "cls.predictions.bias"),
    (r"^cls\.(predictions|seq_relationship)\.(.*)$", r"cls.\1.\2"),
    (r"^lm_head\.dense\.(weight|bias)$", r"cls.predictions.transform.dense.\1"),  # RoBERTa's MLM head
    (r"^lm_head\.layer_norm\.(weight|bias)$", r"cls.predictions.transform.LayerNorm.\1"),
    (r"^lm_head\.decoder\.weight$", "cls.predictions.decoder.weight"),
    (r"^lm_head\.(decoder\.)?bias$", "cls.predictions.bias"),
]
SKIPPED = re.compile(r"^embeddings\.(position_ids|token_type_ids)$")  # buffers, not weights
TASK_HEADS = re.compile(r"^(classifier|qa_outputs)\.")  # fine-tuned heads BigBird's heads cannot reuse
POSITIONS = "bert.embeddings.position_embeddings.weight"


def read_source_config(src: Path) -> dict[str, Any]:
    """The source's ``config.json``, checked to describe a BERT/RoBERTa encoder with absolute positions.

    Raises:
        FileNotFoundError: If ``src`` or its ``config.json`` does not exist.
        ValueError: If the config is not valid JSON, not BERT/RoBERTa, or uses relative positions.
    """
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {str(src)!r} does not exist")
    path = src / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"config.json not found in {str(src)!r}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from e
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SOURCE_TYPES:
        raise ValueError(f"{str(path)!r} has model_type {model_type!r}; convert reads only {list(SOURCE_TYPES)} "
                         f"checkpoints")
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(f"position_embedding_type {kind!r} is not supported: BigBird uses absolute positions")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ValueError("decoder checkpoints (is_decoder/add_cross_attention) are not supported")
    return config


def position_offset(config: dict[str, Any]) -> int:
    """Rows at the start of the source's position table that real tokens never use (RoBERTa: padding_idx+1)."""
    return int(config.get("pad_token_id", 1)) + 1 if config["model_type"] == "roberta" else 0


def map_keys(state: dict[str, torch.Tensor], *, drop_heads: bool = False) -> dict[str, torch.Tensor]:
    """Rename a BERT/RoBERTa state dict (``bert.``/``roberta.``/no prefix) to BigBird's HF names.

    Args:
        state: The source checkpoint's tensors.
        drop_heads: Leave out task heads (``classifier.*``, ``qa_outputs.*``) instead of failing on them.

    Returns:
        The tensors under BigBird's HF names (``bert.embeddings...``, ``bert.pooler.weight``,
        ``cls.predictions...``).

    Raises:
        ValueError: On keys BigBird has no place for, naming them.
    """
    rules = [(re.compile(pattern), template) for pattern, template in KEY_MAP]
    out: dict[str, torch.Tensor] = {}
    unknown, heads = [], []
    for key, tensor in state.items():
        name = re.sub(r"^(bert|roberta)\.", "", key)
        if SKIPPED.match(name):
            continue
        if TASK_HEADS.match(name):
            heads.append(key)
            continue
        target = next((pattern.sub(template, name) for pattern, template in rules if pattern.match(name)), None)
        if target is None or hf_to_ours(target) is None:
            unknown.append(key)
            continue
        if target in out and not torch.equal(out[target], tensor):  # tied copies (lm_head.bias) must agree
            raise ValueError(f"checkpoint keys for {target!r} disagree")
        out[target] = tensor
    if unknown:
        raise ValueError(f"checkpoint has keys BigBird has no place for: {sorted(unknown)}")
    if heads and not drop_heads:
        raise ValueError(f"checkpoint has task-head weights BigBird's heads cannot reuse: {sorted(heads)}; "
                         f"pass drop_heads=True (bigbird convert --drop-heads) to convert the encoder only")
    if POSITIONS not in out:
        raise ValueError("checkpoint has no position embeddings (embeddings.position_embeddings.weight)")
    return out


def tile_positions(table: torch.Tensor, *, offset: int, length: int) -> torch.Tensor:
    """Drop ``offset`` leading rows, then repeat the learned table until it has ``length`` rows.

    Raises:
        ValueError: If ``length`` is smaller than the table's usable rows.
    """
    learned = table[offset:]  # (P, hidden)
    if length < len(learned):
        raise ValueError(f"max_position_embeddings {length} is smaller than the source's {len(learned)} positions")
    reps = math.ceil(length / len(learned))
    return learned.repeat(reps, 1)[:length].clone()  # (length, hidden)


def copy_tokenizer_files(src: Path, dst: Path, *, model_max_length: int) -> list[str]:
    """Copy the tokenizer files; give ``tokenizer.json`` no fixed truncation/padding and
    ``tokenizer_config.json`` the new ``model_max_length``. Builds a ``tokenizer.json`` from ``vocab.txt``
    (WordPiece) or ``vocab.json`` + ``merges.txt`` (byte-level BPE) when the source has none.

    Returns:
        The names of the files written.

    Raises:
        FileNotFoundError: If the source holds no tokenizer files at all.
    """
    names = [n for n in TOKENIZER_FILES if (src / n).is_file()]
    if not any(n in names for n in ("tokenizer.json", "spiece.model", "vocab.txt", "vocab.json")):
        raise FileNotFoundError(f"{str(src)!r} holds no tokenizer (tokenizer.json, spiece.model, vocab.txt or "
                                f"vocab.json + merges.txt)")
    for name in names:
        shutil.copyfile(src / name, dst / name)
    config_path = dst / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if "tokenizer.json" not in names and "spiece.model" not in names:
        build_tokenizer_json(dst, config)
        names.append("tokenizer.json")
    if "tokenizer.json" in names:
        path = dst / "tokenizer.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["truncation"] = data["padding"] = None  # a long-document model must not cut inputs at 128 or 512
        path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    config["model_max_length"] = model_max_length
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return sorted(set(names) | {"tokenizer_config.json"})


def build_tokenizer_json(folder: Path, config: dict[str, Any]) -> None:
    """Write ``tokenizer.json`` from ``vocab.txt`` (BERT) or ``vocab.json`` + ``merges.txt`` (RoBERTa).

    Raises:
        FileNotFoundError: If ``vocab.json`` comes without ``merges.txt``.
    """
    from tokenizers import processors
    from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

    if (folder / "vocab.txt").is_file():
        tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=config.get("do_lower_case", True),
                                     strip_accents=config.get("strip_accents"),
                                     handle_chinese_chars=config.get("tokenize_chinese_chars", True))
    else:
        if not (folder / "merges.txt").is_file():
            raise FileNotFoundError(f"vocab.json without merges.txt in {str(folder)!r}")
        tok = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                    add_prefix_space=config.get("add_prefix_space", False), trim_offsets=True)
        bos, eos = config.get("cls_token", "<s>"), config.get("sep_token", "</s>")
        tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)),
                                                          add_prefix_space=config.get("add_prefix_space", False))
    tok.save(str(folder / "tokenizer.json"))


def bigbird_config(source: dict[str, Any], tokenizer: Any, *, max_position_embeddings: int, attention_type: str,
                   block_size: int, num_random_blocks: int) -> BigBirdConfig:
    """The BigBird config of a converted source config, with special-token ids from the tokenizer."""
    fields = {k: source[k] for k in SHARED_FIELDS if k in source}

    def token_id(name: str, fallback: Any) -> Any:
        value = getattr(tokenizer, f"{name}_token_id", None)
        return fallback if value is None else value

    cls_id = token_id("cls", source.get("bos_token_id"))
    sep_id = token_id("sep", source.get("eos_token_id"))
    fields.update(pad_token_id=token_id("pad", source.get("pad_token_id", 0)), sep_token_id=sep_id,
                  bos_token_id=token_id("bos", source.get("bos_token_id", cls_id)),
                  eos_token_id=token_id("eos", source.get("eos_token_id", sep_id)), cls_token_id=cls_id,
                  max_position_embeddings=max_position_embeddings, attention_type=attention_type,
                  block_size=block_size, num_random_blocks=num_random_blocks)
    return BigBirdConfig(**fields)


def model_class(state: dict[str, torch.Tensor]) -> type:
    """BigBirdForPreTraining (MLM + NSP heads), BigBirdForMaskedLM (MLM head) or BigBirdModel."""
    import bigbird

    if any(k.startswith("cls.seq_relationship.") for k in state):
        return bigbird.BigBirdForPreTraining
    if any(k.startswith("cls.predictions.") for k in state):
        return bigbird.BigBirdForMaskedLM
    return bigbird.BigBirdModel


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, max_position_embeddings: int = 4096,
                       attention_type: str = "block_sparse", block_size: int = 64, num_random_blocks: int = 3,
                       drop_heads: bool = False, overwrite: bool = False) -> Path:
    """Turn a BERT/RoBERTa checkpoint folder into a BigBird folder (warm start with tiled positions).

    Args:
        src: Folder with ``config.json`` (``model_type`` bert or roberta), ``model.safetensors`` or
            ``pytorch_model.bin`` and the tokenizer files.
        dst: Output folder (created); gets ``config.json``, ``model.safetensors`` and the tokenizer files.
        max_position_embeddings: Positions of the BigBird; the source's learned table is repeated to fill it.
        attention_type: ``block_sparse`` or ``original_full``.
        block_size: Tokens per attention block.
        num_random_blocks: Random key blocks per query block.
        drop_heads: Leave out fine-tuned task heads (``classifier``, ``qa_outputs``) instead of failing.
        overwrite: Write into a ``dst`` that already holds files.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: If ``src``, its config, weights or tokenizer files do not exist.
        FileExistsError: If ``dst`` is a file, or a non-empty folder without ``overwrite``.
        ValueError: If the source is not BERT/RoBERTa, has weights BigBird cannot place, or the new settings
            are invalid (``max_position_embeddings`` smaller than the source's, unknown ``attention_type``).
    """
    from bigbird.tokenization import BigBirdTokenizer

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    source = read_source_config(src)
    if attention_type not in ATTENTION_TYPES:
        raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}")
    # validate the new settings before writing anything (token ids come from the tokenizer later)
    BigBirdConfig(**{k: source[k] for k in SHARED_FIELDS if k in source}, attention_type=attention_type,
                  max_position_embeddings=max_position_embeddings, block_size=block_size,
                  num_random_blocks=num_random_blocks)
    offset = position_offset(source)
    usable = int(source.get("max_position_embeddings", 512)) - offset
    if max_position_embeddings < usable:
        raise ValueError(f"max_position_embeddings {max_position_embeddings} is smaller than the source's "
                         f"{usable} positions")
    weights = [src / n for n in WEIGHT_FILES if (src / n).is_file()][:1]
    if not weights:
        raise FileNotFoundError(f"no weights ({', '.join(WEIGHT_FILES)}) in {str(src)!r}")
    if dst.is_file():
        raise FileExistsError(f"output {str(dst)!r} is a file")
    if dst.resolve() == src.resolve():
        raise ValueError("the output folder must differ from the source folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {str(dst)!r} is not empty (pass overwrite=True / --overwrite)")

    state = map_keys(read_state_dict(weights), drop_heads=drop_heads)
    state[POSITIONS] = tile_positions(state[POSITIONS], offset=offset, length=max_position_embeddings)
    dst.mkdir(parents=True, exist_ok=True)
    copy_tokenizer_files(src, dst, model_max_length=max_position_embeddings)
    tokenizer = BigBirdTokenizer.from_pretrained(dst)
    config = bigbird_config(source, tokenizer, max_position_embeddings=max_position_embeddings,
                            attention_type=attention_type, block_size=block_size,
                            num_random_blocks=num_random_blocks)
    model = model_class(state)(config).to(state[POSITIONS].dtype)
    if "bert.pooler.weight" not in state:  # e.g. RobertaForMaskedLM: save no pooler rather than a random one,
        model.base_model.pooler = None  # so loading the result reports it as newly initialised
    report = model.load_hf_state_dict(state)
    if report.unused:  # every mapped key has a home in the chosen class: an internal invariant
        raise AssertionError(f"converted weights left unused: {report.unused}")
    model.save_pretrained(dst)
    logger.info("converted %s (%s) into %s (%s)", src, source["model_type"], dst, type(model).__name__)
    return dst
