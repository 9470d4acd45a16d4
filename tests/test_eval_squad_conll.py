"""The metrics of benchmarks/eval_squad.py (official SQuAD v1.1 EM/F1) and benchmarks/eval_conll.py (entity F1),
against hand-worked cases and, where it installs, seqeval (pinned 1.2.2)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.eval_conll import entity_scores
from benchmarks.eval_squad import (
    evaluate,
    exact_match,
    f1_score,
    first_sentence,
    normalize_answer,
    overlap_sentence,
    sentences,
    squad_scores,
)

FIXTURES = Path(__file__).parent / "fixtures" / "text"


# ------------------------------------------------------------------------------------------------ SQuAD
def test_normalize_answer_official_steps() -> None:
    assert normalize_answer("The  Cat, a dog!") == "cat dog"
    assert normalize_answer("An apple.") == "apple"
    assert normalize_answer("theatre anthem") == "theatre anthem"  # articles only as whole words
    assert normalize_answer("U.S. (1990)") == "us 1990"
    assert normalize_answer("\tthe\n") == ""


def test_em_and_f1_hand_worked() -> None:
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert f1_score("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)  # p = 1, r = 1/2
    assert f1_score("cat cat", "cat") == pytest.approx(2 / 3)  # counts clipped: common 1, p = 1/2, r = 1
    assert f1_score("dog", "cat") == 0.0
    assert exact_match("", "the") == 1.0 and f1_score("", "the") == 0.0  # the official script's edge case


def test_squad_scores_best_gold_and_missing() -> None:
    golds = {"q1": ["Denver Broncos", "The Denver Broncos"], "q2": ["1990", "the year 1991"], "q3": ["Paris"]}
    preds = {"q1": "Denver Broncos", "q2": "in 1990"}  # q3 missing: scores 0
    scores = squad_scores(preds, golds)
    assert scores["questions"] == 3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="question 'q4' has no gold answer"):
        squad_scores({}, {"q4": []})


def test_baselines_pick_sentences() -> None:
    context = "Paris is big. The Seine flows through Paris in 1990.\nIt rains."
    assert sentences(context) == ["Paris is big.", "The Seine flows through Paris in 1990.", "It rains."]
    assert first_sentence("What flows?", context) == "Paris is big."
    assert overlap_sentence("What river flows through Paris?", context) == "The Seine flows through Paris in 1990."
    assert overlap_sentence("Nothing shared?", context) == "Paris is big."  # ties: the first


def test_evaluate_baseline_on_the_fixture(tmp_path: Path) -> None:
    import corpora

    corpora.convert("squad-v1-dev", FIXTURES / "squad-dev-excerpt.json", tmp_path / "par")
    corpora.convert("squad-v1-articles-dev", FIXTURES / "squad-dev-excerpt.json", tmp_path / "art")
    par = evaluate(str(tmp_path / "par"), baseline="overlap-sentence")
    art = evaluate(str(tmp_path / "art"), baseline="overlap-sentence")
    assert par["questions"] == art["questions"] == 65
    assert 0 < art["f1"] <= par["f1"] < 50  # a sentence is a poor answer, and harder to find in a whole article
    with pytest.raises(ValueError, match="unknown baseline 'longest'"):
        evaluate(str(tmp_path / "par"), baseline="longest")
    with pytest.raises(ValueError, match="exactly one of model and baseline"):
        evaluate(str(tmp_path / "par"))


# ------------------------------------------------------------------------------------------------ CoNLL
def test_entity_scores_hand_worked() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"],  # PER right, LOC typed wrong
            ["B-ORG", "O", "B-MISC", "O"]]  # ORG right, MISC span too short
    s = entity_scores(gold, pred)
    assert (s["gold"], s["predicted"], s["correct"]) == (4, 4, 2)
    assert s["precision"] == s["recall"] == s["f1"] == pytest.approx(0.5)
    assert s["f1_PER"] == 1.0 and s["f1_LOC"] == 0.0 and s["f1_MISC"] == 0.0
    assert s["f1_ORG"] == pytest.approx(2 / 3)  # 1 right of 2 predicted, 1 gold
    # an I- after O opens an entity (seqeval's default mode): "I-PER I-PER" is one PER entity
    assert entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])["f1"] == 1.0
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="sequence 0: 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="1 gold sequences but 0 predicted"):
        entity_scores([["O"]], [])


def test_entity_scores_match_seqeval() -> None:
    pytest.importorskip("seqeval")
    from importlib.metadata import version

    if version("seqeval") != "1.2.2":
        pytest.skip(f"compared against seqeval 1.2.2, found {version('seqeval')}")
    from seqeval.metrics import f1_score as seq_f1
    from seqeval.metrics import precision_score, recall_score

    from corpora.conll import read_conll

    gold = [s.tags for d in read_conll(FIXTURES / "conll2003-test-excerpt.txt") for s in d]
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    for noise in (0.0, 0.05, 0.2, 0.6):
        pred = [[rng.choice(tags) if rng.random() < noise else t for t in seq] for seq in gold]
        ours = entity_scores(gold, pred)
        assert ours["f1"] == pytest.approx(seq_f1(gold, pred))
        assert ours["precision"] == pytest.approx(precision_score(gold, pred))
        assert ours["recall"] == pytest.approx(recall_score(gold, pred))
