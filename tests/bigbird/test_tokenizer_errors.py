"""BigBirdTokenizer rejects bad input with errors that name the bad value."""

from __future__ import annotations

import json
import shutil

import pytest

from bigbird.tokenization import BigBirdTokenizer, DNATokenizer
from tests.helpers import SPM_MODEL as SPM
from tests.helpers import bert_wordpiece, spm_tokenizer


@pytest.fixture(scope="module")
def ours() -> BigBirdTokenizer:
    return spm_tokenizer()


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((123,), {}, TypeError, "text must be a str"),
    (([],), {}, ValueError, "empty batch"),
    ((["a", 1],), {}, TypeError, r"text\[1\] must be a str"),
    (([("a", "b"), ("c",)],), {}, TypeError, r"text\[1\] must be a \(str, str\) pair"),
    (("a", ["b"]), {}, TypeError, "text_pair must be a str"),
    ((["a"], ["b", "c"]), {}, ValueError, "text has 1 sequences but text_pair has 2"),
    (("a",), {"truncation": "bogus"}, ValueError, "'bogus'"),
    (("a",), {"padding": "bogus"}, ValueError, "'bogus'"),
    (("a",), {"return_tensors": "tf"}, ValueError, "'tf'"),
    (("a",), {"max_length": 0, "truncation": True}, ValueError, "max_length must be > 0, got 0"),
    (("a",), {"max_length": "8", "truncation": True}, TypeError, "max_length must be an int"),
    (("a",), {"max_length": 8, "truncation": False}, ValueError, "max_length=8 needs truncation"),
    (("a b c",), {"truncation": True, "max_length": 8, "stride": 6, "return_overflowing_tokens": True},
     ValueError, "stride=6 must be smaller than max_length=8"),
    (("a",), {"stride": -1}, ValueError, "stride must be >= 0"),
    (("a",), {"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of must be > 0"),
    (("a",), {"truncation": True, "max_length": 10, "padding": True, "pad_to_multiple_of": 4}, ValueError, "multiple"),
    (("a",), {"padding": "max_length"}, ValueError, "needs max_length"),
    ((["a", "a b c"],), {"return_tensors": "pt"}, ValueError, "padding=True"),
    (("a",), {"no_such_option": True}, TypeError, "no_such_option"),
])
def test_call_rejects_bad_input(ours, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        ours(*args, **kwargs)


def test_other_methods_reject_bad_input(ours, tmp_path):
    with pytest.raises(TypeError, match="one str"):
        ours.encode(["a"])
    with pytest.raises(TypeError, match="batch_decode"):
        ours.decode([[1, 2]])
    with pytest.raises(TypeError, match="str"):
        ours.decode("abc")
    with pytest.raises(ValueError, match="id 5000"):
        ours.decode([1, 5000])
    with pytest.raises(ValueError, match="id -1"):
        ours.convert_ids_to_tokens([-1])
    with pytest.raises(TypeError):
        ours.convert_tokens_to_ids(5)
    with pytest.raises(ValueError, match="already_has_special_tokens"):
        ours.get_special_tokens_mask([1], [2], already_has_special_tokens=True)
    with pytest.raises(TypeError, match="tokenize"):
        ours.tokenize(None)
    with pytest.raises(TypeError, match="single str"):
        BigBirdTokenizer.train_unigram("abc", vocab_size=10)
    with pytest.raises(ValueError, match="vocab_size must be > 0"):
        BigBirdTokenizer.train_unigram(["abc"], vocab_size=0)


def test_loading_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="must not be empty"):
        BigBirdTokenizer.from_pretrained("")
    with pytest.raises(TypeError, match="int"):
        BigBirdTokenizer.from_pretrained(42)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        BigBirdTokenizer.from_pretrained(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor spiece.model"):
        BigBirdTokenizer.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="exactly one"):
        BigBirdTokenizer()
    with pytest.raises(FileNotFoundError, match="nothing.model"):
        BigBirdTokenizer(vocab_file=tmp_path / "nothing.model")
    (tmp_path / "bad.model").write_bytes(b"\x0a\xff\xff\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="bad.model"):
        BigBirdTokenizer(vocab_file=tmp_path / "bad.model")
    with pytest.raises(TypeError, match="backend must be a tokenizers.Tokenizer"):
        BigBirdTokenizer("spiece.model")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BigBirdTokenizer(bert_wordpiece(["abc"]))  # BigBird's special tokens are not in a BERT vocabulary
    (tmp_path / "broken").mkdir()
    shutil.copy(SPM, tmp_path / "broken" / "spiece.model")
    (tmp_path / "broken" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        BigBirdTokenizer.from_pretrained(tmp_path / "broken")
    (tmp_path / "broken" / "tokenizer_config.json").write_text(json.dumps({"bigbird_tokenizer": "protein"}))
    with pytest.raises(ValueError, match="'protein'"):
        BigBirdTokenizer.from_pretrained(tmp_path / "broken")
    with pytest.raises(ValueError, match="non-empty path"):
        DNATokenizer().save_pretrained("")
