"""The one inference loader: (task, model, device, dtype, quantize) -> a ready task pipeline.

``bigbird.pipeline``, the batch job's scorers and the service's replicas all call :func:`load`, so a device,
precision or model-source rule is written here once:

- device: :func:`resolve_device` (``"auto"`` is CUDA when visible, else the CPU);
- precision: :func:`resolve_precision` (float16 only on CUDA; ``quantize="int8"``: dynamic int8 linear layers,
  CPU only, over float32 weights);
- source: a local folder, a hub id, or an ``s3://`` / ``gs://`` folder copied once per node into a local cache
  (:func:`bigbird.model_store.fetch_model`).
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch

from bigbird.tasks.spec import DEFAULT_STRIDE

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from bigbird.model_store import StorageOptions
    from bigbird.tasks.base import TaskPipeline

Device = int | str | torch.device | None
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("int8",)


def resolve_device(device: Device) -> torch.device:
    """The one device rule.

    ``"auto"``: the first CUDA device when torch sees one, else the CPU; ``None``, ``-1`` or ``"cpu"``: the CPU
    (transformers' convention); an int ``N`` >= 0, ``"cuda"`` or ``"cuda:N"``: that CUDA device; a
    ``torch.device`` as given.

    Raises:
        ValueError: For a value that names no device, or a CUDA device this process cannot see (naming it).
    """
    if isinstance(device, torch.device):
        return device
    if device is None or device == -1 or device == "cpu":
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a CUDA index, got {device!r}")
    if isinstance(device, int):
        if device < 0:
            raise ValueError(f"device {device} is not a CUDA index (use -1 or 'cpu' for the CPU)")
        parsed = torch.device("cuda", device)
    else:
        try:
            parsed = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a CUDA index, got {device!r}"
                             ) from None
        if parsed.type not in ("cpu", "cuda"):
            raise ValueError(f"device {device!r}: only 'cpu' and 'cuda' devices run the pipelines")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: torch sees no CUDA device (use 'cpu' or 'auto')")
        if (parsed.index or 0) >= count:
            raise ValueError(f"device {device!r}: torch sees only {count} CUDA device(s)")
    return parsed


def resolve_precision(dtype: torch.dtype | str | None, quantize: str | None, device: torch.device
                      ) -> torch.dtype | str | None:
    """The one precision rule: the dtype to load the weights in (``None``: the checkpoint's own, as
    ``from_pretrained`` does; ``"auto"`` passes through), checked against the device and ``quantize``.

    Raises:
        ValueError: For an unknown dtype or quantization, float16 on the CPU, or int8 on CUDA or over weights
            other than float32 (naming the value).
    """
    if isinstance(dtype, str) and dtype != "auto":
        if dtype.removeprefix("torch.") not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)} (or None), got {dtype!r}")
        dtype = DTYPES[dtype.removeprefix("torch.")]
    elif dtype is not None and dtype != "auto" and dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} (or None), got {dtype!r}")
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(f"dtype float16 runs only on CUDA, not on {device}: use bfloat16 (or float32) on the CPU")
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {list(QUANTIZE)} (or None), got {quantize!r}")
        if device.type != "cpu":
            raise ValueError(f"quantize={quantize!r} runs only on the CPU (dynamic int8 linear layers), not on "
                             f"{device}: leave quantize unset on CUDA and use dtype bfloat16 or float16")
        if dtype not in (None, torch.float32):
            raise ValueError(f"quantize={quantize!r} quantizes float32 weights; leave dtype unset or float32, "
                             f"got {dtype!r}")
        dtype = torch.float32
    return dtype


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Every ``nn.Linear`` of ``model`` as a dynamic int8 linear layer (int8 weights, activations quantized per
    call; embeddings and layer norms stay float32). CPU only; returns the same module, changed in place.

    torch's eager dynamic quantization (``torch.ao.quantization.quantize_dynamic``, fbgemm/oneDNN int8 kernels)
    is used although torch marks it deprecated: its successor, torchao's ``quantize_`` with
    ``Int8DynamicActivationInt8WeightConfig``, ran an encoder MLP 1.3x *slower* than float32 here without
    ``torch.compile``, where this ran it 3x faster (2 threads, AMD EPYC, torch 2.13; benchmarks/README.md).
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # the deprecation notice above, once per Linear layer
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def load(task: str, model: str | os.PathLike | torch.nn.Module, *, tokenizer: Any = None,
         device: Device = "auto", dtype: torch.dtype | str | None = None,
         quantize: Literal["int8"] | None = None, revision: str | None = None, threads: int | None = None,
         storage: StorageOptions | pafs.FileSystem | None = None, cache_dir: str | os.PathLike | None = None,
         batch_size: int = 8, max_length: int | None = None, stride: int = DEFAULT_STRIDE,
         max_tokens: int | None = None, **hub_kwargs: Any) -> TaskPipeline:
    """Load a model for a task and return its ready pipeline.

    Args:
        task: A task name or alias (``text-classification``, ``ner``, ...).
        model: A local folder, a hub id, an ``s3://`` / ``gs://`` folder (copied once per node into a local
            cache, see :func:`bigbird.model_store.fetch_model`), or an already loaded model.
        tokenizer: A tokenizer, or a folder / hub id / URI to load it from; default: the model's.
        device: ``"auto"`` (default: CUDA if visible, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, an index,
            ``None``/``-1`` (CPU) or a ``torch.device`` (:func:`resolve_device`).
        dtype: ``None`` (the checkpoint's), ``"float32"``, ``"bfloat16"``, ``"float16"`` (CUDA only), a
            ``torch.dtype`` or ``"auto"``.
        quantize: ``"int8"``: dynamic int8 linear layers (CPU only, float32 weights).
        revision: Hub revision of ``model`` (and of the tokenizer).
        threads: Torch threads of this process (``torch.set_num_threads``); None leaves them as they are.
        storage: Object-storage options (:class:`~bigbird.model_store.StorageOptions`) or a ready pyarrow
            filesystem, for URI models; None: pyarrow's defaults (``AWS_*`` variables).
        cache_dir: Hub cache, and the parent of the object-storage cache (default ``BIGBIRD_CACHE`` or
            ``~/.cache/bigbird``).
        batch_size, max_length, stride, max_tokens: The pipeline's windowing and batching
            (:class:`~bigbird.tasks.base.TaskPipeline`).
        **hub_kwargs: Passed to ``from_pretrained`` (``local_files_only``, config fields, ...).

    Returns:
        The task's pipeline on the device, in eval mode.

    Raises:
        ValueError: For an unknown task, device, dtype or quantization, or a combination that cannot run.
        FileNotFoundError: If the model's folder, files or objects do not exist.
    """
    from bigbird.model_store import fetch_model, is_remote
    from bigbird.tasks import get_spec
    from bigbird.tokenization import BigBirdTokenizer

    spec = get_spec(task)
    where = resolve_device(device)
    weights_dtype = resolve_precision(dtype, quantize, where)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    hub = {"revision": revision, "cache_dir": cache_dir, **hub_kwargs}

    def local(source: str | os.PathLike) -> str | os.PathLike:
        return fetch_model(os.fspath(source), storage, cache_dir=cache_dir) if is_remote(source) else source

    if isinstance(model, (str, os.PathLike)):
        source = local(model)
        tokenizer = source if tokenizer is None else tokenizer
        model = spec.model_class.from_pretrained(source, dtype=weights_dtype, **hub)
    elif weights_dtype not in (None, "auto"):
        model = model.to(dtype=weights_dtype)
    if tokenizer is None:
        raise ValueError("pass tokenizer= when model is an already loaded model")
    if isinstance(tokenizer, (str, os.PathLike)):
        names = {k: v for k, v in hub.items() if k in ("revision", "cache_dir", "local_files_only")}
        tokenizer = BigBirdTokenizer.from_pretrained(local(tokenizer), **names)
    if quantize == "int8":
        model = quantize_int8(model)
    return spec.pipeline_class(model, tokenizer, device=where, batch_size=batch_size, max_length=max_length,
                               stride=stride, max_tokens=max_tokens)
