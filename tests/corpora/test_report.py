"""The classification report over a batch job's output."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora.report import main, summarise


def _output(tmp_path):
    rows = [{"id": f"r{i}", "error": None, "label": "A" if i % 4 else "B", "score": 0.9, "label_true": "A"}
            for i in range(40)]
    rows.append({"id": "bad", "error": "empty text: nothing to score", "label": None, "score": None,
                 "label_true": "A"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part.parquet")
    return str(tmp_path)


def test_accuracy_and_baseline(tmp_path):
    text = summarise(_output(tmp_path), holdout_fraction=0.5)
    assert "records: 41, scored: 40, errors: 1" in text
    assert "all records: accuracy 75.0% on 40 records (majority class 'A': 100.0%)" in text
    assert "held-out 50%" in text


def test_missing_true_labels_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no true-label column 'truth'"):
        summarise(_output(tmp_path), label_column="truth")
    assert main([_output(tmp_path), "--label-column", "truth"]) == 2
    assert "report: error" in capsys.readouterr().err
