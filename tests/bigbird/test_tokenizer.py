"""BigBirdTokenizer / DNATokenizer against sentencepiece and transformers on the same SentencePiece model.

References (test-only dependencies):
- ``sp``: the sentencepiece library itself, the reference for ids (see ``bigbird.tokenization.spmtext`` and
  ``tests/bigbird/test_tokenizer_spm_parity.py`` for the corpora);
- ``hf_conv``: transformers' BigBirdTokenizer around transformers' own ``BigBirdConverter`` conversion of the
  spm model (what transformers 4 and hub ``tokenizer.json`` files give): the features (truncation, padding,
  offsets, decoding) are compared with it on texts where its ids agree with sentencepiece (no trailing
  whitespace, no special tokens written in the text);
- ``hf_spm``: transformers 5 ``BigBirdTokenizer.from_pretrained`` on a folder holding only ``spiece.model``.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from bigbird.tokenization import BatchEncoding, BigBirdTokenizer, DNATokenizer
from bigbird.tokenization.spm import read_spm_model
from tests.helpers import SPM_LINES, SPM_MODEL, SPM_TEXT

SPM, TEXT = SPM_MODEL, SPM_TEXT
DOC = TEXT.rstrip()  # hf_conv strips the final newline that sentencepiece keeps (an <unk>)
LINES = SPM_LINES
CHAPTERS = [c for c in re.split(r"\n(?=CHAPTER )", TEXT) if c.strip()]
QUESTION = "Why did the boy jump from the second story of the school building?"
# inputs where the SentencePiece normalization matters: NFKC, no-break space, runs and trailing spaces
EDGE_CASES = ["ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "a\u00a0b", "  Hello   world  ", "ﬁne ½ café", "I  said:   no.   "]


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spiece")
    shutil.copy(SPM, folder / "spiece.model")
    return folder


@pytest.fixture(scope="module")
def ours() -> BigBirdTokenizer:
    return BigBirdTokenizer(vocab_file=SPM)


@pytest.fixture(scope="module")
def hf_spm(spm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.BigBirdTokenizer.from_pretrained(str(spm_dir))


@pytest.fixture(scope="module")
def hf_conv(hf_spm):
    import transformers
    from transformers.convert_slow_tokenizer import BigBirdConverter

    return transformers.BigBirdTokenizer(tokenizer_object=BigBirdConverter(hf_spm).converted())


@pytest.fixture(scope="module")
def sp():
    spm = pytest.importorskip("sentencepiece")
    return spm.SentencePieceProcessor(model_file=str(SPM))


def sp_ids(sp, text: str, pair: str | None = None) -> list[int]:
    """sentencepiece's ids in the BigBird template ([CLS]=1002, [SEP]=1000 in this vocabulary)."""
    return [1002, *sp.encode(text), 1000] + ([] if pair is None else [*sp.encode(pair), 1000])


def hf_call(tok, *args, **kwargs) -> dict:
    """transformers output as plain lists."""
    return dict(tok(*args, **kwargs))


# ---------------------------------------------------------------------------- conversion of the spm model
def test_spm_reader_matches_protobuf():
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    proto = pb.ModelProto()
    proto.ParseFromString(SPM.read_bytes())
    model = read_spm_model(SPM)
    assert len(model.pieces) == len(proto.pieces) == 1000
    assert model.pieces == [(p.piece, pytest.approx(p.score)) for p in proto.pieces]
    assert model.types == [p.type for p in proto.pieces]
    assert model.unk_id == proto.trainer_spec.unk_id == 0
    assert model.model_type == proto.trainer_spec.model_type == 1
    assert model.precompiled_charsmap == proto.normalizer_spec.precompiled_charsmap
    assert model.normalizer_name == "nfkc"


def test_backend_vocabulary_matches_transformers_conversion(ours, hf_conv):
    mine, ref = json.loads(ours.backend_tokenizer.to_str()), json.loads(hf_conv.backend_tokenizer.to_str())
    assert mine["post_processor"] == ref["post_processor"]
    # transformers' copy went through a JSON round trip, whose float parsing may move a score by one ulp
    assert {**mine["model"], "vocab": None} == {**ref["model"], "vocab": None}
    assert [piece for piece, _ in mine["model"]["vocab"]] == [piece for piece, _ in ref["model"]["vocab"]]
    assert [s for _, s in mine["model"]["vocab"]] == pytest.approx([s for _, s in ref["model"]["vocab"]], rel=1e-12)
    # the tokens BigBird adds get transformers' ids; they are matched in the normalized text, whitespace kept,
    # as SentencePiece matches user-defined pieces; its control pieces <s> </s> <unk> stay plain pieces
    added = {t["id"]: (t["content"], t["normalized"], t["lstrip"], t["special"]) for t in mine["added_tokens"]}
    assert added == {1000: ("[SEP]", True, False, True), 1001: ("<pad>", True, False, True),
                     1002: ("[CLS]", True, False, True), 1003: ("[MASK]", False, True, True)}


def test_special_token_properties_match_transformers(ours, hf_spm):
    for name in ("cls", "sep", "mask", "pad", "unk", "bos", "eos"):
        assert getattr(ours, f"{name}_token_id") == getattr(hf_spm, f"{name}_token_id"), name
        assert getattr(ours, f"{name}_token") == getattr(hf_spm, f"{name}_token"), name
    assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id, ours.mask_token_id) == (1002, 1000, 1001, 1003)
    assert ours.vocab_size == hf_spm.vocab_size == 1000
    assert len(ours) == len(hf_spm) == 1004
    assert ours.all_special_ids == hf_spm.all_special_ids
    assert ours.all_special_tokens == hf_spm.all_special_tokens
    assert ours.get_vocab() == hf_spm.get_vocab()
    assert ours.add_prefix_space is True


# ---------------------------------------------------------------------------- ids on real documents
def test_long_document_ids_match_sentencepiece_and_transformers(ours, hf_conv, hf_spm, sp):
    mine = ours(TEXT)
    assert len(mine["input_ids"]) > 10_000
    assert mine["input_ids"] == sp_ids(sp, TEXT) and mine["input_ids"][-2] == ours.unk_token_id  # the final "\n"
    assert ours.encode(TEXT) == mine["input_ids"]
    stripped = ours(DOC)
    assert stripped == hf_call(hf_conv, DOC)
    assert stripped["input_ids"] == hf_spm(DOC)["input_ids"] == sp_ids(sp, DOC) == mine["input_ids"][:-2] + [1000]


def test_batches_of_chapters_and_lines_match_sentencepiece_and_transformers(ours, hf_conv, hf_spm, sp):
    for batch in (CHAPTERS, LINES):
        assert ours(batch)["input_ids"] == [sp_ids(sp, text) for text in batch]
        stripped = [text.rstrip() for text in batch]
        mine = ours(stripped)
        assert mine == hf_call(hf_conv, stripped)
        assert mine["input_ids"] == hf_spm(stripped)["input_ids"]
    assert len(CHAPTERS) == 4 and len(LINES) > 800


def test_ids_match_sentencepiece(ours, hf_conv, sp):
    texts = LINES[:200] + EDGE_CASES
    mine = ours(texts, add_special_tokens=False)["input_ids"]
    assert mine == sp.encode(texts)
    assert mine == hf_conv(texts, add_special_tokens=False)["input_ids"]
    assert ours.tokenize(EDGE_CASES[0]) == sp.encode(EDGE_CASES[0], out_type=str)


def test_trailing_whitespace_and_unicode(ours, hf_conv, hf_spm, sp):
    # sentencepiece strips only spaces at the ends: a final newline or tab is a piece (<unk> here); transformers'
    # converter strips every trailing whitespace, and transformers 5 applies no NFKC charsmap
    for text in ["abc\n", "abc\t", "abc  ", "ｆｕｌｌ ｗｉｄｔｈ", "a\u00a0b", "x\n\ny \n", "  lead", "a\r\n"]:
        assert ours.encode(text) == sp_ids(sp, text), repr(text)
    assert ours.encode("abc\n") == [1002, 11, 66, 28, 0, 1000] != hf_conv.encode("abc\n")
    assert ours.encode("abc  ") == ours.encode("abc") == hf_conv.encode("abc  ") == [1002, 11, 66, 28, 1000]
    assert ours.encode("ｆｕｌｌ", add_special_tokens=False) == sp.encode("full") != hf_spm.encode("ｆｕｌｌ", add_special_tokens=False)


def test_tokenize_and_conversions(ours, hf_conv):
    line = LINES[3]
    tokens = ours.tokenize(line)
    assert tokens == hf_conv.tokenize(line)
    assert tokens[0].startswith("▁")
    ids = ours.convert_tokens_to_ids(tokens)
    assert ids == hf_conv.convert_tokens_to_ids(tokens) == ours.encode(line, add_special_tokens=False)
    assert ours.convert_ids_to_tokens(ids) == tokens
    assert ours.convert_ids_to_tokens(ours.cls_token_id) == "[CLS]"
    assert ours.convert_tokens_to_ids("no-such-piece-at-all") == ours.unk_token_id
    assert ours.tokenize(line, "pair", add_special_tokens=True)[-1] == "[SEP]"


def test_mask_token_eats_the_space_before_it(ours, hf_conv):
    # [MASK] replaces a whole piece, "▁" included (lstrip, as in transformers); [SEP] keeps the "▁" before it
    text = "The boy [MASK] from the window."
    mine = ours(text, return_offsets_mapping=True)
    assert mine == hf_call(hf_conv, text, return_offsets_mapping=True)
    position = mine["input_ids"].index(ours.mask_token_id)
    assert mine["offset_mapping"][position] == (7, 14)  # " [MASK]": lstrip=True
    sep = ours("The boy [SEP] from", add_special_tokens=False)["input_ids"]
    assert sep[sep.index(ours.sep_token_id) - 1] == 4  # "▁"


# ---------------------------------------------------------------------------- pairs, masks, templates
def test_pairs_match_sentencepiece_and_transformers(ours, hf_conv, sp):
    pairs = [(QUESTION, chapter[:2000]) for chapter in CHAPTERS]
    mine = ours(pairs, return_special_tokens_mask=True, return_token_type_ids=True)
    assert mine["input_ids"] == [sp_ids(sp, a, b) for a, b in pairs]
    stripped = [(a, b.rstrip()) for a, b in pairs]
    assert ours(stripped) == hf_call(hf_conv, stripped)
    both = dict(return_token_type_ids=True, return_special_tokens_mask=True)
    assert ours(stripped, **both) == hf_call(hf_conv, stripped, **both)
    assert ours([QUESTION] * 4, [c[:2000] for c in CHAPTERS]) == ours(pairs, return_special_tokens_mask=False)
    # as transformers' BigBirdTokenizer (model_input_names), token type ids only when asked for
    assert "token_type_ids" not in ours(pairs) and list(ours(QUESTION, "a")) == ["input_ids", "attention_mask"]
    first = ours(QUESTION, CHAPTERS[0][:500], return_token_type_ids=True)
    sep = first["input_ids"].index(ours.sep_token_id)
    # token type 0 for [CLS] A [SEP], 1 for B [SEP]
    assert first["token_type_ids"] == [0] * (sep + 1) + [1] * (len(first["input_ids"]) - sep - 1)
    assert first["input_ids"][0] == ours.cls_token_id and first["input_ids"][-1] == ours.sep_token_id


def test_special_tokens_mask_and_build_inputs(ours, hf_conv):
    a = ours.encode(LINES[0], add_special_tokens=False)
    b = ours.encode(LINES[1], add_special_tokens=False)
    built = ours.build_inputs_with_special_tokens(a, b)
    assert built == ours.encode(LINES[0], LINES[1])
    assert ours.build_inputs_with_special_tokens(a) == ours.encode(LINES[0]) == [1002, *a, 1000]
    mask = ours.get_special_tokens_mask(a, b)
    assert mask == ours(LINES[0], LINES[1], return_special_tokens_mask=True)["special_tokens_mask"]
    assert mask == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
    assert ours.get_special_tokens_mask(a) == [1] + [0] * len(a) + [1]
    # an already formatted sequence: mark every special id, as transformers does
    formatted = built[:5] + [ours.mask_token_id, ours.pad_token_id] + built[5:]
    expected = hf_conv.get_special_tokens_mask(formatted, already_has_special_tokens=True)
    assert ours.get_special_tokens_mask(formatted, already_has_special_tokens=True) == expected
    assert sum(expected) == 5
    assert ours.num_special_tokens_to_add() == 2 and ours.num_special_tokens_to_add(pair=True) == 3


# ---------------------------------------------------------------------------- truncation and overflow
@pytest.mark.parametrize("kwargs", [
    dict(truncation=True, max_length=128, stride=32),
    dict(truncation="longest_first", max_length=512, stride=0, padding=True),
    dict(truncation=True, max_length=96, stride=24, padding="max_length", return_offsets_mapping=True),
])
def test_overflowing_windows_match_transformers(ours, hf_conv, kwargs):
    batch = [CHAPTERS[0][:6000], LINES[10], CHAPTERS[1][:3000]]
    mine = ours(batch, return_overflowing_tokens=True, return_special_tokens_mask=True, **kwargs)
    ref = hf_call(hf_conv, batch, return_overflowing_tokens=True, return_special_tokens_mask=True, **kwargs)
    assert mine == ref
    mapping = mine["overflow_to_sample_mapping"]
    assert mapping.count(0) > 3 and mapping.count(1) == 1 and mapping[-1] == 2
    assert max(len(ids) for ids in mine["input_ids"]) <= kwargs["max_length"]
    stride = kwargs["stride"]
    if stride:  # consecutive windows of a document repeat `stride` tokens
        first, second = mine["input_ids"][0], mine["input_ids"][1]
        assert first[-1 - stride:-1] == second[1:1 + stride]


def test_only_second_truncation_with_stride_matches_transformers(ours, hf_conv):
    contexts = [CHAPTERS[0][:4000], CHAPTERS[2][:2500]]
    kwargs = dict(truncation="only_second", max_length=128, stride=32, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="max_length")
    mine = ours([QUESTION] * 2, contexts, **kwargs)
    assert mine == hf_call(hf_conv, [QUESTION] * 2, contexts, **kwargs)
    question = ours.encode(QUESTION, add_special_tokens=False)
    for ids in mine["input_ids"]:  # the question is never truncated
        assert ids[1:1 + len(question)] == question
        assert len(ids) == 128


def test_truncation_only_first_and_single_text(ours, hf_conv):
    kwargs = dict(truncation="only_first", max_length=40)
    assert ours(CHAPTERS[0], QUESTION, **kwargs) == hf_call(hf_conv, CHAPTERS[0], QUESTION, **kwargs)
    assert len(ours.encode(CHAPTERS[0], truncation=True, max_length=64)) == 64
    single = ours(CHAPTERS[0], truncation=True, max_length=64, stride=8, return_overflowing_tokens=True)
    assert single == hf_call(hf_conv, CHAPTERS[0], truncation=True, max_length=64, stride=8,
                             return_overflowing_tokens=True)
    assert isinstance(single["input_ids"][0], list)  # overflowing output stays batched
    short = ours.from_pretrained(SPM, model_max_length=50)
    assert len(short(CHAPTERS[0], truncation=True)["input_ids"]) == 50


# ---------------------------------------------------------------------------- offsets, padding, tensors
def test_offsets_match_transformers_and_text(ours, hf_conv):
    mine = ours(LINES[:50], return_offsets_mapping=True)
    assert mine["offset_mapping"] == hf_conv(LINES[:50], return_offsets_mapping=True)["offset_mapping"]
    line, ids, offsets = LINES[7], mine["input_ids"][7], mine["offset_mapping"][7]
    tokens = ours.convert_ids_to_tokens(ids)
    for token, (start, end) in zip(tokens[1:-1], offsets[1:-1]):
        assert line[start:end].strip() == token.lstrip("▁"), token
    assert offsets[0] == offsets[-1] == (0, 0)


def test_padding_matches_transformers(ours, hf_conv):
    batch = LINES[:16]
    for kwargs in (dict(padding=True), dict(padding="longest", pad_to_multiple_of=64),
                   dict(padding="max_length", max_length=80), dict(padding="max_length", max_length=64,
                                                                   truncation=True, pad_to_multiple_of=32)):
        mine = ours(batch, return_special_tokens_mask=True, **kwargs)
        assert mine == hf_call(hf_conv, batch, return_special_tokens_mask=True, **kwargs), kwargs
    assert ours(batch, pad_to_multiple_of=64) == ours(batch)  # as in transformers, only together with padding
    padded = ours(batch, padding=True, pad_to_multiple_of=64, return_tensors="pt")
    lengths = [len(ids) for ids in ours(batch)["input_ids"]]
    assert padded["input_ids"].shape == (16, 64)
    assert padded["attention_mask"].sum(1).tolist() == lengths
    assert (padded["input_ids"][padded["attention_mask"] == 0] == ours.pad_token_id).all()
    assert ours(LINES[0], padding=True) == ours(LINES[0])  # nothing to pad a single text to
    assert len(ours(LINES[0], padding=True, pad_to_multiple_of=16)["input_ids"]) % 16 == 0
    left = ours(batch[:2], padding=True, padding_side="left")
    assert left == hf_call(hf_conv, batch[:2], padding=True, padding_side="left")
    assert any(row[0] == 1001 for row in left["input_ids"])


def test_tensors_and_batch_encoding(ours):
    out = ours(LINES[:3], padding=True, return_tensors="pt", return_offsets_mapping=True)
    assert isinstance(out, BatchEncoding) and isinstance(out, dict)
    assert out.input_ids is out["input_ids"] and out.input_ids.dtype == torch.long
    assert out["offset_mapping"].shape == (*out.input_ids.shape, 2)
    assert out.to("cpu") is out and out.input_ids.device.type == "cpu"
    assert ours(LINES[0], return_tensors="pt")["input_ids"].shape == (1, len(ours.encode(LINES[0])))
    assert ours(LINES[:2], padding=True, return_tensors="np")["input_ids"].shape[0] == 2
    with pytest.raises(AttributeError, match="no_such_key"):
        _ = out.no_such_key
    with pytest.raises(TypeError, match="return_tensors='pt'"):
        ours(LINES[0]).to("cpu")
    plain = ours(LINES[0], return_attention_mask=False, return_token_type_ids=False)
    assert list(plain) == ["input_ids"]
    assert pickle.loads(pickle.dumps(out))["input_ids"].equal(out.input_ids)


# ---------------------------------------------------------------------------- decoding
def test_decode_matches_transformers_and_round_trips(ours, hf_conv):
    ids = ours(LINES[:40], LINES[40:80])["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == hf_conv.batch_decode(ids, skip_special_tokens=skip)
    assert ours.decode(ids[0]) == hf_conv.decode(ids[0])
    known = [line for line in LINES[:300] if ours.unk_token_id not in ours.encode(line)]
    assert len(known) > 100
    for line in known:  # the text comes back, up to SentencePiece's whitespace normalization
        assert ours.decode(ours.encode(line), skip_special_tokens=True) == " ".join(line.split())
    assert ours.decode(ours.encode(LINES[0])).startswith("[CLS] ")
    assert ours.decode(torch.tensor(ids[0])) == ours.decode(ids[0])
    tensor = ours(known[:4], padding=True, return_tensors="pt")["input_ids"]
    assert ours.batch_decode(tensor, skip_special_tokens=True) == [" ".join(x.split()) for x in known[:4]]
    assert ours.decode(ours.encode("Room 13 or 14")) == "[CLS] Room 1<unk> or 1<unk>[SEP]"  # no 3/4 piece
    assert ours.decode(ours.cls_token_id) == "[CLS]"


def test_add_prefix_space_false_matches_transformers(spm_dir):
    transformers = pytest.importorskip("transformers")
    from transformers.convert_slow_tokenizer import BigBirdConverter

    hf = transformers.BigBirdTokenizer.from_pretrained(str(spm_dir), add_prefix_space=False)
    ref = transformers.BigBirdTokenizer(tokenizer_object=BigBirdConverter(hf).converted(), add_prefix_space=False)
    mine = BigBirdTokenizer(vocab_file=SPM, add_prefix_space=False)
    assert mine.add_prefix_space is False
    assert mine(LINES[:100])["input_ids"] == ref(LINES[:100])["input_ids"] == hf(LINES[:100])["input_ids"]
    with_prefix = BigBirdTokenizer(vocab_file=SPM)
    assert mine.tokenize("Hello world") == hf.tokenize("Hello world")
    assert not mine.tokenize("Hello")[0].startswith("▁") and with_prefix.tokenize("Hello")[0] == "▁He"


# ---------------------------------------------------------------------------- saving and loading
def test_save_pretrained_loads_in_ours_and_transformers(ours, hf_conv, tmp_path):
    transformers = pytest.importorskip("transformers")
    paths = ours.save_pretrained(tmp_path / "saved")
    names = sorted(Path(p).name for p in paths)
    assert names == ["special_tokens_map.json", "spiece.model", "tokenizer.json", "tokenizer_config.json"]
    assert (tmp_path / "saved" / "spiece.model").read_bytes() == SPM.read_bytes()
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BigBirdTokenizer" and config["cls_token"] == "[CLS]"

    batch = [(QUESTION, c[:3000].rstrip()) for c in CHAPTERS]
    expected = ours(batch, truncation="only_second", max_length=256, stride=64, return_overflowing_tokens=True)
    reloaded = BigBirdTokenizer.from_pretrained(tmp_path / "saved")
    assert type(reloaded) is BigBirdTokenizer
    assert reloaded(batch, truncation="only_second", max_length=256, stride=64,
                    return_overflowing_tokens=True) == expected
    assert reloaded.get_vocab() == ours.get_vocab() and reloaded.all_special_ids == ours.all_special_ids
    for hf in (transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved")),
               transformers.BigBirdTokenizer.from_pretrained(str(tmp_path / "saved"))):
        assert hf(DOC)["input_ids"] == ours(DOC)["input_ids"]
        assert hf(batch)["input_ids"] == ours(batch)["input_ids"]
        assert hf.mask_token_id == ours.mask_token_id and len(hf) == len(ours)
    # and the other way round: a folder written by transformers
    hf_conv.save_pretrained(str(tmp_path / "hf"))
    assert BigBirdTokenizer.from_pretrained(tmp_path / "hf")(batch) == hf_call(hf_conv, batch)


def test_save_vocabulary(ours, tmp_path):
    (path,) = ours.save_vocabulary(tmp_path / "vocab")
    assert Path(path).name == "spiece.model" and Path(path).read_bytes() == SPM.read_bytes()
    dna = DNATokenizer()
    (path,) = dna.save_vocabulary(tmp_path / "dna_vocab")
    assert Path(path).name == "tokenizer.json"
    assert Tokenizer.from_file(path).get_vocab() == dna.get_vocab()


def test_spiece_only_folder(spm_dir, ours, tmp_path):
    tok = BigBirdTokenizer.from_pretrained(spm_dir)
    assert tok(LINES[:20]) == ours(LINES[:20])
    assert tok.vocab_file == spm_dir / "spiece.model"
    folder = tmp_path / "with_config"
    folder.mkdir()
    shutil.copy(SPM, folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 96, "add_prefix_space": False,
        "mask_token": {"content": "[MASK]", "lstrip": True, "rstrip": False, "normalized": False}}))
    configured = BigBirdTokenizer.from_pretrained(folder)
    assert configured.model_max_length == 96 and configured.add_prefix_space is False
    assert len(configured(CHAPTERS[0], truncation=True)["input_ids"]) == 96
    assert BigBirdTokenizer.from_pretrained(SPM)(LINES[0]) == ours(LINES[0])  # a bare .model file


def test_offline_hub_cache(ours, tmp_path, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--google-test--bigbird-spm"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    shutil.copy(SPM, snapshot / "spiece.model")
    (snapshot / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    tok = BigBirdTokenizer.from_pretrained("google-test/bigbird-spm")
    assert tok.model_max_length == 4096
    assert tok(CHAPTERS[:2]) == ours(CHAPTERS[:2])
    assert BigBirdTokenizer.from_pretrained("google-test/bigbird-spm", revision=sha)(LINES[0]) == ours(LINES[0])
    with pytest.raises(FileNotFoundError, match="google-test/missing"):
        BigBirdTokenizer.from_pretrained("google-test/missing")


# ---------------------------------------------------------------------------- concurrency and pickling
def test_pickle_and_threads(ours):
    clone = pickle.loads(pickle.dumps(ours))
    assert clone(LINES[:10]) == ours(LINES[:10])
    calls = [dict(truncation=True, max_length=16 + i, padding="max_length") if i % 2 else {} for i in range(24)]
    expected = [ours(CHAPTERS, **kw) for kw in calls]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda kw: ours(CHAPTERS, **kw), calls))
    assert got == expected
    assert len(ours(CHAPTERS[0])["input_ids"]) > 1000  # no setting leaked into the shared backend
