"""The transformers tokenizer API around BigBirdTokenizer, against transformers' BigBirdTokenizer on the same folder.

Keyword arguments, added tokens, special-token setters, sides, ``pad``, chat templates, pre-split words,
the kind registry and malformed files. (transformers' own tokenizer tests run through
``../shared/peer/transformers-bigbird``; these are ours.)
"""

from __future__ import annotations

import json
import shutil

import pytest

from bigbird.tokenization import BigBirdTokenizer, DNATokenizer, KmerDNATokenizer
from tests.helpers import SPM_LINES, SPM_MODEL

transformers = pytest.importorskip("transformers")
TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
CHAT = [{"role": "user", "content": "Who is the boy?"}, {"role": "assistant", "content": "A rash one."}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm")
    shutil.copy(SPM_MODEL, path / "spiece.model")
    return path


@pytest.fixture()
def tok(folder) -> BigBirdTokenizer:
    return BigBirdTokenizer.from_pretrained(folder)


def test_keywords_of_transformers_are_accepted_and_others_named(folder):
    tok = BigBirdTokenizer.from_pretrained(folder, padding_side="left", truncation_side="left", model_max_length=32,
                                           do_lower_case=False, pad_token="[PAD]")
    assert (tok.padding_side, tok.truncation_side, tok.model_max_length) == ("left", "left", 32)
    ref = transformers.BigBirdTokenizer.from_pretrained(str(folder), pad_token="[PAD]")
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == ref.pad_token_id == tok.convert_tokens_to_ids("[PAD]")
    assert tok.get_vocab() == ref.get_vocab()
    assert tok.init_kwargs["padding_side"] == "left" and tok.init_kwargs["do_lower_case"] is False
    with pytest.raises(TypeError, match="paddding_side"):
        BigBirdTokenizer.from_pretrained(folder, paddding_side="left")
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left', got 'up'"):
        BigBirdTokenizer.from_pretrained(folder, padding_side="up")
    with pytest.raises(AttributeError, match="add_special_tokens"):
        BigBirdTokenizer(vocab_file=SPM_MODEL, add_special_tokens=True)


def test_add_bos_token_false_is_accepted_true_is_refused(folder):
    # transformers takes both values and leaves BigBird's [CLS] A [SEP] template as it is; we take False (what
    # the template does) and refuse True instead of ignoring it.
    ref = transformers.BigBirdTokenizer.from_pretrained(str(folder), bos_token="<BOS>", add_bos_token=False)
    tok = BigBirdTokenizer.from_pretrained(folder, bos_token="<BOS>", add_bos_token=False, add_eos_token=False)
    assert tok.bos_token == ref.bos_token == "<BOS>"
    text = "The boy is rash."
    assert tok(text)["input_ids"][0] == tok.cls_token_id and tok(text)["input_ids"][-1] == tok.sep_token_id
    assert tok(text, add_special_tokens=False)["input_ids"] == ref(text, add_special_tokens=False)["input_ids"]
    for name in ("add_bos_token", "add_eos_token"):
        with pytest.raises(TypeError, match=f"{name}=True is not supported"):
            BigBirdTokenizer.from_pretrained(folder, **{name: True})


def test_sides_and_padding_match_transformers(tok, folder):
    ref = transformers.BigBirdTokenizer.from_pretrained(str(folder))
    batch = [line.strip() for line in SPM_LINES[:4]]
    for attr in ("padding_side", "truncation_side"):
        setattr(tok, attr, "left")
        setattr(ref, attr, "left")
    kwargs = dict(padding="max_length", truncation=True, max_length=24)
    assert dict(tok(batch, **kwargs)) == dict(ref(batch, **kwargs))
    assert tok.encode(batch[0], padding="max_length", max_length=40) == ref.encode(batch[0], padding="max_length",
                                                                                   max_length=40)
    features = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]
    assert dict(tok.pad(features, pad_to_multiple_of=4)) == dict(ref.pad(features, pad_to_multiple_of=4))


def test_added_tokens_and_setters_match_transformers(tok, folder, tmp_path):
    ref = transformers.BigBirdTokenizer.from_pretrained(str(folder))
    for t in (tok, ref):
        assert t.add_tokens(["bambam", "bim"]) == 2
        assert t.add_special_tokens({"extra_special_tokens": ["<extra>"]}) == 1
    assert tok.get_vocab() == ref.get_vocab() and tok.extra_special_tokens == ref.extra_special_tokens == ["<extra>"]
    text = "bim said bambam <extra> twice"
    ids = tok.encode(text, add_special_tokens=False)
    # matched whole, like SentencePiece user-defined pieces: the spaces around them stay "▁" pieces
    assert [i for i in ids if i >= 1004] == tok.convert_tokens_to_ids(["bim", "bambam", "<extra>"])
    assert tok.decode(ids, skip_special_tokens=True).split() == ["bim", "said", "bambam", "twice"]
    tok.save_pretrained(tmp_path)
    again = BigBirdTokenizer.from_pretrained(tmp_path)
    assert again.encode(text) == tok.encode(text) and again.extra_special_tokens == ["<extra>"]
    tok.bos_token_id = None
    assert tok.bos_token is None
    tok.bos_token_id = 11
    assert tok.bos_token == tok.convert_ids_to_tokens(11) == "▁a"


def test_decode_options_and_split_words(tok):
    ids = tok.encode("Hello , world .", add_special_tokens=False)
    assert tok.decode(ids) == "Hello , world ."
    assert tok.decode(ids, clean_up_tokenization_spaces=True) == "Hello, world."
    words = ["He", "was", "a", "boy"]
    assert tok(words, is_split_into_words=True) == tok("He was a boy")
    assert tok([words, words[:2]], is_split_into_words=True)["input_ids"] == tok(["He was a boy", "He was"])["input_ids"]
    seq2seq = tok(["a b c d e f"], text_target=["x y z"], max_length=4, return_tensors="pt")
    assert seq2seq["input_ids"].shape == (1, 4) and seq2seq["labels"].shape[1] <= 4
    a, b = (len(tok.encode(t, add_special_tokens=False)) for t in ("The boy", "jumped"))
    assert tok("The boy", "jumped").sequence_ids() == [None] + [0] * a + [None] + [1] * b + [None]


def test_chat_templates_render_tokenize_save_and_reload(tok, folder, tmp_path):
    ref = transformers.BigBirdTokenizer.from_pretrained(str(folder))
    text = tok.apply_chat_template(CHAT, chat_template=TEMPLATE, tokenize=False)
    assert text == ref.apply_chat_template(CHAT, chat_template=TEMPLATE, tokenize=False)
    assert text == "<user>Who is the boy?<assistant>A rash one."
    out = tok.apply_chat_template(CHAT, chat_template=TEMPLATE, return_assistant_tokens_mask=True)
    assert out["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    expected = ref.apply_chat_template(CHAT, chat_template=TEMPLATE, return_assistant_tokens_mask=True, return_dict=True)
    assert out["input_ids"] == expected["input_ids"] and out["assistant_masks"] == expected["assistant_masks"]
    assert tok.apply_chat_template(CHAT, chat_template=TEMPLATE, tokenize=False,
                                   continue_final_message=True).endswith("A rash one.")
    with pytest.raises(ValueError, match="empty conversation"):
        tok.apply_chat_template([], chat_template=TEMPLATE)
    tok.chat_template = {"default": TEMPLATE, "short": "{{ messages[0]['content'] }}"}
    paths = tok.save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").read_text() == TEMPLATE
    assert any(p.endswith("additional_chat_templates/short.jinja") for p in paths)
    again = BigBirdTokenizer.from_pretrained(tmp_path)
    assert again.chat_template == tok.chat_template
    assert again.apply_chat_template(CHAT, chat_template="short", tokenize=False) == "Who is the boy?"
    tok.chat_template = {"default": "a", "../escape": "b"}
    with pytest.raises(ValueError, match="plain file names"):
        tok.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "escape.jinja").exists()


def test_kind_registry_builds_the_saved_class(tmp_path):
    assert BigBirdTokenizer.tokenizer_kinds() == {"bigbird": BigBirdTokenizer, "dna": DNATokenizer,
                                                  "dna_kmer": KmerDNATokenizer}
    DNATokenizer(model_max_length=64).save_pretrained(tmp_path)
    loaded = BigBirdTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is DNATokenizer and loaded.model_max_length == 64
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "bigbird_tokenizer": "protein"}))
    with pytest.raises(ValueError,
                       match="unknown bigbird_tokenizer='protein'.*known: \\['bigbird', 'dna', 'dna_kmer'\\]"):
        BigBirdTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object"),
    ('{"added_tokens": []}', "field 'model' is missing"),
    ('{"model": {"type": "Unigram"}, "added_tokens": {}}', "field 'added_tokens' must be a list"),
    ('{"model": {"type": "Unigram", "vocab": 3}, "added_tokens": []}', "not a valid tokenizer.json"),
    ("{not json", "cannot read"),
])
def test_malformed_tokenizer_json_names_file_and_field(tmp_path, content, message):
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        BigBirdTokenizer.from_pretrained(tmp_path)
    assert "tokenizer.json" in str(info.value)
