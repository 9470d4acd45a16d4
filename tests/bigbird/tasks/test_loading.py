"""The one inference loader: its device and precision rules, bf16 and int8 pipelines against float32 on the same
weights, and the callers (``bigbird.pipeline``, the batch scorer, the service replica) going through it."""

from __future__ import annotations

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

import bigbird
from bigbird.tasks import load, loading

SHORT = "I was showing it to my friends, reflecting its pretty blades against the rays of the sun."
LONG = " ".join([SHORT] * 30)  # several windows at max_length 128


def test_device_rule():
    cpu = torch.device("cpu")
    for value in (None, -1, "cpu", cpu):
        assert loading.resolve_device(value) == cpu
    assert loading.resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else cpu)


@pytest.mark.parametrize("bad,message", [
    ("gpu", "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a CUDA index, got 'gpu'"),
    ("cuda:x", "got 'cuda:x'"), (-2, "device -2 is not a CUDA index"), (True, "got True"), (1.5, "got 1.5"),
    ("meta", "device 'meta': only 'cpu' and 'cuda'"),
])
def test_bad_devices_are_named(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        loading.resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
@pytest.mark.parametrize("value", ["cuda", "cuda:1", 0])
def test_cuda_without_a_device_is_refused(value):
    with pytest.raises(ValueError, match=f"device {value!r}: torch sees no CUDA device"):
        loading.resolve_device(value)


def test_precision_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loading.resolve_precision(None, None, cpu) is None
    assert loading.resolve_precision("bfloat16", None, cpu) is torch.bfloat16
    assert loading.resolve_precision(torch.float16, None, cuda) is torch.float16
    assert loading.resolve_precision(None, "int8", cpu) is torch.float32
    assert loading.resolve_precision("auto", None, cpu) == "auto"
    with pytest.raises(ValueError, match="dtype float16 runs only on CUDA, not on cpu: use bfloat16"):
        loading.resolve_precision("float16", None, cpu)
    with pytest.raises(ValueError, match=r"quantize='int8' runs only on the CPU .* not on cuda"):
        loading.resolve_precision(None, "int8", cuda)
    with pytest.raises(ValueError, match="quantize='int8' quantizes float32 weights; .* got torch.bfloat16"):
        loading.resolve_precision("bfloat16", "int8", cpu)
    with pytest.raises(ValueError, match=r"dtype must be one of \['bfloat16', 'float16', 'float32'\].*'half'"):
        loading.resolve_precision("half", None, cpu)
    with pytest.raises(ValueError, match=r"quantize must be one of \['int8'\] \(or None\), got 'int4'"):
        loading.resolve_precision(None, "int4", cpu)


def _scores(pipe, inputs):
    return [{d["label"]: d["score"] for d in res} for res in pipe(inputs, top_k=None)]


def test_bfloat16_and_int8_score_close_to_float32(task_models):
    folder = task_models["text-classification"]
    ref = load("text-classification", folder, device="cpu", max_length=128, stride=32)
    assert ref.model.dtype is torch.float32 and ref.device == torch.device("cpu")
    bf16 = load("text-classification", folder, device="cpu", dtype="bfloat16", max_length=128, stride=32)
    assert bf16.model.dtype is torch.bfloat16
    int8 = load("text-classification", folder, device="cpu", quantize="int8", max_length=128, stride=32)
    kinds = {type(m) for m in int8.model.modules()}
    assert QuantizedLinear in kinds and torch.nn.Linear not in kinds  # every linear layer, heads included
    expected = _scores(ref, [SHORT, LONG])
    for pipe, tol in ((bf16, 3e-2), (int8, 3e-2)):
        got = _scores(pipe, [SHORT, LONG])
        for a, b in zip(got, expected):
            assert a.keys() == b.keys() and max(abs(a[k] - b[k]) for k in a) < tol, (a, b)
            assert a != b  # really another precision, not float32 again


def test_pipeline_goes_through_the_loader(task_models):
    folder = task_models["token-classification"]
    pipe = bigbird.pipeline("token-classification", folder, quantize="int8")
    assert pipe.device == torch.device("cpu")  # transformers' default device, not "auto"
    assert any(isinstance(m, QuantizedLinear) for m in pipe.model.modules())
    model = bigbird.BigBirdForTokenClassification.from_pretrained(folder)
    loaded = bigbird.pipeline("token-classification", model, tokenizer=pipe.tokenizer, dtype="bfloat16")
    assert loaded.model.dtype is torch.bfloat16  # a loaded model is cast too
    with pytest.raises(ValueError, match="dtype float16 runs only on CUDA"):
        bigbird.pipeline("token-classification", folder, dtype=torch.float16)
    with pytest.raises(ValueError, match="pass tokenizer= when model is an already loaded model"):
        bigbird.pipeline("token-classification", model)


def test_threads_are_set(task_models):
    before = torch.get_num_threads()
    try:
        load("fill-mask", task_models["fill-mask"], device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be positive, got 0"):
        load("fill-mask", task_models["fill-mask"], threads=0)
