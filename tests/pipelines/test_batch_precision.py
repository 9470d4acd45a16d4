"""Precision and model options of the batch job: flags and settings checked by the loader's rules, the scorer
loading through it, and the manifest refusing a resume in another precision."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError
from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

from pipelines import batch, inputs, manifest, stages
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES


def _settings(model, corpus, output, **kw) -> BatchSettings:
    return BatchSettings(task="text-classification", model=str(model), input=str(corpus), output=str(output),
                         **{"stride": 32, "batch_size": 4, **kw})


def test_flags_reach_the_settings():
    args = ["--task", "text-classification", "--model", "m", "--input", "i", "--output", "o", "--dtype", "bfloat16",
            "--device", "cpu", "--revision", "v1"]
    s = batch.settings_from_args(batch.build_parser().parse_args(args))
    assert (s.dtype, s.quantize, s.device, s.revision) == ("bfloat16", None, "cpu", "v1")
    s = batch.settings_from_args(batch.build_parser().parse_args(args[:8] + ["--quantize", "int8"]))
    assert (s.dtype, s.quantize, s.device) == (None, "int8", "auto")


@pytest.mark.parametrize("fields,message", [
    ({"dtype": "float16", "device": "cpu"}, "dtype float16 runs only on CUDA, not on cpu"),
    ({"quantize": "int8", "device": "cuda:0"}, "quantize='int8' runs only on the CPU"),
    ({"quantize": "int8", "dtype": "bfloat16"}, "quantize='int8' quantizes float32 weights"),
    ({"device": "gpu"}, "String should match pattern"),
    # pydantic lists a Literal's values in an order that changes between processes: match any of them
    ({"dtype": "half"}, r"dtype\n  Input should be '(float32|bfloat16|float16)'"),
])
def test_precision_the_loader_refuses_fails_in_the_settings(fields, message):
    with pytest.raises(ValidationError, match=message):
        BatchSettings(task="text-classification", model="m", input="i", output="o", **fields)


def test_scorer_loads_through_the_loader_and_int8_scores_close(task_models, tmp_path):
    model = task_models["text-classification"]
    texts = [" ".join(SPM_LINES[i:i + 6]) for i in range(6)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(6)], "text": texts}), tmp_path / "in.parquet")
    tables = {}
    for name, extra in (("float32", {}), ("int8", {"quantize": "int8"})):
        s = _settings(model, tmp_path / "in.parquet", tmp_path / name, **extra)
        job = inputs.plan_job(s)
        items = pa.Table.from_pylist([{"file": u[0].file, "path": u[0].path, "starts": [p.start for p in u],
                                       "stops": [p.stop for p in u]} for u in job.units])
        packed = pa.concat_tables(stages.prepare_blocks(items, model=s.model, task=s.task, config=job.config,
                                                        max_length=job.max_length, stride=s.stride,
                                                        input_uri=s.input, id_column="id", text_column="text"))
        scorer = stages.Scorer(model=s.model, task=s.task, max_length=job.max_length, stride=s.stride, batch_size=4,
                               max_tokens=None, threads=1, params=job.params, schema=job.schema, output_uri=s.output,
                               device=s.device, dtype=s.dtype, quantize=s.quantize)
        quantized = any(isinstance(m, QuantizedLinear) for m in scorer.pipe.model.modules())
        assert quantized == (name == "int8") and scorer.pipe.device == torch.device("cpu")
        scorer(packed)
        tables[name] = {r["id"]: r for r in pq.read_table(s.output).to_pylist()}
    assert tables["int8"].keys() == tables["float32"].keys()
    for rid, row in tables["float32"].items():
        assert row["error"] is None and abs(tables["int8"][rid]["score"] - row["score"]) < 3e-2


def test_a_resume_in_another_precision_is_refused(task_models, tmp_path):
    model = task_models["text-classification"]
    pq.write_table(pa.table({"id": ["x"], "text": [SPM_LINES[0]]}), tmp_path / "in.parquet")
    inputs.plan_job(_settings(model, tmp_path / "in.parquet", tmp_path / "out"))
    written = manifest.inspect(*stages.filesystem(str(tmp_path / "out"))).manifest["job"]
    assert (written["dtype"], written["quantize"]) == (None, None)
    inputs.plan_job(_settings(model, tmp_path / "in.parquet", tmp_path / "out"))  # same precision: resumes
    with pytest.raises(ValueError, match=r"holds results scored in the checkpoint dtype, but this run scores in "
                                         r"bfloat16: one output folder never mixes two precisions"):
        inputs.plan_job(_settings(model, tmp_path / "in.parquet", tmp_path / "out", dtype="bfloat16"))
    with pytest.raises(ValueError, match="scores in the checkpoint dtype with int8 quantization"):
        inputs.plan_job(_settings(model, tmp_path / "in.parquet", tmp_path / "out", quantize="int8"))
    job = inputs.plan_job(_settings(model, tmp_path / "in.parquet", tmp_path / "out", quantize="int8",
                                    resume=False))  # --no-resume replaces the results
    assert job.parts and manifest.inspect(*stages.filesystem(str(tmp_path / "out"))).manifest["job"]["quantize"] \
        == "int8"


def test_a_manifest_without_a_precision_resumes_as_unquantized():
    folder = manifest.OutputFolder(manifest={"format": manifest.FORMAT, "job": {"task": "t"}, "input": []})
    manifest.check_ownership(folder, "out", {"task": "t", **manifest.precision(None, None)}, [], resume=True)
    with pytest.raises(ValueError, match="holds results scored in the checkpoint dtype, but this run scores in "
                                         "float32 with int8 quantization"):
        manifest.check_ownership(folder, "out", {"task": "t", **manifest.precision("float32", "int8")}, [], True)
