"""KmerDNATokenizer: one token per base whose id is the k-mer starting there (checked against the text's own
substrings), the offsets, windows and saved files of DNATokenizer, and the job's ``tokenizer: dna-kK``."""

from __future__ import annotations

import json

import pytest
import torch

from bigbird.tokenization import BigBirdTokenizer, DNATokenizer, KmerDNATokenizer
from bigbird.tokenization.kmer import MAX_K, kmer_strings

SEQ = "ATGAAAGCATTGTAGnacgtTTAA"


def expected_kmers(text: str, k: int) -> list[str]:
    """The k-mer of each base: the next k letters of the upper-cased text, ``N`` past its end."""
    padded = text.upper() + "N" * (k - 1)
    return [padded[i:i + k] for i in range(len(text))]


@pytest.mark.parametrize("k", [2, 3, 6])
def test_each_base_gets_the_kmer_starting_there(k):
    tok = KmerDNATokenizer(k=k)
    enc = tok(SEQ, return_offsets_mapping=True)
    ids = enc["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", *expected_kmers(SEQ, k), "[SEP]"]
    assert len(tok) == 12 + 5 ** k
    assert enc["offset_mapping"] == DNATokenizer()(SEQ, return_offsets_mapping=True)["offset_mapping"]
    assert tok.tokenize(SEQ) == expected_kmers(SEQ, k)
    assert tok.decode(ids, skip_special_tokens=True) == SEQ.upper()


def test_vocabulary_order_and_ids_are_distinct():
    tok = KmerDNATokenizer(k=3)
    vocab = tok.get_vocab()
    assert [vocab[s] for s in kmer_strings(3)] == list(range(12, 12 + 125))
    assert len(set(tok(SEQ, add_special_tokens=False)["input_ids"])) == len(set(expected_kmers(SEQ, 3)))


def test_batches_padding_and_overflowing_windows_are_mapped():
    tok = KmerDNATokenizer(k=3)
    batch = tok(["ACGT", "GGGGGG"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 8)
    assert tok.convert_ids_to_tokens(batch["input_ids"][0].tolist()) == [
        "[CLS]", "ACG", "CGT", "GTN", "TNN", "[SEP]", "<pad>", "<pad>"]
    assert batch["attention_mask"][0].tolist() == [1] * 6 + [0, 0]
    windows = tok("ACGTACGTAC", truncation=True, max_length=6, stride=1, return_overflowing_tokens=True)
    # each window is encoded alone: its last k-mers see [SEP], which counts as N
    bases = [tok.decode(w, skip_special_tokens=True) for w in windows["input_ids"]]
    assert bases == ["ACGT", "TACG", "GTAC"]
    assert [tok.convert_ids_to_tokens(w)[1:-1] for w in windows["input_ids"]] == [expected_kmers(b, 3) for b in bases]
    assert windows["overflow_to_sample_mapping"] == [0, 0, 0]


def test_save_and_load_give_back_the_kmer_tokenizer(tmp_path):
    tok = KmerDNATokenizer(k=6, model_max_length=4096)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bigbird_tokenizer"] == "dna_kmer" and config["tokenizer_class"] == "KmerDNATokenizer"
    back = BigBirdTokenizer.from_pretrained(tmp_path)
    assert isinstance(back, KmerDNATokenizer) and back.k == 6 and back.model_max_length == 4096
    assert back(SEQ)["input_ids"] == tok(SEQ)["input_ids"]
    assert torch.equal(back(SEQ, return_tensors="pt")["input_ids"], tok(SEQ, return_tensors="pt")["input_ids"])


@pytest.mark.parametrize("k", [1, MAX_K + 1, 2.0, True])
def test_bad_k_is_named(k):
    with pytest.raises(ValueError, match=f"got {k!r}"):
        KmerDNATokenizer(k=k)


def test_backend_and_k_must_agree():
    with pytest.raises(ValueError, match="k=4 but the backend's vocabulary holds 3-mers"):
        KmerDNATokenizer(KmerDNATokenizer(k=3).backend_tokenizer, k=4)
    with pytest.raises(ValueError, match="not a k-mer DNA vocabulary"):
        KmerDNATokenizer(DNATokenizer().backend_tokenizer)


def test_the_job_builds_it_from_dna_k3():
    from jobs.finetune import resolve_tokenizer
    from jobs.settings import builtin_tokenizer, load_settings

    settings = load_settings(data={
        "task": "token-classification", "data": {"train": "unused"},
        "model": {"tokenizer": "dna-k3", "from_scratch": {"hidden_size": 16, "num_hidden_layers": 1,
                                                          "num_attention_heads": 2, "intermediate_size": 32}}})
    tok = resolve_tokenizer(settings)
    assert isinstance(tok, KmerDNATokenizer) and tok.k == 3
    assert builtin_tokenizer("dna-k6") and not builtin_tokenizer("dna-k7") and not builtin_tokenizer("dna-k")
