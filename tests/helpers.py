"""Shared builders for tests: tiny configs and transformers reference models saved to disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=512, block_size=8, num_random_blocks=2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, sep_token_id=5, pad_token_id=0, type_vocab_size=2)


def tiny(**overrides) -> dict:
    return {**TINY, **overrides}


def save_reference(cls_name: str, path: Path, seed: int = 0, **overrides):
    """Build a random-weight transformers model of ``cls_name``, save it and return it."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BigBirdConfig(**tiny(**overrides))
    model = getattr(transformers, cls_name)(config)
    model.save_pretrained(path)
    return model


def random_batch(batch: int, length: int, *, vocab: int = 120, pad_from: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    if pad_from is not None and batch > 1:
        mask[-1, pad_from:] = 0
        ids[-1, pad_from:] = 0
    return ids, mask


SPM_MODEL = Path(__file__).parent / "fixtures" / "spm" / "test_model.model"
SPM_TEXT = (SPM_MODEL.parent / "botchan_excerpt.txt").read_text(encoding="utf-8")  # the text it was trained on
SPM_LINES = [line for line in SPM_TEXT.split("\n") if line.strip()]
TASK_CLASSES = {
    "fill-mask": "BigBirdForMaskedLM",
    "question-answering": "BigBirdForQuestionAnswering",
    "text-classification": "BigBirdForSequenceClassification",
    "token-classification": "BigBirdForTokenClassification",
}


def spm_tokenizer():
    from bigbird.tokenization import BigBirdTokenizer

    return BigBirdTokenizer(vocab_file=str(SPM_MODEL))


def build_task_model(path: Path, task: str, *, tokenizer=None, seed: int = 0, **overrides) -> Path:
    """Save a random-weight BigBird of ``task`` with a real SentencePiece tokenizer into ``path``."""
    import bigbird

    tokenizer = tokenizer if tokenizer is not None else spm_tokenizer()
    labels = {0: "O", 1: "B-LOC", 2: "I-LOC"} if task == "token-classification" else {0: "NEG", 1: "POS"}
    fields = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=256, block_size=16, num_random_blocks=2,
                  sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, id2label=labels)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = getattr(bigbird, TASK_CLASSES[task])(bigbird.BigBirdConfig(**fields))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bert_wordpiece(words: list[str]):
    """A small uncased BERT-style WordPiece ``tokenizers.Tokenizer``, as in all-MiniLM-L6-v2's tokenizer.json."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + [f"##{c}" for c in chars] + sorted(set(words))
    backend = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.add_special_tokens(specials)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return backend


# A local S3-compatible server (moto) for the object-storage tests: it accepts any credentials.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@contextlib.contextmanager
def moto_s3(*buckets: str) -> Iterator[tuple[str, object]]:
    """``(endpoint URL, pyarrow S3FileSystem with credentials)`` of a moto server on 127.0.0.1 holding ``buckets``;
    stopped on exit."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                               access_key=S3_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                               allow_bucket_creation=True)
        for bucket in buckets:
            fs.create_dir(bucket)
        yield f"http://{host}:{port}", fs
    finally:
        server.stop()
