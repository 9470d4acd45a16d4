"""Precision options of the service: settings and flags checked by the loader's rules, and a replica loading
through the loader (int8 linear layers on a CPU replica)."""

from __future__ import annotations

import pytest
from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

from serve.cli import parser, settings_from
from serve.model import TaskModel
from serve.settings import make_settings


def test_flags_reach_the_settings():
    s = settings_from(parser().parse_args(["--model", "m", "--num-gpus", "0", "--quantize", "int8"]))
    assert (s.dtype, s.quantize) == (None, "int8")
    s = settings_from(parser().parse_args(["--model", "m", "--num-gpus", "0", "--dtype", "bfloat16"]))
    assert (s.dtype, s.quantize) == ("bfloat16", None)


@pytest.mark.parametrize("values,message", [
    ({"quantize": "int8", "num_gpus": 1}, "quantize='int8' runs only on the CPU"),
    ({"dtype": "float16", "num_gpus": 0}, "dtype float16 runs only on CUDA, not on cpu"),
    ({"quantize": "int8", "dtype": "bfloat16", "num_gpus": 0}, "quantize='int8' quantizes float32 weights"),
    ({"quantize": "int4", "num_gpus": 0}, "quantize: Input should be 'int8'"),
])
def test_precision_the_loader_refuses_fails_in_the_settings(values, message):
    with pytest.raises(ValueError, match=message):
        make_settings({"model": "m", **values})


def test_replica_loads_through_the_loader(task_models):
    settings = make_settings({"model": str(task_models["text-classification"]), "task": "text-classification",
                              "num_gpus": 0, "quantize": "int8"})
    replica = TaskModel(settings.model_dump())
    assert any(isinstance(m, QuantizedLinear) for m in replica.pipe.model.modules())
    out = replica.run_batch([{"inputs": "a short text", "parameters": {}, "request_id": "r"}])
    assert out[0].status == 200 and out[0].result[0][0]["label"]
