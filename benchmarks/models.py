"""Random-weight task models for the benchmarks and scripts: the real SentencePiece test vocabulary (a data file
under tests/fixtures, read, not imported) and a BigBird of the sizes asked for, saved as a model folder."""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SPM_MODEL = ROOT / "tests" / "fixtures" / "spm" / "test_model.model"
SPM_TEXT = SPM_MODEL.parent / "botchan_excerpt.txt"  # the text that vocabulary was trained on


def text_lines() -> list[str]:
    """The non-empty lines of the vocabulary's training text (English prose the vocabulary covers)."""
    return [line for line in SPM_TEXT.read_text(encoding="utf-8").split("\n") if line.strip()]


def random_task_model(folder: Path, model_class: str = "BigBirdForSequenceClassification", *, seed: int = 0,
                      **fields: object) -> Path:
    """Save ``bigbird.<model_class>`` with random weights (``torch.manual_seed(seed)``) and the SentencePiece
    test tokenizer into ``folder``; ``fields`` override the small default config."""
    import bigbird
    from bigbird.tokenization import BigBirdTokenizer

    tokenizer = BigBirdTokenizer(vocab_file=str(SPM_MODEL))
    config = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=256, block_size=16, num_random_blocks=2,
                  sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                  id2label={0: "NEG", 1: "POS"})
    config.update(fields)
    torch.manual_seed(seed)
    getattr(bigbird, model_class)(bigbird.BigBirdConfig(**config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
