"""Find files of a model: a local folder or a HuggingFace hub repository (through its cache)."""

from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _is_local(name_or_path: str | os.PathLike) -> bool:
    s = str(name_or_path)
    # A hub id is "name" or "org/name"; anything else that looks like a path is a folder.
    return os.path.isdir(s) or s.startswith((".", "/", "~")) or s.count("/") > 1


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | None = None, local_files_only: bool = False,
                 required: bool = True) -> Path | None:
    """Path of ``filename`` in a local folder or a hub repository (downloaded into the hub cache).

    The hub path honours ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``/``HF_HOME`` and ``revision``.

    Raises:
        FileNotFoundError: If the folder or file does not exist (and ``required``).
    """
    if _is_local(name_or_path):
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {str(name_or_path)!r} does not exist")
        path = folder / filename
        if path.is_file():
            return path
        if required:
            raise FileNotFoundError(f"{filename} not found in {str(folder)!r}")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(name_or_path), filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only))
    except (EntryNotFoundError, LocalEntryNotFoundError) as e:
        if required:
            raise FileNotFoundError(f"{filename} not found for {str(name_or_path)!r} "
                                    f"(revision {revision or 'main'}): {e}") from e
        return None


def resolve_weights(name_or_path: str | os.PathLike, **kwargs) -> list[Path]:
    """Weight files of a model, preferring safetensors: one file, or every shard of an index.

    Raises:
        FileNotFoundError: If no weight file exists.
    """
    for filename in WEIGHT_FILES:
        path = resolve_file(name_or_path, filename, required=False, **kwargs)
        if path is None:
            continue
        if filename.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            return [resolve_file(name_or_path, shard, **kwargs) for shard in shards]
        return [path]
    raise FileNotFoundError(f"no weights ({', '.join(WEIGHT_FILES)}) found for {str(name_or_path)!r}")
