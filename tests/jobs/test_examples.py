"""Records -> labelled windows, masking, the batch plan, the window store and the metrics (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from bigbird.tokenization import DNATokenizer
from jobs.data import WindowStore, plan_epoch, worker_slice
from jobs.evaluation import gold_entities, metrics
from jobs.examples import (
    EncodeSpec,
    answer_scores,
    encode_records,
    find_answer,
    mask_tokens,
    tag_names,
    token_tags,
)
from jobs.settings import ColumnSettings, load_settings
from tests.helpers import spm_tokenizer

COLUMNS = ColumnSettings().model_dump()
DNA = DNATokenizer()


def spec(task: str, tokenizer=DNA, **kw) -> EncodeSpec:
    return EncodeSpec(task=task, tokenizer=tokenizer, max_length=kw.pop("max_length", 32),
                      stride=kw.pop("stride", 8), columns=COLUMNS, **kw)


def test_question_answering_positions_per_window():
    tok = spm_tokenizer()
    context = ("The old city has many bridges over the river. " * 6) + "Its mayor is Alice Cooper. " + \
              ("Tourists visit in summer and winter. " * 6)
    start = context.index("Alice Cooper")
    table = pa.table({"id": ["q1"], "text": [context], "question": ["Who is the mayor?"],
                      "answers": [["Alice Cooper"]], "answer_start": [[start]]})
    out = encode_records(table, spec("question-answering", tok, max_length=48, stride=16)).to_pylist()
    assert len(out) > 3
    hits = [w for w in out if w["start"] > 0]
    assert hits and len(hits) < len(out)  # windows without the answer point at [CLS]
    for w in out:
        if w["start"] == 0:
            assert w["end"] == 0
            continue
        ids = w["input_ids"][w["start"] : w["end"] + 1]
        assert tok.decode(ids).strip() == "Alice Cooper"
        assert w["token_type_ids"][w["start"]] == 1  # inside the context segment
    assert len({w["uid"] for w in out}) == len(out)


def test_find_answer_without_offsets_uses_text_search():
    text = "Born in Paris, the painter later moved to nice, then NICE again."
    assert find_answer(text, ["Nice"], None) == (text.index("nice"), text.index("nice") + 4)  # case-insensitive
    assert find_answer(text, ["Lyon", "Paris"], None) == (8, 13)
    assert find_answer(text, ["Rome"], None) is None
    assert find_answer(text, ["Paris"], [999]) == (8, 13)  # a wrong offset falls back to search


def test_token_tags_bio_io_and_special_tokens():
    text = "AAAACCCCGGGGTTTT"
    spans = [{"start": 4, "end": 8, "label": "exon"}, {"start": 8, "end": 10, "label": "exon"},
             {"start": 6, "end": 12, "label": "gene"}]
    bio = tag_names(["exon", "gene"], "BIO")
    assert bio == ["O", "B-exon", "I-exon", "B-gene", "I-gene"]
    offsets = np.stack([np.arange(16), np.arange(1, 17)], 1)
    tags = token_tags(offsets, spans, {n: i for i, n in enumerate(bio)}, scheme="BIO", keep=["exon", "gene"])
    names = [bio[t] for t in tags]
    assert names[:4] == ["O"] * 4
    assert names[4:10] == ["B-exon", "I-exon", "I-exon", "I-exon", "B-exon", "I-exon"]  # adjacent spans: B again
    assert names[10:12] == ["B-gene", "I-gene"] and names[12:] == ["O"] * 4  # exon wins the overlap
    io = tag_names(["exon"], "IO")
    tags = token_tags(offsets, spans, {n: i for i, n in enumerate(io)}, scheme="IO", keep=["exon"])
    assert [io[t] for t in tags][3:11] == ["O", "exon", "exon", "exon", "exon", "exon", "exon", "O"]

    table = pa.table({"id": ["r"], "text": [text * 3], "spans": [spans]})
    s = spec("token-classification", max_length=20, stride=4, label2id={n: i for i, n in enumerate(bio)},
             span_labels=["exon", "gene"])
    for w in encode_records(table, s).to_pylist():
        assert w["tags"][0] == -100 and w["tags"][-1] == -100 and -100 not in w["tags"][1:-1]
        assert len(w["tags"]) == len(w["input_ids"])


def test_token_tags_cover_tokens_that_start_before_the_span():
    tok = spm_tokenizer()
    text = "We flew to Paris today."
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"])
    labels = tag_names(["LOC"], "BIO")
    tags = token_tags(offsets, [{"start": 11, "end": 16, "label": "LOC"}], {n: i for i, n in enumerate(labels)},
                      scheme="BIO", keep=["LOC"])
    tagged = [tok.decode([i]) for i, t in zip(enc["input_ids"], tags) if t]
    assert "".join(tagged).replace(" ", "") == "Paris" and labels[tags[tags > 0][0]] == "B-LOC"


def test_classification_labels_single_multi_and_unknown():
    table = pa.table({"id": ["a", "b"], "text": ["ACGT" * 20, "GG"], "label": ["x", "y"]})
    out = encode_records(table, spec("text-classification", label2id={"x": 0, "y": 1})).to_pylist()
    assert [w["label"] for w in out if w["length"] == 4] == [1]
    assert {w["label"] for w in out if w["length"] > 4} == {0} and len(out) > 2  # each window: its record's label
    first = encode_records(table, spec("text-classification", label2id={"x": 0, "y": 1}, first_window_only=True))
    assert first.num_rows == 2
    cut = encode_records(table, spec("text-classification", label2id={"x": 0, "y": 1}, max_chars=10)).to_pylist()
    assert [w["length"] for w in cut] == [12, 4]  # [CLS] + the first 10 bases + [SEP]
    multi = pa.table({"id": ["a"], "text": ["ACGT"], "label": ["y|x"]})
    row = encode_records(multi, spec("text-classification", label2id={"x": 0, "y": 1}, multi_label=True,
                                     label_separator="|")).to_pylist()[0]
    assert sorted(row["label_ids"]) == [0, 1]
    with pytest.raises(ValueError, match=r"record 'b': label \['y'\] is not one of the training labels"):
        encode_records(table, spec("text-classification", label2id={"x": 0}))


def test_masking_rates_specials_and_determinism():
    n = 4000
    ids = torch.randint(7, 12, (2, n + 2))
    ids[:, 0], ids[:, -1] = DNA.cls_token_id, DNA.sep_token_id
    ids[1, n - 100 :] = DNA.pad_token_id  # a padded row
    kw = dict(seed=3, epoch=1, mask_id=DNA.mask_token_id, special_ids=DNA.all_special_ids, vocab_size=len(DNA))
    masked, labels = mask_tokens(ids, [n + 2, n - 100], [11, 12], **kw)
    picked = labels[0] != -100
    assert 0.13 < picked.float().mean() < 0.17
    assert not picked[0] and not picked[-1]
    became_mask = (masked[0] == DNA.mask_token_id) & picked
    kept = (masked[0] == ids[0]) & picked
    assert 0.75 < became_mask.sum() / picked.sum() < 0.85 and 0.05 < kept.sum() / picked.sum() < 0.15
    assert torch.equal(labels[0][picked], ids[0][picked]) and (labels[1, n - 100 :] == -100).all()
    assert set(masked[0][picked & ~became_mask & ~kept].tolist()) <= {7, 8, 9, 10, 11}  # random bases only
    again, labels2 = mask_tokens(ids[:1], [n + 2], [11], **kw)  # same window alone: same mask
    assert torch.equal(again[0], masked[0]) and torch.equal(labels2[0], labels[0])
    other, _ = mask_tokens(ids[:1], [n + 2], [11], **{**kw, "epoch": 2})
    assert not torch.equal(other[0], masked[0])  # a new mask every epoch
    short = torch.tensor([[DNA.cls_token_id, 7, DNA.sep_token_id]])
    assert (mask_tokens(short, [3], [5], **{**kw, "probability": 0.01})[1] != -100).sum() == 1  # at least one


def test_plan_is_a_deterministic_cover_independent_of_workers():
    lengths = np.random.default_rng(0).integers(10, 300, size=101)
    plan = plan_epoch(lengths, global_batch=8, seed=1, epoch=0, block_size=16)
    assert plan.shape == (13, 8)
    assert set(plan.ravel().tolist()) == set(range(101))  # every window, the last step filled by wrapping
    assert np.array_equal(plan, plan_epoch(lengths, global_batch=8, seed=1, epoch=0, block_size=16))
    assert not np.array_equal(plan, plan_epoch(lengths, global_batch=8, seed=1, epoch=1, block_size=16))
    step = plan[0]
    for world, per_worker, accum in ((1, 8, 1), (2, 4, 1), (2, 2, 2), (4, 1, 2)):
        parts = [worker_slice(step, micro=m, rank=r, world=world, per_worker=per_worker)
                 for m in range(accum) for r in range(world)]
        assert sorted(np.concatenate(parts).tolist()) == sorted(step.tolist())
    blocks = -(-lengths[plan] // 16)
    assert (blocks.max(1) - blocks.min(1)).mean() < (blocks.max() - blocks.min()) / 2  # grouped by length


def test_window_store_collates_padded_batches():
    table = pa.table({"uid": pa.array([1, 2], pa.uint64()), "input_ids": pa.array([[4, 7, 5], [4, 8, 9, 7, 5]],
                                                                                   pa.list_(pa.int32())),
                      "length": pa.array([3, 5], pa.int32()),
                      "tags": pa.array([[-100, 1, -100], [-100, 0, 2, 1, -100]], pa.list_(pa.int16()))})
    store = WindowStore.from_batches([table.slice(0, 1), table.slice(1, 1)])
    batch = store.collate(np.array([1, 0]), pad_id=0, length=6)
    assert batch["input_ids"].tolist() == [[4, 8, 9, 7, 5, 0], [4, 7, 5, 0, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [5, 3]
    assert batch["labels"][1].tolist() == [-100, 1, -100, -100, -100, -100]
    assert batch["token_type_ids"].abs().sum() == 0 and batch["length"].tolist() == [5, 3]
    assert len(WindowStore.from_batches([table], keep=slice(1, None, 2))) == 1


def test_answer_scores_and_metrics():
    assert answer_scores("the Eiffel Tower", ["Eiffel tower"]) == (1.0, 1.0)
    em, f1 = answer_scores("Eiffel Tower in Paris", ["Eiffel Tower"])
    assert em == 0.0 and f1 == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert answer_scores("", ["x"]) == (0.0, 0.0)
    m = metrics("question-answering", np.array([4, 2, 3.0]), None)
    assert m["eval_exact_match"] == 50.0 and m["eval_f1"] == 75.0
    # 3 labels; 4 records: gold [0,0,1,2], pred [0,1,1,1]
    tp, fp, fn = np.array([1, 1, 0]), np.array([0, 2, 0]), np.array([1, 0, 1])
    m = metrics("text-classification", np.concatenate([[4, 2], tp, fp, fn]), ["a", "b", "c"])
    assert m["eval_accuracy"] == 0.5
    assert m["eval_macro_f1"] == pytest.approx(np.mean([2 / 3, 0.5, 0.0]))
    m = metrics("token-classification", np.array([3, 1, 2.0]), None)
    assert m["eval_precision"] == 0.75 and m["eval_recall"] == 0.6
    assert metrics("masked-lm", np.array([20.0, 10.0]), None)["eval_perplexity"] == pytest.approx(np.exp(2.0))


def test_gold_entities_follow_token_boundaries():
    s = load_settings(data={"task": "token-classification", "model": {"from_pretrained": "m"},
                            "data": {"train": "x", "span_labels": ["exon"]}})
    id2label = dict(enumerate(tag_names(["exon"], "BIO")))
    spans = [{"start": 2, "end": 5, "label": "exon"}, {"start": 4, "end": 7, "label": "exon"},
             {"start": 9, "end": 10, "label": "gene"}]
    assert gold_entities("ACGTACGTACGT", spans, DNA, id2label, s) == {(2, 7, "exon")}


def test_token_tags_period_puts_a_b_on_every_codon():
    offsets = np.stack([np.arange(20), np.arange(1, 21)], 1)
    bio = tag_names(["CDS+", "CDS-"], "BIO")
    ids = {n: i for i, n in enumerate(bio)}
    spans = [{"start": 2, "end": 11, "label": "CDS+"}, {"start": 9, "end": 18, "label": "CDS-"}]
    names = [bio[t] for t in token_tags(offsets, spans, ids, scheme="BIO", keep=["CDS+", "CDS-"], period=3)]
    assert names[:2] == ["O", "O"] and names[18:] == ["O", "O"]
    assert [n[0] for n in names[2:11]] == list("BIIBIIBII") and set(names[2:11]) == {"B-CDS+", "I-CDS+"}
    # CDS- loses bases 9-10 to CDS+ (listed first), but keeps its codon phase from its own start (9): B at 12, 15
    assert names[11:18] == ["B-CDS-", "B-CDS-", "I-CDS-", "I-CDS-", "B-CDS-", "I-CDS-", "I-CDS-"]
    plain = token_tags(offsets, spans, ids, scheme="BIO", keep=["CDS+", "CDS-"])
    assert [bio[t][0] for t in plain[2:18]] == list("BIIIIIIIIB") + list("IIIIII")
