"""Find files of a model: a local folder or a HuggingFace hub repository (through its cache)."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


_TRUE = {"1", "ON", "YES", "TRUE"}


def is_local(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names a local file or folder rather than a hub repository id."""
    s = os.fspath(name_or_path)
    # A hub id is "name" or "org/name"; anything else that looks like a path is local.
    return os.path.exists(s) or s.startswith((".", "/", "~")) or s.count("/") > 1


def _hub_options(cache_dir: str | os.PathLike | None, local_files_only: bool) -> tuple[str | None, bool]:
    """``cache_dir`` and ``local_files_only`` with the environment read at call time: huggingface_hub reads
    ``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` / ``HF_HOME`` once, at import."""
    local_files_only = local_files_only or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    if cache_dir is None:
        cache_dir = os.environ.get("HF_HUB_CACHE") or (
            os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    return (None if cache_dir is None else os.fspath(cache_dir)), local_files_only


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                 required: bool = True) -> Path | None:
    """Path of ``filename`` in a local folder or a hub repository (downloaded into the hub cache).

    The hub path honours ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``/``HF_HOME`` (read at call time) and ``revision``.

    Returns:
        The path, or None when the file is missing and not ``required``.

    Raises:
        FileNotFoundError: If the folder or hub repository (or revision) does not exist, or the file does not
            exist (or is not cached when offline) and ``required``.
        ValueError: If ``filename`` is absolute or leaves the folder (``..``).
    """
    if not is_inside(filename):
        raise ValueError(f"file name {filename!r} is outside the model folder")
    if is_local(name_or_path):
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
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    cache_dir, local_files_only = _hub_options(cache_dir, local_files_only)
    repo = os.fspath(name_or_path)
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only))
    except EntryNotFoundError as e:  # also raised (as LocalEntryNotFoundError) for a file missing from the cache
        if required:
            raise FileNotFoundError(f"{filename} not found for {repo!r} (revision {revision or 'main'}): {e}") from e
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise FileNotFoundError(f"hub repository {repo!r} (revision {revision or 'main'}) not found: {e}") from e


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
            shards = shard_names(path, suffix=filename.removesuffix(".index.json").rpartition(".")[2])
            return [resolve_file(name_or_path, shard, **kwargs) for shard in shards]
        return [path]
    raise FileNotFoundError(f"no weights ({', '.join(WEIGHT_FILES)}) found for {str(name_or_path)!r}")


def is_inside(filename: str) -> bool:
    """Whether ``filename`` is a relative path that stays in its folder (no ``..``, no root or drive)."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return bool(parts) and ".." not in parts and not (PurePosixPath(filename).is_absolute()
                                                      or PureWindowsPath(filename).anchor)


def shard_names(index_path: Path, suffix: str) -> list[str]:
    """The shard files an index names, each confined to the model folder.

    Args:
        index_path: A ``*.index.json`` with a ``weight_map`` of tensor name -> shard file.
        suffix: The shards' file type (``safetensors`` or ``bin``), the same as the index's.

    Raises:
        ValueError: Naming the index and the entry, on an index that is not a JSON object with a
            ``weight_map`` of strings, or a shard that is absolute, leaves the folder (``..``) or has
            another type.
    """
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"weight index {str(index_path)!r} is not valid JSON: {e}") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"weight index {str(index_path)!r} has no 'weight_map' object of tensor -> shard file")
    for key, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ValueError(f"weight index {str(index_path)!r}: entry {key!r} names {shard!r}, not a file name")
        if not is_inside(shard):
            raise ValueError(f"weight index {str(index_path)!r}: entry {key!r} names {shard!r}, which is "
                             f"outside the model folder")
        if not shard.endswith("." + suffix):
            raise ValueError(f"weight index {str(index_path)!r}: entry {key!r} names {shard!r}, not a .{suffix} "
                             f"file")
    return sorted(set(weight_map.values()))
