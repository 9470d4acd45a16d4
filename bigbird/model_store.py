"""Models in object storage: an ``s3://`` or ``gs://`` folder copied once per node into a local cache.

The cache entry of a folder is keyed by its objects' listing (relative path, size and modification time of
each: what pyarrow's filesystems report; a changed or added object is a new key), so every process on a node
(batch actors, Serve replicas, ``bigbird.pipeline``) loads exactly the files the listing names, and a folder
overwritten in the bucket (a new export) is fetched again. One process per node downloads; the others wait on
a lock file and then read its copy.

    <cache>/models/<sha256 of the URI>/<sha256 of the listing>/   the files, complete once renamed here
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

SCHEMES = ("s3", "gs")  # what the loader fetches; pyarrow opens both
CACHE_VAR = "BIGBIRD_CACHE"


@dataclass(frozen=True)
class StorageOptions:
    """How to open object storage: an S3-compatible or GCS endpoint (``http://host:9000``), the bucket's
    region (S3), and anonymous access (public buckets). All unset: pyarrow's defaults (the ``AWS_*`` and
    ``GOOGLE_*`` variables and files)."""

    endpoint: str | None = None
    region: str | None = None
    anonymous: bool = False


def is_remote(source: str | os.PathLike) -> bool:
    """Whether ``source`` is an object-storage URI the loader fetches (``s3://``, ``gs://``)."""
    return isinstance(source, str) and urlparse(source).scheme in SCHEMES and "://" in source


def filesystem(uri: str, storage: StorageOptions | pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem of an ``s3://`` or ``gs://`` URI and the path inside it.

    Raises:
        ValueError: For a URI of another scheme, naming it.
    """
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3:// or gs:// URI with a bucket")
    inner = (parsed.netloc + parsed.path).rstrip("/")
    if isinstance(storage, pafs.FileSystem):
        return storage, inner
    options = storage or StorageOptions()
    if options == StorageOptions():
        return pafs.FileSystem.from_uri(uri)[0], inner
    endpoint: dict[str, str] = {}
    if options.endpoint:
        ep = urlparse(options.endpoint)
        scheme, host = (ep.scheme, ep.netloc) if ep.scheme in ("http", "https") and ep.netloc else (
            "https", options.endpoint.rstrip("/"))
        endpoint = {"endpoint_override": host, "scheme": scheme}
    if parsed.scheme == "s3":
        region = {"region": options.region} if options.region else {}
        return pafs.S3FileSystem(anonymous=options.anonymous, **region, **endpoint), inner
    return pafs.GcsFileSystem(anonymous=options.anonymous, **endpoint), inner


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$BIGBIRD_CACHE``, else ``~/.cache/bigbird``; the models live under ``models/``."""
    root = cache_dir or os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "bigbird"
    return Path(root).expanduser() / "models"


def listing(fs: pafs.FileSystem, root: str) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime in ns)`` of every object under ``root``, sorted.

    Raises:
        FileNotFoundError: If nothing exists under ``root``.
    """
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    files = sorted((i.path[len(root) + 1:], i.size, i.mtime_ns or 0) for i in infos if i.type == pafs.FileType.File)
    if not files:
        raise FileNotFoundError(f"model folder {root!r} holds no files (or does not exist)")
    return files


def fetch_model(uri: str, storage: StorageOptions | pafs.FileSystem | None = None, *,
                cache_dir: str | os.PathLike | None = None) -> Path:
    """The local copy of an object-storage model folder, downloaded if the cache has no copy of its current
    objects.

    Args:
        uri: ``s3://bucket/models/x`` or ``gs://...``: a folder holding ``config.json``, the weights and the
            tokenizer files (what fine-tuning exports).
        storage: Options to open it with, or a ready pyarrow filesystem; None: pyarrow's defaults.
        cache_dir: Parent of the cache (default :func:`cache_root`'s).

    Returns:
        The local folder (read it, never write into it).

    Raises:
        ValueError: For a URI that is not ``s3://`` / ``gs://``.
        FileNotFoundError: If the folder holds no files.
    """
    fs, root = filesystem(uri, storage)
    files = listing(fs, root)
    key = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:32]
    parent = cache_root(cache_dir) / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:32]
    target = parent / key
    if target.is_dir():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per node; the others find it done
        if not target.is_dir():
            temp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=parent))
            try:
                for rel, _, _ in files:
                    if rel.startswith("/") or ".." in rel.split("/"):
                        raise ValueError(f"{uri!r}: object {rel!r} would land outside the model folder")
                    dst = temp / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    with fs.open_input_stream(f"{root}/{rel}") as src, open(dst, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                os.rename(temp, target)  # complete, or absent
            finally:
                shutil.rmtree(temp, ignore_errors=True)
    return target
