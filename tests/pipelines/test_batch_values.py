"""End-to-end on the local Ray cluster: a bad value fails only its record, and ids come out exactly as given."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import batch
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES

BIG = 2**53  # the first integer a float64 cannot tell from its neighbour


def _run(model, corpus, out, **kw):
    settings = BatchSettings(task="text-classification", model=str(model), input=str(corpus), output=str(out),
                             **{"stride": 32, "batch_size": 4, "block_records": 8, **kw})
    stats = batch.run(settings, report=lambda line: None)
    return stats, pq.read_table(out)


def test_invalid_utf8_and_nulls_fail_only_their_records_and_big_int_ids_stay_exact(ray_cluster, task_models,
                                                                                 tmp_path):
    n = 40
    raw = [SPM_LINES[i % len(SPM_LINES)].encode() for i in range(n)]
    raw[5], raw[17], raw[30] = b"caf\xe9 latin-1", None, b"\xc3"  # invalid UTF-8, null, a cut-off sequence
    ids = pa.array([BIG + i for i in range(n)], pa.int64())  # nullable int64 column, no nulls
    pq.write_table(pa.table({"id": ids, "text": pa.array(raw, pa.binary()).view(pa.string()),
                             "label": pa.array([i % 3 for i in range(n)], pa.int32())}), tmp_path / "in.parquet")
    stats, out = _run(task_models["text-classification"], tmp_path / "in.parquet", tmp_path / "out",
                      keep_columns=["label=label_true"])
    assert stats.records == n and stats.errors == 3  # today: the whole job fails, 0 of 40 rows written
    assert out.schema.field("id").type == pa.int64() and out.schema.field("label_true").type == pa.int32()
    rows = {r["id"]: r for r in out.to_pylist()}
    assert sorted(rows) == [BIG + i for i in range(n)]  # 40 distinct ids, not collapsed through float64
    assert rows[BIG + 5]["error"] == "text is not valid UTF-8: byte 0xe9 at position 3"
    assert rows[BIG + 17]["error"] == "text is null"
    assert rows[BIG + 30]["error"] == "text is not valid UTF-8: byte 0xc3 at position 0"
    assert all(rows[BIG + i]["label"] is not None for i in range(n) if i not in (5, 17, 30))
    assert [rows[BIG + i]["label_true"] for i in range(n)] == [i % 3 for i in range(n)]


def test_a_non_string_text_is_reported_with_its_real_type(ray_cluster, task_models, tmp_path):
    pq.write_table(pa.table({"id": ["a", "b"], "text": pa.array([12, None], pa.int64())}), tmp_path / "in.parquet")
    stats, out = _run(task_models["text-classification"], tmp_path / "in.parquet", tmp_path / "out")
    assert stats.errors == 2
    assert out.column("error").to_pylist() == ["text must be a string, got int 12 (column type int64)",
                                               "text is null"]
