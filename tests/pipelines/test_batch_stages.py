"""The batch job's stages without Ray: values read as Arrow, blocks read in bounded slices, windows in lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigbird.tasks import pipeline
from pipelines import arrow_windows, inputs, manifest, stages
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES


def _settings(model, corpus, output, **kw) -> BatchSettings:
    return BatchSettings(task="text-classification", model=str(model), input=str(corpus), output=str(output),
                         **{"stride": 32, "batch_size": 4, **kw})


def _prepared(items: pa.Table, **kw) -> pa.Table:
    return pa.concat_tables(stages.prepare_blocks(items, **kw))


def _run_in_process(s: BatchSettings) -> pa.Table:
    """The job's stages in this process, in the order Ray Data runs them; returns the written results."""
    job = inputs.plan_job(s)
    items = pa.Table.from_pylist([{"file": u[0].file, "path": u[0].path, "starts": [p.start for p in u],
                                   "stops": [p.stop for p in u]} for u in job.units])
    packed = _prepared(items, model=s.model, task=s.task, config=job.config, max_length=job.max_length,
                                   stride=s.stride, input_uri=s.input, id_column=s.id_column,
                                   text_column=s.text_column, keep_columns=tuple(s.kept))
    scorer = stages.Scorer(model=s.model, task=s.task, max_length=job.max_length, stride=s.stride, batch_size=4,
                           max_tokens=None, threads=1, params=job.params, schema=job.schema, output_uri=s.output)
    scorer(packed)
    return pq.read_table(s.output)


def test_strings_report_each_bad_value_with_its_real_type():
    raw = pa.array([b"ok", b"caf\xc3\xa9", b"bad\xff!", None], pa.binary()).view(pa.string())
    got = stages.strings(raw, "text")
    assert got[:2] == ["ok", "café"]
    assert str(got[2]) == "text is not valid UTF-8: byte 0xff at position 3"
    assert str(got[3]) == "text is null"
    ints = stages.strings(pa.array([7, None], pa.int64()), "text")
    assert str(ints[0]) == "text must be a string, got int 7 (column type int64)" and str(ints[1]) == "text is null"
    lists = stages.strings(pa.array([["a"]]), "question")
    assert str(lists[0]).startswith("question must be a string, got list ['a']")
    assert [str(e) for e in stages.integers(pa.chunked_array([pa.array([1.5])]), "offset")] == [
        "offset must be an integer, got float 1.5 (column type double)"]


def test_read_rows_slices_one_big_row_group(tmp_path):
    table = pa.table({"id": np.arange(1000), "text": [f"t{i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "one.parquet")  # a single row group, the common export
    assert pq.ParquetFile(tmp_path / "one.parquet").metadata.num_row_groups == 1
    fs, path = stages.filesystem(str(tmp_path / "one.parquet"))
    part = stages.read_rows(fs, path, 371, 389, ["id", "text"])
    assert part.column("id").to_pylist() == list(range(371, 389))
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=100)
    part = stages.read_rows(fs, str(tmp_path / "groups.parquet"), 95, 305, ["text"])
    assert part.column("text").to_pylist() == [f"t{i}" for i in range(95, 305)]


def test_each_row_is_decoded_once_however_big_its_row_group(tmp_path, monkeypatch):
    rows, block = 1000, 10
    table = pa.table({"id": np.arange(rows), "text": [f"t{i}" for i in range(rows)]})
    pq.write_table(table, tmp_path / "one.parquet")  # one row group of 1,000 rows: 100 blocks
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=64)  # block edges off the group edges
    decoded: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def counting(self, *args, **kwargs):
        for batch in iter_batches(self, *args, **kwargs):
            decoded.append(len(batch))
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    fs, _ = stages.filesystem(str(tmp_path))
    for name, groups in (("one.parquet", [rows]), ("groups.parquet", [64] * 15 + [40])):
        parts = [manifest.Part(0, str(tmp_path / name), s, s + block) for s in range(0, rows, block)]
        units = inputs.read_units(parts, [groups])
        assert [p for u in units for p in u] == parts
        got, decoded[:] = [], []
        for unit in units:
            got += stages.read_blocks(fs, unit[0].path, [(p.start, p.stop) for p in unit], ["id"])
        assert [(a, b) for a, b, _ in got] == [(p.start, p.stop) for p in parts]
        assert pa.concat_tables(t for _, _, t in got).column("id").to_pylist() == list(range(rows))
        assert sum(decoded) == rows, name  # each row decoded once (block by block: 50,500 rows for one group)
    spans = [{(r // 64) for p in u for r in (p.start, p.stop - 1)} for u in units]  # row groups per unit
    assert len(units) > 1 and all(not (a & b) for i, a in enumerate(spans) for b in spans[i + 1:])


def test_blocks_are_bounded_by_records_and_by_bytes(task_models, tmp_path):
    model = task_models["text-classification"]
    texts = [" ".join(SPM_LINES[i % len(SPM_LINES)] for _ in range(20)) for i in range(50)]
    answers = [[{"text": "x" * 5000, "start": 1}]] * 50  # a nested column before the text, large on its own
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(50)], "answers": answers, "text": texts}),
                   tmp_path / "corpus.parquet")
    job = inputs.plan_job(_settings(model, tmp_path / "corpus.parquet", tmp_path / "a", block_records=8))
    assert [p.rows for p in job.parts] == [8] * 6 + [2] and job.skipped == 0
    per_text = sum(len(t.encode()) for t in texts) / 50
    job = inputs.plan_job(_settings(model, tmp_path / "corpus.parquet", tmp_path / "b",
                                    block_bytes=int(per_text * 3.5)))
    assert max(p.rows for p in job.parts) <= 4 and sum(p.rows for p in job.parts) == 50


def test_values_fail_only_their_record_and_ids_keep_type_and_value(task_models, tmp_path):
    big = 2**53
    texts = pa.array([SPM_LINES[0].encode(), b"\xff\xfe broken", None, b" \n ", SPM_LINES[1].encode()],
                     pa.binary()).view(pa.string())
    ids = pa.array([1, 2, big + 1, big + 2, big + 3], pa.int64())
    pq.write_table(pa.table({"id": ids, "text": texts, "label": ["a", "b", "c", "d", "e"]}), tmp_path / "in.parquet")
    out = _run_in_process(_settings(task_models["text-classification"], tmp_path / "in.parquet", tmp_path / "out",
                                    keep_columns=["label=label_true"], block_records=2))
    assert out.schema.field("id").type == pa.int64()
    assert out.column("id").to_pylist() == [1, 2, big + 1, big + 2, big + 3]
    errors = dict(zip(out.column("id").to_pylist(), out.column("error").to_pylist()))
    assert errors == {1: None, 2: "text is not valid UTF-8: byte 0xff at position 0", big + 1: "text is null",
                      big + 2: "empty text: nothing to score", big + 3: None}
    assert out.column("label_true").to_pylist() == ["a", "b", "c", "d", "e"]
    expected = pipeline("text-classification", task_models["text-classification"], stride=32)(SPM_LINES[1])
    row = out.to_pylist()[4]
    assert row["label"] == expected[0]["label"] and row["score"] == pytest.approx(expected[0]["score"], abs=1e-6)


def test_windows_travel_as_arrow_lists_and_come_back_equal(task_models):
    pipe = pipeline("text-classification", task_models["text-classification"], stride=32, max_length=64)
    texts = [" ".join(SPM_LINES[:6]), SPM_LINES[7]]
    encoded = pipe.encode(texts)
    windows, errors = pipe.windows(encoded)
    assert not errors and len(windows) > 3
    packed = arrow_windows.pack("p", pa.array(["a", "b"]), texts, [None, None], [None, 5], {}, encoded, windows)
    assert packed.num_rows == 1
    assert not any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in packed.schema)
    block = arrow_windows.unpack(packed, 0)
    assert block.texts == texts and block.offsets == [None, 5] and block.ids.to_pylist() == ["a", "b"]
    assert len(block.windows) == len(windows)
    for got, exp in zip(block.windows, windows):
        assert got.to_row().keys() == exp.to_row().keys()
        for key, value in exp.to_row().items():
            assert np.array_equal(getattr(got, key), value), key
    for got, exp in zip(block.encoded, encoded):
        assert np.array_equal(got.ids, exp.ids) and np.array_equal(got.offsets, exp.offsets)
    prepared = block.prepared({"top_k": None})
    assert prepared.windows_of() == {r: [k for k, w in enumerate(windows) if w.record == r] for r in (0, 1)}
    assert prepared.errors == {} and prepared.tokens == [len(e.ids) for e in encoded]
    assert [r["text"] for r in prepared.records] == texts and prepared.params == {"top_k": None}
    # finish on the unpacked block merges exactly as the in-process pipeline does
    got = pipe.finish(prepared, pipe.score(prepared.windows, top_k=None), {"top_k": None})
    assert got == pipe(texts, top_k=None)


def test_config_is_read_on_the_driver_only(task_models, tmp_path, monkeypatch):
    model = task_models["text-classification"]
    pq.write_table(pa.table({"id": ["x"], "text": [SPM_LINES[0]]}), tmp_path / "in.parquet")
    s = _settings(model, tmp_path / "in.parquet", tmp_path / "out")
    job = inputs.plan_job(s)

    def forbidden(*args, **kwargs):
        raise AssertionError("a worker read config.json")

    monkeypatch.setattr("bigbird.config.BigBirdConfig.from_json_file", forbidden)
    stages.preprocessor.cache_clear()
    items = pa.Table.from_pylist([{"file": 0, "path": job.parts[0].path, "starts": [0], "stops": [1]}])
    packed = _prepared(items, model=s.model, task=s.task, config=job.config, max_length=job.max_length,
                                   stride=s.stride, input_uri=s.input, id_column="id", text_column="text")
    assert packed.column("name").to_pylist() == [manifest.part_name(0, 0, 1)]


def test_settings_the_model_cannot_take_fail_before_any_work(task_models, tmp_path):
    pq.write_table(pa.table({"id": ["x"], "text": ["y"]}), tmp_path / "in.parquet")
    s = _settings(task_models["text-classification"], tmp_path / "in.parquet", tmp_path / "out", max_length=1024)
    with pytest.raises(ValueError, match=r"max_length 1024 must lie in \[8, 256\]"):
        inputs.plan_job(s)
    assert not (tmp_path / "out").exists()  # nothing written, no Ray started


def test_gaps_and_plan_cover_each_row_once():
    assert manifest.gaps(10, []) == [(0, 10)]
    assert manifest.gaps(10, [(2, 4), (3, 6), (8, 12)]) == [(0, 2), (6, 8)]
    done = {manifest.part_name(0, 0, 3): (0, 0, 3), manifest.part_name(1, 4, 6): (1, 4, 6)}
    parts, skipped = manifest.plan([("a", 8, 2), ("b", 7, 4)], done)
    assert skipped == 5
    assert [(p.file, p.start, p.stop) for p in parts] == [(0, 3, 5), (0, 5, 7), (0, 7, 8), (1, 0, 4), (1, 6, 7)]
    assert Path(parts[0].name).name == "part-00000-000000000003-000000000005.parquet"


def test_default_threads_count_the_cpus_this_process_may_use():
    # A scorer counts on its own node, inside the actor: the CPUs it may run on (affinity, as a container or
    # taskset restricts them), shared by the actors; never below one thread.
    code = ("import os; from pipelines.stages import default_threads; "
            "print(default_threads(1), default_threads(2), default_threads(64))")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.split()
    assert out == ["1", "1", "1"]
    assert stages.default_threads(1) == len(os.sched_getaffinity(0))
